/* worker.c: runs one claimed operation image by image, with progress events, cancellation and shutdown. */
#include "config.h"

#include "worker/worker.h"

#include "common/buf.h"
#include "common/log.h"
#include "db/blobs.h"
#include "db/db.h"
#include "db/eventlog.h"
#include "db/images.h"
#include "worker/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Per-run state that is not part of the stored job. */
struct run {
	it_worker *w;
	it_wq_job *job;
	const char *type;
	long long last_progress_ms; /* when the last progress event was written, 0: never */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends an operation.progress event inside the caller's transaction. */
static int progress_event(struct run *r, int current, int progress, const char *message)
{
	json_object *d = json_object_new_object();
	int rc;

	json_object_object_add(d, "operation_id", json_object_new_string(r->job->id));
	json_object_object_add(d, "operation_type", json_object_new_string(r->type));
	json_object_object_add(d, "progress", json_object_new_int(progress));
	json_object_object_add(d, "current", json_object_new_int(current));
	json_object_object_add(d, "total", json_object_new_int(r->job->total));
	json_object_object_add(d, "message", json_object_new_string(message));
	rc = it_event_append(r->w->conn, r->job->session, "operation.progress", d, NULL);
	json_object_put(d);
	r->last_progress_ms = now_ms();
	return rc;
}

/* Progress events are throttled per job: a bulk operation on small images
 * would otherwise flood every client of the session. */
static int progress_due(const struct run *r)
{
	return r->last_progress_ms == 0 || now_ms() - r->last_progress_ms >= r->w->progress_interval_ms;
}

static void next_message(const struct run *r, int current, char *buf, size_t len)
{
	snprintf(buf, len, "%s image %d of %d...", it_op_type_verb(r->job->params.type), current, r->job->total);
}

/* Runs BEGIN on the worker's connection. */
static int begin(struct run *r)
{
	return it_db_begin(&r->w->conn);
}

/* Reads a whole blob into b. Returns 0, 404 or 503 (500 when b's ceiling is hit). */
static int read_blob(PGconn *conn, int64_t id, it_buf *b)
{
	it_blob_reader rd;
	const void *p;
	ssize_t n;
	int rc;

	rc = it_blob_reader_open(&rd, conn, id, 0, -1);
	if (rc != 0)
		return rc;
	while ((n = it_blob_reader_next(&rd, &p)) > 0) {
		if (it_buf_append(b, p, (size_t)n) < 0) {
			rc = 500;
			break;
		}
	}
	if (n < 0)
		rc = (int)-n;
	it_blob_reader_close(&rd);
	return rc;
}

/* Adds the per-image entry to the job's result. Takes ownership of entry. */
static void add_entry(it_wq_job *job, json_object *entry)
{
	json_object *images;

	if (!json_object_object_get_ex(job->result, "images", &images) ||
	    !json_object_is_type(images, json_type_array)) {
		images = json_object_new_array();
		json_object_object_add(job->result, "images", images);
	}
	json_object_array_add(images, entry);
}

/* Drops the entry add_entry added last (its transaction rolled back). */
static void drop_last_entry(it_wq_job *job)
{
	json_object *images;

	if (json_object_object_get_ex(job->result, "images", &images)) {
		size_t n = json_object_array_length(images);
		if (n > 0)
			json_object_array_del_idx(images, n - 1, 1);
	}
}

/* Processes image i (0-based) and commits its outcome. Returns 0, 2 when
 * the job is no longer ours, or -1 on a database error. */
static int do_image(struct run *r, int i)
{
	it_worker *w = r->w;
	it_wq_job *job = r->job;
	const char *id = job->image_ids[i];
	json_object *entry = json_object_new_object(), *data = NULL;
	it_image img, cur, out;
	it_xf_out xf = {0};
	char err[256] = "", msg[160];
	int rc, commit_rc = -1, changed = 0, progress, next;
	int64_t blob_id = 0, thumb_id = 0;
	char sha[65];
	it_buf bytes;

	it_buf_init(&bytes, 0);
	json_object_object_add(entry, "image_id", json_object_new_string(id));
	rc = it_images_get(&w->conn, id, &img);
	if (rc == 0 && strcmp(img.session_id, job->session) != 0)
		rc = 404;
	if (rc == 404 || rc == 400) {
		snprintf(err, sizeof(err), "the image no longer exists");
	} else if (rc != 0) {
		goto out;
	} else {
		json_object_object_add(entry, "filename", json_object_new_string(img.filename));
		json_object_object_add(entry, "bytes_before", json_object_new_int64(img.size));
		/* The stored size is the ceiling: nothing else can come out of the blob. */
		it_buf_init(&bytes, (size_t)img.size + 1);
		rc = read_blob(w->conn, img.blob_id, &bytes);
		if (rc == 404)
			snprintf(err, sizeof(err), "the image no longer exists");
		else if (rc != 0)
			goto out;
		else if (it_xf_apply(&job->params, img.content_type, bytes.data, bytes.len, w->cfg->max_pixels,
				     (int)w->cfg->thumbnail_size, &xf, err, sizeof(err)) == 0) {
			/* Recompressing an already small file can make it bigger;
			 * then the original stays, which is what "compress" means. */
			changed = !(job->params.type == IT_OP_COMPRESS && xf.len >= (size_t)img.size &&
				    strcmp(xf.content_type, img.content_type) == 0);
		}
	}
	it_buf_free(&bytes);

	if (begin(r) < 0)
		goto out;
	if (changed) {
		rc = it_images_get_for_update(w->conn, id, &cur);
		if (rc == 404 || rc == 400) {
			snprintf(err, sizeof(err), "the image no longer exists");
			changed = 0;
		} else if (rc != 0) {
			goto out;
		} else if (cur.blob_id != img.blob_id) {
			/* Another operation stored a version meanwhile: ours was
			 * computed from stale bytes and must not replace it. */
			snprintf(err, sizeof(err), "the image changed while it was being processed");
			changed = 0;
		}
	}
	if (changed) {
		if (it_blob_put(w->conn, xf.data, xf.len, &blob_id, sha) != 0)
			goto out;
		if (xf.thumb && it_blob_put(w->conn, xf.thumb, xf.thumb_len, &thumb_id, NULL) != 0)
			goto out;
		cur.blob_id = blob_id;
		cur.thumb_blob_id = thumb_id;
		snprintf(cur.content_type, sizeof(cur.content_type), "%s", xf.content_type);
		cur.size = (int64_t)xf.len;
		snprintf(cur.sha256, sizeof(cur.sha256), "%s", sha);
		cur.width = xf.width;
		cur.height = xf.height;
		if (it_images_new_version(w->conn, id, &cur, &out) != 0)
			goto out;
		json_object_object_add(entry, "status", json_object_new_string("ok"));
		json_object_object_add(entry, "bytes_after", json_object_new_int64(out.size));
		json_object_object_add(entry, "content_type", json_object_new_string(out.content_type));
		json_object_object_add(entry, "width", json_object_new_int(out.width));
		json_object_object_add(entry, "height", json_object_new_int(out.height));
		json_object_object_add(entry, "version", json_object_new_int(out.version));
	} else if (err[0]) {
		json_object_object_add(entry, "status", json_object_new_string("failed"));
		json_object_object_add(entry, "error", json_object_new_string(err));
	} else {
		json_object_object_add(entry, "status", json_object_new_string("unchanged"));
		json_object_object_add(entry, "bytes_after", json_object_new_int64(img.size));
	}

	/* The job's own row first, then the events: the same lock order
	 * (operation, then session) as cancellation and housekeeping. */
	add_entry(job, json_object_get(entry));
	job->done = i + 1;
	next = i + 2 <= job->total ? i + 2 : job->total;
	progress = job->done * 100 / job->total;
	next_message(r, next, msg, sizeof(msg));
	rc = it_wq_record(w->conn, job, w->owner, (int)w->cfg->worker_lease, next, progress, msg);
	if (rc != 0) {
		commit_rc = rc;
		goto out;
	}
	if (changed) {
		data = it_images_event_data(&out, w->cfg->url_prefix);
		if (it_event_append(w->conn, job->session, "image.updated", data, NULL) != 0)
			goto out;
	}
	/* The progress of the last image is the final event, always sent by
	 * the completion; the others are throttled. */
	if (job->done < job->total && progress_due(r) && progress_event(r, next, progress, msg) != 0)
		goto out;
	if (it_db_commit(w->conn) != 0)
		goto out;
	commit_rc = 0;
	if (err[0])
		it_log_info("operation %s: image %s failed: %s", job->id, id, err);
out:
	if (commit_rc != 0) {
		it_db_rollback(w->conn);
		if (job->done == i + 1) {
			drop_last_entry(job);
			job->done = i;
		}
	}
	json_object_put(entry);
	json_object_put(data);
	it_xf_out_free(&xf);
	it_buf_free(&bytes);
	return commit_rc;
}

/* Totals of the result, added to it for the summary. */
static void summarise(it_wq_job *job, int *ok, int *failed)
{
	json_object *images, *failed_ids = json_object_new_array();
	long long before = 0, after = 0;
	int unchanged = 0;

	*ok = *failed = 0;
	if (json_object_object_get_ex(job->result, "images", &images)) {
		size_t n = json_object_array_length(images);
		for (size_t k = 0; k < n; k++) {
			json_object *e = json_object_array_get_idx(images, k), *v;
			const char *st = json_object_object_get_ex(e, "status", &v) ? json_object_get_string(v) : "";
			if (strcmp(st, "failed") == 0) {
				(*failed)++;
				if (json_object_object_get_ex(e, "image_id", &v))
					json_object_array_add(failed_ids, json_object_get(v));
				continue;
			}
			(*ok)++;
			unchanged += strcmp(st, "unchanged") == 0;
			if (json_object_object_get_ex(e, "bytes_before", &v))
				before += json_object_get_int64(v);
			if (json_object_object_get_ex(e, "bytes_after", &v))
				after += json_object_get_int64(v);
		}
	}
	json_object_object_add(job->result, "succeeded", json_object_new_int(*ok));
	json_object_object_add(job->result, "failed", json_object_new_int(*failed));
	json_object_object_add(job->result, "unchanged", json_object_new_int(unchanged));
	json_object_object_add(job->result, "failed_image_ids", failed_ids);
	json_object_object_add(job->result, "bytes_before", json_object_new_int64(before));
	json_object_object_add(job->result, "bytes_after", json_object_new_int64(after));
}

/* Ends the job: completed, failed (every image failed) or cancelled, with
 * the final progress event (never throttled) and the closing event in one
 * transaction. Returns 0, 2 or -1. */
static int finish(struct run *r, int cancelled)
{
	it_worker *w = r->w;
	it_wq_job *job = r->job;
	json_object *d = json_object_new_object();
	const char *status, *reason = NULL;
	char msg[160];
	int ok, failed, rc = -1;

	summarise(job, &ok, &failed);
	if (cancelled) {
		status = "cancelled";
		reason = "cancelled";
		snprintf(msg, sizeof(msg), "Cancelled after %d of %d images", job->done, job->total);
	} else if (ok == 0) {
		status = "failed";
		reason = "every image failed";
		snprintf(msg, sizeof(msg), "Failed: none of %d images could be processed", job->total);
	} else {
		status = "completed";
		snprintf(msg, sizeof(msg), "Done: %d of %d images%s", ok, job->total, failed ? ", some failed" : "");
		if (failed)
			snprintf(msg, sizeof(msg), "Done: %d of %d images, %d failed", ok, job->total, failed);
	}
	if (begin(r) < 0)
		goto out;
	rc = it_wq_finish(w->conn, job, w->owner, status, reason, msg);
	if (rc != 0)
		goto out;
	rc = -1;
	if (!cancelled && progress_event(r, job->total, 100, msg) != 0)
		goto out;
	json_object_object_add(d, "operation_id", json_object_new_string(job->id));
	json_object_object_add(d, "operation_type", json_object_new_string(r->type));
	if (reason)
		json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "result", json_object_get(job->result));
	if (it_event_append(w->conn, job->session, reason ? "operation.failed" : "operation.completed", d, NULL) != 0)
		goto out;
	if (it_db_commit(w->conn) != 0)
		goto out;
	rc = 0;
	it_log_info("operation %s %s: %s", job->id, status, msg);
out:
	if (rc != 0)
		it_db_rollback(w->conn);
	json_object_put(d);
	return rc;
}

int it_wk_run(it_worker *w, it_wq_job *job)
{
	struct run r = {w, job, it_op_type_name(job->params.type), 0};
	char msg[160];
	int rc;

	it_log_info("operation %s: %s of %d images, from image %d (claim %d)", job->id, r.type, job->total,
		    job->done + 1, job->attempts);
	for (int i = job->done; i < job->total; i++) {
		if (*w->stopping) {
			it_log_info("operation %s: shutting down, returned to the queue after %d images", job->id, i);
			return it_wq_release(w->conn, job, w->owner);
		}
		rc = it_wq_renew(w->conn, job, w->owner, (int)w->cfg->worker_lease);
		if (rc < 0)
			return -1;
		if (rc == 2) {
			it_log_warn("operation %s: no longer ours (lease expired or session gone)", job->id);
			return 0;
		}
		if (rc == 1)
			return finish(&r, 1) < 0 ? -1 : 0;
		if (i == job->done) {
			/* The first image of this claim announces itself; later
			 * ones are announced by the previous image's commit. */
			next_message(&r, i + 1, msg, sizeof(msg));
			if (begin(&r) < 0)
				return -1;
			rc = it_wq_record(w->conn, job, w->owner, (int)w->cfg->worker_lease, i + 1,
					  i * 100 / job->total, msg);
			if (rc == 0)
				rc = progress_event(&r, i + 1, i * 100 / job->total, msg) == 0 ? 0 : -1;
			if (rc == 0)
				rc = it_db_commit(w->conn) == 0 ? 0 : -1;
			if (rc != 0) {
				it_db_rollback(w->conn);
				return rc < 0 ? -1 : 0;
			}
		}
		rc = do_image(&r, i);
		if (rc < 0)
			return -1;
		if (rc == 2) {
			it_log_warn("operation %s: no longer ours (lease expired or session gone)", job->id);
			return 0;
		}
	}
	rc = finish(&r, 0);
	return rc < 0 ? -1 : 0;
}

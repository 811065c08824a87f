/* worker.c: runs one claimed operation image by image, with progress events, cancellation and shutdown. */
#include "config.h"

#include "worker/worker.h"

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "db/blob.h"
#include "db/db.h"
#include "db/event.h"
#include "db/images.h"
#include "db/metrics.h"
#include "db/secrets.h"
#include "db/sessions.h"
#include "image/filename.h"
#include "worker/transform.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Per-run state that is not part of the stored job. */
struct run {
	it_worker *w;
	it_queue_job *job;
	const char *type;
	long long last_progress_ms; /* when the last progress event was written, 0: never */
	const it_urlsign *signer;   /* signs the URLs in image.updated events */
};

/* What the images finished so far add up to. */
struct totals {
	int ok, unchanged, failed;
	long long before, after; /* of the images that did not fail */
};

static void count(const it_queue_job *job, struct totals *t)
{
	json_object *images;

	memset(t, 0, sizeof(*t));
	if (!json_object_object_get_ex(job->result, "images", &images))
		return;
	for (size_t k = 0, n = json_object_array_length(images); k < n; k++) {
		json_object *e = json_object_array_get_idx(images, k), *v;
		const char *st = json_object_object_get_ex(e, "status", &v) ? json_object_get_string(v) : "";
		if (strcmp(st, "failed") == 0) {
			t->failed++;
			continue;
		}
		t->ok++;
		t->unchanged += strcmp(st, "unchanged") == 0;
		if (json_object_object_get_ex(e, "bytes_before", &v))
			t->before += json_object_get_int64(v);
		if (json_object_object_get_ex(e, "bytes_after", &v))
			t->after += json_object_get_int64(v);
	}
}

/* Adds the running totals to an event's data: what a page needs to say
 * "Saved 3.4 MB (41 %) on 12 images, 2 unchanged" at any moment. */
static void add_totals(json_object *d, const struct totals *t)
{
	json_object_object_add(d, "succeeded", json_object_new_int(t->ok));
	json_object_object_add(d, "unchanged", json_object_new_int(t->unchanged));
	json_object_object_add(d, "failed", json_object_new_int(t->failed));
	json_object_object_add(d, "bytes_before", json_object_new_int64(t->before));
	json_object_object_add(d, "bytes_after", json_object_new_int64(t->after));
	json_object_object_add(d, "bytes_saved", json_object_new_int64(t->before - t->after));
}

/* Writes n bytes the way the page does (1024 B = 1.0 KB). */
static void human(long long n, char *buf, size_t len)
{
	if (n < 1024)
		snprintf(buf, len, "%lld B", n);
	else if (n < 1024 * 1024)
		snprintf(buf, len, "%.1f KB", n / 1024.0);
	else
		snprintf(buf, len, "%.1f MB", n / 1048576.0);
}

/* "Saved 3.4 MB (41 %) on 12 images, 2 unchanged, 1 failed". */
static void saved_message(const struct totals *t, char *buf, size_t len)
{
	char h[32];
	long long saved = t->before - t->after;
	int pct = t->before > 0 ? (int)((saved * 100 + t->before / 2) / t->before) : 0;
	size_t n;

	human(saved, h, sizeof(h));
	n = (size_t)snprintf(buf, len, "Saved %s (%d %%) on %d image%s", h, pct, t->ok, t->ok == 1 ? "" : "s");
	if (t->unchanged && n < len)
		n += (size_t)snprintf(buf + n, len - n, ", %d unchanged", t->unchanged);
	if (t->failed && n < len)
		snprintf(buf + n, len - n, ", %d failed", t->failed);
}

/* Appends an operation.progress event inside the caller's transaction,
 * with the running totals and, when given, the entry of the image just
 * finished (the same object as in the result). */
static int progress_event(struct run *r, int current, int progress, const char *message, json_object *image)
{
	json_object *d = json_object_new_object();
	struct totals t;
	int rc;

	count(r->job, &t);
	json_object_object_add(d, "operation_id", json_object_new_string(r->job->id));
	json_object_object_add(d, "operation_type", json_object_new_string(r->type));
	json_object_object_add(d, "progress", json_object_new_int(progress));
	json_object_object_add(d, "current", json_object_new_int(current));
	json_object_object_add(d, "total", json_object_new_int(r->job->total));
	json_object_object_add(d, "done", json_object_new_int(r->job->done));
	json_object_object_add(d, "message", json_object_new_string(message));
	add_totals(d, &t);
	if (image)
		json_object_object_add(d, "image", json_object_get(image));
	rc = it_event_append(r->w->conn, r->job->session, "operation.progress", d, NULL);
	json_object_put(d);
	r->last_progress_ms = it_clock_ms();
	return rc;
}

/* Progress events are throttled per job: a bulk operation on small images
 * would otherwise flood every client of the session. */
static int progress_due(const struct run *r)
{
	return r->last_progress_ms == 0 || it_clock_ms() - r->last_progress_ms >= r->w->progress_interval_ms;
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
static void add_entry(it_queue_job *job, json_object *entry)
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
static void drop_last_entry(it_queue_job *job)
{
	json_object *images;

	if (json_object_object_get_ex(job->result, "images", &images)) {
		size_t n = json_object_array_length(images);
		if (n > 0)
			json_object_array_del_idx(images, n - 1, 1);
	}
}

/* One image on its way through the three stages: loaded from the database
 * (main thread), transformed (a helper thread when several run at once),
 * stored with its events (main thread, in order). */
struct slot {
	int index;	     /* 0-based position in the job */
	it_image img;	     /* the row as loaded */
	int loaded;	     /* img and bytes are valid */
	it_buf bytes;	     /* the original file */
	it_transform_out xf; /* the result, when transformed */
	int transformed;
	char err[256]; /* why this image failed, "" when it did not */
	const it_op_params *params;
	const it_config *cfg;
	long long load_ms, xf_ms;
	pthread_t thread;
	int has_thread;
};

static void slot_free(struct slot *sl)
{
	it_buf_free(&sl->bytes);
	it_transform_out_free(&sl->xf);
}

/* Stage 1: reads the image's row and bytes. Returns 0 (sl->err set when the
 * image is gone), or -1 on a database error. */
static int load(struct run *r, struct slot *sl)
{
	it_queue_job *job = r->job;
	long long t0 = it_clock_ms();
	int rc;

	rc = it_images_get(&r->w->conn, job->image_ids[sl->index], &sl->img);
	if (rc == 0 && strcmp(sl->img.session_id, job->session) != 0)
		rc = 404;
	if (rc == 404 || rc == 400) {
		snprintf(sl->err, sizeof(sl->err), "the image no longer exists");
		return 0;
	}
	if (rc != 0)
		return -1;
	/* The stored size is the ceiling: nothing else can come out of the blob. */
	it_buf_init(&sl->bytes, (size_t)sl->img.size + 1);
	rc = read_blob(r->w->conn, sl->img.blob_id, &sl->bytes);
	if (rc == 404) {
		snprintf(sl->err, sizeof(sl->err), "the image no longer exists");
		return 0;
	}
	if (rc != 0)
		return -1;
	sl->loaded = 1;
	sl->load_ms = it_clock_ms() - t0;
	return 0;
}

/* Stage 2: libvips work only, no database: safe on a helper thread. */
static void *transform(void *arg)
{
	struct slot *sl = arg;
	long long t0 = it_clock_ms();

	if (sl->loaded &&
	    it_transform_apply(sl->params, sl->img.content_type, sl->bytes.data, sl->bytes.len,
			       &(it_sniff_limits){(uint64_t)sl->cfg->max_pixels, (uint64_t)sl->cfg->max_dimension,
						  (uint64_t)sl->cfg->max_decode_bytes},
			       (int)sl->cfg->thumbnail_size, &sl->xf, sl->err, sizeof(sl->err)) == 0)
		sl->transformed = 1;
	/* The original is not needed any more; free it before the next stage. */
	it_buf_free(&sl->bytes);
	sl->xf_ms = it_clock_ms() - t0;
	return NULL;
}

/* Takes the session's row lock (the mode it_event_append takes anyway)
 * inside the open transaction. Returns 0, IT_QUEUE_LOST when the session is
 * gone, -1. */
static int lock_session(struct run *r)
{
	int rc = it_sessions_lock(r->w->conn, r->job->session);

	return rc == 0 ? 0 : rc == 404 ? IT_QUEUE_LOST : -1;
}

/* Locks the image row without waiting. Returns 0 (locked, or the image is
 * gone: the caller finds out next), 1 when someone else holds it, -1. */
static int try_lock_image(struct run *r, const char *id)
{
	const char *pv[1] = {id};
	PGresult *res = PQexecParams(r->w->conn, "SELECT 1 FROM images WHERE id = $1::uuid FOR UPDATE NOWAIT", 1, NULL,
				     pv, NULL, NULL, 0);
	int rc = it_db_ok(res, PGRES_TUPLES_OK) ? 0 : strcmp(it_db_sqlstate(res), "55P03") == 0 ? 1 : -1;

	PQclear(res);
	return rc;
}

/* Replaces the image's bytes with the transform's result (the blobs
 * blob_id and thumb_id, already written) inside the open transaction, which
 * holds the session's row lock. When the image is gone, or another version
 * was stored meanwhile (ours was computed from stale bytes and must not
 * replace it), it says so in sl->err, clears *changed and deletes the new
 * blobs, which belong to nothing then. Returns 0, 1 when someone else holds
 * the image row, or -1. */
static int replace_version(struct run *r, struct slot *sl, int64_t blob_id, int64_t thumb_id, const char *sha,
			   int *changed, it_image *out)
{
	it_worker *w = r->w;
	const char *id = r->job->image_ids[sl->index];
	it_image cur;
	int rc = try_lock_image(r, id);

	if (rc != 0)
		return rc > 0 ? 1 : -1;
	rc = it_images_get_for_update(w->conn, id, &cur);
	if (rc == 404 || rc == 400) {
		snprintf(sl->err, sizeof(sl->err), "the image no longer exists");
		*changed = 0;
	} else if (rc != 0) {
		return -1;
	} else if (cur.blob_id != sl->img.blob_id) {
		snprintf(sl->err, sizeof(sl->err), "the image changed while it was being processed");
		*changed = 0;
	}
	if (!*changed) {
		if (it_blob_delete(w->conn, blob_id) == 503 || (thumb_id && it_blob_delete(w->conn, thumb_id) == 503))
			return -1;
		return 0;
	}
	if (strcmp(cur.content_type, sl->xf.content_type) != 0) {
		/* Another format: the name's extension follows it, so that a
		 * download's name, Content-Type and bytes agree. */
		char name[sizeof(cur.filename)];
		it_filename_sanitize(cur.filename, it_filename_ext_for_type(sl->xf.content_type), name, sizeof(name));
		memcpy(cur.filename, name, sizeof(name));
	}
	cur.blob_id = blob_id;
	cur.thumb_blob_id = thumb_id;
	snprintf(cur.content_type, sizeof(cur.content_type), "%s", sl->xf.content_type);
	cur.size = (int64_t)sl->xf.len;
	snprintf(cur.sha256, sizeof(cur.sha256), "%s", sha);
	cur.width = sl->xf.width;
	cur.height = sl->xf.height;
	return it_images_new_version(w->conn, id, &cur, out) != 0 ? -1 : 0;
}

/* Completes the result entry of one image: "ok" with what the new version
 * is (out), "failed" with sl->err, or "unchanged" with the reason. */
static void describe_outcome(json_object *entry, const struct slot *sl, int changed, const it_image *out)
{
	if (changed) {
		json_object_object_add(entry, "status", json_object_new_string("ok"));
		json_object_object_add(entry, "filename", json_object_new_string(out->filename));
		json_object_object_add(entry, "bytes_after", json_object_new_int64(out->size));
		json_object_object_add(entry, "content_type", json_object_new_string(out->content_type));
		json_object_object_add(entry, "width", json_object_new_int(out->width));
		json_object_object_add(entry, "height", json_object_new_int(out->height));
		json_object_object_add(entry, "frames", json_object_new_int(sl->xf.frames));
		json_object_object_add(entry, "version", json_object_new_int(out->version));
		if (sl->xf.note[0])
			json_object_object_add(entry, "note", json_object_new_string(sl->xf.note));
	} else if (sl->err[0]) {
		json_object_object_add(entry, "status", json_object_new_string("failed"));
		json_object_object_add(entry, "error", json_object_new_string(sl->err));
	} else {
		json_object_object_add(entry, "status", json_object_new_string("unchanged"));
		json_object_object_add(entry, "bytes_after", json_object_new_int64(sl->img.size));
		if (sl->xf.unchanged[0])
			json_object_object_add(entry, "reason", json_object_new_string(sl->xf.unchanged));
	}
}

/* One attempt of store(). Lock order, the same as every other writer of a
 * session's rows: the new blobs first (rows nobody else can see), then the
 * session, then the image, then the job. Deleting a session (session, then
 * its images and jobs) can therefore never deadlock with a worker. A rename
 * or deletion of the image takes the image before the session; the worker
 * only tries the image lock (NOWAIT) and, when it is taken, starts over. */
static int store_once(struct run *r, struct slot *sl)
{
	it_worker *w = r->w;
	it_queue_job *job = r->job;
	const int i = sl->index;
	const char *id = job->image_ids[i];
	json_object *entry = json_object_new_object(), *data = NULL;
	it_image out;
	char msg[160];
	int rc, commit_rc = -1, changed = 0, progress, next;
	int64_t blob_id = 0, thumb_id = 0;
	char sha[65];
	long long t0 = it_clock_ms();

	json_object_object_add(entry, "image_id", json_object_new_string(id));
	if (sl->loaded) {
		json_object_object_add(entry, "filename", json_object_new_string(sl->img.filename));
		json_object_object_add(entry, "bytes_before", json_object_new_int64(sl->img.size));
	}
	/* The transform leaves the original in place when its result would
	 * not be smaller (compress never makes a file bigger) or the format
	 * is kept as it is; xf.unchanged says why. */
	if (sl->transformed)
		changed = sl->xf.unchanged[0] == '\0';

	if (begin(r) < 0)
		goto out;
	if (changed) {
		if (it_blob_put(w->conn, sl->xf.data, sl->xf.len, &blob_id, sha) != 0)
			goto out;
		if (sl->xf.thumb && it_blob_put(w->conn, sl->xf.thumb, sl->xf.thumb_len, &thumb_id, NULL) != 0)
			goto out;
	}
	rc = lock_session(r);
	if (rc == 0 && changed)
		rc = replace_version(r, sl, blob_id, thumb_id, sha, &changed, &out);
	if (rc != 0) {
		commit_rc = rc;
		goto out;
	}
	describe_outcome(entry, sl, changed, &out);

	add_entry(job, json_object_get(entry));
	job->done = i + 1;
	next = i + 2 <= job->total ? i + 2 : job->total;
	progress = job->done * 100 / job->total;
	next_message(r, next, msg, sizeof(msg));
	rc = it_queue_record(w->conn, job, w->owner, (int)w->cfg->worker_lease, next, progress, msg);
	if (rc != 0) {
		commit_rc = rc;
		goto out;
	}
	if (changed) {
		data = it_images_event_data(&out, w->cfg->url_prefix, r->signer);
		if (it_event_append(w->conn, job->session, "image.updated", data, NULL) != 0)
			goto out;
	}
	/* The progress of the last image is the final event, always sent by
	 * the completion; the others are throttled. */
	if (job->done < job->total && progress_due(r) && progress_event(r, next, progress, msg, entry) != 0)
		goto out;
	if (it_db_commit(w->conn) != 0)
		goto out;
	commit_rc = 0;
	it_log_debug("operation %s: image %d: load %lld ms, %s %lld ms, store %lld ms", job->id, i + 1, sl->load_ms,
		     it_op_type_verb(job->params.type), sl->xf_ms, it_clock_ms() - t0);
	if (sl->err[0])
		it_log_info("operation %s: image %s failed: %s", job->id, id, sl->err);
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
	return commit_rc;
}

/* Stage 3: stores the outcome of sl and the job's progress in one
 * transaction. A transaction that fails on a live connection (the image
 * row was busy, or PostgreSQL broke a deadlock with some other writer by
 * aborting us) is tried again a few times. Returns 0, IT_QUEUE_LOST when
 * the job is no longer ours (or its session is gone), or -1 on a database
 * error. */
static int store(struct run *r, struct slot *sl)
{
	char err[sizeof(sl->err)];
	int rc = -1;

	memcpy(err, sl->err, sizeof(err));
	for (int attempt = 0; attempt < 20; attempt++) {
		memcpy(sl->err, err, sizeof(err));
		rc = store_once(r, sl);
		if (rc == 0 || rc == IT_QUEUE_LOST || it_db_broken(r->w->conn))
			break;
		it_log_debug("operation %s: image %d: storing again (%s)", r->job->id, sl->index + 1,
			     rc > 0 ? "image busy" : "transaction failed");
		rc = -1;
		usleep(20000 * (unsigned)(attempt + 1));
	}
	return rc;
}

/* Totals of the result, added to it for the summary. */
static void summarise(it_queue_job *job, struct totals *t)
{
	json_object *images, *failed_ids = json_object_new_array();

	count(job, t);
	if (json_object_object_get_ex(job->result, "images", &images)) {
		for (size_t k = 0, n = json_object_array_length(images); k < n; k++) {
			json_object *e = json_object_array_get_idx(images, k), *v;
			if (json_object_object_get_ex(e, "status", &v) &&
			    strcmp(json_object_get_string(v), "failed") == 0 &&
			    json_object_object_get_ex(e, "image_id", &v))
				json_object_array_add(failed_ids, json_object_get(v));
		}
	}
	add_totals(job->result, t);
	json_object_object_add(job->result, "failed_image_ids", failed_ids);
}

/* Ends the job: completed, failed (every image failed) or cancelled, with
 * the final progress event (never throttled) and the closing event in one
 * transaction. Returns 0, IT_QUEUE_LOST or -1. */
static int finish(struct run *r, int cancelled)
{
	it_worker *w = r->w;
	it_queue_job *job = r->job;
	json_object *d = json_object_new_object();
	const char *status, *reason = NULL;
	char msg[200], saved[120];
	struct totals t;
	int ok, failed, rc = -1;

	summarise(job, &t);
	ok = t.ok;
	failed = t.failed;
	saved_message(&t, saved, sizeof(saved));
	if (cancelled) {
		status = "cancelled";
		reason = "cancelled";
		/* What was done before the cancel stays done: say so. */
		snprintf(msg, sizeof(msg), "Cancelled after %d of %d images; those stay done. %s", job->done,
			 job->total, saved);
	} else if (ok == 0) {
		status = "failed";
		reason = "every image failed";
		snprintf(msg, sizeof(msg), "Failed: none of %d images could be processed", job->total);
	} else if (job->params.type == IT_OP_COMPRESS) {
		status = "completed";
		snprintf(msg, sizeof(msg), "%s", saved);
	} else {
		status = "completed";
		snprintf(msg, sizeof(msg), "Done: %d of %d images", ok, job->total);
		if (failed)
			snprintf(msg, sizeof(msg), "Done: %d of %d images, %d failed", ok, job->total, failed);
	}
	if (begin(r) < 0)
		goto out;
	/* The session first, as in store_once. */
	rc = lock_session(r);
	if (rc != 0)
		goto out;
	rc = it_queue_finish(w->conn, job, w->owner, status, reason, msg);
	if (rc != 0)
		goto out;
	rc = -1;
	if (!cancelled && progress_event(r, job->total, 100, msg, NULL) != 0)
		goto out;
	json_object_object_add(d, "operation_id", json_object_new_string(job->id));
	json_object_object_add(d, "operation_type", json_object_new_string(r->type));
	if (reason)
		json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "message", json_object_new_string(msg));
	json_object_object_add(d, "result", json_object_get(job->result));
	if (it_event_append(w->conn, job->session, reason ? "operation.failed" : "operation.completed", d, NULL) != 0)
		goto out;
	if (it_db_commit(w->conn) != 0)
		goto out;
	rc = 0;
	it_log_info("operation %s %s: %s", job->id, status, msg);
	{
		char labels[96];
		snprintf(labels, sizeof(labels), "type=\"%s\",status=\"%s\"", r->type, status);
		it_metrics_inc("imagetools_operations_finished_total", labels, 1);
		it_metrics_inc("imagetools_operation_images_total", "result=\"ok\"", ok);
		it_metrics_inc("imagetools_operation_images_total", "result=\"failed\"", failed);
	}
out:
	if (rc != 0)
		it_db_rollback(w->conn);
	json_object_put(d);
	return rc;
}

/* Waits for the transform thread of sl, renewing the lease every third of
 * worker_lease meanwhile: a huge image, or a slow machine, must not look
 * like a dead worker. Losing the lease here is noticed by the next store,
 * whose conditional update then finds no row. */
static void wait_transform(struct run *r, struct slot *sl)
{
	const int lease = (int)r->w->cfg->worker_lease;
	struct timespec deadline;

	if (!sl->has_thread)
		return;
	for (;;) {
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += lease / 3 > 0 ? lease / 3 : 1;
		if (pthread_timedjoin_np(sl->thread, NULL, &deadline) != ETIMEDOUT)
			break;
		if (it_queue_renew(r->w->conn, r->job, r->w->owner, lease) < 0)
			it_log_warn("operation %s: lease renewal failed", r->job->id);
	}
	sl->has_thread = 0;
}

/* Loads image `index` into sl and starts its transform on a thread of its
 * own (this thread keeps the lease alive meanwhile: wait_transform).
 * Returns 0, or -1 on a database error (sl then holds nothing to wait for). */
static int start_image(struct run *r, struct slot *sl, int index)
{
	memset(sl, 0, sizeof(*sl));
	sl->index = index;
	sl->params = &r->job->params;
	sl->cfg = r->w->cfg;
	if (load(r, sl) < 0) {
		slot_free(sl);
		return -1;
	}
	if (pthread_create(&sl->thread, NULL, transform, sl) == 0)
		sl->has_thread = 1;
	else
		transform(sl);
	return 0;
}

/* Starts the transforms of the next images, in job order, until limit of
 * them are in the pipeline or none is left. Returns 0, or -1 when an image
 * could not be loaded. */
static int fill_pipeline(struct run *r, struct slot *slots, int nslots, int limit, int *next, int *busy)
{
	while (*busy < limit && *next < r->job->total) {
		if (start_image(r, &slots[*next % nslots], *next) < 0)
			return -1;
		(*next)++;
		(*busy)++;
	}
	return 0;
}

/* Checks between two images whether the job goes on. Returns 0 to go on,
 * or the value it_worker_run returns after stopping here (*stopped set). */
static int between(struct run *r, int i, int *stopped)
{
	it_worker *w = r->w;
	it_queue_job *job = r->job;
	int rc;

	*stopped = 1;
	if (*w->stopping) {
		it_log_info("operation %s: shutting down, returned to the queue after %d images", job->id, i);
		return it_queue_release(w->conn, job, w->owner);
	}
	rc = it_queue_renew(w->conn, job, w->owner, (int)w->cfg->worker_lease);
	if (rc < 0)
		return -1;
	if (rc == IT_QUEUE_LOST) {
		it_log_warn("operation %s: no longer ours (lease expired or session gone)", job->id);
		return 0;
	}
	if (rc == IT_QUEUE_CANCELLED)
		return finish(r, 1) < 0 ? -1 : 0;
	*stopped = 0;
	return 0;
}

int it_worker_run(it_worker *w, it_queue_job *job)
{
	struct run r = {w, job, it_op_type_name(job->params.type), 0, NULL};
	struct slot *slots;
	int par = w->parallel > 0 ? w->parallel : 1, nslots = par + 1, rc = 0, stopped = 0, next = job->done, busy = 0,
	    first = 1;
	char msg[160];

	/* Before any transaction: the signing key may be made on first use. */
	r.signer = it_secrets_url_signer(&w->conn, w->cfg);
	if (r.signer == NULL)
		return -1;
	slots = calloc((size_t)nslots, sizeof(*slots));
	if (slots == NULL)
		return -1;
	it_log_info("operation %s: %s of %d images, from image %d (claim %d)", job->id, r.type, job->total,
		    job->done + 1, job->attempts);
	rc = between(&r, job->done, &stopped);
	if (stopped)
		goto out;
	if (job->done < job->total) {
		/* The first image of this claim announces itself; later ones
		 * are announced by the previous image's commit. */
		int i = job->done;
		next_message(&r, i + 1, msg, sizeof(msg));
		if (begin(&r) < 0) {
			rc = -1;
			goto out;
		}
		rc = lock_session(&r);
		if (rc == 0)
			rc = it_queue_record(w->conn, job, w->owner, (int)w->cfg->worker_lease, i + 1,
					     i * 100 / job->total, msg);
		if (rc == 0)
			rc = progress_event(&r, i + 1, i * 100 / job->total, msg, NULL) == 0 ? 0 : -1;
		if (rc == 0)
			rc = it_db_commit(w->conn) == 0 ? 0 : -1;
		if (rc != 0) {
			it_db_rollback(w->conn);
			rc = rc < 0 ? -1 : 0;
			goto out;
		}
	}
	/* A pipeline in image order: up to `parallel` images are transformed
	 * on helper threads (libvips is thread-safe; the database is used only
	 * here, on this thread) while this thread stores the finished image at
	 * the head and loads the next one, so the cores are not idle during
	 * the database work. Stores stay in order, one transaction each, and
	 * cancellation and shutdown are honoured before every store. One slot
	 * more than `parallel`: the head waits to be stored while `parallel`
	 * others are transformed. */
	while (job->done < job->total) {
		struct slot *head = &slots[job->done % nslots];

		if (fill_pipeline(&r, slots, nslots, par, &next, &busy) < 0) {
			rc = -1;
			goto drain;
		}
		wait_transform(&r, head);
		/* The head is done but still holds its slot: the spare slot
		 * takes one more image while the head is stored. */
		if (fill_pipeline(&r, slots, nslots, nslots, &next, &busy) < 0) {
			rc = -1;
			goto drain;
		}
		if (!first) {
			rc = between(&r, job->done, &stopped);
			if (stopped)
				goto drain;
		}
		first = 0;
		rc = store(&r, head);
		slot_free(head);
		busy--;
		if (rc == IT_QUEUE_LOST) {
			it_log_warn("operation %s: no longer ours (lease expired or session gone)", job->id);
			rc = 0;
			stopped = 1;
		}
		if (rc < 0 || stopped)
			goto drain;
	}
	rc = finish(&r, 0) < 0 ? -1 : 0;
	goto out;
drain:
	/* Stopped early: the images still in the pipeline are dropped. */
	for (int k = job->done; k < next; k++) {
		wait_transform(&r, &slots[k % nslots]);
		slot_free(&slots[k % nslots]);
	}
out:
	free(slots);
	return rc;
}

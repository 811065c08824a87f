/* h_upload.c: POST /images, multipart uploads streamed into the blob store with their events. */
#include "config.h"

#include "common/id.h"
#include "common/log.h"
#include "db/blob.h"
#include "db/devices.h"
#include "db/db.h"
#include "db/event.h"
#include "db/images.h"
#include "db/metrics.h"
#include "db/secrets.h"
#include "db/sessions.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "fcgi/ingest.h"
#include "image/filename.h"
#include "image/sniff.h"
#include "image/thumb.h"
#include "parse/multipart.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A part's header block: browsers send about 200 bytes. */
#define MP_HEADER_MAX (8 * 1024)
/* The read buffer: what the parser may hold back plus one large read. */
#define READ_BUF (MP_HEADER_MAX + 128 * 1024)
/* Plain form fields (session_id, source) are short. */
#define FIELD_MAX 128
/* After an error, the rest of the body is read and dropped up to this many
 * bytes so that the client sees the answer; beyond, the connection is cut. */
#define DRAIN_MAX (8 * 1024 * 1024)

static const char *const sources[] = {"web", "android_app", "browser_addon", "cli", "api"};

/* One stored file of the request, waiting for its image row. */
typedef struct upload_file {
	it_image img;
} upload_file;

/* A complete file part that arrived before the request's session was known:
 * its bytes are only in its temporary file (never in the database) until
 * the session is, then they go into the blob store like any other file. */
typedef struct staged_file {
	int tmp_fd;
	int64_t size;
	char filename[IT_MP_FILENAME_MAX + 1]; /* as sent */
	char display[IT_IMAGE_NAME_MAX + 1];
} staged_file;

/* The state of one POST /images. Freed in one place (upload_free). */
typedef struct upload {
	it_req *req;
	PGconn *conn;
	const it_urlsign *signer; /* signs the URLs of the stored images */
	it_multipart mp;
	char *buf;
	size_t blen;
	int64_t body_read;

	/* the current part */
	enum { P_NONE, P_FIELD, P_FILE, P_SKIP } kind;
	char field_name[IT_MP_NAME_MAX + 1];
	char field[FIELD_MAX + 1];
	size_t field_len;
	it_blob_writer blob;
	int blob_open;
	int tmp_fd;
	unsigned char head[IT_SNIFF_MAGIC_BYTES];
	size_t head_len;
	int64_t file_size;
	it_mp_part part;
	char display[IT_IMAGE_NAME_MAX + 1]; /* the part's sanitised filename, for messages */

	/* the request so far */
	it_principal who;	  /* whom the credential speaks for, once known */
	char cred[FIELD_MAX + 1]; /* the credential of the header or the URL, as sent */
	char session[FIELD_MAX + 1];
	int session_ok;	     /* the session was checked: live, within rate and quota */
	int from_credential; /* it came from the Authorization header or the URL */
	int have_session_field;
	int have_source;
	int64_t session_bytes; /* held by the session's images when its id arrived */
	int64_t files_bytes;   /* of every file part so far */
	int64_t staged_bytes;  /* of the file parts that came before the session */
	char source[FIELD_MAX + 1];
	upload_file *files;
	int nfiles;	     /* stored in the blob store */
	staged_file *staged; /* allocated with the first one */
	int nstaged;

	it_ingest_error err; /* the first error */
} upload;

/* Resolves cred (the header's, the URL's or the session_id field's) into
 * u->who, which must be allowed to upload, and takes its session as the
 * request's. Returns 0 or -1 with the error set. */
static int resolve(upload *u, const char *cred)
{
	it_auth_refusal why;

	if (it_auth_resolve(u->req, cred, IT_SCOPE_UPLOAD | IT_AUTH_SESSION_UNCHECKED, &u->who, &why) != 0)
		return it_ingest_refused(u->req, &u->err, &why);
	snprintf(u->session, sizeof(u->session), "%s", u->who.session_id);
	return 0;
}

static void close_file_part(upload *u)
{
	if (u->blob_open)
		it_blob_writer_abort(&u->blob);
	u->blob_open = 0;
	if (u->tmp_fd >= 0)
		close(u->tmp_fd);
	u->tmp_fd = -1;
}

/* "file" is ours; the others are what common uploaders send by default
 * ("files[]": Uppy's XHR upload in bundle mode; "file[]", "files": forms
 * with several files). */
static int is_file_field(const char *name)
{
	return strcmp(name, "file") == 0 || strcmp(name, "file[]") == 0 || strcmp(name, "files") == 0 ||
		strcmp(name, "files[]") == 0;
}

static void close_staged(upload *u)
{
	for (int i = 0; i < u->nstaged; i++)
		if (u->staged[i].tmp_fd >= 0)
			close(u->staged[i].tmp_fd);
	u->nstaged = 0;
}

static int part_begin(upload *u, const it_mp_part *part)
{
	u->part = *part;
	u->field_len = 0;
	it_filename_sanitize(part->filename, NULL, u->display, sizeof(u->display));
	snprintf(u->field_name, sizeof(u->field_name), "%s", part->name);
	if (is_file_field(part->name)) {
		if (u->nfiles + u->nstaged >= it_g.cfg.max_files)
			return it_ingest_fail(&u->err, 413, "too-many-files", "At most %" PRId64 " files per request.",
					      it_g.cfg.max_files);
		u->kind = P_FILE;
		u->head_len = 0;
		u->file_size = 0;
		u->tmp_fd = it_ingest_tmpfile();
		if (u->tmp_fd < 0) {
			it_log_error("cannot create a temporary file: %s", strerror(errno));
			return it_ingest_fail(&u->err, 503, "storage-unavailable",
					      "The upload cannot be stored right now.");
		}
		/* Before the session is known the part goes to its temporary
		 * file only (staged): an anonymous client writes nothing into
		 * the database. */
		if (!u->session_ok)
			return 0;
		if (it_blob_writer_open(&u->blob, u->conn) != 0)
			return it_ingest_fail(&u->err, 503, "database-unavailable",
					      "The database cannot be reached; try again shortly.");
		u->blob_open = 1;
		return 0;
	}
	if (strcmp(part->name, "session_id") == 0 || strcmp(part->name, "source") == 0) {
		u->kind = P_FIELD;
		return 0;
	}
	/* Unknown fields are tolerated (forms carry extra inputs) and dropped;
	 * their bytes still count against max_request_bytes. */
	u->kind = P_SKIP;
	return 0;
}

/* Whether the files of this request would take the session past
 * max_session_bytes, given what it holds (0: no limit). */
static int over_quota(const upload *u, int64_t held)
{
	int64_t limit = it_g.cfg.max_session_bytes;

	return limit > 0 && u->session[0] != '\0' && held + u->files_bytes > limit;
}

static int quota_fail(upload *u, int64_t held)
{
	return it_ingest_fail(&u->err, 413, "session-quota-exceeded",
			      "The session holds %" PRId64
			      " bytes; with this upload it would pass its limit of %" PRId64
			      " bytes. Delete images to make room.",
			      held, it_g.cfg.max_session_bytes);
}

/* Reads what the session's images hold (locking its row with lock) and
 * answers for a session that is malformed, gone, unreachable or full. Asked
 * inside the upload's transaction, on its connection and never retried on
 * another one: a reconnect would silently carry the rest of the request
 * outside the transaction. */
static int session_check(upload *u, int lock, int64_t *held)
{
	int rc = it_images_session_bytes(u->conn, u->session, lock, held);

	if (rc == 400)
		return it_ingest_fail(&u->err, 400, "invalid-session-id", "The session id is malformed.");
	if (rc == 404)
		return it_ingest_fail(&u->err, 404, "unknown-session", "No such session, or it has expired.");
	if (rc != 0)
		return it_ingest_fail(&u->err, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	return over_quota(u, *held) ? quota_fail(u, *held) : 0;
}

static int part_data(upload *u, const char *p, size_t n)
{
	switch (u->kind) {
	case P_FIELD:
		if (u->field_len + n > FIELD_MAX)
			return it_ingest_fail(&u->err, 400, "field-too-long", "The field %s is too long.",
					      u->field_name);
		memcpy(u->field + u->field_len, p, n);
		u->field_len += n;
		return 0;
	case P_FILE:
		u->file_size += (int64_t)n;
		u->files_bytes += (int64_t)n;
		if (u->file_size > it_g.cfg.max_upload_bytes)
			return it_ingest_fail(&u->err, 413, "file-too-large",
					      "A file is larger than the limit of %" PRId64 " bytes.",
					      it_g.cfg.max_upload_bytes);
		if (over_quota(u, u->session_bytes))
			return quota_fail(u, u->session_bytes);
		/* Refuse non-images as soon as their first bytes say so. */
		if (it_ingest_sniff_head(u->head, &u->head_len, p, n))
			return it_ingest_fail(&u->err, 415, "not-an-image",
					      "\"%.60s\" is not a JPEG, PNG, GIF, WebP, HEIC or AVIF image.",
					      u->display);
		if (!u->blob_open) {
			u->staged_bytes += (int64_t)n;
			if (u->staged_bytes > it_g.cfg.max_staged_bytes)
				return it_ingest_fail(
					&u->err, 400, "session-id-first",
					"A file came before the session: send the session_id field before the files, "
					"or the session in the URL (?session_id=...) or in an Authorization: Bearer "
					"header.");
		}
		if (it_ingest_write(u->tmp_fd, p, n) < 0) {
			it_log_error("temporary file write failed: %s", strerror(errno));
			return it_ingest_fail(&u->err, 503, "storage-unavailable",
					      "The upload cannot be stored right now.");
		}
		if (u->blob_open && it_blob_writer_append(&u->blob, p, n) != 0)
			return it_ingest_fail(&u->err, 503, "database-unavailable",
					      "The database cannot be reached; try again shortly.");
		return 0;
	default: return 0;
	}
}

static int valid_source(const char *s)
{
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (strcmp(s, sources[i]) == 0)
			return 1;
	return 0;
}

/* The bytes are complete: end the blob, then sniff the header, check the
 * pixel count and make the thumbnail (it_ingest_examine), keeping what the
 * image row will need. */
static int file_end(upload *u)
{
	it_image *img = &u->files[u->nfiles].img;
	it_ingest_error e = {0};

	memset(img, 0, sizeof(*img));
	if (u->file_size == 0)
		return it_ingest_fail(&u->err, 415, "not-an-image", "\"%.60s\" is empty.", u->display);
	if (it_blob_writer_finish(&u->blob) != 0) {
		u->blob_open = 0;
		return it_ingest_fail(&u->err, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	}
	u->blob_open = 0;
	img->blob_id = u->blob.id;
	img->size = u->blob.size;
	memcpy(img->sha256, u->blob.sha256, sizeof(img->sha256));
	if (it_ingest_examine(u->conn, u->tmp_fd, u->file_size, u->part.filename, img, &e) != 0)
		return it_ingest_fail(&u->err, e.status, e.slug, "%s", e.detail);
	u->nfiles++;
	return 0;
}

/* Keeps a complete file part that came before the session in its
 * temporary file, for session_known. */
static int stage_file(upload *u)
{
	staged_file *f;

	if (u->staged == NULL && (u->staged = calloc((size_t)it_g.cfg.max_files, sizeof(*u->staged))) == NULL)
		return it_ingest_fail(&u->err, 503, "out-of-memory", "The server is out of memory; try again shortly.");
	f = &u->staged[u->nstaged++];
	f->tmp_fd = u->tmp_fd;
	u->tmp_fd = -1;
	f->size = u->file_size;
	snprintf(f->filename, sizeof(f->filename), "%s", u->part.filename);
	snprintf(f->display, sizeof(f->display), "%s", u->display);
	return 0;
}

/* Copies a staged file into a new blob, then treats it as if it had just
 * been streamed in (file_end). */
static int store_staged(upload *u, staged_file *f)
{
	char buf[32 * 1024];
	off_t off = 0;

	u->tmp_fd = f->tmp_fd;
	f->tmp_fd = -1;
	u->file_size = f->size;
	snprintf(u->part.filename, sizeof(u->part.filename), "%s", f->filename);
	snprintf(u->display, sizeof(u->display), "%s", f->display);
	if (it_blob_writer_open(&u->blob, u->conn) != 0)
		return it_ingest_fail(&u->err, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	u->blob_open = 1;
	while (off < f->size) {
		ssize_t r = pread(u->tmp_fd, buf, sizeof(buf), off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			it_log_error("temporary file read failed: %s", r < 0 ? strerror(errno) : "short file");
			return it_ingest_fail(&u->err, 503, "storage-unavailable",
					      "The upload cannot be stored right now.");
		}
		if (it_blob_writer_append(&u->blob, buf, (size_t)r) != 0)
			return it_ingest_fail(&u->err, 503, "database-unavailable",
					      "The database cannot be reached; try again shortly.");
		off += r;
	}
	return file_end(u);
}

/* The request's session id is known (u->session): checks that the session
 * is live, within its rate and quota, before a byte of a file goes into the
 * database; then stores the files that came before it. */
static int session_known(upload *u)
{
	int rc;

	/* Checked at once so that an upload into a dead (or full) session
	 * stops before its bytes are read. */
	if ((rc = session_check(u, 0, &u->session_bytes)) != 0)
		return rc;
	if (it_ingest_session_rate(u->session, &u->err) != 0)
		return -1;
	u->session_ok = 1;
	for (int i = 0; i < u->nstaged; i++) {
		rc = store_staged(u, &u->staged[i]);
		close_file_part(u);
		if (rc < 0)
			return rc;
	}
	close_staged(u);
	return 0;
}

static int part_end(upload *u)
{
	switch (u->kind) {
	case P_FIELD:
		u->field[u->field_len] = '\0';
		if (strlen(u->field) != u->field_len)
			return it_ingest_fail(&u->err, 400, "bad-field", "The field %s contains a NUL byte.",
					      u->field_name);
		if (strcmp(u->field_name, "session_id") == 0) {
			/* Two values are ambiguous: the one checked must be the one
			 * stored under. */
			if (u->have_session_field)
				return it_ingest_fail(&u->err, 400, "duplicate-field",
						      "The field session_id is sent twice.");
			u->have_session_field = 1;
			if (u->from_credential) {
				/* The same credential, or the session id of the
				 * session the header's token opens. */
				if (strcmp(u->field, u->cred) != 0 && strcmp(u->field, u->session) != 0)
					return it_ingest_fail(&u->err, 400, "session-mismatch",
							      "The session_id field names another session than the "
							      "Authorization header or the URL.");
				break;
			}
			if (u->field_len == 0)
				return it_ingest_fail(&u->err, 400, "invalid-session-id",
						      "The session_id field is empty.");
			if (resolve(u, u->field) != 0 || session_known(u) != 0)
				return -1;
		} else {
			if (u->have_source)
				return it_ingest_fail(&u->err, 400, "duplicate-field",
						      "The field source is sent twice.");
			u->have_source = 1;
			memcpy(u->source, u->field, u->field_len + 1);
			if (!valid_source(u->source))
				return it_ingest_fail(
					&u->err, 400, "unknown-source",
					"source must be one of web, android_app, browser_addon, cli, api.");
		}
		break;
	case P_FILE: {
		int rc = u->blob_open ? file_end(u) : stage_file(u);
		close_file_part(u);
		if (rc < 0)
			return rc;
		break;
	}
	default: break;
	}
	u->kind = P_NONE;
	return 0;
}

/* A session presented with the request itself (Authorization: Bearer, or
 * ?session_id= in the URL) is checked before a byte of the body is read,
 * so that files stream straight into the blob store whatever the order of
 * the parts. */
static int upload_credential(upload *u)
{
	int rc = it_auth_credential(u->req, u->cred, sizeof(u->cred));

	if (rc == 0)
		return 0;
	/* A malformed credential is refused by resolve (401 when it begins
	 * like a token, else 400), from the request's own copy. */
	if (rc < 0 && resolve(u, NULL) == 0)
		return it_ingest_fail(&u->err, 400, "invalid-session-id",
				      "The session in the Authorization header or the URL is malformed.");
	if (rc < 0 || resolve(u, u->cred) != 0)
		return -1;
	u->from_credential = 1;
	return session_known(u);
}

/* Reads and parses the whole body. Returns 0 when every part is stored,
 * -1 with u->err.status set otherwise. */
static int upload_body(upload *u)
{
	for (;;) {
		it_mp_event ev;
		ssize_t used = it_mp_parse(&u->mp, u->buf, u->blen, &ev);

		if (used < 0)
			return it_ingest_fail(&u->err, 400, "malformed-multipart", "%s", it_mp_error(&u->mp));
		switch (ev.type) {
		case IT_MP_PART:
			if (part_begin(u, &ev.part) < 0)
				return -1;
			break;
		case IT_MP_DATA:
			if (part_data(u, ev.data, ev.len) < 0)
				return -1;
			break;
		case IT_MP_PART_END:
			if (part_end(u) < 0)
				return -1;
			break;
		case IT_MP_END: return 0;
		case IT_MP_NEED_MORE: break;
		}
		memmove(u->buf, u->buf + used, u->blen - (size_t)used);
		u->blen -= (size_t)used;
		if (ev.type == IT_MP_NEED_MORE) {
			ssize_t r;
			if (u->blen == READ_BUF)
				return it_ingest_fail(&u->err, 400, "malformed-multipart",
						      "A part's header block is too large.");
			r = it_req_read(u->req, u->buf + u->blen, READ_BUF - u->blen);
			if (r == IT_REQ_TOO_SLOW)
				return it_ingest_fail(&u->err, 408, "too-slow",
						      "The request body arrived slower than %" PRId64
						      " bytes per second (after a first %" PRId64
						      " seconds); nothing was stored.",
						      it_g.cfg.upload_min_rate, it_g.cfg.upload_body_timeout);
			if (r < 0)
				return it_ingest_fail(&u->err, 400, "truncated",
						      "The request body could not be read to its end.");
			if (r == 0)
				return it_ingest_fail(&u->err, 400, "truncated",
						      "The request body ends before the closing multipart boundary.");
			u->body_read += r;
			if (u->body_read > it_g.cfg.max_request_bytes)
				return it_ingest_fail(&u->err, 413, "request-too-large",
						      "The request is larger than the limit of %" PRId64 " bytes.",
						      it_g.cfg.max_request_bytes);
			u->blen += (size_t)r;
		}
	}
}

/* Locks the session's row, checks the quota against what it holds now, then
 * inserts the image rows and their events, all in the open transaction. */
static int upload_store(upload *u)
{
	int64_t held;
	int rc;

	if (u->session[0] == '\0')
		return it_ingest_fail(&u->err, 400, "missing-session-id", "The session_id field is missing.");
	if (u->nfiles == 0)
		return it_ingest_fail(
			&u->err, 400, "missing-file",
			"No file part was sent (field name \"file\", \"file[]\", \"files\" or \"files[]\").");
	if ((rc = session_check(u, 1, &held)) != 0)
		return rc;
	for (int i = 0; i < u->nfiles; i++) {
		it_image *img = &u->files[i].img;
		it_ingest_error e = {0};
		snprintf(img->session_id, sizeof(img->session_id), "%.79s", u->session);
		snprintf(img->source, sizeof(img->source), "%.15s", u->source[0] ? u->source : "web");
		if (it_ingest_record(u->conn, img, u->signer, &e) != 0)
			return it_ingest_fail(&u->err, e.status, e.slug, "%s", e.detail);
	}
	/* A token revoked (or expired) while the body came in stores nothing:
	 * asked in this transaction, with the device row held until commit.
	 * The session's row is locked already (session_check): the order
	 * it_device_revoke takes the two in, so neither waits on the other in
	 * a cycle. */
	if (u->who.device_id[0] && (rc = it_devices_live(u->conn, u->who.device_id, 1)) != 0) {
		if (rc == 401) {
			it_auth_refusal why = {0};
			snprintf(why.www_authenticate, sizeof(why.www_authenticate),
				 "Bearer realm=\"imagetools\", error=\"invalid_token\"");
			why.status = 401;
			why.slug = "invalid-token";
			why.detail =
				"The token was revoked or expired before the upload was stored; nothing was stored.";
			return it_ingest_refused(u->req, &u->err, &why);
		}
		return it_ingest_fail(&u->err, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	}
	if (it_db_commit(u->conn) != 0)
		return it_ingest_fail(&u->err, 503, "database-unavailable",
				      "The database cannot be reached; try again shortly.");
	return 0;
}

void it_h_image_upload(it_req *req)
{
	char boundary[IT_MP_BOUNDARY_MAX + 1];
	const char *ct = it_req_env(req, "CONTENT_TYPE");
	json_object *o, *arr;
	int in_txn = 0;
	upload *u;

	if (it_mp_boundary(ct, boundary) < 0) {
		it_resp_problem(req, 400, "not-multipart",
				"Uploads are multipart/form-data with a boundary (curl -F file=@photo.jpg).");
		it_metrics_inc("imagetools_upload_errors_total", "status=\"400\"", 1);
		return;
	}
	if (req->content_length > it_g.cfg.max_request_bytes) {
		/* Not a byte is read: the web server closes the connection. */
		it_resp_problem(req, 413, "request-too-large",
				"The request is larger than the limit of %" PRId64 " bytes.",
				it_g.cfg.max_request_bytes);
		it_metrics_inc("imagetools_upload_errors_total", "status=\"413\"", 1);
		return;
	}
	if (it_guard_rate(req, "uploads", req->remote_addr, it_g.cfg.rate_uploads)) {
		it_metrics_inc("imagetools_upload_errors_total", "status=\"429\"", 1);
		if (req->content_length >= 0 && req->content_length <= DRAIN_MAX)
			it_req_drain(req, DRAIN_MAX);
		return;
	}
	u = calloc(1, sizeof(*u));
	if (u == NULL || (u->buf = malloc(READ_BUF)) == NULL ||
	    (u->files = calloc((size_t)it_g.cfg.max_files, sizeof(*u->files))) == NULL) {
		if (u)
			free(u->buf);
		free(u);
		it_resp_problem(req, 503, "out-of-memory", "The server is out of memory; try again shortly.");
		return;
	}
	u->req = req;
	u->tmp_fd = -1;
	it_mp_init(&u->mp, boundary, MP_HEADER_MAX);
	u->conn = it_db_thread_conn();
	/* Before the transaction: the signing key may be made on first use. */
	if (u->conn == NULL || (u->signer = it_secrets_url_signer(&u->conn, &it_g.cfg)) == NULL ||
	    it_db_begin(&u->conn) != 0)
		it_ingest_fail(&u->err, 503, "database-unavailable",
			       "The database cannot be reached; try again shortly.");
	else
		in_txn = 1;
	if (u->err.status == 0)
		upload_credential(u);

	if (u->err.status == 0 && upload_body(u) == 0 && upload_store(u) == 0) {
		/* The epilogue after the close delimiter (usually a CRLF) is read
		 * and dropped so that the web server sees the body consumed. */
		it_req_drain(req, 64 * 1024);
		o = json_object_new_object();
		arr = json_object_new_array();
		for (int i = 0; i < u->nfiles; i++)
			json_object_array_add(arr, it_images_json(&u->files[i].img, it_g.cfg.url_prefix, u->signer));
		json_object_object_add(o, "images", arr);
		for (int i = 0; i < u->nfiles; i++) {
			char labels[48];
			snprintf(labels, sizeof(labels), "source=\"%s\"", u->files[i].img.source);
			it_metrics_inc("imagetools_uploads_total", labels, 1);
			it_metrics_inc("imagetools_upload_bytes_total", NULL, u->files[i].img.size);
		}
		snprintf(req->log_note, sizeof(req->log_note), "images=%d", u->nfiles);
		it_resp_json(req, 201, o);
		json_object_put(o);
	} else {
		/* Nothing of this request survives: the blobs, chunks and rows
		 * written so far vanish with the rollback. */
		close_file_part(u);
		if (in_txn)
			it_db_rollback(u->conn);
		it_ingest_answer(req, &u->err);
		it_resp_flush(req);
		/* Read what is left so that the client, still sending, gets the
		 * answer instead of a reset; past DRAIN_MAX the connection is cut. */
		if (req->content_length < 0 || req->content_length - u->body_read <= DRAIN_MAX)
			it_req_drain(req, DRAIN_MAX);
	}
	close_file_part(u);
	close_staged(u);
	free(u->staged);
	free(u->files);
	free(u->buf);
	free(u);
}

/* h_images.c: image metadata, listings, downloads, thumbnails, rename and delete. */
#include "config.h"

#include "common/id.h"
#include "common/token.h"
#include "common/log.h"
#include "db/blob.h"
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
#include "image/filename.h"
#include "image/sniff.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* PATCH bodies. */
#define JSON_BODY_MAX (16 * 1024)
/* Thumbnails are read whole to learn their type; they are small. */
#define THUMB_MAX (8 * 1024 * 1024)

/* ---------------------------------------------------------------- metadata */

static int image_problem(it_req *req, int rc)
{
	switch (rc) {
	case 0: return 0;
	case 400: it_resp_problem(req, 400, "invalid-image-id", "The image id is not a UUID."); break;
	case 404: it_resp_problem(req, 404, "unknown-image", "No such image, or its session has expired."); break;
	default:
		it_resp_header(req, "Retry-After", "5");
		it_resp_problem(req, 503, "database-unavailable", "The database cannot be reached; try again shortly.");
		break;
	}
	return 1;
}

/* Ends the transaction of a change to one image. When rc is 0 the change was
 * made: its event (data) is appended to the session's log and the
 * transaction committed. When rc is a status, or the append or the commit
 * fails, the transaction is rolled back and the refusal answered. data is
 * consumed in every case (NULL is allowed when rc is not 0). Returns 0 when
 * committed, or nonzero once the request is answered. */
static int end_change(it_req *req, PGconn *conn, int rc, const char *session, const char *type, json_object *data)
{
	if (rc == 0)
		rc = it_event_append(conn, session, type, data, NULL);
	json_object_put(data);
	if (rc == 0 && it_db_commit(conn) != 0)
		rc = 503;
	if (rc == 0)
		return 0;
	it_db_rollback(conn);
	return image_problem(req, rc);
}

/* Answers 200 with img, its URLs signed by us. */
static void answer_image(it_req *req, const it_image *img, const it_urlsign *us)
{
	json_object *o = it_images_json(img, it_g.cfg.url_prefix, us);

	it_resp_json(req, 200, o);
	json_object_put(o);
}

/* The URL signer, or NULL after answering 503. Called before any
 * transaction is opened on *connp (the key may be made on first use). */
static const it_urlsign *signer_or_503(it_req *req, PGconn **connp)
{
	const it_urlsign *us = *connp ? it_secrets_url_signer(connp, &it_g.cfg) : NULL;

	if (us == NULL)
		image_problem(req, 503);
	return us;
}

/* Checks the image id's form and the request's credential, which must
 * hold need (IT_SCOPE_*). Returns 0 with the principal in p, or 1 after
 * answering (400 malformed id; it_auth_principal's 400, 401, 403, 429).
 * The id's form is checked first: it reveals nothing, and a client with a
 * broken id learns that first. A session id is not looked up here: the
 * image query is on (id, session) and answers 404 for a dead session. */
static int id_and_principal(it_req *req, unsigned need, it_principal *p)
{
	if (!it_id_uuid_valid(req->params[0]))
		return image_problem(req, 400);
	return it_auth_principal(req, NULL, need | IT_AUTH_SESSION_UNCHECKED, p) != 0;
}

void it_h_image_get(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_image *img = malloc(sizeof(*img));
	const it_urlsign *us;
	it_principal p;

	if (img == NULL || id_and_principal(req, IT_SCOPE_VIEW, &p) || (us = signer_or_503(req, &conn)) == NULL ||
	    image_problem(req, it_images_get_owned(&conn, req->params[0], p.session_id, img)))
		goto out;
	answer_image(req, img, us);
out:
	free(img);
}

struct list_ctx {
	json_object *arr;
	const it_urlsign *us;
	int n, limit;
	int64_t last_pos;
};

static int list_one(const it_image *img, void *arg)
{
	struct list_ctx *c = arg;

	if (c->n == c->limit)
		return 1; /* the extra row only says there is a next page */
	json_object_array_add(c->arr, it_images_json(img, it_g.cfg.url_prefix, c->us));
	c->last_pos = img->pos;
	c->n++;
	return 0;
}

/* Answers a page of session's images (GET /sessions/{id}/images, GET
 * /images). */
static void list_images(it_req *req, const char *session)
{
	PGconn *conn = it_db_thread_conn();
	struct list_ctx c = {0};
	char v[32];
	int64_t limit = 50, before = 0;
	int got;
	json_object *o;

	if (it_req_query(req->query, "limit", v, sizeof(v)) != -1 && (it_parse_uint(v, 200, &limit) < 0 || limit < 1)) {
		it_resp_problem(req, 400, "bad-limit", "limit must be an integer from 1 to 200.");
		return;
	}
	if (it_req_query(req->query, "before", v, sizeof(v)) != -1 && it_parse_uint(v, INT64_MAX, &before) < 0) {
		it_resp_problem(req, 400, "bad-cursor", "before must be the next value of a previous page.");
		return;
	}
	if (it_app_session_problem(req, conn ? it_sessions_get(&conn, session, NULL) : 503))
		return;
	if ((c.us = signer_or_503(req, &conn)) == NULL)
		return;
	c.arr = json_object_new_array();
	c.limit = (int)limit;
	got = it_images_list(&conn, session, before, (int)limit + 1, list_one, &c);
	if (got < 0) {
		json_object_put(c.arr);
		it_app_session_problem(req, 503);
		return;
	}
	o = json_object_new_object();
	json_object_object_add(o, "images", c.arr);
	if (got > c.n) {
		snprintf(v, sizeof(v), "%" PRId64, c.last_pos);
		json_object_object_add(o, "next", json_object_new_string(v));
	} else {
		json_object_object_add(o, "next", NULL);
	}
	it_resp_json(req, 200, o);
	json_object_put(o);
}

/* The path's session id is the credential (a token is never accepted in a
 * path: it would land in access logs). */
void it_h_session_images(it_req *req)
{
	if (it_token_is(req->params[0])) {
		it_app_session_problem(req, 404);
		return;
	}
	list_images(req, req->params[0]);
}

void it_h_images_list(it_req *req)
{
	it_principal p;

	if (it_auth_principal(req, NULL, IT_SCOPE_VIEW | IT_AUTH_SESSION_UNCHECKED, &p) != 0)
		return;
	list_images(req, p.session_id);
}

/* ---------------------------------------------------------------- downloads */

/* Does an If-None-Match list contain etag (weak comparison, RFC 9110 13.1.2)? */
static int etag_matches(const char *list, const char *etag)
{
	const char *p = list;
	size_t elen = strlen(etag);

	while (*p) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '*')
			return 1;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, elen) == 0 &&
		    (p[elen] == '\0' || p[elen] == ',' || p[elen] == ' ' || p[elen] == '\t'))
			return 1;
		while (*p && *p != ',')
			p++;
	}
	return 0;
}

/* Parses a single "bytes=a-b", "bytes=a-" or "bytes=-n" range against size.
 * Returns 1 with [*start, *end] set, 0 to ignore the header (malformed or
 * several ranges: the whole file is sent), or -1 when unsatisfiable. */
static int parse_range(const char *h, int64_t size, int64_t *start, int64_t *end)
{
	const char *dash;
	char a[24], b[24];
	int64_t x, y;
	size_t alen, blen;

	while (*h == ' ')
		h++;
	if (strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	h += 6;
	dash = strchr(h, '-');
	if (dash == NULL)
		return 0;
	alen = (size_t)(dash - h);
	blen = strlen(dash + 1);
	while (blen > 0 && dash[blen] == ' ')
		blen--;
	if (alen >= sizeof(a) || blen >= sizeof(b))
		return 0;
	memcpy(a, h, alen);
	a[alen] = '\0';
	memcpy(b, dash + 1, blen);
	b[blen] = '\0';
	if (alen == 0) {
		/* suffix: the last y bytes */
		if (it_parse_uint(b, INT64_MAX, &y) < 0)
			return 0;
		if (y == 0 || size == 0)
			return -1;
		*start = y >= size ? 0 : size - y;
		*end = size - 1;
		return 1;
	}
	if (it_parse_uint(a, INT64_MAX, &x) < 0)
		return 0;
	if (blen == 0) {
		y = size - 1;
	} else {
		if (it_parse_uint(b, INT64_MAX, &y) < 0 || y < x)
			return 0;
		if (y >= size)
			y = size - 1;
	}
	if (x >= size)
		return -1;
	*start = x;
	*end = y;
	return 1;
}

/* Answers 403 for a signed URL that does not hold, saying how to get a good
 * one. Returns 1. */
static int url_refused(it_req *req, const char *slug, const char *why)
{
	it_resp_problem(req, 403, slug,
			"%s Fetch fresh URLs with the session credential: GET /api/v1/images/{id} or"
			" GET /api/v1/sessions/{session_id}/images.",
			why);
	return 1;
}

/* Checks the signature a URL for the bytes named label carries and, when it
 * holds, reads the image into img. The signature is checked before the
 * database is asked anything, so a forged URL costs one HMAC and learns
 * nothing about which ids exist. Returns 0, 403 with *slug and *why set, or
 * 404 / 503 for image_problem. */
static int check_signed(it_req *req, PGconn **connp, const char *label, it_image *img, const char **slug,
			const char **why)
{
	char sig[IT_URLSIGN_SIG_LEN + 2], v[24];
	int64_t version, exp;
	const it_urlsign *us;
	int rc;

	*slug = "bad-signature";
	if (it_req_query(req->query, "sig", sig, sizeof(sig)) < 0 || it_req_query(req->query, "v", v, sizeof(v)) < 0 ||
	    it_parse_uint(v, INT32_MAX, &version) < 0 || it_req_query(req->query, "exp", v, sizeof(v)) < 0 ||
	    it_parse_uint(v, INT64_MAX, &exp) < 0) {
		*why = "This URL's signature is incomplete or malformed.";
		return 403;
	}
	if (*connp == NULL || (us = it_secrets_url_signer(connp, &it_g.cfg)) == NULL)
		return 503;
	switch (it_urlsign_verify(us, label, req->params[0], version, exp, sig, (int64_t)time(NULL))) {
	case IT_URLSIGN_OK: break;
	case IT_URLSIGN_EXPIRED:
		*slug = "url-expired";
		*why = "This URL has expired.";
		return 403;
	default: *why = "This URL's signature does not match it."; return 403;
	}
	if ((rc = it_images_get(connp, req->params[0], img)) != 0)
		return rc;
	/* A new version (an operation's result) is new bytes; what was
	 * shared before was the old picture, which is gone. */
	if (img->version != version) {
		*slug = "url-expired";
		*why = "This URL was signed for an earlier version of the image.";
		return 403;
	}
	return 0;
}

/* Decides whether this request may have the bytes named label ("file",
 * "thumbnail") of image params[0], and reads the image into img. A URL
 * with a valid signature is enough; otherwise the session credential is
 * needed (a client that holds it may also present a stale URL with it).
 * Returns 0 with img filled, or 1 after answering. */
static int image_for_bytes(it_req *req, PGconn **connp, const char *label, it_image *img)
{
	char cred[IT_AUTH_CRED_MAX + 1], probe[2];
	const char *slug = NULL, *why = NULL;
	it_principal p;
	int rc;

	if (!it_id_uuid_valid(req->params[0]))
		return image_problem(req, 400);
	if (it_req_query(req->query, "sig", probe, sizeof(probe)) != -1) {
		rc = check_signed(req, connp, label, img, &slug, &why);
		if (rc == 0)
			return 0;
		if (rc != 403)
			return image_problem(req, rc);
		if (it_auth_credential(req, cred, sizeof(cred)) == 0)
			return url_refused(req, slug, why);
	}
	if (it_auth_principal(req, NULL, IT_SCOPE_VIEW | IT_AUTH_SESSION_UNCHECKED, &p) != 0)
		return 1;
	return image_problem(req, *connp ? it_images_get_owned(connp, req->params[0], p.session_id, img) : 503);
}

void it_h_image_file(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_image *img = malloc(sizeof(*img));
	const char *inm, *range, *ifrange;
	char etag[80], disp[2048];
	int64_t start = 0, end = -1;
	it_blob_reader r;
	const void *p;
	ssize_t n;
	int rc, partial = 0;

	if (img == NULL || image_for_bytes(req, &conn, "file", img))
		goto out;
	snprintf(etag, sizeof(etag), "\"%s\"", img->sha256);
	it_resp_header(req, "ETag", "%s", etag);
	it_resp_header(req, "Cache-Control", "private, no-cache");
	it_resp_header(req, "Accept-Ranges", "bytes");
	inm = it_req_env(req, "HTTP_IF_NONE_MATCH");
	if (inm && etag_matches(inm, etag)) {
		it_resp_begin(req, 304, NULL);
		goto out;
	}
	end = img->size - 1;
	range = it_req_env(req, "HTTP_RANGE");
	ifrange = it_req_env(req, "HTTP_IF_RANGE");
	if (range && (ifrange == NULL || strcmp(ifrange, etag) == 0)) {
		int pr = parse_range(range, img->size, &start, &end);
		if (pr < 0) {
			it_resp_header(req, "Content-Range", "bytes */%" PRId64, img->size);
			it_resp_problem(req, 416, "range-not-satisfiable", "The file has %" PRId64 " bytes.",
					img->size);
			goto out;
		}
		if (pr == 0) {
			start = 0;
			end = img->size - 1;
		} else {
			partial = 1;
		}
	}
	rc = it_blob_reader_open(&r, conn, img->blob_id, start, end - start + 1);
	if (rc != 0) {
		image_problem(req, rc == 404 ? 404 : 503);
		goto out;
	}
	if (it_filename_disposition(img->filename, disp, sizeof(disp)) == 0)
		it_resp_header(req, "Content-Disposition", "%s", disp);
	/* Only sniffed raster types are ever stored, but a sandbox costs
	 * nothing should one be opened as a document. */
	it_resp_header(req, "Content-Security-Policy", "default-src 'none'; sandbox");
	it_resp_header(req, "Content-Length", "%" PRId64, end - start + 1);
	if (partial)
		it_resp_header(req, "Content-Range", "bytes %" PRId64 "-%" PRId64 "/%" PRId64, start, end, img->size);
	it_resp_begin(req, partial ? 206 : 200, img->content_type);
	if (strcmp(req->method, "HEAD") != 0) {
		while ((n = it_blob_reader_next(&r, &p)) > 0)
			if (it_resp_write(req, p, (size_t)n) < 0)
				break;
		if (n < 0)
			it_log_warn("download of an image cut short: blob read failed (%d)", (int)-n);
	}
	it_blob_reader_close(&r);
out:
	free(img);
}

void it_h_image_thumbnail(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_image *img = malloc(sizeof(*img));
	it_blob_reader r;
	char etag[80];
	const void *p;
	ssize_t n;
	it_sniff s;
	const char *inm;
	int rc;

	if (img == NULL || image_for_bytes(req, &conn, "thumbnail", img))
		goto out;
	if (img->thumb_blob_id == 0) {
		it_resp_problem(req, 404, "no-thumbnail", "This image has no thumbnail.");
		goto out;
	}
	rc = it_blob_reader_open(&r, conn, img->thumb_blob_id, 0, -1);
	if (rc != 0 || r.info.size > THUMB_MAX || r.info.size < IT_SNIFF_MAGIC_BYTES) {
		image_problem(req, rc == 404 ? 404 : 503);
		goto out;
	}
	snprintf(etag, sizeof(etag), "\"t-%s\"", r.info.sha256);
	it_resp_header(req, "ETag", "%s", etag);
	it_resp_header(req, "Cache-Control", "private, no-cache");
	inm = it_req_env(req, "HTTP_IF_NONE_MATCH");
	if (inm && etag_matches(inm, etag)) {
		it_resp_begin(req, 304, NULL);
		it_blob_reader_close(&r);
		goto out;
	}
	n = it_blob_reader_next(&r, &p);
	if (n < IT_SNIFF_MAGIC_BYTES || it_sniff_type(p, (size_t)n, &s) != IT_SNIFF_OK) {
		it_blob_reader_close(&r);
		image_problem(req, 503);
		goto out;
	}
	it_resp_header(req, "Content-Length", "%" PRId64, r.info.size);
	it_resp_header(req, "Content-Security-Policy", "default-src 'none'; sandbox");
	it_resp_begin(req, 200, s.content_type);
	if (strcmp(req->method, "HEAD") != 0) {
		do {
			if (it_resp_write(req, p, (size_t)n) < 0)
				break;
		} while ((n = it_blob_reader_next(&r, &p)) > 0);
	}
	it_blob_reader_close(&r);
out:
	free(img);
}

/* ---------------------------------------------------------------- changes */

void it_h_image_patch(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	json_object *body = NULL, *fn, *data = NULL;
	it_image *img = NULL;
	const it_urlsign *us;
	const char *raw;
	char name[IT_IMAGE_NAME_MAX + 1];
	const char *session;
	it_principal p;
	int rc;

	/* Refused before the body is read: a caller without the credential
	 * gets nothing parsed on its behalf. */
	if (id_and_principal(req, IT_SCOPE_FULL, &p)) {
		it_req_drain(req, JSON_BODY_MAX);
		goto out;
	}
	session = p.session_id;
	if ((body = it_req_read_json(req, JSON_BODY_MAX, 8)) == NULL)
		goto out;
	if (!json_object_object_get_ex(body, "filename", &fn) || !json_object_is_type(fn, json_type_string)) {
		it_resp_problem(req, 400, "missing-filename", "Send {\"filename\": \"new name\"}.");
		goto out;
	}
	raw = json_object_get_string(fn);
	if (json_object_get_string_len(fn) > IT_IMAGE_ORIG_MAX ||
	    strlen(raw) != (size_t)json_object_get_string_len(fn)) {
		it_resp_problem(req, 400, "bad-filename", "The filename is too long or contains a NUL character.");
		goto out;
	}
	it_filename_sanitize(raw, NULL, name, sizeof(name));
	if (strcmp(name, "image") == 0 && strcmp(raw, "image") != 0) {
		it_resp_problem(req, 400, "bad-filename", "The filename has no usable characters.");
		goto out;
	}
	if ((us = signer_or_503(req, &conn)) == NULL)
		goto out;
	img = malloc(sizeof(*img));
	if (img == NULL || it_db_begin(&conn) != 0) {
		image_problem(req, 503);
		goto out;
	}
	/* The new name ends in the extension of what the file is, whatever the
	 * caller typed, as an upload's does: a JPEG renamed "x.html" would
	 * otherwise be saved by the browser as a page. The row is locked, so
	 * the type cannot change under the rename. */
	rc = it_images_get_for_update(conn, req->params[0], img);
	if (rc == 0 && strcmp(img->session_id, session) != 0)
		rc = 404;
	if (rc == 0) {
		it_filename_sanitize(raw, it_filename_ext_for_type(img->content_type), name, sizeof(name));
		rc = it_images_rename(conn, req->params[0], session, name, img);
	}
	if (rc == 0)
		data = it_images_event_data(img, it_g.cfg.url_prefix, us);
	if (end_change(req, conn, rc, img->session_id, "image.updated", data) != 0)
		goto out;
	answer_image(req, img, us);
out:
	free(img);
	json_object_put(body);
}

void it_h_image_delete(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_image *img = malloc(sizeof(*img));
	it_principal p;
	json_object *data = NULL;
	int rc;

	if (id_and_principal(req, IT_SCOPE_FULL, &p)) {
		it_req_drain(req, JSON_BODY_MAX);
		goto out;
	}
	if (it_req_drain(req, JSON_BODY_MAX) < 0) {
		it_resp_problem(req, 413, "body-too-large", "DELETE takes no body.");
		goto out;
	}
	if (img == NULL || conn == NULL || it_db_begin(&conn) != 0) {
		image_problem(req, 503);
		goto out;
	}
	rc = it_images_delete(conn, req->params[0], p.session_id, img);
	if (rc == 0) {
		data = json_object_new_object();
		json_object_object_add(data, "image_id", json_object_new_string(img->id));
	}
	if (end_change(req, conn, rc, img->session_id, "image.deleted", data) != 0)
		goto out;
	it_resp_begin(req, 204, NULL);
out:
	free(img);
}

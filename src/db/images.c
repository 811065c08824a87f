/* images.c: the images table: metadata rows that point at their blobs. */
#include "config.h"

#include "db/images.h"

#include "common/id.h"
#include "common/log.h"
#include "db/db.h"
#include "db/sessions.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IMAGE_COLUMNS                                                                                           \
	"i.id::text, i.session_id, i.filename, i.original_filename, i.content_type, i.size, i.sha256, i.width," \
	" i.height, i.source, i.version, i.blob_id, coalesce(i.thumb_blob_id, 0), it_ts(i.created_at),"         \
	" it_ts(i.updated_at), i.pos"

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src);
}

static void fill(const PGresult *res, int row, it_image *out)
{
	copy(out->id, sizeof(out->id), PQgetvalue(res, row, 0));
	copy(out->session_id, sizeof(out->session_id), PQgetvalue(res, row, 1));
	copy(out->filename, sizeof(out->filename), PQgetvalue(res, row, 2));
	copy(out->original_filename, sizeof(out->original_filename), PQgetvalue(res, row, 3));
	copy(out->content_type, sizeof(out->content_type), PQgetvalue(res, row, 4));
	out->size = strtoll(PQgetvalue(res, row, 5), NULL, 10);
	copy(out->sha256, sizeof(out->sha256), PQgetvalue(res, row, 6));
	out->width = (int32_t)strtol(PQgetvalue(res, row, 7), NULL, 10);
	out->height = (int32_t)strtol(PQgetvalue(res, row, 8), NULL, 10);
	copy(out->source, sizeof(out->source), PQgetvalue(res, row, 9));
	out->version = (int32_t)strtol(PQgetvalue(res, row, 10), NULL, 10);
	out->blob_id = strtoll(PQgetvalue(res, row, 11), NULL, 10);
	out->thumb_blob_id = strtoll(PQgetvalue(res, row, 12), NULL, 10);
	copy(out->created_at, sizeof(out->created_at), PQgetvalue(res, row, 13));
	copy(out->updated_at, sizeof(out->updated_at), PQgetvalue(res, row, 14));
	out->pos = strtoll(PQgetvalue(res, row, 15), NULL, 10);
}

/* Runs a statement expected to return at most one image row. */
static int one_row(PGconn **connp, int retry, const char *sql, int nparams, const char *const *params, it_image *out)
{
	PGresult *res = it_db_exec(connp, retry, sql, nparams, params);
	int rc = 503;

	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		if (PQntuples(res) == 1) {
			if (out)
				fill(res, 0, out);
			rc = 0;
		} else {
			rc = 404;
		}
	} else if (res) {
		const char *state = it_db_sqlstate(res);
		/* foreign_key_violation: the session went away meanwhile. */
		if (strcmp(state, "23503") == 0)
			rc = 404;
		else
			it_log_warn("image statement failed: %s", PQresultErrorMessage(res));
	}
	PQclear(res);
	return rc;
}

/* Runs a statement on the row of image id, of session unless session is
 * NULL, once both ids have the right form: a malformed image id is the
 * client's mistake (400), while a session id that cannot exist names no live
 * session (404, as an unknown one would). */
static int by_id(PGconn **connp, int retry, const char *id, const char *session, const char *sql, int nparams,
		 const char *const *params, it_image *out)
{
	if (!it_id_uuid_valid(id))
		return 400;
	if (session != NULL && !it_id_session_valid(session))
		return 404;
	return one_row(connp, retry, sql, nparams, params, out);
}

int it_images_insert(PGconn *conn, it_image *img)
{
	char sizes[24], ws[16], hs[16], blobs[24], thumbs[24];
	const char *params[11] = {img->session_id,
				  img->filename,
				  img->original_filename,
				  img->content_type,
				  sizes,
				  img->sha256,
				  ws,
				  hs,
				  img->source,
				  blobs,
				  thumbs};

	snprintf(sizes, sizeof(sizes), "%" PRId64, img->size);
	snprintf(ws, sizeof(ws), "%" PRId32, img->width);
	snprintf(hs, sizeof(hs), "%" PRId32, img->height);
	snprintf(blobs, sizeof(blobs), "%" PRId64, img->blob_id);
	snprintf(thumbs, sizeof(thumbs), "%" PRId64, img->thumb_blob_id);
	return one_row(&conn, 0,
		       "INSERT INTO images AS i (session_id, filename, original_filename, content_type, size, sha256,"
		       " width, height, source, blob_id, thumb_blob_id)"
		       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, nullif($11::bigint, 0))"
		       " RETURNING " IMAGE_COLUMNS,
		       11, params, img);
}

int it_images_session_bytes(PGconn *conn, const char *session, int lock, int64_t *bytes)
{
	const char *params[1] = {session};
	PGresult *res;
	int rc = 503;

	*bytes = 0;
	if (!it_id_session_valid(session))
		return 400;
	if (lock && (rc = it_sessions_lock(conn, session)) != 0)
		return rc;
	rc = 503;
	res = it_db_exec(&conn, 0,
			 "SELECT COALESCE((SELECT sum(size) FROM images WHERE session_id = s.id), 0)::bigint"
			 " FROM sessions s WHERE s.id = $1 AND s.expires_at > now()",
			 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		rc = PQntuples(res) == 1 ? 0 : 404;
		if (rc == 0)
			*bytes = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	PQclear(res);
	return rc;
}

int it_images_get(PGconn **connp, const char *id, it_image *out)
{
	const char *params[1] = {id};

	return by_id(connp, 1, id, NULL,
		     "SELECT " IMAGE_COLUMNS " FROM images i JOIN sessions s ON s.id = i.session_id"
		     " WHERE i.id = $1::uuid AND s.expires_at > now()",
		     1, params, out);
}

int it_images_get_owned(PGconn **connp, const char *id, const char *session, it_image *out)
{
	const char *params[2] = {id, session};

	return by_id(connp, 1, id, session,
		     "SELECT " IMAGE_COLUMNS " FROM images i JOIN sessions s ON s.id = i.session_id"
		     " WHERE i.id = $1::uuid AND i.session_id = $2 AND s.expires_at > now()",
		     2, params, out);
}

int it_images_get_for_update(PGconn *conn, const char *id, it_image *out)
{
	const char *params[1] = {id};

	return by_id(&conn, 0, id, NULL,
		     "SELECT " IMAGE_COLUMNS " FROM images i JOIN sessions s ON s.id = i.session_id"
		     " WHERE i.id = $1::uuid AND s.expires_at > now() FOR UPDATE OF i",
		     1, params, out);
}

int it_images_list(PGconn **connp, const char *session, int64_t before, int limit,
		   int (*fn)(const it_image *img, void *arg), void *arg)
{
	char befores[24], limits[16];
	const char *params[3] = {session, befores, limits};
	PGresult *res;
	it_image *img;
	int n, i;

	snprintf(befores, sizeof(befores), "%" PRId64, before > 0 ? before : INT64_MAX);
	snprintf(limits, sizeof(limits), "%d", limit);
	res = it_db_exec(connp, 1,
			 "SELECT " IMAGE_COLUMNS " FROM images i WHERE i.session_id = $1 AND i.pos < $2::bigint"
			 " ORDER BY i.pos DESC LIMIT $3::integer",
			 3, params);
	if (!it_db_ok(res, PGRES_TUPLES_OK)) {
		PQclear(res);
		return -503;
	}
	img = malloc(sizeof(*img));
	if (img == NULL) {
		PQclear(res);
		return -503;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		fill(res, i, img);
		if (fn(img, arg)) {
			i++;
			break;
		}
	}
	free(img);
	PQclear(res);
	return i;
}

int it_images_rename(PGconn *conn, const char *id, const char *session, const char *filename, it_image *out)
{
	const char *params[3] = {id, session, filename};

	return by_id(&conn, 0, id, session,
		     "UPDATE images AS i SET filename = $3, updated_at = now() FROM sessions s"
		     " WHERE i.id = $1::uuid AND i.session_id = $2 AND s.id = i.session_id AND s.expires_at > now()"
		     " RETURNING " IMAGE_COLUMNS,
		     3, params, out);
}

int it_images_delete(PGconn *conn, const char *id, const char *session, it_image *out)
{
	const char *params[2] = {id, session};

	return by_id(&conn, 0, id, session,
		     "DELETE FROM images AS i USING sessions s"
		     " WHERE i.id = $1::uuid AND i.session_id = $2 AND s.id = i.session_id AND s.expires_at > now()"
		     " RETURNING " IMAGE_COLUMNS,
		     2, params, out);
}

int it_images_new_version(PGconn *conn, const char *id, const it_image *v, it_image *out)
{
	char sizes[24], ws[16], hs[16], blobs[24], thumbs[24];
	const char *params[9] = {id, v->content_type, sizes, v->sha256, ws, hs, blobs, thumbs, v->filename};

	snprintf(sizes, sizeof(sizes), "%" PRId64, v->size);
	snprintf(ws, sizeof(ws), "%" PRId32, v->width);
	snprintf(hs, sizeof(hs), "%" PRId32, v->height);
	snprintf(blobs, sizeof(blobs), "%" PRId64, v->blob_id);
	snprintf(thumbs, sizeof(thumbs), "%" PRId64, v->thumb_blob_id);
	return by_id(&conn, 0, id, NULL,
		     "UPDATE images AS i SET content_type = $2, size = $3, sha256 = $4, width = $5, height = $6,"
		     " blob_id = $7, thumb_blob_id = nullif($8::bigint, 0), version = i.version + 1,"
		     " filename = coalesce(nullif($9, ''), i.filename), updated_at = now() FROM sessions s"
		     " WHERE i.id = $1::uuid AND s.id = i.session_id AND s.expires_at > now()"
		     " RETURNING " IMAGE_COLUMNS,
		     9, params, out);
}

int it_images_url(const it_image *img, const char *label, const char *url_prefix, const it_urlsign *signer, int64_t now,
		  char *out, size_t outlen)
{
	char query[IT_URLSIGN_QUERY_MAX];
	int n;

	if (it_urlsign_query(signer, label, img->id, img->version, now, query, sizeof(query)) != 0)
		return -ENOSPC;
	n = snprintf(out, outlen, "%s/api/v1/images/%s/%s?%s", url_prefix ? url_prefix : "", img->id, label, query);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : 0;
}

static void add_urls(json_object *o, const it_image *img, const char *url_prefix, const it_urlsign *signer)
{
	/* The prefix is a configured path; the rest is at most ~200 bytes. */
	char url[1024];
	int64_t now = (int64_t)time(NULL);

	if (it_images_url(img, "file", url_prefix, signer, now, url, sizeof(url)) == 0)
		json_object_object_add(o, "file_url", json_object_new_string(url));
	if (it_images_url(img, "thumbnail", url_prefix, signer, now, url, sizeof(url)) == 0)
		json_object_object_add(o, "thumbnail_url", json_object_new_string(url));
}

/* The members that describe the bytes of the image's current version, in the
 * order both representations list them. */
static void add_bytes(json_object *o, const it_image *img)
{
	json_object_object_add(o, "content_type", json_object_new_string(img->content_type));
	json_object_object_add(o, "size", json_object_new_int64(img->size));
	json_object_object_add(o, "sha256", json_object_new_string(img->sha256));
	json_object_object_add(o, "width", json_object_new_int(img->width));
	json_object_object_add(o, "height", json_object_new_int(img->height));
}

json_object *it_images_json(const it_image *img, const char *url_prefix, const it_urlsign *signer)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_string(img->id));
	json_object_object_add(o, "filename", json_object_new_string(img->filename));
	json_object_object_add(o, "original_filename", json_object_new_string(img->original_filename));
	add_bytes(o, img);
	json_object_object_add(o, "source", json_object_new_string(img->source));
	json_object_object_add(o, "version", json_object_new_int(img->version));
	json_object_object_add(o, "created_at", json_object_new_string(img->created_at));
	json_object_object_add(o, "updated_at", json_object_new_string(img->updated_at));
	add_urls(o, img, url_prefix, signer);
	return o;
}

json_object *it_images_event_data(const it_image *img, const char *url_prefix, const it_urlsign *signer)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "image_id", json_object_new_string(img->id));
	json_object_object_add(o, "filename", json_object_new_string(img->filename));
	json_object_object_add(o, "source", json_object_new_string(img->source));
	add_bytes(o, img);
	json_object_object_add(o, "version", json_object_new_int(img->version));
	add_urls(o, img, url_prefix, signer);
	return o;
}

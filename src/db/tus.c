/* tus.c: the rows of resumable (tus) uploads: created, advanced one committed step at a time, finished or removed. */
#include "config.h"

#include "db/tus.h"

#include "common/log.h"
#include "db/blob.h"
#include "db/db.h"
#include "db/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_COLUMNS                                                                                          \
	"t.id, t.name, t.session_id, coalesce(t.blob_id, 0), coalesce(t.length, -1), t.\"offset\", t.metadata," \
	" t.filename, t.source, coalesce(t.image_id::text, ''), extract(epoch FROM t.expires_at)::bigint,"      \
	" t.display_name, coalesce(t.device_id, '')"

static void copy_row(const PGresult *res, it_tus_upload *u)
{
	snprintf(u->id, sizeof(u->id), "%s", PQgetvalue(res, 0, 0));
	snprintf(u->name, sizeof(u->name), "%s", PQgetvalue(res, 0, 1));
	snprintf(u->session_id, sizeof(u->session_id), "%s", PQgetvalue(res, 0, 2));
	u->blob_id = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	u->length = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	u->offset = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	snprintf(u->metadata, sizeof(u->metadata), "%s", PQgetvalue(res, 0, 6));
	snprintf(u->filename, sizeof(u->filename), "%s", PQgetvalue(res, 0, 7));
	snprintf(u->source, sizeof(u->source), "%s", PQgetvalue(res, 0, 8));
	snprintf(u->image_id, sizeof(u->image_id), "%s", PQgetvalue(res, 0, 9));
	u->expires = strtoll(PQgetvalue(res, 0, 10), NULL, 10);
	snprintf(u->display, sizeof(u->display), "%s", PQgetvalue(res, 0, 11));
	snprintf(u->device_id, sizeof(u->device_id), "%s", PQgetvalue(res, 0, 12));
}

/* The members every upload event carries. */
static json_object *event_data(const it_tus_upload *u)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "upload_id", json_object_new_string(u->name));
	json_object_object_add(o, "filename", json_object_new_string(u->display));
	json_object_object_add(o, "source", json_object_new_string(u->source));
	json_object_object_add(o, "offset", json_object_new_int64(u->offset));
	json_object_object_add(o, "length", u->length >= 0 ? json_object_new_int64(u->length) : NULL);
	return o;
}

int it_tus_create(PGconn *conn, it_tus_upload *u, int64_t ttl)
{
	char lens[24], ttls[24], chunk[16];
	const char *params[10] = {u->id,       u->session_id, u->length >= 0 ? lens : NULL,
				  u->metadata, u->filename,   u->source,
				  ttls,	       chunk,	      u->display,
				  u->device_id};
	json_object *data;
	PGresult *res;
	int rc;

	snprintf(lens, sizeof(lens), "%" PRId64, u->length);
	snprintf(ttls, sizeof(ttls), "%" PRId64, ttl);
	snprintf(chunk, sizeof(chunk), "%d", IT_BLOB_CHUNK);
	res = it_db_exec(
		&conn, 0,
		"WITH b AS (INSERT INTO blobs (chunk_size) VALUES ($8::integer) RETURNING id)"
		" INSERT INTO tus_uploads (id, session_id, blob_id, length, metadata, filename, source, expires_at,"
		" display_name, device_id)"
		" SELECT $1, s.id, b.id, $3::bigint, $4, $5, $6, now() + make_interval(secs => $7::integer), $9,"
		" nullif($10, '')"
		" FROM sessions s, b WHERE s.id = $2 AND s.expires_at > now()"
		" RETURNING name, blob_id, extract(epoch FROM expires_at)::bigint",
		10, params);
	if (!it_db_ok(res, PGRES_TUPLES_OK)) {
		it_log_warn("upload insert failed: %s", PQerrorMessage(conn));
		PQclear(res);
		return 503;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		return 404;
	}
	snprintf(u->name, sizeof(u->name), "%s", PQgetvalue(res, 0, 0));
	u->blob_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	u->expires = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	u->offset = 0;
	u->image_id[0] = '\0';
	PQclear(res);
	data = event_data(u);
	rc = it_event_append(conn, u->session_id, "upload.started", data, NULL);
	json_object_put(data);
	return rc;
}

int it_tus_get(PGconn **connp, const char *id, int lock, it_tus_upload *out)
{
	const char *params[1] = {id};
	PGresult *res;
	int rc = 503;

	res = it_db_exec(connp, !lock,
			 lock ? "SELECT " UPLOAD_COLUMNS " FROM tus_uploads t JOIN sessions s ON s.id = t.session_id"
				" WHERE t.id = $1 AND t.expires_at > now() AND s.expires_at > now()"
				" FOR UPDATE OF t NOWAIT"
			      : "SELECT " UPLOAD_COLUMNS " FROM tus_uploads t JOIN sessions s ON s.id = t.session_id"
				" WHERE t.id = $1 AND t.expires_at > now() AND s.expires_at > now()",
			 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		rc = PQntuples(res) == 1 ? 0 : 404;
		if (rc == 0)
			copy_row(res, out);
	} else if (strcmp(it_db_sqlstate(res), "55P03") == 0) {
		rc = 423; /* lock_not_available */
	}
	PQclear(res);
	return rc;
}

static int exec_ok(PGconn *conn, const char *sql, int n, const char *const *params)
{
	PGresult *res = it_db_exec(&conn, 0, sql, n, params);
	int rc = it_db_ok(res, PGRES_COMMAND_OK) || it_db_ok(res, PGRES_TUPLES_OK) ? 0 : 503;

	if (rc != 0)
		it_log_warn("upload update failed: %s", PQerrorMessage(conn));
	PQclear(res);
	return rc;
}

int it_tus_set_length(PGconn *conn, const char *id, int64_t length)
{
	char lens[24];
	const char *params[2] = {id, lens};

	snprintf(lens, sizeof(lens), "%" PRId64, length);
	return exec_ok(conn, "UPDATE tus_uploads SET length = $2::bigint WHERE id = $1", 2, params);
}

int it_tus_advance(PGconn *conn, const char *id, int64_t offset, int64_t ttl, int64_t interval_ms)
{
	char offs[24], ttls[24], ms[24];
	const char *params[4] = {id, offs, ttls, ms};

	snprintf(offs, sizeof(offs), "%" PRId64, offset);
	snprintf(ttls, sizeof(ttls), "%" PRId64, ttl);
	snprintf(ms, sizeof(ms), "%" PRId64, interval_ms);
	return exec_ok(conn, "SELECT it_tus_advance($1, $2::bigint, $3::integer, $4::integer)", 4, params);
}

int it_tus_done(PGconn *conn, const char *id, const char *image_id)
{
	const char *params[2] = {id, image_id};

	return exec_ok(conn,
		       "UPDATE tus_uploads SET image_id = $2::uuid, blob_id = NULL, \"offset\" = length WHERE id = $1",
		       2, params);
}

int it_tus_remove(PGconn *conn, const it_tus_upload *u, const char *reason)
{
	const char *params[1] = {u->id};
	json_object *data;
	int rc = exec_ok(conn, "DELETE FROM tus_uploads WHERE id = $1", 1, params);

	if (rc != 0 || u->image_id[0] != '\0')
		return rc;
	data = event_data(u);
	json_object_object_add(data, "reason", json_object_new_string(reason));
	rc = it_event_append(conn, u->session_id, "upload.failed", data, NULL);
	json_object_put(data);
	/* An expired session takes its uploads with it: nothing to tell. */
	return rc == 404 ? 0 : rc;
}

/* sessions.c: the sessions table: create, look up, end. */
#include "config.h"

#include "db/sessions.h"

#include "common/log.h"
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_COLUMNS                                                                                            \
	"id, it_ts(created_at), it_ts(expires_at), ceil(extract(epoch from expires_at))::bigint, last_event_seq, " \
	"first_kept_seq"

static void fill(const PGresult *res, it_session *out)
{
	snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, 0, 0));
	snprintf(out->created_at, sizeof(out->created_at), "%s", PQgetvalue(res, 0, 1));
	snprintf(out->expires_at, sizeof(out->expires_at), "%s", PQgetvalue(res, 0, 2));
	out->expires_unix = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	out->last_event_seq = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	out->first_kept_seq = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
}

int it_sessions_create(PGconn **connp, int64_t ttl, it_session *out)
{
	char id[IT_SESSION_ID_LEN + 1], ttls[24];
	const char *params[2] = {id, ttls};
	PGresult *res;
	int rc = 503;

	if (it_id_session(id) < 0) {
		it_log_error("random source failed: refusing to create a session");
		return 503;
	}
	snprintf(ttls, sizeof(ttls), "%lld", (long long)ttl);
	/* A fresh id cannot collide in practice (192 bits); retrying the
	 * statement after a reconnect is therefore safe. */
	res = it_db_exec_row(
		connp, 1, "session insert",
		"INSERT INTO sessions (id, expires_at) VALUES ($1, now() + make_interval(secs => $2::bigint))"
		" RETURNING " SESSION_COLUMNS,
		2, params);
	if (res) {
		fill(res, out);
		rc = 0;
	}
	PQclear(res);
	return rc;
}

int it_sessions_get(PGconn **connp, const char *id, it_session *out)
{
	const char *params[1] = {id};
	PGresult *res;
	int rc = 503;

	if (!it_id_session_valid(id))
		return 400;
	res = it_db_exec(connp, 1, "SELECT " SESSION_COLUMNS " FROM sessions WHERE id = $1 AND expires_at > now()", 1,
			 params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		if (PQntuples(res) == 1) {
			if (out)
				fill(res, out);
			rc = 0;
		} else {
			rc = 404;
		}
	}
	PQclear(res);
	return rc;
}

int it_sessions_lock(PGconn *conn, const char *id)
{
	const char *params[1] = {id};
	PGresult *res = it_db_exec(
		&conn, 0, "SELECT 1 FROM sessions WHERE id = $1 AND expires_at > now() FOR NO KEY UPDATE", 1, params);
	int rc = !it_db_ok(res, PGRES_TUPLES_OK) ? 503 : PQntuples(res) == 1 ? 0 : 404;

	PQclear(res);
	return rc;
}

int it_sessions_delete(PGconn **connp, const char *id)
{
	const char *params[1] = {id};
	PGresult *res;
	int rc = 503;

	if (!it_id_session_valid(id))
		return 400;
	if (it_db_begin(connp) < 0)
		return 503;
	res = it_db_exec(connp, 0, "DELETE FROM sessions WHERE id = $1 AND expires_at > now()", 1, params);
	if (it_db_ok(res, PGRES_COMMAND_OK)) {
		rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : 404;
	}
	PQclear(res);
	if (rc == 0) {
		/* seq 0 means "the session is gone": listeners close its streams. */
		res = it_db_exec(connp, 0, "SELECT pg_notify('imagetools_events', $1 || ':0')", 1, params);
		if (!it_db_ok(res, PGRES_TUPLES_OK))
			rc = 503;
		PQclear(res);
	}
	if (rc == 0 && it_db_commit(*connp) < 0)
		rc = 503;
	if (rc != 0)
		it_db_rollback(*connp);
	return rc;
}

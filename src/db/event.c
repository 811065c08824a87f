/* event.c: the session event log — the one way a change becomes an event. */
#include "config.h"

#include "db/event.h"

#include "common/log.h"
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

/* $1 session, $2 after, $3 limit; columns seq, type, wire JSON. */
static const char read_sql[] = "SELECT e.seq, e.type, it_event_json(e) FROM events e"
			       " WHERE e.session_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3";

const char it_event_read_many_sql[] =
	"SELECT q.sid, e.seq, e.type, e.json"
	" FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS q(sid, after, ord)"
	" CROSS JOIN LATERAL (SELECT e2.seq, e2.type, it_event_json(e2) AS json FROM events e2"
	"  WHERE e2.session_id = q.sid AND e2.seq > q.after ORDER BY e2.seq LIMIT $3) e"
	" ORDER BY q.ord, e.seq";

int it_event_append(PGconn *conn, const char *session, const char *type, json_object *data, int64_t *seq)
{
	const char *params[3];
	PGresult *res;
	int rc = 503;

	params[0] = session;
	params[1] = type;
	params[2] = data ? json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN) : "{}";
	res = PQexecParams(conn, "SELECT it_append_event($1, $2, $3::jsonb)", 3, NULL, params, NULL, NULL, 0);
	if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1) {
		if (PQgetisnull(res, 0, 0)) {
			rc = 404;
		} else {
			if (seq)
				*seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			rc = 0;
		}
	} else {
		it_log_warn("event append failed: %s", PQerrorMessage(conn));
	}
	PQclear(res);
	return rc;
}

int it_event_read(PGconn **connp, const char *session, int64_t after, int limit,
		  int (*fn)(const it_event *ev, void *arg), void *arg)
{
	char afters[24], limits[16];
	const char *params[3] = {session, afters, limits};
	PGresult *res;
	int n, i;

	snprintf(afters, sizeof(afters), "%lld", (long long)after);
	snprintf(limits, sizeof(limits), "%d", limit);
	res = it_db_exec(connp, 1, read_sql, 3, params);
	if (!it_db_ok(res, PGRES_TUPLES_OK)) {
		PQclear(res);
		return -503;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		it_event ev;
		ev.seq = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		ev.type = PQgetvalue(res, i, 1);
		ev.json = PQgetvalue(res, i, 2);
		ev.json_len = (size_t)PQgetlength(res, i, 2);
		if (fn(&ev, arg)) {
			i++;
			break;
		}
	}
	PQclear(res);
	return i;
}

char *it_event_transient(const char *type, json_object *data)
{
	json_object *o = json_object_new_object();
	struct timeval tv;
	struct tm tm;
	char ts[64];
	char *s;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "timestamp", json_object_new_string(ts));
	json_object_object_add(o, "data", data ? json_object_get(data) : json_object_new_object());
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return s;
}

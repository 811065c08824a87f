/* presence.c: presence entries for request threads: list, HTTP heartbeat, leave, sweep (docs/presence.md). */
#include "config.h"

#include "db/presence.h"

#include "common/log.h"
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int it_presence_db_join(PGconn **connp, const char *session, const it_ident *id, const char *transport,
			const char *state, const char *holder, int64_t ttl)
{
	char ttls[24];
	const char *params[9] = {session,
				 id->client_id[0] ? id->client_id : id->device_id,
				 id->device_id[0] ? id->device_id : NULL,
				 id->label[0] ? id->label : NULL,
				 id->source[0] ? id->source : NULL,
				 transport,
				 state,
				 holder,
				 ttls};
	PGresult *res;
	int rc = 503;

	snprintf(ttls, sizeof(ttls), "%lld", (long long)ttl);
	res = it_db_exec_row(connp, 0, "presence join",
			     "SELECT it_presence_join($1, $2, $3, $4, $5, $6, $7, $8, $9::integer)", 9, params);
	if (res)
		rc = PQgetisnull(res, 0, 0) ? 404 : 0;
	PQclear(res);
	return rc;
}

int it_presence_db_list(PGconn **connp, const char *session, json_object **out, int64_t *last_id)
{
	const char *params[1] = {session};
	PGresult *res;
	int rc = 503;

	*out = NULL;
	/* One statement, one snapshot: the list and the id it is as of.
	 * Entries past their expiry are not shown even before a sweep has
	 * deleted them: a dead process leaves no ghost. */
	res = it_db_exec(connp, 1,
			 "SELECT s.last_event_seq,"
			 " coalesce((SELECT jsonb_agg(it_presence_json(p) ORDER BY p.since, p.client_id)"
			 " FROM presence p WHERE p.session_id = s.id AND p.expires_at > now()), '[]'::jsonb)"
			 " FROM sessions s WHERE s.id = $1 AND s.expires_at > now()",
			 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		if (PQntuples(res) == 0) {
			rc = 404;
		} else {
			*last_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			*out = json_tokener_parse(PQgetvalue(res, 0, 1));
			rc = *out ? 0 : 503;
		}
	} else if (res) {
		it_log_warn("presence list failed: %s", PQresultErrorMessage(res));
	}
	PQclear(res);
	return rc;
}

int it_presence_db_leave(PGconn **connp, const char *session, const char *client_id, const char *device_id)
{
	const char *params[3] = {session, client_id, device_id};
	PGresult *res;
	int rc = 503;

	res = it_db_exec(connp, 0,
			 "SELECT (SELECT count(*) FROM (SELECT it_presence_leave($1, $2, NULL, 0) FROM presence"
			 " WHERE session_id = $1 AND client_id = $2 AND ($3::text IS NULL OR device_id = $3)) l)"
			 " FROM sessions WHERE id = $1 AND expires_at > now()",
			 3, params);
	if (it_db_ok(res, PGRES_TUPLES_OK))
		rc = PQntuples(res) == 1 ? 0 : 404;
	else if (res)
		it_log_warn("presence leave failed: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int it_presence_db_sweep(PGconn **connp)
{
	PGresult *res = it_db_exec(connp, 0, "SELECT it_presence_sweep(200)", 0, NULL);
	int n = -503;

	if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1)
		n = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

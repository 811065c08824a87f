/* presence.c: presence entries for request threads: list, HTTP heartbeat, leave, sweep (docs/presence.md). */
#include "config.h"

#include "db/presence.h"

#include "common/log.h"
#include "db/db.h"
#include "db/metrics.h"

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
	if (res) {
		rc = PQgetisnull(res, 0, 0) ? 404 : 0;
		/* "joined" is the one answer that appended presence.joined. */
		if (rc == 0 && strcmp(PQgetvalue(res, 0, 0), "joined") == 0)
			it_metrics_inc(IT_PRESENCE_M_JOINS, NULL, 1);
	}
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

	/* The count is of entries it_presence_leave deleted, each with its
	 * presence.left "closed". */
	res = it_db_exec(connp, 0,
			 "SELECT (SELECT count(*) FILTER (WHERE l.gone) FROM (SELECT it_presence_leave($1, $2, NULL, 0)"
			 " AS gone FROM presence"
			 " WHERE session_id = $1 AND client_id = $2 AND ($3::text IS NULL OR device_id = $3)) l)"
			 " FROM sessions WHERE id = $1 AND expires_at > now()",
			 3, params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		rc = PQntuples(res) == 1 ? 0 : 404;
		if (rc == 0)
			it_presence_db_count_left("closed", strtoll(PQgetvalue(res, 0, 0), NULL, 10));
	} else if (res)
		it_log_warn("presence leave failed: %s", PQresultErrorMessage(res));
	PQclear(res);
	return rc;
}

int it_presence_db_sweep(PGconn **connp)
{
	PGresult *res = it_db_exec(connp, 0, "SELECT it_presence_sweep_reasons(200)", 0, NULL);
	int n = -503;

	if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1) {
		int64_t swept = it_presence_db_count_swept(PQgetvalue(res, 0, 0));
		n = swept < 0 ? 0 : (int)swept;
	}
	PQclear(res);
	return n;
}

void it_presence_db_count_left(const char *reason, int64_t n)
{
	static const struct {
		const char *reason, *label;
	} known[] = {
		{"closed", "reason=\"closed\""}, {"expired", "reason=\"expired\""}, {"revoked", "reason=\"revoked\""}};
	const char *label = "reason=\"other\"";

	if (n <= 0)
		return;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(reason, known[i].reason) == 0)
			label = known[i].label;
	it_metrics_inc(IT_PRESENCE_M_LEAVES, label, n);
}

int64_t it_presence_db_count_swept(const char *counts)
{
	json_object *o = json_tokener_parse(counts);
	int64_t total = -1;

	if (o == NULL || !json_object_is_type(o, json_type_object))
		goto out;
	total = 0;
	json_object_object_foreach(o, reason, v)
	{
		int64_t n = json_object_get_int64(v);
		it_presence_db_count_left(reason, n);
		if (n > 0)
			total += n;
	}
out:
	json_object_put(o);
	return total;
}

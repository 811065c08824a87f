/* queue.c: the worker's side of the job queue: claim, lease, record progress, finish (docs/worker.md). */
#include "config.h"

#include "worker/queue.h"

#include "common/log.h"
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void it_queue_job_free(it_queue_job *job)
{
	free(job->image_ids);
	json_object_put(job->result);
	memset(job, 0, sizeof(*job));
}

/* Splits "a,b,c" (uuids from array_to_string) into job->image_ids. */
static int split_ids(it_queue_job *job, const char *s)
{
	job->image_ids = calloc((size_t)job->total, sizeof(*job->image_ids));
	if (job->image_ids == NULL)
		return -1;
	for (int i = 0; i < job->total; i++) {
		if (strlen(s) < 36)
			return -1;
		memcpy(job->image_ids[i], s, 36);
		job->image_ids[i][36] = '\0';
		s += 36;
		if (*s == ',')
			s++;
	}
	return 0;
}

/* Runs an UPDATE of a job's row that only the worker holding its lease may
 * make (the statement's WHERE says so). Returns IT_QUEUE_OK when it changed
 * the row, IT_QUEUE_LOST when the job is no longer ours, or -1 on a
 * database error, logged as "<what> failed". */
static int owned_update(PGconn *conn, const char *what, const char *sql, int nparams, const char *const *pv)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, pv, NULL, NULL, 0);
	int rc = -1;

	if (it_db_ok(res, PGRES_COMMAND_OK))
		rc = strcmp(PQcmdTuples(res), "1") == 0 ? IT_QUEUE_OK : IT_QUEUE_LOST;
	else
		it_log_warn("%s failed: %s", what, PQerrorMessage(conn));
	PQclear(res);
	return rc;
}

int it_queue_claim(PGconn *conn, const char *owner, int lease, it_queue_job *job)
{
	char leases[16], maxs[16], err[160];
	const char *pv[3] = {owner, leases, maxs};
	json_object *params = NULL;
	PGresult *res;
	int rc = -1, type;

	memset(job, 0, sizeof(*job));
	snprintf(leases, sizeof(leases), "%d", lease);
	snprintf(maxs, sizeof(maxs), "%d", IT_OPS_MAX_ATTEMPTS);
	res = PQexecParams(
		conn,
		"UPDATE operations o SET status = 'running', lease_owner = $1,"
		" lease_until = now() + make_interval(secs => $2::integer), attempts = o.attempts + 1,"
		" started_at = coalesce(o.started_at, now()), updated_at = now()"
		" WHERE o.id = (SELECT q.id FROM operations q JOIN sessions s ON s.id = q.session_id"
		"   WHERE (q.status = 'queued' OR (q.status = 'running' AND q.lease_until < now()))"
		"     AND q.attempts < $3::integer AND s.expires_at > now()"
		/* Round robin between sessions: the job of the session whose
		 * last job started longest ago (or never) goes first, so one
		 * session queueing many jobs does not hold up the others. */
		"   ORDER BY (SELECT max(r.started_at) FROM operations r WHERE r.session_id = q.session_id) NULLS "
		"FIRST,"
		"     q.created_at LIMIT 1 FOR UPDATE OF q SKIP LOCKED)"
		" RETURNING o.id::text, o.session_id, o.type, o.params::text, array_to_string(o.image_ids, ','),"
		" o.total, o.done, o.attempts, o.result::text",
		3, NULL, pv, NULL, NULL, 0);
	if (!it_db_ok(res, PGRES_TUPLES_OK)) {
		it_log_warn("claim failed: %s", PQerrorMessage(conn));
		goto out;
	}
	if (PQntuples(res) == 0) {
		rc = 0;
		goto out;
	}
	snprintf(job->id, sizeof(job->id), "%s", PQgetvalue(res, 0, 0));
	snprintf(job->session, sizeof(job->session), "%s", PQgetvalue(res, 0, 1));
	job->total = atoi(PQgetvalue(res, 0, 5));
	job->done = atoi(PQgetvalue(res, 0, 6));
	job->attempts = atoi(PQgetvalue(res, 0, 7));
	job->result = json_tokener_parse(PQgetvalue(res, 0, 8));
	params = json_tokener_parse(PQgetvalue(res, 0, 3));
	type = it_op_type_parse(PQgetvalue(res, 0, 2));
	/* The stored params went through the same validation at enqueue. */
	if (type < 0 || it_op_params_parse((enum it_op_type)type, params, &job->params, err, sizeof(err)) < 0 ||
	    job->result == NULL || job->total < 1 || split_ids(job, PQgetvalue(res, 0, 4)) < 0) {
		it_log_error("operation %s is malformed in the database", job->id);
		goto out;
	}
	rc = 1;
out:
	json_object_put(params);
	PQclear(res);
	/* A malformed job keeps its claim: its lease runs out and after
	 * IT_OPS_MAX_ATTEMPTS claims housekeeping fails it for good. */
	if (rc != 1)
		it_queue_job_free(job);
	return rc;
}

int it_queue_renew(PGconn *conn, const it_queue_job *job, const char *owner, int lease)
{
	char leases[16];
	const char *pv[3] = {job->id, owner, leases};
	PGresult *res;
	int rc = -1;

	snprintf(leases, sizeof(leases), "%d", lease);
	res = PQexecParams(conn,
			   "UPDATE operations o SET lease_until = now() + make_interval(secs => $3::integer)"
			   " FROM sessions s WHERE o.id = $1::uuid AND o.lease_owner = $2 AND o.status = 'running'"
			   " AND s.id = o.session_id AND s.expires_at > now() RETURNING o.cancel_requested",
			   3, NULL, pv, NULL, NULL, 0);
	if (it_db_ok(res, PGRES_TUPLES_OK))
		rc = PQntuples(res) == 0			  ? IT_QUEUE_LOST
			: strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? IT_QUEUE_CANCELLED
								  : IT_QUEUE_OK;
	else
		it_log_warn("lease renewal failed: %s", PQerrorMessage(conn));
	PQclear(res);
	return rc;
}

int it_queue_record(PGconn *conn, const it_queue_job *job, const char *owner, int lease, int current, int progress,
		    const char *message)
{
	char leases[16], currents[16], progs[16], dones[16];
	const char *pv[8] = {
		job->id, owner,	  leases, currents,
		progs,	 message, dones,  json_object_to_json_string_ext(job->result, JSON_C_TO_STRING_PLAIN)};

	snprintf(leases, sizeof(leases), "%d", lease);
	snprintf(currents, sizeof(currents), "%d", current);
	snprintf(progs, sizeof(progs), "%d", progress);
	snprintf(dones, sizeof(dones), "%d", job->done);
	return owned_update(conn, "progress update",
			    "UPDATE operations SET lease_until = now() + make_interval(secs => $3::integer),"
			    " current = $4::integer, progress = $5::integer, message = $6, done = $7::integer,"
			    " result = $8::jsonb, updated_at = now()"
			    " WHERE id = $1::uuid AND lease_owner = $2 AND status = 'running'",
			    8, pv);
}

int it_queue_finish(PGconn *conn, const it_queue_job *job, const char *owner, const char *status, const char *error,
		    const char *message)
{
	const char *pv[6] = {job->id, owner,   status,
			     error,   message, json_object_to_json_string_ext(job->result, JSON_C_TO_STRING_PLAIN)};

	return owned_update(conn, "finishing an operation",
			    "UPDATE operations SET status = $3, error = $4, message = $5, result = $6::jsonb,"
			    " progress = CASE WHEN $3 = 'completed' THEN 100 ELSE progress END,"
			    " lease_owner = NULL, lease_until = NULL, updated_at = now(), finished_at = now()"
			    " WHERE id = $1::uuid AND lease_owner = $2 AND status = 'running'",
			    6, pv);
}

int it_queue_release(PGconn *conn, const it_queue_job *job, const char *owner)
{
	const char *pv[2] = {job->id, owner};
	PGresult *res;
	int ok;

	res = PQexecParams(conn,
			   "WITH r AS (UPDATE operations SET status = 'queued', lease_owner = NULL, lease_until = NULL,"
			   " attempts = greatest(attempts - 1, 0), updated_at = now()"
			   " WHERE id = $1::uuid AND lease_owner = $2 AND status = 'running' RETURNING id)"
			   " SELECT pg_notify('" IT_JOBS_CHANNEL "', id::text) FROM r",
			   2, NULL, pv, NULL, NULL, 0);
	ok = it_db_ok(res, PGRES_TUPLES_OK);
	if (!ok)
		it_log_warn("releasing operation %s failed: %s", job->id, PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -1;
}

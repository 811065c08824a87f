/* housekeeping.c: periodic chores: expiry warnings, expired sessions, event retention, orphaned blobs, expired uploads,
 * presence. */
#include "config.h"

#include "worker/housekeeping.h"

#include "common/log.h"
#include "db/db.h"
#include "db/operations.h"
#include "db/presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Arbitrary constant naming the housekeeping advisory lock. */
#define HK_LOCK_KEY "7390161"

/* Rows each chore handles per round: a backlog drains over a few rounds
 * instead of one long transaction holding many session locks. */
#define HK_BATCH "200"

int it_housekeeping_run(PGconn *conn, const it_config *cfg, int gc_blobs, it_housekeeping_stats *st)
{
	char warn[24], keep[24], maxa[16];
	const char *pv[4] = {maxa, warn, keep, HK_BATCH};
	PGresult *res = NULL;
	char *swept = NULL; /* the presence sweep's counts by reason, counted once committed */
	int rc = -1;

	memset(st, 0, sizeof(*st));
	snprintf(warn, sizeof(warn), "%lld", (long long)cfg->expiry_warning);
	snprintf(keep, sizeof(keep), "%lld", (long long)cfg->event_retention);
	snprintf(maxa, sizeof(maxa), "%d", IT_OPS_MAX_ATTEMPTS);

	res = PQexec(conn, "BEGIN");
	if (!it_db_ok(res, PGRES_COMMAND_OK))
		goto out;
	PQclear(res);
	res = PQexec(conn, "SELECT pg_try_advisory_xact_lock(" HK_LOCK_KEY ")");
	if (!it_db_ok(res, PGRES_TUPLES_OK))
		goto out;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		rc = 0;
		goto out;
	}
	PQclear(res);
	/* Warnings before deletions, so a session that expires between two
	 * rounds is still warned in the round it is found. */
	res = PQexecParams(conn,
			   "SELECT it_fail_abandoned_operations($1::integer),"
			   " it_warn_expiring_sessions($2::integer, $4::integer),"
			   " it_delete_expired_sessions($4::integer), it_prune_events($3::integer, $4::integer),"
			   " it_expire_tus_uploads($4::integer), it_presence_sweep_reasons($4::integer)",
			   4, NULL, pv, NULL, NULL, 0);
	if (!it_db_ok(res, PGRES_TUPLES_OK))
		goto out;
	st->abandoned = atoi(PQgetvalue(res, 0, 0));
	st->warned = atoi(PQgetvalue(res, 0, 1));
	st->expired = atoi(PQgetvalue(res, 0, 2));
	st->pruned = atoll(PQgetvalue(res, 0, 3));
	st->uploads = atoi(PQgetvalue(res, 0, 4));
	swept = strdup(PQgetvalue(res, 0, 5));
	PQclear(res);
	res = NULL;
	if (gc_blobs) {
		/* Images delete their blobs themselves (a trigger); this catches
		 * any that never got attached. The age guard leaves alone blobs
		 * a long upload may still be about to attach. */
		res = PQexec(conn,
			     "WITH d AS (DELETE FROM blobs WHERE id IN (SELECT b.id FROM blobs b"
			     " WHERE b.created_at < now() - interval '1 hour'"
			     " AND NOT EXISTS (SELECT 1 FROM images i WHERE i.blob_id = b.id)"
			     " AND NOT EXISTS (SELECT 1 FROM images i WHERE i.thumb_blob_id = b.id)"
			     " AND NOT EXISTS (SELECT 1 FROM tus_uploads t WHERE t.blob_id = b.id)"
			     " LIMIT 1000) RETURNING 1) SELECT count(*) FROM d");
		if (!it_db_ok(res, PGRES_TUPLES_OK))
			goto out;
		st->blobs = atoll(PQgetvalue(res, 0, 0));
		PQclear(res);
		res = NULL;
	}
	res = PQexec(conn, "COMMIT");
	if (!it_db_ok(res, PGRES_COMMAND_OK))
		goto out;
	rc = 0;
out:
	if (rc < 0)
		it_log_warn("housekeeping failed: %s", PQerrorMessage(conn));
	PQclear(res);
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		it_db_rollback(conn);
	if (rc == 0 && (st->abandoned || st->warned || st->expired || st->pruned || st->blobs || st->uploads))
		it_log_info("housekeeping: %d operations abandoned, %d sessions warned, %d expired sessions deleted,"
			    " %lld events pruned, %lld orphaned blobs deleted, %d expired uploads deleted",
			    st->abandoned, st->warned, st->expired, st->pruned, st->blobs, st->uploads);
	if (rc == 0 && swept) {
		int64_t n = it_presence_db_count_swept(swept);
		st->presence = n > 0 ? (int)n : 0;
	}
	free(swept);
	if (rc == 0 && st->presence)
		it_log_debug("housekeeping: %d presence entries swept", st->presence);
	return rc;
}

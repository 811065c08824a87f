/* housekeeping.h: periodic chores: expiry warnings, expired sessions, event retention, orphaned blobs, expired uploads, presence. */
#ifndef IT_HOUSEKEEPING_H
#define IT_HOUSEKEEPING_H

#include "common/config.h"

#include <libpq-fe.h>

/* What one round did. */
typedef struct it_hk_stats {
	int abandoned;	    /* operations failed after too many lost leases */
	int warned;	    /* session.expiring events sent */
	int expired;	    /* sessions deleted */
	long long pruned;   /* events deleted */
	long long blobs;    /* orphaned blobs deleted */
	int uploads;	    /* expired resumable uploads deleted, with their bytes */
	int presence;	    /* presence entries nobody renewed, swept (presence.left) */
} it_hk_stats;

/* Runs one round in one transaction. Only one worker at a time does it (a
 * transaction-scoped advisory lock; the others skip the round), so several
 * workers never step on each other. Each chore is bounded per round and uses
 * an index. With gc_blobs, also deletes blobs no image references (a scan of
 * the blobs table: the caller runs it rarely). Returns 0 (stats filled,
 * zeros when another worker holds the lock) or -1 on a database error. */
int it_hk_run(PGconn *conn, const it_config *cfg, int gc_blobs, it_hk_stats *stats);

#endif

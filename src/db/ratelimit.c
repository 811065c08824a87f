/* ratelimit.c: token-bucket rate limits kept in PostgreSQL, shared by every process and node. */
#include "config.h"

#include "db/ratelimit.h"

#include "common/log.h"
#include "db/db.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A bucket untouched this long is full again and can go: its row carries
 * nothing a fresh row would not. Buckets refill within a minute, so ten is
 * generous. */
#define PRUNE_IDLE "10 minutes"
#define PRUNE_EVERY_S 60

static _Atomic int64_t next_prune;

/* Deletes idle buckets, at most once a minute per process. The table is small
 * (one row per active client and session) and unlogged, so a scan is cheap. */
static void maybe_prune(PGconn **connp)
{
	int64_t now = (int64_t)time(NULL), due = atomic_load(&next_prune);
	PGresult *res;

	if (now < due || !atomic_compare_exchange_strong(&next_prune, &due, now + PRUNE_EVERY_S))
		return;
	res = it_db_exec(connp, 0, "DELETE FROM rate_limits WHERE updated < now() - interval '" PRUNE_IDLE "'", 0,
			 NULL);
	if (!it_db_ok(res, PGRES_COMMAND_OK) && res)
		it_log_warn("pruning rate limits failed: %s", PQresultErrorMessage(res));
	PQclear(res);
}

void it_ratelimit_bucket_init(it_ratelimit_bucket *b, const char *kind, const char *subject, int64_t per_minute)
{
	if (per_minute < 0)
		per_minute = 0;
	snprintf(b->key, sizeof(b->key), "%s:%s", kind, subject ? subject : "-");
	snprintf(b->cap, sizeof(b->cap), "%lld", (long long)per_minute);
	snprintf(b->rate, sizeof(b->rate), "%.9g", (double)per_minute / 60.0);
}

int64_t it_ratelimit_retry_after(double s)
{
	return s < 1 ? 1 : (int64_t)s + ((double)(int64_t)s < s);
}

/* Runs sql (it_rate_take or it_rate_peek) on the bucket of kind and subject. */
static int ask(PGconn **connp, const char *sql, const char *kind, const char *subject, int64_t per_minute,
	       int64_t *retry_after)
{
	it_ratelimit_bucket b;
	const char *params[3] = {b.key, b.cap, b.rate};
	PGresult *res;
	int rc = 503;

	*retry_after = 0;
	if (per_minute <= 0)
		return 0;
	it_ratelimit_bucket_init(&b, kind, subject, per_minute);
	/* Not retried after a reconnect: a take that may have happened once
	 * must not be taken twice. */
	res = it_db_exec_row(connp, 0, "rate limit check", sql, 3, params);
	if (res) {
		if (strcmp(PQgetvalue(res, 0, 0), "t") == 0) {
			rc = 0;
		} else {
			*retry_after = it_ratelimit_retry_after(strtod(PQgetvalue(res, 0, 1), NULL));
			rc = 429;
		}
	}
	PQclear(res);
	if (rc != 503)
		maybe_prune(connp);
	return rc;
}

int it_ratelimit_take(PGconn **connp, const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after)
{
	return ask(connp, "SELECT allowed, retry_after FROM it_rate_take($1, $2, $3)", kind, subject, per_minute,
		   retry_after);
}

int it_ratelimit_peek(PGconn **connp, const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after)
{
	return ask(connp, "SELECT allowed, retry_after FROM it_rate_peek($1, $2, $3)", kind, subject, per_minute,
		   retry_after);
}

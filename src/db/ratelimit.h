/* ratelimit.h: token-bucket rate limits kept in PostgreSQL, shared by every process and node. */
#ifndef IT_DB_RATELIMIT_H
#define IT_DB_RATELIMIT_H

#include <libpq-fe.h>
#include <stdint.h>

/* Takes one token from the bucket named by kind and subject ("sessions" and a
 * client address, "uploads" and a session id...). The bucket holds
 * per_minute tokens and refills at per_minute per minute, so a client may
 * burst a minute's allowance and then continues at the steady rate.
 * per_minute <= 0 disables the limit.
 *
 * Returns 0 when the request may go ahead, 429 when it is over the limit
 * (*retry_after is then the whole seconds until a token is back, at least 1),
 * or 503 when the database could not answer (logged). Callers let requests
 * through on 503: the handler that follows needs the database anyway and
 * answers 503 itself, and a limiter must not turn a database blip into a
 * refusal of everything. Also prunes buckets idle for long, about once a
 * minute per process. */
int it_ratelimit_take(PGconn **connp, const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after);

/* The text parameters that name and size a bucket in the SQL functions
 * it_rate_take, it_rate_peek and it_credential_check_limited: the key
 * "kind:subject" (subject NULL: "-"), the capacity, and the refill rate in
 * tokens per second (per_minute <= 0: both 0). */
typedef struct it_ratelimit_bucket {
	char key[256];
	char cap[32];
	char rate[48];
} it_ratelimit_bucket;

void it_ratelimit_bucket_init(it_ratelimit_bucket *b, const char *kind, const char *subject, int64_t per_minute);

/* The Retry-After of a bucket that needs s more seconds for a token: whole
 * seconds, rounded up (a client that waits exactly this long finds a token),
 * at least 1. */
int64_t it_ratelimit_retry_after(double s);

/* Whether the bucket of kind and subject holds a token, without taking it:
 * for limits that count failures, asked before an attempt whose failure
 * then takes a token (it_ratelimit_take). Same answers as it_ratelimit_take. */
int it_ratelimit_peek(PGconn **connp, const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after);

#endif

/* guard.h: checks every API request passes before its handler: Host, Origin and CORS, and the rate-limit answer
 * (docs/security.md). */
#ifndef IT_FCGI_GUARD_H
#define IT_FCGI_GUARD_H

#include "fcgi/request.h"

#include <libpq-fe.h>
#include <stdint.h>

/* Runs before routing. First refuses a request whose Host header is not
 * one of server_names (when that is set) with 421 problem+json, before
 * anything else is looked at. Then judges the Origin by the rule
 * every server shares (it_origin_check, src/common/origin.h): answers CORS
 * preflights (OPTIONS with an Origin) and refuses preflights and
 * state-changing requests (POST, PATCH, PUT, DELETE) from a refused origin
 * (403 problem+json). For a listed cross-origin request it adds
 * Access-Control-Allow-Origin (and, on preflights, the methods and request
 * headers the API accepts) to the response headers and lets it through.
 * Returns 0 when the handler should run, or the status it answered with
 * (421, 403, or 204 for a preflight). */
int it_guard_request(it_req *req);

/* Takes a token from the rate limit kind ("sessions", "streams",
 * "uploads"...) of subject (a client address or a session id), allowing
 * per_minute a minute (0: no limit). When over the limit, answers 429
 * problem+json with Retry-After, counts it in
 * imagetools_rate_limited_total{limit=kind}, and returns 429; otherwise
 * returns 0 (also when the database could not be asked). */
int it_guard_rate(it_req *req, const char *kind, const char *subject, int64_t per_minute);

/* The check of it_guard_rate without the answer, for handlers that find the
 * subject in the middle of a request (the session of an upload). Returns 429,
 * the status the caller must answer, and sets *retry_after when over the
 * limit (counted as above), else 0.
 * Safe to call while the thread's connection is inside a transaction: the
 * bucket is then updated on a second connection of the thread, so that its
 * row lock is not held until the request's own commit. */
int it_guard_rate_check(const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after);

/* The connection for a short statement that must not join the request's
 * transaction: the thread's own when no transaction is open on it, else a
 * second connection of the thread (made on first use, replaced when broken).
 * Never NULL itself; *result is NULL when no connection can be made. */
PGconn **it_guard_conn(void);

/* Like it_guard_rate_check, but only looks: takes nothing. For limits that
 * count failures (the bucket is then taken from with it_guard_rate_check
 * when the attempt fails). Not counted in metrics. Returns 429 or 0 as
 * it_guard_rate_check does. */
int it_guard_rate_peek(const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after);

/* The 429 answer of it_guard_rate, for a refusal found by it_guard_rate_check:
 * Retry-After, retry_after in the problem body, and the detail
 * "<what>; try again in N seconds." Returns 429, the status it answered
 * with. */
int it_guard_rate_refuse(it_req *req, int64_t retry_after, const char *what);

#endif

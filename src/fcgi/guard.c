/* guard.c: checks every API request passes before its handler: Host, Origin and CORS, and the rate-limit answer. */
#include "config.h"

#include "fcgi/guard.h"

#include "common/host.h"
#include "common/origin.h"
#include "db/db.h"
#include "db/metrics.h"
#include "db/ratelimit.h"
#include "fcgi/app.h"
#include "fcgi/handlers.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int it_guard_request(it_req *req)
{
	const char *origin = it_req_env(req, "HTTP_ORIGIN");
	const char *host = it_req_env(req, "HTTP_HOST");
	it_origin_verdict verdict;
	it_cors cors;

	/* DNS rebinding: a page on evil.example whose name later resolves to
	 * this server is same-origin with itself, so its Origin matches its
	 * Host, and only the Host tells that the browser thinks it is talking
	 * to another site. 421 Misdirected Request (RFC 9110 15.5.20) says
	 * exactly that: this server does not answer for that name. It is
	 * checked before anything else, preflights included. */
	if (!it_host_listed(it_g.cfg.server_names, host, host ? strlen(host) : 0)) {
		it_resp_problem(req, 421, "misdirected-request",
				"This server does not answer for the host named in the request; see server_names.");
		return 421;
	}
	verdict = it_origin_check(origin, origin ? strlen(origin) : 0, host, host ? strlen(host) : 0,
				  it_g.cfg.allowed_origins);
	/* The CORS answer is the bridge's too (src/common/origin.h). */
	it_cors_decide(verdict, req->method, strlen(req->method), origin, origin ? strlen(origin) : 0, &cors);
	if (cors.status == 403) {
		it_metrics_inc("imagetools_origin_refused_total", NULL, 1);
		it_resp_problem(req, 403, "origin-not-allowed",
				"Requests from this origin are not allowed; see allowed_origins.");
		return 403;
	}
	/* tus discovery: an OPTIONS request to the resumable upload endpoint
	 * learns the protocol's version, extensions and limits, whether or
	 * not it is a CORS preflight. */
	if (strcmp(req->method, "OPTIONS") == 0 && strncmp(req->path, "/api/v1/uploads/tus", 19) == 0)
		it_h_tus_discovery_headers(req);
	for (unsigned i = 0; i < cors.n; i++)
		it_resp_header(req, cors.h[i].name, "%.*s", (int)cors.h[i].value_len, cors.h[i].value);
	if (cors.status == 204) {
		it_resp_begin(req, 204, NULL);
		return 204;
	}
	return 0;
}

/* A second connection per request thread, for limits checked while the
 * thread's own connection is inside the request's transaction. */
static __thread PGconn *side_conn;

/* The thread's own connection, kept here so that it_guard_conn can hand
 * out a pointer that stays valid. */
static __thread PGconn *own_conn;

PGconn **it_guard_conn(void)
{
	own_conn = it_db_thread_conn();
	if (own_conn == NULL || PQtransactionStatus(own_conn) == PQTRANS_IDLE)
		return &own_conn;
	if (side_conn && it_db_broken(side_conn)) {
		PQfinish(side_conn);
		side_conn = NULL;
	}
	if (side_conn == NULL)
		side_conn = it_db_connect();
	return &side_conn;
}

int it_guard_rate_check(const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after)
{
	PGconn **connp;
	char labels[64];

	*retry_after = 0;
	if (per_minute <= 0)
		return 0;
	connp = it_guard_conn();
	if (*connp == NULL || it_ratelimit_take(connp, kind, subject, per_minute, retry_after) != 429)
		return 0;
	snprintf(labels, sizeof(labels), "limit=\"%s\"", kind);
	it_metrics_inc("imagetools_rate_limited_total", labels, 1);
	return 429;
}

int it_guard_rate_peek(const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after)
{
	PGconn **connp;

	*retry_after = 0;
	if (per_minute <= 0)
		return 0;
	connp = it_guard_conn();
	if (*connp == NULL || it_ratelimit_peek(connp, kind, subject, per_minute, retry_after) != 429)
		return 0;
	return 429;
}

int it_guard_rate(it_req *req, const char *kind, const char *subject, int64_t per_minute)
{
	int64_t retry = 0;
	char what[64];

	if (it_guard_rate_check(kind, subject, per_minute, &retry) == 0)
		return 0;
	snprintf(what, sizeof(what), "Too many %s requests", kind);
	return it_guard_rate_refuse(req, retry, what);
}

int it_guard_rate_refuse(it_req *req, int64_t retry_after, const char *what)
{
	json_object *ext = json_object_new_object();

	it_resp_header(req, "Retry-After", "%lld", (long long)retry_after);
	json_object_object_add(ext, "retry_after", json_object_new_int64(retry_after));
	it_resp_problem_ext(req, 429, "rate-limited", ext, "%s; try again in %lld seconds.", what,
			    (long long)retry_after);
	json_object_put(ext);
	return 429;
}

/* guard.c: checks every API request passes before its handler: Host, Origin and CORS, and the rate-limit answer. */
#include "config.h"

#include "fcgi/guard.h"

#include "common/host.h"
#include "db/db.h"
#include "db/metrics.h"
#include "db/ratelimit.h"
#include "fcgi/app.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* What a cross-origin page may send and read. Last-Event-ID lets a
 * polyfilled EventSource resume; Authorization carries the metrics token. */
#define ALLOW_METHODS "GET, POST, PATCH, DELETE, OPTIONS"
#define ALLOW_HEADERS "Content-Type, Last-Event-ID, Authorization"
#define EXPOSE_HEADERS "Location, Retry-After, ETag, Content-Disposition"
/* Browsers cap this anyway (Chromium: 2 h); ten minutes keeps a changed
 * allowed_origins effective soon. */
#define PREFLIGHT_MAX_AGE "600"

/* Whether entry (n bytes) is a scheme wildcard (a scheme other than http and
 * https, then ":", "//" and a star), and origin is "<scheme>://<host>" with
 * that scheme. Firefox gives each installation of an add-on its own random
 * moz-extension:// host, so an add-on can only be allowed by its scheme. Only a browser extension can
 * present such an origin; web pages cannot, and a wildcard for http(s) would
 * switch the check off, so it is not offered. */
static int scheme_wildcard(const char *entry, size_t n, const char *origin)
{
	size_t slen;
	const char *host;

	if (n < 5 || memcmp(entry + n - 4, "://*", 4) != 0)
		return 0;
	slen = n - 4;
	if ((slen == 4 && strncasecmp(entry, "http", 4) == 0) || (slen == 5 && strncasecmp(entry, "https", 5) == 0))
		return 0;
	if (strncasecmp(origin, entry, slen + 3) != 0)
		return 0;
	host = origin + slen + 3;
	return *host != '\0' && strpbrk(host, "/?#@ \t") == NULL;
}

int it_guard_origin_listed(const char *allowed, const char *origin)
{
	size_t olen;
	const char *p = allowed;

	if (allowed == NULL || origin == NULL || *origin == '\0' || strcmp(origin, "null") == 0)
		return 0;
	olen = strlen(origin);
	while (*p) {
		size_t n;
		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (n == olen && strncasecmp(p, origin, n) == 0)
			return 1;
		if (scheme_wildcard(p, n, origin))
			return 1;
		p += n;
	}
	return 0;
}

/* Length of s without a default port (":80" after http, ":443" after https,
 * either after a bare Host value). */
static size_t strip_default_port(const char *s, size_t n, int scheme_https)
{
	if (n > 3 && memcmp(s + n - 3, ":80", 3) == 0 && scheme_https != 1)
		return n - 3;
	if (n > 4 && memcmp(s + n - 4, ":443", 4) == 0 && scheme_https != 0)
		return n - 4;
	return n;
}

int it_guard_same_origin(const char *origin, const char *host)
{
	const char *auth;
	size_t alen, hlen;
	int https;

	if (origin == NULL || host == NULL || *host == '\0')
		return 0;
	if (strncasecmp(origin, "http://", 7) == 0) {
		auth = origin + 7;
		https = 0;
	} else if (strncasecmp(origin, "https://", 8) == 0) {
		auth = origin + 8;
		https = 1;
	} else {
		return 0;
	}
	/* An Origin is scheme://host[:port] and nothing else. */
	if (strpbrk(auth, "/?#@") != NULL || *auth == '\0')
		return 0;
	alen = strip_default_port(auth, strlen(auth), https);
	hlen = strip_default_port(host, strlen(host), -1);
	return alen == hlen && strncasecmp(auth, host, alen) == 0;
}

static int state_changing(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "OPTIONS") != 0;
}

int it_guard_request(it_req *req)
{
	const char *origin = it_req_env(req, "HTTP_ORIGIN");
	const char *host = it_req_env(req, "HTTP_HOST");
	int preflight = strcmp(req->method, "OPTIONS") == 0;
	int same, listed;

	/* DNS rebinding: a page on evil.example whose name later resolves to
	 * this server is same-origin with itself, so its Origin matches its
	 * Host, and only the Host tells that the browser thinks it is talking
	 * to another site. 421 Misdirected Request (RFC 9110 15.5.20) says
	 * exactly that: this server does not answer for that name. It is
	 * checked before anything else, preflights included. */
	if (!it_host_listed(it_g.cfg.server_names, host, host ? strlen(host) : 0)) {
		it_resp_problem(req, 421, "misdirected-request",
				"This server does not answer for the host named in the request; see server_names.");
		return 1;
	}
	if (origin == NULL || *origin == '\0') {
		if (preflight) {
			/* Not a CORS preflight: say what the API speaks. */
			it_resp_header(req, "Allow", ALLOW_METHODS);
			it_resp_begin(req, 204, NULL);
			return 1;
		}
		return 0;
	}
	same = it_guard_same_origin(origin, host);
	listed = it_guard_origin_listed(it_g.cfg.allowed_origins, origin);
	if (!same && !listed) {
		if (preflight || state_changing(req->method)) {
			it_metrics_inc("imagetools_origin_refused_total", NULL, 1);
			it_resp_problem(req, 403, "origin-not-allowed",
					"Requests from this origin are not allowed; see allowed_origins.");
			return 1;
		}
		/* A cross-origin read without permission: answered, but without
		 * Access-Control-Allow-Origin the browser keeps it from the page. */
		return 0;
	}
	if (listed && !same) {
		it_resp_header(req, "Access-Control-Allow-Origin", "%s", origin);
		it_resp_header(req, "Vary", "Origin");
		if (!preflight)
			it_resp_header(req, "Access-Control-Expose-Headers", EXPOSE_HEADERS);
	}
	if (preflight) {
		it_resp_header(req, "Access-Control-Allow-Methods", ALLOW_METHODS);
		it_resp_header(req, "Access-Control-Allow-Headers", ALLOW_HEADERS);
		it_resp_header(req, "Access-Control-Max-Age", PREFLIGHT_MAX_AGE);
		it_resp_begin(req, 204, NULL);
		return 1;
	}
	return 0;
}

/* A second connection per request thread, for limits checked while the
 * thread's own connection is inside the request's transaction. */
static __thread PGconn *side_conn;

int it_guard_rate_check(const char *kind, const char *subject, int64_t per_minute, int64_t *retry_after)
{
	PGconn *conn, **connp;
	char labels[64];

	*retry_after = 0;
	if (per_minute <= 0)
		return 0;
	conn = it_db_thread_conn();
	connp = &conn;
	if (conn && PQtransactionStatus(conn) != PQTRANS_IDLE) {
		if (side_conn && it_db_broken(side_conn)) {
			PQfinish(side_conn);
			side_conn = NULL;
		}
		if (side_conn == NULL)
			side_conn = it_db_connect();
		connp = &side_conn;
	}
	if (*connp == NULL || it_ratelimit_take(connp, kind, subject, per_minute, retry_after) != 1)
		return 0;
	snprintf(labels, sizeof(labels), "limit=\"%s\"", kind);
	it_metrics_inc("imagetools_rate_limited_total", labels, 1);
	return 1;
}

int it_guard_rate(it_req *req, const char *kind, const char *subject, int64_t per_minute)
{
	int64_t retry = 0;
	char what[64];

	if (!it_guard_rate_check(kind, subject, per_minute, &retry))
		return 0;
	snprintf(what, sizeof(what), "Too many %s requests", kind);
	it_guard_rate_refuse(req, retry, what);
	return 1;
}

void it_guard_rate_refuse(it_req *req, int64_t retry_after, const char *what)
{
	json_object *ext = json_object_new_object();

	it_resp_header(req, "Retry-After", "%lld", (long long)retry_after);
	json_object_object_add(ext, "retry_after", json_object_new_int64(retry_after));
	it_resp_problem_ext(req, 429, "rate-limited", ext, "%s; try again in %lld seconds.", what,
			    (long long)retry_after);
	json_object_put(ext);
}

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

/* What a cross-origin page may send and read. A browser refuses the whole
 * request when its preflight asks for one header not listed here, and
 * upload libraries add theirs to every request: Dropzone and Fine Uploader
 * send Cache-Control and X-Requested-With (Fine Uploader also X-File-Name
 * and X-Mime-Type), jQuery File Upload Content-Range and
 * Content-Disposition for chunks, tus-js-client (and Uppy's tus plugin, and
 * FilePond's chunks) the tus headers, X-HTTP-Method-Override in place of
 * PATCH, and Upload-Complete with Upload-Draft-Interop-Version for the IETF
 * resumable upload draft. Last-Event-ID lets a polyfilled EventSource
 * resume; Authorization carries the metrics token; Range, If-Range and
 * If-None-Match make downloads resumable and cacheable. Listing a header
 * the API does not read costs nothing: the request is answered as if it
 * were not there. */
#define ALLOW_METHODS "GET, POST, PATCH, DELETE, OPTIONS"
#define ALLOW_HEADERS                                                                                              \
	"Content-Type, Last-Event-ID, Authorization, Cache-Control, X-Requested-With, X-File-Name, X-Mime-Type, "   \
	"Content-Range, Content-Disposition, Range, If-Range, If-None-Match, X-HTTP-Method-Override, "             \
	"Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, "     \
	"Upload-Concat, Upload-Name, Upload-Complete, Upload-Draft-Interop-Version"
/* Response headers a cross-origin page may read besides the CORS-safelisted
 * ones: where a new resource is (Location), when to retry (Retry-After),
 * download metadata, and the tus headers a resumable upload needs to go on
 * (its offset and length, the server's version, extensions and limits). */
#define EXPOSE_HEADERS                                                                                             \
	"Location, Retry-After, ETag, Content-Disposition, Content-Range, Upload-Offset, Upload-Length, "          \
	"Upload-Metadata, Upload-Expires, Upload-Complete, Tus-Resumable, Tus-Version, Tus-Extension, "            \
	"Tus-Max-Size, Tus-Checksum-Algorithm"
/* Browsers cap this anyway (Chromium: 2 h); ten minutes keeps a changed
 * allowed_origins effective soon. */
#define PREFLIGHT_MAX_AGE "600"

static int state_changing(const char *method)
{
	return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && strcmp(method, "OPTIONS") != 0;
}

int it_guard_request(it_req *req)
{
	const char *origin = it_req_env(req, "HTTP_ORIGIN");
	const char *host = it_req_env(req, "HTTP_HOST");
	int preflight = strcmp(req->method, "OPTIONS") == 0;
	it_origin_verdict verdict;

	/* tus discovery: an OPTIONS request to the resumable upload endpoint
	 * learns the protocol's version, extensions and limits, whether or
	 * not it is a CORS preflight. */
	if (preflight && strncmp(req->path, "/api/v1/uploads/tus", 19) == 0)
		it_h_tus_discovery_headers(req);

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
	verdict = it_origin_check(origin, origin ? strlen(origin) : 0, host, host ? strlen(host) : 0,
				  it_g.cfg.allowed_origins);
	if (verdict == IT_ORIGIN_ABSENT) {
		if (preflight) {
			/* Not a CORS preflight: say what the API speaks. */
			it_resp_header(req, "Allow", ALLOW_METHODS);
			it_resp_begin(req, 204, NULL);
			return 1;
		}
		return 0;
	}
	if (verdict == IT_ORIGIN_REFUSED) {
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
	if (verdict == IT_ORIGIN_LISTED) {
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

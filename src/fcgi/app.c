/* app.c: the route table of imagetools.fcgi and the dispatch of one request. */
#include "config.h"

#include "fcgi/app.h"

#include "db/metrics.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "fcgi/router.h"

#include <stdio.h>
#include <string.h>

it_app it_g;

static const it_route routes[] = {
	{"GET", "/api/v1/health", it_h_health, 0},
	{"POST", "/api/v1/sessions", it_h_session_create, 0},
	{"GET", "/api/v1/sessions/{id}", it_h_session_get, 0},
	{"DELETE", "/api/v1/sessions/{id}", it_h_session_delete, 0},
	{"GET", "/api/v1/session", it_h_session_self, 0},
	{"GET", "/api/v1/events", it_h_events_poll, 0},
	{"GET", "/api/v1/events/stream", it_h_events_stream, 0},
	{"GET", "/api/v1/sessions/{id}/images", it_h_session_images, 0},
	{"POST", "/api/v1/images", it_h_image_upload, IT_ROUTE_LONG_BODY},
	{"POST", "/api/v1/uploads/tus", it_h_tus_create, IT_ROUTE_LONG_BODY},
	{"GET", "/api/v1/uploads/tus/{id}", it_h_tus_head, 0},
	{"PATCH", "/api/v1/uploads/tus/{id}", it_h_tus_patch, IT_ROUTE_LONG_BODY},
	{"DELETE", "/api/v1/uploads/tus/{id}", it_h_tus_delete, 0},
	{"POST", "/api/v1/uploads/tus/{id}", it_h_tus_override, IT_ROUTE_LONG_BODY},
	{"GET", "/api/v1/images", it_h_images_list, 0},
	{"GET", "/api/v1/images/{id}", it_h_image_get, 0},
	{"PATCH", "/api/v1/images/{id}", it_h_image_patch, 0},
	{"DELETE", "/api/v1/images/{id}", it_h_image_delete, 0},
	{"GET", "/api/v1/images/{id}/file", it_h_image_file, 0},
	{"GET", "/api/v1/images/{id}/thumbnail", it_h_image_thumbnail, 0},
	{"POST", "/api/v1/operations", it_h_operation_create, 0},
	{"GET", "/api/v1/operations/{id}", it_h_operation_get, 0},
	{"POST", "/api/v1/operations/{id}/cancel", it_h_operation_cancel, 0},
	{"GET", "/api/v1/metrics", it_h_metrics, 0},
	{"GET", "/api/v1/presence", it_h_presence_get, 0},
	{"POST", "/api/v1/presence", it_h_presence_post, 0},
	{"DELETE", "/api/v1/presence", it_h_presence_delete, 0},
	{"POST", "/api/v1/tokens", it_h_token_create, 0},
	{"POST", "/api/v1/pairings", it_h_pairing_create, 0},
	{"POST", "/api/v1/pair", it_h_pair, 0},
	{"GET", "/api/v1/devices", it_h_devices_list, 0},
	{"DELETE", "/api/v1/devices/{id}", it_h_device_delete, 0},
};

int it_app_session_problem(it_req *req, int rc)
{
	switch (rc) {
	case 0: return 0;
	case 400: it_resp_problem(req, 400, "invalid-session-id", "The session id is malformed."); return 400;
	case 404: it_resp_problem(req, 404, "unknown-session", "No such session, or it has expired."); return 404;
	default:
		it_resp_header(req, "Retry-After", "5");
		it_resp_problem(req, 503, "database-unavailable", "The database cannot be reached; try again shortly.");
		return 503;
	}
}

/* Counts the answer by route pattern (never the raw path: ids would make
 * the label set unbounded) and status. */
static void count_response(const it_req *req)
{
	char labels[IT_METRICS_KEY_MAX];

	snprintf(labels, sizeof(labels), "route=\"%s\",status=\"%d\"", req->route ? req->route : "unmatched",
		 req->status);
	it_metrics_inc("imagetools_http_responses_total", labels, 1);
}

/* A refusal the web server made itself (its own 400, 411, 413 ...) comes
 * back here as an error document: lighttpd's server.error-handler and
 * Apache's ErrorDocument run a GET of the handler with REDIRECT_STATUS set
 * to the status they chose, and REQUEST_URI still names what the client
 * asked for. Answering it here keeps every refusal of the API in one format
 * (problem+json) whoever made it. REDIRECT_STATUS comes from the server
 * only (a client's headers arrive as HTTP_*); lighttpd sets it to 200 on
 * every request and Apache on its internal redirects, so only 400 to 599
 * marks an error document. Returns the status it answered with, or 0. */
static int web_server_refusal(it_req *req)
{
	const char *rs = it_req_env(req, "REDIRECT_STATUS");
	const char *slug = "refused-by-web-server", *detail = "The web server refused the request.";
	int64_t status;

	if (rs == NULL || it_parse_uint(rs, 999, &status) < 0 || status < 400 || status > 599)
		return 0;
	switch (status) {
	case 400:
		slug = "bad-request";
		detail = "The web server could not parse the request.";
		break;
	case 408:
		slug = "too-slow";
		detail = "The request did not arrive in time.";
		break;
	case 411:
		slug = "length-required";
		detail = "The web server needs this request's length (Content-Length) here.";
		break;
	case 413:
		slug = "request-too-large";
		detail = "The request is larger than the web server accepts.";
		break;
	case 414:
		slug = "uri-too-long";
		detail = "The request's URL is too long.";
		break;
	case 431:
		slug = "headers-too-large";
		detail = "The request's header block is too large.";
		break;
	case 502:
	case 503:
	case 504:
		slug = "backend-unavailable";
		detail = "The web server cannot reach the application right now; try again shortly.";
		it_resp_header(req, "Retry-After", "5");
		break;
	default: break;
	}
	req->route = "(web server)";
	if (status == 413)
		it_resp_problem(req, 413, slug, "%s Uploads are limited to %lld bytes.", detail,
				(long long)it_g.cfg.max_request_bytes);
	else
		it_resp_problem(req, (int)status, slug, "%s", detail);
	return (int)status;
}

const it_route *it_app_route(it_req *req)
{
	const it_route *route = NULL;
	char allow[128];

	it_req_body_limits(req, it_g.cfg.upload_body_timeout, it_g.cfg.upload_min_rate, it_g.cfg.upload_body_max_time);
	/* The guard first: a listed origin's page then gets CORS headers on the
	 * web server's refusal too, and can read why its upload failed. */
	if (it_guard_request(req) || web_server_refusal(req))
		goto answered;
	switch (it_router_match(routes, sizeof(routes) / sizeof(routes[0]), req->method, req->path, req, &route, allow,
				sizeof(allow))) {
	case IT_MATCH_OK: return route;
	case IT_MATCH_BAD_METHOD:
		it_resp_header(req, "Allow", "%s", allow);
		it_resp_problem(req, 405, "method-not-allowed", "%s is not allowed here; allowed: %s.", req->method,
				allow);
		break;
	default: it_resp_problem(req, 404, "not-found", "No such resource."); break;
	}
answered:
	count_response(req);
	return NULL;
}

void it_app_run(it_req *req, const it_route *route)
{
	route->handler(req);
	count_response(req);
}

int it_app_refuse_busy(it_req *req, int status, int64_t retry_after)
{
	char labels[32];

	it_resp_header(req, "Retry-After", "%lld", (long long)retry_after);
	if (status == 429)
		it_resp_problem(req, 429, "too-many-uploads",
				"This address has %lld uploads in progress already; try again in %lld seconds.",
				(long long)it_g.cfg.max_uploads_per_address, (long long)retry_after);
	else
		it_resp_problem(req, 503, "server-busy",
				"Every upload slot of the server is taken; try again in %lld seconds.",
				(long long)retry_after);
	snprintf(labels, sizeof(labels), "status=\"%d\"", status);
	it_metrics_inc("imagetools_upload_errors_total", labels, 1);
	count_response(req);
	return status;
}

void it_app_dispatch(it_req *req)
{
	const it_route *route = it_app_route(req);

	if (route)
		it_app_run(req, route);
}

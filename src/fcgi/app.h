/* app.h: process-wide state of imagetools.fcgi, shared by its handlers. */
#ifndef IT_FCGI_APP_H
#define IT_FCGI_APP_H

#include "common/config.h"
#include "fcgi/request.h"
#include "fcgi/router.h"

#include <signal.h>
#include <time.h>

struct it_hub;

typedef struct it_app {
	it_config cfg;
	int cgi;       /* plain CGI: one request per process */
	int listen_fd; /* FastCGI listening socket */
	time_t started;
	struct it_hub *hub; /* NULL in CGI mode */
	volatile sig_atomic_t stopping;
} it_app;

/* The one instance, set up by main() before any request is served. */
extern it_app it_g;

/* Answers one request: it_app_route, then it_app_run. */
void it_app_dispatch(it_req *req);

/* The first half of a request, cheap enough for the threads that accept
 * requests: sets the body deadline from the configuration, runs the guard
 * (CORS preflight, Origin) and the router. Returns the route whose handler
 * must answer, or NULL when the request is answered (and counted) already:
 * refused by the guard, 404 or 405. */
const it_route *it_app_route(it_req *req);

/* The second half: runs the handler of route (from it_app_route) and counts
 * the answer. */
void it_app_run(it_req *req, const it_route *route);

/* Answers a request with a long body that the server cannot take now, before
 * reading any of its body, and counts it: 429 "too-many-uploads" when its
 * address has max_uploads_per_address uploads in flight, 503 "server-busy"
 * when every upload thread and queue slot is taken. Both carry Retry-After:
 * retry_after seconds. Returns status, the status it answered with. */
int it_app_refuse_busy(it_req *req, int status, int64_t retry_after);

/* Sends the problem for a store outcome (400 malformed session id, 404 unknown
 * session, anything else 503 database) and returns the status it answered
 * with, or returns 0 when rc is 0. */
int it_app_session_problem(it_req *req, int rc);

#endif

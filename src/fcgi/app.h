/* app.h: process-wide state of imagetools.fcgi, shared by its handlers. */
#ifndef IT_APP_H
#define IT_APP_H

#include "common/config.h"
#include "fcgi/request.h"

#include <signal.h>
#include <time.h>

struct it_hub;

typedef struct it_app {
	it_config cfg;
	int cgi;		/* plain CGI: one request per process */
	int listen_fd;		/* FastCGI listening socket */
	time_t started;
	struct it_hub *hub;	/* NULL in CGI mode */
	volatile sig_atomic_t stopping;
} it_app;

/* The one instance, set up by main() before any request is served. */
extern it_app it_g;

/* Answers one request: routing, 404/405, dispatch. */
void it_app_dispatch(it_req *req);

/* Sends the problem for a store outcome (400 malformed session id, 404 unknown
 * session, 503 database) and returns 1, or returns 0 when rc is 0. */
int it_app_session_problem(it_req *req, int rc);

#endif

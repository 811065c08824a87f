/* router.h: maps a method and a path such as /api/v1/images/{id}/file to a handler. */
#ifndef IT_FCGI_ROUTER_H
#define IT_FCGI_ROUTER_H

#include "fcgi/request.h"

/* A handler answers the request and returns nothing: every outcome, errors
 * included, is a response it has written. */
typedef void (*it_handler)(it_req *req);

/* Route flags. IT_ROUTE_LONG_BODY: the handler reads a request body that
 * may be large and take long to arrive (uploads). In FastCGI mode such a
 * request is served by the upload threads, never by the threads that accept
 * requests, so that slow uploads cannot hold every thread short requests
 * need. */
#define IT_ROUTE_LONG_BODY 1u

typedef struct it_route {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* literal segments and {name} placeholders */
	it_handler handler;
	unsigned flags; /* IT_ROUTE_* */
} it_route;

enum it_match { IT_MATCH_OK = 0, IT_MATCH_NOT_FOUND = 404, IT_MATCH_BAD_METHOD = 405 };

/* Finds the route for method and path. On IT_MATCH_OK, *found is set and the
 * placeholders' values are copied into req->params (in pattern order).
 * On IT_MATCH_BAD_METHOD the methods the path allows are written to allow
 * (comma-separated, NUL-terminated, truncated to allowlen). A HEAD request
 * matches GET routes. Placeholder values are one non-empty segment of at
 * most 127 bytes. */
enum it_match it_router_match(const it_route *routes, unsigned nroutes, const char *method, const char *path,
			      it_req *req, const it_route **found, char *allow, unsigned allowlen);

#endif

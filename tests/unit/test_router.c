/* test_router.c: unit tests for fcgi/router. */
#include "config.h"

#include "fcgi/router.h"
#include "tap.h"

static void h1(it_req *r)
{
	(void)r;
}
static void h2(it_req *r)
{
	(void)r;
}
static void h3(it_req *r)
{
	(void)r;
}
static void h4(it_req *r)
{
	(void)r;
}

static const it_route routes[] = {
	{"GET", "/api/v1/health", h1, 0},
	{"GET", "/api/v1/sessions/{id}", h2, 0},
	{"DELETE", "/api/v1/sessions/{id}", h3, 0},
	{"GET", "/api/v1/images/{id}/file", h4, 0},
};
#define N (sizeof(routes) / sizeof(routes[0]))

int main(void)
{
	it_req req;
	const it_route *r = NULL;
	char allow[64];

	memset(&req, 0, sizeof(req));
	is_int(it_router_match(routes, N, "GET", "/api/v1/health", &req, &r, allow, sizeof(allow)), IT_MATCH_OK,
	       "literal route");
	ok(r && r->handler == h1, "literal handler");
	is_int(it_router_match(routes, N, "GET", "/api/v1/health/", &req, &r, allow, sizeof(allow)), IT_MATCH_OK,
	       "one trailing slash tolerated");
	is_int(it_router_match(routes, N, "GET", "/api/v1/sessions/abc", &req, &r, allow, sizeof(allow)), IT_MATCH_OK,
	       "placeholder route");
	ok(r && r->handler == h2, "placeholder handler");
	is_str(req.params[0], "abc", "placeholder value");
	is_int(req.nparams, 1, "one placeholder");
	is_int(it_router_match(routes, N, "DELETE", "/api/v1/sessions/abc", &req, &r, allow, sizeof(allow)),
	       IT_MATCH_OK, "same path, other method");
	ok(r && r->handler == h3, "method picks the handler");
	is_int(it_router_match(routes, N, "POST", "/api/v1/sessions/abc", &req, &r, allow, sizeof(allow)),
	       IT_MATCH_BAD_METHOD, "405 for a known path");
	is_str(allow, "GET, DELETE", "Allow lists the methods");
	is_int(it_router_match(routes, N, "HEAD", "/api/v1/health", &req, &r, allow, sizeof(allow)), IT_MATCH_OK,
	       "HEAD matches GET");
	is_int(it_router_match(routes, N, "GET", "/api/v1/sessions/", &req, &r, allow, sizeof(allow)),
	       IT_MATCH_NOT_FOUND, "empty placeholder does not match");
	is_int(it_router_match(routes, N, "GET", "/api/v1/sessions/a/b", &req, &r, allow, sizeof(allow)),
	       IT_MATCH_NOT_FOUND, "placeholder is one segment");
	is_int(it_router_match(routes, N, "GET", "/api/v1/images/x/file", &req, &r, allow, sizeof(allow)), IT_MATCH_OK,
	       "placeholder in the middle");
	ok(r && r->handler == h4, "middle placeholder handler");
	is_int(it_router_match(routes, N, "GET", "/api/v1/images/x/filex", &req, &r, allow, sizeof(allow)),
	       IT_MATCH_NOT_FOUND, "suffix must match exactly");
	is_int(it_router_match(routes, N, "GET", "/nope", &req, &r, allow, sizeof(allow)), IT_MATCH_NOT_FOUND,
	       "unknown path");
	{
		char longseg[300];
		memset(longseg, 'a', sizeof(longseg));
		memcpy(longseg, "/api/v1/sessions/", 17);
		longseg[sizeof(longseg) - 1] = '\0';
		is_int(it_router_match(routes, N, "GET", longseg, &req, &r, allow, sizeof(allow)), IT_MATCH_NOT_FOUND,
		       "over-long placeholder refused");
	}
	return tap_done();
}

/* router.c: maps a method and a path to a handler. */
#include "config.h"

#include "fcgi/router.h"

#include <stdio.h>
#include <string.h>

/* Matches path against pattern segment by segment. When req is not NULL the
 * placeholder values are stored in it. Returns 1 on a match. */
static int match_path(const char *pattern, const char *path, it_req *req)
{
	const char *p = pattern, *s = path;
	int n = 0;

	while (*p && *s) {
		if (*p == '{') {
			const char *pend = strchr(p, '}');
			const char *send = strchr(s, '/');
			size_t len = send ? (size_t)(send - s) : strlen(s);
			if (pend == NULL || len == 0 || len >= sizeof(req->param_store[0]) || n >= IT_ROUTE_MAX_PARAMS)
				return 0;
			if (req) {
				memcpy(req->param_store[n], s, len);
				req->param_store[n][len] = '\0';
				req->params[n] = req->param_store[n];
			}
			n++;
			p = pend + 1;
			s += len;
			continue;
		}
		if (*p != *s)
			return 0;
		p++;
		s++;
	}
	/* A single trailing slash on the request is tolerated. */
	if (*p == '\0' && (*s == '\0' || (s[0] == '/' && s[1] == '\0'))) {
		if (req)
			req->nparams = n;
		return 1;
	}
	return 0;
}

enum it_match it_router_match(const it_route *routes, unsigned nroutes, const char *method, const char *path,
			      it_req *req, const it_route **found, char *allow, unsigned allowlen)
{
	int path_known = 0;
	size_t alen = 0;
	int is_head = strcmp(method, "HEAD") == 0;

	if (allowlen)
		allow[0] = '\0';
	for (unsigned i = 0; i < nroutes; i++) {
		if (!match_path(routes[i].pattern, path, NULL))
			continue;
		if (strcmp(routes[i].method, method) == 0 || (is_head && strcmp(routes[i].method, "GET") == 0)) {
			match_path(routes[i].pattern, path, req);
			req->route = routes[i].pattern;
			*found = &routes[i];
			return IT_MATCH_OK;
		}
		path_known = 1;
		if (allowlen && !strstr(allow, routes[i].method)) {
			int w = snprintf(allow + alen, allowlen - alen, "%s%s", alen ? ", " : "", routes[i].method);
			if (w > 0 && (size_t)w < allowlen - alen)
				alen += (size_t)w;
		}
	}
	return path_known ? IT_MATCH_BAD_METHOD : IT_MATCH_NOT_FOUND;
}

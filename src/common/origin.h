/* origin.h: the one Origin rule of every server: whether a request's Origin may use the API or open a WebSocket (docs/security.md). */
#ifndef IT_COMMON_ORIGIN_H
#define IT_COMMON_ORIGIN_H

#include <stddef.h>

/* What it_origin_check found. Every value but IT_ORIGIN_REFUSED allows the
 * request; IT_ORIGIN_LISTED is the one that needs CORS headers. */
typedef enum it_origin_verdict {
	IT_ORIGIN_ABSENT,  /* no Origin (or an empty one): not a browser's request */
	IT_ORIGIN_SAME,	   /* the page is on this site */
	IT_ORIGIN_LISTED,  /* another origin that allowed_origins lets in */
	IT_ORIGIN_REFUSED, /* anything else, null and malformed origins included */
} it_origin_verdict;

/* The rule, the same for imagetools.fcgi (src/fcgi/guard.c) and the
 * WebSocket bridge. origin is the Origin header (olen bytes, NULL when the
 * request has none), host the Host header (hlen bytes, NULL when absent),
 * allowed the allowed_origins setting (space-separated; NULL is empty).
 * Neither header needs to be NUL-terminated; nothing outside them is read
 * and nothing is allocated.
 *
 * 1. No Origin: IT_ORIGIN_ABSENT. Browsers send Origin on every
 *    cross-origin request, every POST and every WebSocket upgrade, so a
 *    request without one comes from a program (curl, the CLI, the Android
 *    app), which the check is not about: it could send any Origin it likes.
 *    An empty Origin (olen 0) is the same: no browser sends one, and
 *    lighttpd drops empty headers before imagetools.fcgi or a proxied
 *    bridge would see them, so every path must treat it as absent.
 * 2. An Origin that is not one "scheme://host[:port]" is refused. That
 *    includes "null" (sandboxed frames, file: pages, some cross-site
 *    redirects and data: URLs all send it, so it names no one), a path,
 *    user info and a list of several origins.
 * 3. Same origin, IT_ORIGIN_SAME: an http or https Origin whose host equals
 *    the Host header's name (ASCII case-insensitively, one trailing dot
 *    ignored on either side) and whose port equals Host's port. The scheme
 *    is ignored, and the default ports 80 and 443 (written or implied by
 *    the scheme, or a Host without port) count as one: behind a TLS proxy
 *    the browser is on https://site (port 443) while this server is
 *    reached over http, often with Host: site, and neither the request's
 *    scheme nor its port is known here. Nothing is lost by it: a page on a
 *    default port of this host name is served by whoever serves this site.
 *    A same-origin page is allowed whatever allowed_origins says.
 * 4. Listed, IT_ORIGIN_LISTED: an entry of allowed_origins that is the
 *    same origin (scheme and host ASCII case-insensitive, one trailing dot
 *    ignored, the port compared after the scheme's default is filled in:
 *    http 80, https 443), or a scheme wildcard "<scheme>://" followed by a
 *    star for a scheme other than http and https, which then allows every
 *    well-formed origin of that scheme (Firefox gives every installation of
 *    an add-on its own random moz-extension:// host). Web pages can only
 *    present http(s) origins, so such a wildcard lets in browser extensions
 *    and apps, never a site. A bare "*", "http://" or "https://" with a
 *    star, "null" and malformed entries allow nothing.
 * 5. Anything else: IT_ORIGIN_REFUSED. */
it_origin_verdict it_origin_check(const char *origin, size_t olen, const char *host, size_t hlen,
				  const char *allowed);

/* Rule 3 alone: 1 when origin (olen bytes) is an http(s) origin naming the
 * same host and port as host (hlen bytes; NULL allowed: 0), else 0. */
int it_origin_same(const char *origin, size_t olen, const char *host, size_t hlen);

/* Rule 4 alone: 1 when origin (olen bytes) is a well-formed origin that
 * allowed (NULL allowed: 0) lets in, else 0. */
int it_origin_listed(const char *allowed, const char *origin, size_t olen);

/* "absent", "same", "listed" or "refused" (the words of
 * tests/integration/origin_cases.txt); "?" for anything else. Static. */
const char *it_origin_verdict_name(it_origin_verdict v);

#endif

/* origin.h: the one Origin and CORS rule of every server: whether a request's Origin may use the API or open a
 * WebSocket, and the CORS answer (docs/security.md). */
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
it_origin_verdict it_origin_check(const char *origin, size_t olen, const char *host, size_t hlen, const char *allowed);

/* Rule 3 alone: 1 when origin (olen bytes) is an http(s) origin naming the
 * same host and port as host (hlen bytes; NULL allowed: 0), else 0. */
int it_origin_same(const char *origin, size_t olen, const char *host, size_t hlen);

/* Rule 4 alone: 1 when origin (olen bytes) is a well-formed origin that
 * allowed (NULL allowed: 0) lets in, else 0. */
int it_origin_listed(const char *allowed, const char *origin, size_t olen);

/* "absent", "same", "listed" or "refused" (the words of
 * tests/integration/origin_cases.txt); "?" for anything else. Static. */
const char *it_origin_verdict_name(it_origin_verdict v);

/* ------------------------------------------------------------------ CORS
 *
 * What a cross-origin page may send and read, for imagetools.fcgi's guard
 * (src/fcgi/guard.c) and the bridge's SSE and long-poll alike. A browser
 * refuses the whole request when its preflight asks for one header not
 * listed here, and upload libraries add theirs to every request: Dropzone
 * and Fine Uploader send Cache-Control and X-Requested-With (Fine Uploader
 * also X-File-Name and X-Mime-Type), jQuery File Upload Content-Range and
 * Content-Disposition for chunks, tus-js-client (and Uppy's tus plugin, and
 * FilePond's chunks) the tus headers, X-HTTP-Method-Override in place of
 * PATCH, and Upload-Complete with Upload-Draft-Interop-Version for the IETF
 * resumable upload draft. Last-Event-ID lets a polyfilled EventSource
 * resume; Authorization carries the session credential and the metrics
 * token; Range, If-Range and If-None-Match make downloads resumable and
 * cacheable. Listing a header the API does not read costs nothing: the
 * request is answered as if it were not there. */
#define IT_CORS_ALLOW_METHODS "GET, POST, PATCH, DELETE, OPTIONS"
#define IT_CORS_ALLOW_HEADERS                                                                                     \
	"Content-Type, Last-Event-ID, Authorization, Cache-Control, X-Requested-With, X-File-Name, X-Mime-Type, " \
	"Content-Range, Content-Disposition, Range, If-Range, If-None-Match, X-HTTP-Method-Override, "            \
	"Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, "    \
	"Upload-Concat, Upload-Name, Upload-Complete, Upload-Draft-Interop-Version"
/* Response headers a cross-origin page may read besides the CORS-safelisted
 * ones: where a new resource is (Location), when to retry (Retry-After),
 * download metadata, and the tus headers a resumable upload needs to go on
 * (its offset and length, the server's version, extensions and limits). */
#define IT_CORS_EXPOSE_HEADERS                                                                            \
	"Location, Retry-After, ETag, Content-Disposition, Content-Range, Upload-Offset, Upload-Length, " \
	"Upload-Metadata, Upload-Expires, Upload-Complete, Tus-Resumable, Tus-Version, Tus-Extension, "   \
	"Tus-Max-Size, Tus-Checksum-Algorithm"
/* Browsers cap this anyway (Chromium: 2 h); ten minutes keeps a changed
 * allowed_origins effective soon. */
#define IT_CORS_MAX_AGE "600"

/* The most headers it_cors_decide adds. */
#define IT_CORS_MAX_HEADERS 5

/* One header to add: name and value are static strings, except the value of
 * Access-Control-Allow-Origin, which points into the request's Origin;
 * value_len bytes, not NUL-terminated. */
typedef struct it_cors_header {
	const char *name;
	const char *value;
	size_t value_len;
} it_cors_header;

/* What to answer, as it_cors_decide found it. */
typedef struct it_cors {
	/* 0: the request goes on to its handler, with h added to its answer;
	 * 204: it is answered here, 204 with h and no body (a preflight, or an
	 * OPTIONS that is not one); 403: it is refused with the problem
	 * origin-not-allowed (h is empty). */
	int status;
	unsigned n;
	it_cors_header h[IT_CORS_MAX_HEADERS];
} it_cors;

/* The CORS half of the rule, the same for every server. v is what
 * it_origin_check said of the request; method (mlen bytes) its method;
 * origin (olen bytes, NULL when absent) its Origin header, echoed in
 * Access-Control-Allow-Origin. Nothing is allocated.
 *
 * - No Origin: an OPTIONS is not a CORS preflight; 204 with Allow (what the
 *   API speaks). Anything else goes on, without CORS headers.
 * - Refused: a preflight, and any method but GET and HEAD, is refused (403):
 *   a state-changing request from a page this site does not trust must
 *   never run. A GET or HEAD goes on without CORS headers: it changes
 *   nothing, and without Access-Control-Allow-Origin the browser keeps the
 *   answer from the page.
 * - Listed: Access-Control-Allow-Origin (the Origin itself) and Vary:
 *   Origin, and on an answer that is not a preflight's,
 *   Access-Control-Expose-Headers.
 * - Same origin or listed, OPTIONS: the preflight's answer, 204 with
 *   Access-Control-Allow-Methods, -Allow-Headers and -Max-Age. */
void it_cors_decide(it_origin_verdict v, const char *method, size_t mlen, const char *origin, size_t olen,
		    it_cors *out);

#endif

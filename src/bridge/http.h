/* http.h: the bridge's parser for the HTTP/1.1 request head of a WebSocket upgrade (no allocation). */
#ifndef IT_BRIDGE_HTTP_H
#define IT_BRIDGE_HTTP_H

#include <stddef.h>

typedef struct it_http_header {
	const char *name, *value; /* point into the caller's buffer, not NUL-terminated */
	size_t name_len, value_len;
} it_http_header;

typedef struct it_http_request {
	const char *method, *target;
	size_t method_len, target_len;
	int minor_version;	 /* HTTP/1.<minor_version> */
	it_http_header *headers; /* caller-owned array */
	size_t num_headers;	 /* in: capacity of headers; out: how many were found */
} it_http_request;

/* Parses a request head from buf (len bytes, the caller's buffer; nothing is
 * copied). Returns the length of the head including its closing blank line,
 * -2 when the head is not complete yet (read more, within the caller's size
 * limit), or -1 when it is malformed: a bad request line, a version other
 * than HTTP/1.x, a header line without a colon or with a name that is not a
 * token, obsolete line folding, control characters, or more headers than
 * req->num_headers. Values have surrounding blanks removed. */
int it_http_parse_request(const char *buf, size_t len, it_http_request *req);

/* Returns the first header called name (case-insensitive), or NULL. */
const it_http_header *it_http_find(const it_http_request *req, const char *name);

/* Returns 1 when the comma-separated value contains token (case-insensitive),
 * as in "Connection: keep-alive, Upgrade". */
int it_http_has_token(const char *value, size_t value_len, const char *token);

#endif

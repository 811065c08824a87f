/* request.h: one HTTP request as the FastCGI or CGI front sees it, and its response.
 *
 * Return convention of the FastCGI layer (src/fcgi/, docs/layout.md):
 * - Handlers (handlers.h) return void: the response they wrote is their
 *   outcome.
 * - A function that answers the request, or may, returns 0 when it did not
 *   answer and the caller goes on, or the HTTP status it answered with
 *   (it_guard_request, it_guard_rate, it_guard_rate_refuse,
 *   it_app_session_problem, it_app_refuse_busy, it_auth_principal,
 *   it_auth_answer, it_auth_blocked, it_ingest_answer ...). One that
 *   decides without answering returns 0 or the status the caller must
 *   answer with (it_req_init, it_router_match, it_pool_submit,
 *   it_guard_rate_check, it_auth_resolve). A caller tests "!= 0", never
 *   "< 0". Functions that answer and return what they read return it, or
 *   NULL after answering (it_req_read_json).
 * - Everything else returns 0 (or a count, a length or a descriptor) or -1,
 *   and errno, err or it_ingest_error says why: the it_resp_* writers
 *   report the write, not a decision. Readers and lookups name their other
 *   answers: it_req_read (IT_REQ_TOO_SLOW), it_req_query (IT_QUERY_ABSENT,
 *   IT_QUERY_BAD); it_auth_credential returns the credential's length, 0
 *   for none or -1 for a malformed one. it_auth_allows,
 *   it_ingest_sniff_head and it_listen_release are predicates. */
#ifndef IT_FCGI_REQUEST_H
#define IT_FCGI_REQUEST_H

#include "common/buf.h"

#include <fcgiapp.h>
#include <json-c/json.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define IT_ROUTE_MAX_PARAMS 4

/* What it_req_read returns when the request body came in slower than its
 * deadline allows (it_req_body_limits). */
#define IT_REQ_TOO_SLOW (-2)

typedef struct it_req {
	FCGX_Request *fcgx; /* NULL in CGI mode: stdin/stdout/environ are used */
	char **envp;

	const char *method;	 /* "GET", ... (never NULL) */
	char path[1024];	 /* path below url_prefix, without the query */
	const char *url_prefix;	 /* the site's prefix that was stripped ("" when none) */
	const char *query;	 /* raw query string, "" when absent */
	const char *remote_addr; /* client address as the web server saw it */
	int64_t content_length;	 /* -1: unknown, the body ends where the server says
				  * (FastCGI's empty stdin record; in CGI mode only
				  * for a chunked body, see request.c); CGI mode
				  * without CONTENT_LENGTH otherwise has 0 */
	double started;		 /* it_clock_s() when the request began */

	/* The deadline of the request body (it_req_body_limits), kept by
	 * it_req_read: the clock starts at the first read. */
	int64_t body_grace_s;
	int64_t body_min_rate; /* bytes per second; 0: no deadline */
	int64_t body_cap_s;    /* 0: no cap */
	int64_t body_received; /* bytes read so far */
	int64_t body_started;  /* it_clock_ms() at the first read */
	int body_clock;	       /* body_started is set */
	int body_too_slow;     /* the deadline passed: every later read fails */

	/* Filled by the router. */
	const char *route;
	const char *params[IT_ROUTE_MAX_PARAMS];
	char param_store[IT_ROUTE_MAX_PARAMS][128];
	int nparams;

	/* Response state. */
	int status;
	int headers_sent;
	int detached; /* the connection now belongs to the hub */
	int64_t bytes_out;
	it_buf headers;	   /* extra "Name: value\r\n" lines, bounded */
	char log_note[96]; /* short text appended to the access log line */
} it_req;

/* Binds req to an accepted FastCGI request, or to the CGI environment when
 * fcgx is NULL. Returns 0, or 400 when the request line is unusable (too long
 * a path, missing method). */
int it_req_init(it_req *req, FCGX_Request *fcgx, const char *url_prefix);

/* Releases what it_req_init took and writes the access log line. */
void it_req_finish(it_req *req);

/* Returns a CGI variable (REQUEST_METHOD, HTTP_LAST_EVENT_ID, ...) or NULL. */
const char *it_req_env(const it_req *req, const char *name);

/* Gives the request body a deadline, in the manner of Apache mod_reqtimeout's
 * "body=grace,MinRate=min_rate": from the first read, the body may take
 * grace_s seconds plus one second for every min_rate bytes received so far,
 * and never more than cap_s seconds in all (0: no cap). min_rate 0 switches
 * the deadline off (the default after it_req_init). A sender that falls
 * behind holds its thread for a bounded time only. */
void it_req_body_limits(it_req *req, int64_t grace_s, int64_t min_rate, int64_t cap_s);

/* The time, in milliseconds after its first read, by which a body of which
 * received bytes have arrived must have gone on arriving (see
 * it_req_body_limits). INT64_MAX when min_rate is 0; saturates instead of
 * overflowing. Exposed for the unit test. */
int64_t it_req_body_allowance_ms(int64_t grace_s, int64_t min_rate, int64_t cap_s, int64_t received);

/* Reads up to n bytes of the request body, waiting until n bytes, the end of
 * the body, or the body's deadline. Returns bytes read, 0 at the end, -1 on
 * error, or IT_REQ_TOO_SLOW when the deadline passed with nothing read (then
 * every later call returns IT_REQ_TOO_SLOW at once). */
ssize_t it_req_read(it_req *req, void *buf, size_t n);

/* Reads and drops the rest of the request body (bounded by max bytes and by
 * the body's deadline). Returns 0, or -1 when more than max bytes remained,
 * the deadline passed, or on error. */
int it_req_drain(it_req *req, int64_t max);

/* Adds a response header (formatted "Name: value"). CR and LF in the value
 * are replaced, so client text can never split a header. Returns 0 or -1
 * when the header block is full. */
int it_resp_header(it_req *req, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sends the status line and headers (with content_type unless NULL). Must
 * come before any body bytes; later calls do nothing. Returns 0 or -1. */
int it_resp_begin(it_req *req, int status, const char *content_type);

/* Formats the status line and headers (as it_resp_begin would send them)
 * into out, for a response that is written by other means (the hub). Returns
 * 0, or -1 when out is too small. */
int it_resp_head(it_req *req, int status, const char *content_type, it_buf *out);

/* Writes body bytes (starting the response with 200 if not yet begun).
 * Returns 0 or -1 when the client is gone. */
int it_resp_write(it_req *req, const void *p, size_t n);
int it_resp_puts(it_req *req, const char *s);

/* Pushes buffered bytes to the web server now. Returns 0 or -1. */
int it_resp_flush(it_req *req);

/* Sends obj as a complete application/json response with status. Does not
 * take ownership of obj. Returns 0 or -1. */
int it_resp_json(it_req *req, int status, json_object *obj);

/* Sends an RFC 9457 application/problem+json response: type is a short slug
 * (turned into "urn:imagetools:problem:<slug>"), detail a sentence for
 * humans (may be NULL), and ext extra members merged into the body (may be
 * NULL; not owned). Returns 0 or -1. */
int it_resp_problem_ext(it_req *req, int status, const char *slug, json_object *ext, const char *detail, ...)
	__attribute__((format(printf, 5, 6)));

/* it_resp_problem(req, status, slug, detail, ...): it_resp_problem_ext
 * without extra members. A macro, so that the format is still checked and
 * the variadic forwarding is written once. */
#define it_resp_problem(req, status, slug, ...) it_resp_problem_ext(req, status, slug, NULL, __VA_ARGS__)

/* The reason phrase of an HTTP status ("Not Found"), "" when unknown. */
const char *it_http_reason(int status);

/* What it_req_query returns when the key is absent, and when its value is
 * malformed or too long. */
#define IT_QUERY_ABSENT (-1)
#define IT_QUERY_BAD (-2)

/* Finds key in an application/x-www-form-urlencoded query and decodes its
 * value into out (NUL-terminated). Returns the decoded length,
 * IT_QUERY_ABSENT when the key is absent, or IT_QUERY_BAD when the value is
 * malformed or longer than outlen-1. */
int it_req_query(const char *query, const char *key, char *out, size_t outlen);

/* Parses a non-negative decimal integer no larger than max. Returns 0 or -1. */
int it_parse_uint(const char *s, int64_t max, int64_t *out);

/* Reads a request body of at most max bytes that must be one JSON object
 * nested at most depth levels. Returns the object (json_object_put it), or
 * NULL after answering 413 body-too-large or 400 bad-json. */
json_object *it_req_read_json(it_req *req, size_t max, int depth);

#endif

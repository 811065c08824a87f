/* test_request.c: unit tests for fcgi/request: responses, problem+json, query parsing. */
#include "config.h"

#include "fcgi/request.h"
#include "capture.h"
#include "tap.h"

#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char captured[65536];

static int run_void(it_req *req, void *arg)
{
	void (*fn)(it_req *) = *(void (**)(it_req *))arg;

	fn(req);
	return 0;
}

/* Runs fn on a GET of uri; leaves what it wrote in captured. */
static void capture(void (*fn)(it_req *), const char *uri)
{
	setenv("REQUEST_METHOD", "GET", 1);
	setenv("REQUEST_URI", uri, 1);
	setenv("REMOTE_ADDR", "127.0.0.1", 1);
	capture_cgi(run_void, &fn, captured, sizeof(captured));
}

static void send_problem(it_req *req)
{
	it_resp_problem(req, 404, "unknown-session", "No session %s.", "<x>\"y\"");
}

static void send_header_injection(it_req *req)
{
	it_resp_header(req, "X-Test", "a\r\nSet-Cookie: evil=1");
	it_resp_begin(req, 204, NULL);
}

static void send_json(it_req *req)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "a", json_object_new_string("</script>"));
	it_resp_json(req, 201, o);
	json_object_put(o);
}

static void check_path(it_req *req)
{
	is_str(req->path, "/api/v1/health", "path excludes the query");
	is_str(req->query, "x=1&y=2", "query after '?'");
}

/* ------------------------------------------------------------------ body deadline */

/* One FastCGI record header (version 1, request id 1). */
static size_t fcgi_record(unsigned char *out, int type, const void *content, size_t len)
{
	out[0] = 1;
	out[1] = (unsigned char)type;
	out[2] = 0;
	out[3] = 1;
	out[4] = (unsigned char)(len >> 8);
	out[5] = (unsigned char)len;
	out[6] = 0;
	out[7] = 0;
	if (len)
		memcpy(out + 8, content, len);
	return 8 + len;
}

struct web_server {
	char path[108];
	int end_body; /* send the empty stdin record that ends the body */
	int fd;	      /* the connection, kept open until the test is done */
};

/* Plays the web server: one request whose body ("hello" then "world") comes
 * in two records written at once, so that libfcgi reads both in one read()
 * and the second waits in its private buffer. Then the connection stays
 * quiet: only the deadline or the end record may end the read. */
static void *web_server(void *arg)
{
	struct web_server *w = arg;
	static const unsigned char begin[8] = {0, 1, 0, 0, 0, 0, 0, 0}; /* responder, no keep-conn */
	static const unsigned char params[] = {14,  4,	 'R', 'E', 'Q', 'U', 'E', 'S', 'T', '_',
					       'M', 'E', 'T', 'H', 'O', 'D', 'P', 'O', 'S', 'T'};
	unsigned char buf[256];
	size_t n = 0;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w->path);
	w->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(w->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return NULL;
	n += fcgi_record(buf + n, 1, begin, sizeof(begin));
	n += fcgi_record(buf + n, 4, params, sizeof(params));
	n += fcgi_record(buf + n, 4, NULL, 0);
	n += fcgi_record(buf + n, 5, "hello", 5);
	n += fcgi_record(buf + n, 5, "world", 5);
	if (w->end_body)
		n += fcgi_record(buf + n, 5, NULL, 0);
	if (write(w->fd, buf, n) != (ssize_t)n)
		return NULL;
	return NULL;
}

/* Reads a FastCGI body through it_req_read with a deadline of grace 0 and a
 * rate of 1000 bytes per second (10 bytes: 10 ms). Returns what the reads gave, joined, with the
 * last return value in *last. */
static void fcgi_body(int end_body, char *got, size_t gotlen, ssize_t *last)
{
	struct web_server w = {.end_body = end_body, .fd = -1};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	FCGX_Request fcgx;
	pthread_t t;
	it_req req;
	size_t o = 0;
	int lfd;

	snprintf(w.path, sizeof(w.path), "/tmp/it-req-%d.sock", (int)getpid());
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", w.path);
	unlink(w.path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 1) != 0)
		return;
	FCGX_Init();
	FCGX_InitRequest(&fcgx, lfd, 0);
	pthread_create(&t, NULL, web_server, &w);
	if (FCGX_Accept_r(&fcgx) == 0) {
		it_req_init(&req, &fcgx, "");
		it_req_body_limits(&req, 0, 1000, 0);
		for (;;) {
			*last = it_req_read(&req, got + o, gotlen - 1 - o);
			if (*last <= 0 || o + (size_t)*last >= gotlen - 1)
				break;
			o += (size_t)*last;
		}
		got[o] = '\0';
		it_buf_free(&req.headers);
	}
	pthread_join(t, NULL);
	FCGX_Finish_r(&fcgx);
	if (w.fd >= 0)
		close(w.fd);
	close(lfd);
	unlink(w.path);
}

static void body_deadline(void)
{
	char got[64];
	ssize_t last = 99;
	int p[2], saved;
	it_req req;

	/* mod_reqtimeout's body=20,MinRate=500: 20 s, plus 1 s per 500 bytes. */
	is_int(it_req_body_allowance_ms(20, 500, 0, 0), 20000, "grace alone before any byte");
	is_int(it_req_body_allowance_ms(20, 500, 0, 500), 21000, "one second more per min_rate bytes");
	is_int(it_req_body_allowance_ms(20, 500, 0, 250), 20500, "fractions of a second count");
	is_int(it_req_body_allowance_ms(20, 500, 60, 1000000), 60000, "the cap bounds the extension");
	is_int(it_req_body_allowance_ms(20, 500, 60, 0), 20000, "the cap above the grace changes nothing");
	is_int(it_req_body_allowance_ms(20, 0, 60, 0), INT64_MAX, "min_rate 0: no deadline");
	ok(it_req_body_allowance_ms(20, 1, 0, INT64_MAX) > 0, "no overflow at huge byte counts");
	ok(it_req_body_allowance_ms(INT64_MAX, 1, 0, INT64_MAX) > 0, "no overflow at a huge grace");

	/* CGI: bytes that are there are read at once; then a quiet pipe past
	 * the deadline (grace 0, 1000 B/s: 10 bytes allow 10 ms) is too slow,
	 * and stays so. */
	if (pipe(p) != 0)
		return;
	saved = dup(STDIN_FILENO);
	dup2(p[0], STDIN_FILENO);
	if (write(p[1], "0123456789", 10) != 10)
		return;
	setenv("REQUEST_URI", "/api/v1/images", 1);
	setenv("CONTENT_LENGTH", "100", 1); /* without it, a CGI request has no body */
	it_req_init(&req, NULL, "");
	unsetenv("CONTENT_LENGTH");
	it_req_body_limits(&req, 0, 1000, 0);
	is_int(it_req_read(&req, got, sizeof(got)), 10, "CGI: bytes already there are read");
	is_int(it_req_read(&req, got, sizeof(got)), IT_REQ_TOO_SLOW, "CGI: nothing more in time: too slow");
	if (write(p[1], "x", 1) != 1)
		return;
	is_int(it_req_read(&req, got, sizeof(got)), IT_REQ_TOO_SLOW, "CGI: too slow for good");
	is_int(it_req_drain(&req, 1000), -1, "CGI: drain fails too");
	it_buf_free(&req.headers);
	dup2(saved, STDIN_FILENO);
	close(saved);
	close(p[0]);
	close(p[1]);

	/* FastCGI: records that libfcgi holds already are delivered although
	 * the connection stays quiet (waiting for the descriptor to become
	 * readable would wait until the deadline and cut a complete body). */
	fcgi_body(1, got, sizeof(got), &last);
	is_str(got, "helloworld", "FastCGI: the whole body, from libfcgi's own buffer");
	is_int(last, 0, "FastCGI: then the end, not a timeout");
	last = 99;
	fcgi_body(0, got, sizeof(got), &last);
	is_str(got, "helloworld", "FastCGI: bytes that came are read");
	is_int(last, IT_REQ_TOO_SLOW, "FastCGI: then a quiet connection is cut at the deadline");
}

/* ------------------------------------------------------------------ CGI body length */

/* Reads a CGI body from a pipe on stdin that holds data and stays open (the
 * write end is kept), with the given CONTENT_LENGTH (NULL: unset) and
 * Transfer-Encoding; closes the write end first when close_first. Returns
 * the bytes read until it_req_read reported the end, or -1 on an error. A
 * read that would wait for more is stopped by the body deadline (1 s) and
 * counts as an error, so a hang shows as a failure, not a stuck test. */
static ssize_t cgi_body(const char *cl, const char *te, const char *data, int close_first, char *out, size_t outlen)
{
	int fds[2], saved = dup(STDIN_FILENO);
	size_t got = 0;
	ssize_t r = -1;
	it_req req;

	if (pipe(fds) != 0 || write(fds[1], data, strlen(data)) != (ssize_t)strlen(data))
		return -1;
	if (close_first) {
		close(fds[1]);
		fds[1] = -1;
	}
	dup2(fds[0], STDIN_FILENO);
	close(fds[0]);
	setenv("REQUEST_METHOD", "POST", 1);
	setenv("REQUEST_URI", "/api/v1/images", 1);
	if (cl)
		setenv("CONTENT_LENGTH", cl, 1);
	else
		unsetenv("CONTENT_LENGTH");
	if (te)
		setenv("HTTP_TRANSFER_ENCODING", te, 1);
	else
		unsetenv("HTTP_TRANSFER_ENCODING");
	it_req_init(&req, NULL, "");
	it_req_body_limits(&req, 1, 1000000, 1);
	while (got < outlen && (r = it_req_read(&req, out + got, outlen - got)) > 0)
		got += (size_t)r;
	it_buf_free(&req.headers);
	dup2(saved, STDIN_FILENO);
	close(saved);
	if (fds[1] >= 0)
		close(fds[1]);
	unsetenv("CONTENT_LENGTH");
	unsetenv("HTTP_TRANSFER_ENCODING");
	return r < 0 ? -1 : (ssize_t)got;
}

static void test_cgi_body_length(void)
{
	char buf[64];
	ssize_t n;

	n = cgi_body("5", NULL, "helloEXTRA", 0, buf, sizeof(buf));
	is_int(n, 5, "cgi: CONTENT_LENGTH bytes are read, and no more, from a stdin left open");
	ok(n == 5 && memcmp(buf, "hello", 5) == 0, "cgi: the body's bytes");
	is_int(cgi_body(NULL, NULL, "stray", 0, buf, sizeof(buf)), 0,
	       "cgi: no CONTENT_LENGTH and no Transfer-Encoding is no body (RFC 3875)");
	is_int(cgi_body(NULL, "chunked", "de-chunked body", 1, buf, sizeof(buf)), 15,
	       "cgi: a chunked body without CONTENT_LENGTH is read to the end of stdin");
	is_int(cgi_body(NULL, "gzip, chunked", "abc", 1, buf, sizeof(buf)), 3, "cgi: chunked last in a list counts");
}

int main(void)
{
	char out[64];
	int64_t v;

	test_cgi_body_length();
	capture(send_problem, "/api/v1/sessions/abc?q=1");
	ok(strncmp(captured, "Status: 404 Not Found\r\n", 23) == 0, "status line first");
	ok(strstr(captured, "Content-Type: application/problem+json\r\n") != NULL, "problem content type");
	ok(strstr(captured, "X-Content-Type-Options: nosniff\r\n") != NULL, "nosniff on every response");
	{
		const char *body = strstr(captured, "\r\n\r\n");
		json_object *o = body ? json_tokener_parse(body + 4) : NULL;
		ok(o != NULL, "body is JSON");
		if (o) {
			json_object *v2;
			json_object_object_get_ex(o, "type", &v2);
			is_str(json_object_get_string(v2), "urn:imagetools:problem:unknown-session", "type URI");
			json_object_object_get_ex(o, "status", &v2);
			is_int(json_object_get_int(v2), 404, "status member");
			json_object_object_get_ex(o, "title", &v2);
			is_str(json_object_get_string(v2), "Not Found", "title");
			json_object_object_get_ex(o, "detail", &v2);
			is_str(json_object_get_string(v2), "No session <x>\"y\".", "detail survives escaping");
			json_object_object_get_ex(o, "instance", &v2);
			is_str(json_object_get_string(v2), "/api/v1/sessions/abc", "instance is the path");
			json_object_put(o);
		}
	}

	capture(send_header_injection, "/");
	ok(strstr(captured, "\r\nSet-Cookie") == NULL, "CR/LF in a header value cannot start a header");
	ok(strncmp(captured, "Status: 204 No Content\r\n", 24) == 0, "204 status");

	capture(send_json, "/");
	ok(strstr(captured, "Content-Type: application/json\r\n") != NULL, "json content type");
	ok(strstr(captured, "Content-Length: 18\r\n") != NULL, "content length counts the body and newline");
	ok(strstr(captured, "{\"a\":\"<\\/script>\"}") || strstr(captured, "{\"a\":\"</script>\"}"), "json body");

	{
		it_req req;
		setenv("REQUEST_URI", "/api/v1/health?x=1&y=2", 1);
		it_req_init(&req, NULL, "");
		check_path(&req);
		it_buf_free(&req.headers);
		setenv("REQUEST_URI", "/site/api/v1/health", 1);
		it_req_init(&req, NULL, "/site");
		is_str(req.path, "/api/v1/health", "url_prefix is stripped");
		is_str(req.url_prefix, "/site", "the stripped prefix is kept for links");
		it_buf_free(&req.headers);
		setenv("REQUEST_URI", "/siteX/api/v1/health", 1);
		it_req_init(&req, NULL, "/site");
		is_str(req.path, "/siteX/api/v1/health", "url_prefix only matches whole segments");
		is_str(req.url_prefix, "", "nothing stripped");
		it_buf_free(&req.headers);
	}

	is_int(it_req_query("a=1&session_id=abc%2Fd&b", "session_id", out, sizeof(out)), 5, "decoded length");
	is_str(out, "abc/d", "percent-decoding");
	is_int(it_req_query("a=1&b", "b", out, sizeof(out)), 0, "key without value is empty");
	is_int(it_req_query("a=1", "c", out, sizeof(out)), -1, "missing key");
	is_int(it_req_query("a=%zz", "a", out, sizeof(out)), -2, "bad escape");
	is_int(it_req_query("a=%00", "a", out, sizeof(out)), -2, "NUL refused");
	is_int(it_req_query("a=%4", "a", out, sizeof(out)), -2, "truncated escape");
	is_int(it_req_query("a=0123456789", "a", out, 8), -2, "value too long for the buffer");
	is_int(it_req_query("aa=1&a=2", "a", out, sizeof(out)), 1, "prefix of another key does not match");
	is_str(out, "2", "right key found");
	is_int(it_req_query("a=x+y", "a", out, sizeof(out)), 3, "plus is a space");
	is_str(out, "x y", "plus decoded");

	is_int(it_parse_uint("42", 100, &v), 0, "uint");
	is_int(v, 42, "uint value");
	is_int(it_parse_uint("101", 100, &v), -1, "above max");
	is_int(it_parse_uint("-1", 100, &v), -1, "negative");
	is_int(it_parse_uint("", 100, &v), -1, "empty");
	is_int(it_parse_uint("99999999999999999999999", INT64_MAX, &v), -1, "overflow");
	is_int(it_parse_uint("9223372036854775807", INT64_MAX, &v), 0, "INT64_MAX itself");
	is_int(it_parse_uint("1e3", 10000, &v), -1, "exponent refused");

	body_deadline();
	return tap_done();
}

/* test_request.c: unit tests for fcgi/request: responses, problem+json, query parsing. */
#include "config.h"

#include "fcgi/request.h"
#include "tap.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <unistd.h>

static char captured[65536];

/* Runs fn with stdout sent to a temporary file; leaves the bytes in captured. */
static void capture(void (*fn)(it_req *), const char *uri)
{
	char path[] = "/tmp/it-req-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDOUT_FILENO);
	it_req req;
	ssize_t n;

	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	setenv("REQUEST_METHOD", "GET", 1);
	setenv("REQUEST_URI", uri, 1);
	setenv("REMOTE_ADDR", "127.0.0.1", 1);
	it_req_init(&req, NULL, "");
	fn(&req);
	fflush(stdout);
	it_buf_free(&req.headers);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	n = pread(fd, captured, sizeof(captured) - 1, 0);
	captured[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
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

int main(void)
{
	char out[64];
	int64_t v;

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

	is_int(it_query_get("a=1&session_id=abc%2Fd&b", "session_id", out, sizeof(out)), 5, "decoded length");
	is_str(out, "abc/d", "percent-decoding");
	is_int(it_query_get("a=1&b", "b", out, sizeof(out)), 0, "key without value is empty");
	is_int(it_query_get("a=1", "c", out, sizeof(out)), -1, "missing key");
	is_int(it_query_get("a=%zz", "a", out, sizeof(out)), -2, "bad escape");
	is_int(it_query_get("a=%00", "a", out, sizeof(out)), -2, "NUL refused");
	is_int(it_query_get("a=%4", "a", out, sizeof(out)), -2, "truncated escape");
	is_int(it_query_get("a=0123456789", "a", out, 8), -2, "value too long for the buffer");
	is_int(it_query_get("aa=1&a=2", "a", out, sizeof(out)), 1, "prefix of another key does not match");
	is_str(out, "2", "right key found");
	is_int(it_query_get("a=x+y", "a", out, sizeof(out)), 3, "plus is a space");
	is_str(out, "x y", "plus decoded");

	is_int(it_parse_uint("42", 100, &v), 0, "uint");
	is_int(v, 42, "uint value");
	is_int(it_parse_uint("101", 100, &v), -1, "above max");
	is_int(it_parse_uint("-1", 100, &v), -1, "negative");
	is_int(it_parse_uint("", 100, &v), -1, "empty");
	is_int(it_parse_uint("99999999999999999999999", INT64_MAX, &v), -1, "overflow");
	is_int(it_parse_uint("9223372036854775807", INT64_MAX, &v), 0, "INT64_MAX itself");
	is_int(it_parse_uint("1e3", 10000, &v), -1, "exponent refused");
	return tap_done();
}

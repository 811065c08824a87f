/* test_http.c: unit tests of the bridge's upgrade request head parser. */
#include "config.h"

#include "bridge/http.h"

#include "guard.h"
#include "tap.h"

static const char upgrade[] = "GET /api/v1/ws/abc?last_event_id=7 HTTP/1.1\r\n"
			      "Host: example.org:8080\r\n"
			      "Upgrade: websocket\r\n"
			      "Connection: keep-alive, Upgrade\r\n"
			      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			      "Sec-WebSocket-Version:13\r\n"
			      "Origin:   http://example.org:8080  \r\n"
			      "\r\n";

/* Parses s placed right before an unmapped page. */
static int parse(const char *s, size_t n, it_http_request *req, it_http_header *h, size_t cap)
{
	size_t mapped;
	unsigned char *g = guard_copy(s, n, &mapped);
	int rc;

	req->headers = h;
	req->num_headers = cap;
	rc = it_http_parse_request((const char *)g, n, req);
	/* The pointers refer to the guarded copy: check them before freeing. */
	if (rc > 0) {
		const it_http_header *o = it_http_find(req, "origin"), *hh = it_http_find(req, "HOST");
		char host[64] = "";
		if (hh && hh->value_len < sizeof(host))
			memcpy(host, hh->value, hh->value_len);
		is_str(host, "example.org:8080", "Host found case-insensitively");
		ok(o && o->value_len == 23 && memcmp(o->value, "http://example.org:8080", 23) == 0,
		   "origin value trimmed");
		ok(req->method_len == 3 && memcmp(req->method, "GET", 3) == 0, "method GET");
		ok(req->target_len == 30 && memcmp(req->target, "/api/v1/ws/abc?last_event_id=7", 30) == 0,
		   "target found");
	}
	guard_free(g, n, mapped);
	return rc;
}

static void expect(const char *s, int want, const char *name)
{
	it_http_header h[16];
	it_http_request req;
	size_t mapped, n = strlen(s);
	unsigned char *g = guard_copy(s, n, &mapped);

	req.headers = h;
	req.num_headers = 16;
	is_int(it_http_parse_request((const char *)g, n, &req), want, "%s", name);
	guard_free(g, n, mapped);
}

int main(void)
{
	it_http_header h[16];
	it_http_request req;
	size_t n = strlen(upgrade), k;
	int all_partial = 1;

	is_int(parse(upgrade, n, &req, h, 16), (int)n, "whole upgrade request parsed");
	is_int(req.num_headers, 6, "six headers");
	is_int(req.minor_version, 1, "HTTP/1.1");

	/* Every proper prefix is incomplete, never an error, never a read past it. */
	for (k = 0; k < n; k++) {
		it_http_request r2;
		it_http_header h2[16];
		size_t mapped;
		unsigned char *g = guard_copy(upgrade, k, &mapped);
		r2.headers = h2;
		r2.num_headers = 16;
		if (it_http_parse_request((const char *)g, k, &r2) != -2)
			all_partial = 0;
		guard_free(g, k, mapped);
	}
	ok(all_partial, "every prefix of the request asks for more");

	expect("GET / HTTP/1.1\r\n\r\n", 18, "minimal request");
	expect("GET / HTTP/2.0\r\n\r\n", -1, "HTTP/2.0 refused");
	expect("GET  / HTTP/1.1\r\n\r\n", -1, "double space refused");
	expect("GET / HTTP/1.1\r\nNoColon\r\n\r\n", -1, "header without colon");
	expect("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", -1, "obsolete line folding refused");
	expect("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", -1, "space in header name");
	expect("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", -1, "control character in value");
	expect("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", -1, "bare CR");
	expect("\x16\x03\x01", -1, "TLS hello fails at once");
	expect("GET / HTTP/1.1\r\n", -2, "head not finished");
	{
		it_http_header one[1];
		it_http_request r3 = {.headers = one, .num_headers = 1};
		const char *s = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
		is_int(it_http_parse_request(s, strlen(s), &r3), -1, "more headers than room refused");
	}

	ok(it_http_has_token("keep-alive, Upgrade", 19, "upgrade"), "token list: Upgrade found");
	ok(it_http_has_token("Upgrade", 7, "upgrade"), "token list: single token");
	ok(!it_http_has_token("keep-alive, Upgraded", 20, "upgrade"), "token list: no prefix match");
	ok(!it_http_has_token("", 0, "upgrade"), "token list: empty");
	return tap_done();
}

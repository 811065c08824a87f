/* test_guard.c: unit tests for fcgi/guard: the Origin rules. */
#include "config.h"

#include "fcgi/guard.h"
#include "tap.h"

int main(void)
{
	const char *allowed = "https://app.example moz-extension://abc-123  chrome-extension://xyz";

	ok(it_guard_origin_listed(allowed, "https://app.example"), "a listed origin");
	ok(it_guard_origin_listed(allowed, "HTTPS://APP.EXAMPLE"), "listed, other case");
	ok(it_guard_origin_listed(allowed, "moz-extension://abc-123"), "listed extension origin (after two spaces)");
	ok(it_guard_origin_listed(allowed, "chrome-extension://xyz"), "last listed origin");
	ok(!it_guard_origin_listed(allowed, "https://app.example.evil"), "a longer origin is not a prefix match");
	ok(!it_guard_origin_listed(allowed, "https://app.exampl"), "a shorter origin is not listed");
	ok(!it_guard_origin_listed(allowed, "http://app.example"), "the scheme counts");
	ok(!it_guard_origin_listed(allowed, ""), "empty origin");
	ok(!it_guard_origin_listed("null", "null"), "null never matches, even when listed");
	ok(!it_guard_origin_listed("", "https://app.example"), "empty list allows nothing");
	ok(!it_guard_origin_listed(allowed, "https://app.example moz-extension://abc-123"),
	   "two listed origins glued together are not one");

	ok(it_guard_origin_listed("moz-extension://*", "moz-extension://6f1c-44aa"), "scheme wildcard for add-ons");
	ok(it_guard_origin_listed("https://a.example moz-extension://*", "MOZ-EXTENSION://x"), "wildcard, other case");
	ok(!it_guard_origin_listed("moz-extension://*", "moz-extension://"), "wildcard needs a host");
	ok(!it_guard_origin_listed("moz-extension://*", "moz-extension://x/y"), "wildcard: no path");
	ok(!it_guard_origin_listed("moz-extension://*", "chrome-extension://x"), "wildcard: only its scheme");
	ok(!it_guard_origin_listed("https://*", "https://evil.example"), "no wildcard for https");
	ok(!it_guard_origin_listed("http://*", "http://evil.example"), "no wildcard for http");
	ok(!it_guard_origin_listed("*", "https://evil.example"), "a bare * allows nothing");

	ok(it_guard_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"), "same host and port");
	ok(it_guard_same_origin("https://Example.org", "example.org"), "default port, case-insensitive");
	ok(it_guard_same_origin("https://example.org", "example.org:443"), "explicit default port in Host");
	ok(it_guard_same_origin("http://example.org:80", "example.org"), "explicit default port in Origin");
	ok(!it_guard_same_origin("http://example.org:8080", "example.org"), "other port");
	ok(!it_guard_same_origin("http://example.org.evil", "example.org"), "other host with our name as prefix");
	ok(!it_guard_same_origin("http://evil", "evil.example.org"), "prefix of Host");
	ok(!it_guard_same_origin("null", "example.org"), "null origin");
	ok(!it_guard_same_origin("http://example.org/path", "example.org/path"), "an Origin has no path");
	ok(!it_guard_same_origin("http://user@example.org", "user@example.org"), "an Origin has no user");
	ok(!it_guard_same_origin("ftp://example.org", "example.org"), "only http and https");
	ok(!it_guard_same_origin("http://", ""), "empty host");
	ok(!it_guard_same_origin("http://example.org", NULL), "no Host header");

	return tap_done();
}

/* test_guard.c: unit tests for fcgi/guard: the Host allow-list and the Origin rules. */
#include "config.h"

#include "common/host.h"
#include "fcgi/guard.h"
#include "guard.h"
#include "tap.h"

/* it_host_listed on a Host value placed right before an unmapped page, so a
 * read past its end crashes instead of passing. */
static int host_ok(const char *list, const char *host)
{
	size_t n = strlen(host), mapped;
	unsigned char *p = guard_copy(host, n, &mapped);
	int r = it_host_listed(list, (const char *)p, n);

	guard_free(p, n, mapped);
	return r;
}

static void test_server_names(void)
{
	const char *names = "images.example.org  127.0.0.1:8080 localhost:8080 [::1]:8080 [2001:db8::7] tls.example:443";

	ok(it_host_listed(NULL, "evil.example", 12), "no server_names: any host");
	ok(it_host_listed("", "evil.example", 12), "empty server_names: any host");
	ok(it_host_listed(" \t", NULL, 0), "blank server_names: any host, even none");
	ok(host_ok(names, "images.example.org"), "a listed name");
	ok(host_ok(names, "IMAGES.Example.ORG"), "names compare case-insensitively");
	ok(host_ok(names, "images.example.org:8443"), "an entry without a port allows any port");
	ok(host_ok(names, "images.example.org."), "the absolute form of a listed name");
	ok(host_ok(names, "127.0.0.1:8080"), "a listed address and port");
	ok(host_ok(names, "localhost:8080"), "localhost with its port");
	ok(!host_ok(names, "127.0.0.1:8081"), "the listed address on another port");
	ok(!host_ok(names, "127.0.0.1"), "the listed address without its port (8080 is no default port)");
	ok(host_ok(names, "[::1]:8080"), "a listed IPv6 literal with its port");
	ok(!host_ok(names, "[::1]"), "the IPv6 literal without its port");
	ok(host_ok(names, "[2001:DB8::7]:9000"), "an IPv6 literal listed without a port, any port");
	ok(host_ok(names, "[2001:db8::7]"), "an IPv6 literal listed without a port, no port");
	ok(!host_ok(names, "2001:db8::7"), "an unbracketed IPv6 address is malformed");
	ok(host_ok(names, "tls.example"), "an entry with port 443 allows the name without a port");
	ok(host_ok(names, "tls.example:443"), "and with it");
	ok(!host_ok(names, "tls.example:8443"), "but not another port");
	ok(!host_ok(names, "evil.example"), "DNS rebinding: another name");
	ok(!host_ok(names, "evil.example:8080"), "another name on a listed port");
	ok(!host_ok(names, "images.example.org.evil.example"), "a listed name as a prefix");
	ok(!host_ok(names, "example.org"), "a suffix of a listed name");
	ok(!host_ok(names, "mages.example.org"), "a listed name minus its first letter");
	ok(!host_ok(names, "images.example.org images.example.org"), "two names are not one");
	ok(!host_ok(names, "user@images.example.org"), "user info");
	ok(!host_ok(names, "images.example.org/x"), "a path");
	ok(!host_ok(names, "images.example.org:"), "an empty port");
	ok(!host_ok(names, "images.example.org:80x"), "a port that is not digits");
	ok(!host_ok(names, "images.example.org:123456"), "a port of six digits");
	ok(!host_ok(names, "images.example.org:80:80"), "two ports");
	ok(!host_ok(names, "[::1"), "an unclosed bracket");
	ok(!host_ok(names, "[]:8080"), "empty brackets");
	ok(!host_ok(names, ":8080"), "a port alone");
	ok(!host_ok(names, ""), "an empty Host");
	ok(!it_host_listed(names, NULL, 0), "no Host header");
	ok(!host_ok(names, "."), "a dot alone");
	ok(!host_ok("bad:entry:1 [::1", "bad"), "malformed entries match nothing");
	ok(host_ok("a.example:80", "a.example"), "port 80 counts as the default port too");
}

int main(void)
{
	test_server_names();

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

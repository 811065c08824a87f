/* test_guard.c: unit tests for the check fcgi/guard makes before Origin: the Host allow-list (common/host). */
#include "config.h"

#include "common/host.h"
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

/* it_host_split, which the Origin rule uses for both headers. */
static void test_split(void)
{
	it_hostport hp;

	ok(it_host_split("[::1]:8080", 10, &hp) == 0 && hp.name_len == 5 && hp.port_len == 4 &&
		   memcmp(hp.port, "8080", 4) == 0,
	   "split an IPv6 literal and its port");
	ok(it_host_split("example.org", 11, &hp) == 0 && hp.name_len == 11 && hp.port == NULL,
	   "split a name without port");
	ok(it_host_split("example.org:80", 11, &hp) == 0 && hp.port == NULL, "only n bytes are looked at");
	ok(it_host_split("a@b", 3, &hp) < 0, "user info is no host");
	ok(it_host_split("", 0, &hp) < 0, "nothing is no host");
}

int main(void)
{
	test_server_names();
	test_split();
	return tap_done();
}

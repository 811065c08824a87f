/* test_origin.c: unit tests for common/origin: the table shared with the integration test, then edge cases. */
#include "config.h"

#include "common/origin.h"
#include "guard.h"
#include "tap.h"

#include <ctype.h>
#include <stdio.h>

#ifndef IT_ORIGIN_CASES
#error "IT_ORIGIN_CASES names tests/integration/origin_cases.txt"
#endif

/* it_origin_check with the Origin and Host values each placed right before
 * an unmapped page, so a read past either end crashes instead of passing.
 * NULL stands for a missing header. */
static it_origin_verdict check(const char *origin, const char *host, const char *allowed)
{
	size_t on = origin ? strlen(origin) : 0, hn = host ? strlen(host) : 0, om = 0, hm = 0;
	unsigned char *o = origin ? guard_copy(origin, on, &om) : NULL;
	unsigned char *h = host ? guard_copy(host, hn, &hm) : NULL;
	it_origin_verdict v = it_origin_check((const char *)o, on, (const char *)h, hn, allowed);

	if (o)
		guard_free(o, on, om);
	if (h)
		guard_free(h, hn, hm);
	return v;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Runs every row of the shared table; returns how many there were. */
static int run_table(void)
{
	FILE *f = fopen(IT_ORIGIN_CASES, "r");
	char line[1024], allowed[512] = "";
	int rows = 0, lineno = 0;

	if (f == NULL) {
		ok(0, "open %s", IT_ORIGIN_CASES);
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		char *fields[4], *p = trim(line), *origin;
		int i;

		lineno++;
		if (*p == '\0' || *p == '#')
			continue;
		if (strncmp(p, "allowed:", 8) == 0) {
			snprintf(allowed, sizeof(allowed), "%s", trim(p + 8));
			continue;
		}
		for (i = 0; i < 4; i++) {
			fields[i] = p;
			p = i < 3 ? strchr(p, '|') : NULL;
			if (i < 3 && p == NULL)
				break;
			if (p)
				*p++ = '\0';
			fields[i] = trim(fields[i]);
		}
		if (i < 4) {
			ok(0, "origin_cases.txt:%d has four fields", lineno);
			continue;
		}
		origin = fields[1];
		if (strcmp(origin, "-") == 0)
			origin = NULL;
		else if (strcmp(origin, "''") == 0)
			origin = "";
		is_str(it_origin_verdict_name(check(origin, fields[2], allowed)), fields[0],
		       "line %d: %s (Origin %s, Host %s, allowed_origins \"%s\")", lineno, fields[3], fields[1],
		       fields[2], allowed);
		rows++;
	}
	fclose(f);
	return rows;
}

/* What the table cannot hold: headers lighttpd would refuse, missing Host,
 * values that are not NUL-terminated, the two halves of the rule alone. */
static void test_edges(void)
{
	static const char both[] = "https://app.example.evil";
	const char *list = "https://app.example\tmoz-extension://*  http://a.example:8080";

	is_int(check("http://example.org", NULL, NULL), IT_ORIGIN_REFUSED, "no Host: never same-origin");
	is_int(check("http://example.org", "", NULL), IT_ORIGIN_REFUSED, "empty Host: never same-origin");
	is_int(check("https://app.example", NULL, list), IT_ORIGIN_LISTED, "no Host: listed still works");
	is_int(check(NULL, NULL, NULL), IT_ORIGIN_ABSENT, "no Origin, no Host");
	is_int(check("http://user@example.org", "user@example.org", NULL), IT_ORIGIN_REFUSED,
	       "user info on both sides");
	is_int(check("http://example.org/x", "example.org/x", NULL), IT_ORIGIN_REFUSED, "a path on both sides");
	is_int(check("http://[::1]", "::1", NULL), IT_ORIGIN_REFUSED, "an unbracketed IPv6 Host");
	is_int(check("http://example.org", "example.org:", NULL), IT_ORIGIN_REFUSED, "a Host with an empty port");
	is_int(check("http://example.org:", "example.org", NULL), IT_ORIGIN_REFUSED, "an Origin with an empty port");
	is_int(check("http://example.org:123456", "example.org:123456", NULL), IT_ORIGIN_REFUSED, "six-digit ports");
	is_int(check("http://", "", NULL), IT_ORIGIN_REFUSED, "an Origin without host");
	is_int(check("://example.org", "example.org", NULL), IT_ORIGIN_REFUSED, "an Origin without scheme");
	is_int(check("1http://example.org", "example.org", NULL), IT_ORIGIN_REFUSED,
	       "a scheme must start with a letter");
	is_int(check("http:/example.org", "example.org", NULL), IT_ORIGIN_REFUSED, "one slash is not an origin");
	is_int(check("http://exa mple.org", "exa mple.org", NULL), IT_ORIGIN_REFUSED, "a space inside");
	is_int(check("http://example.org\r\n", "example.org", NULL), IT_ORIGIN_REFUSED, "a line break after it");
	is_int(check("http://example.org:0080", "example.org", NULL), IT_ORIGIN_SAME, "ports compare as numbers");

	/* Lengths are honoured: the same bytes followed by more. */
	is_int(it_origin_check(both, 19, "app.example", 11, NULL), IT_ORIGIN_SAME,
	       "only olen bytes of Origin are read");
	is_int(it_origin_check(both, 19, "example.org", 7, NULL), IT_ORIGIN_REFUSED,
	       "only hlen bytes of Host are read");
	ok(it_origin_listed(list, both, 19), "a listed prefix of a longer buffer");
	ok(!it_origin_listed(list, both, sizeof(both) - 1), "the whole longer value is not listed");

	ok(it_origin_listed(list, "moz-extension://abc", 19), "entries separated by a tab");
	ok(it_origin_listed(list, "http://a.example:8080", 21), "a listed non-default port");
	ok(!it_origin_listed(list, "http://a.example", 16), "that port is not the default");
	ok(!it_origin_listed(NULL, "https://app.example", 19), "no list allows nothing");
	ok(!it_origin_listed("", "https://app.example", 19), "an empty list allows nothing");
	ok(!it_origin_listed("moz-extension://", "moz-extension://x", 17), "a scheme alone is no wildcard");
	ok(!it_origin_listed("moz-extension://**", "moz-extension://x", 17), "two stars are no wildcard");
	ok(!it_origin_listed("HTTPS://*", "https://evil.example", 20), "no https wildcard in capitals either");
	ok(!it_origin_listed(list, NULL, 0), "no Origin is not listed");

	ok(it_origin_same("https://Example.org", 19, "example.org", 11), "it_origin_same alone");
	ok(!it_origin_same("moz-extension://example.org", 27, "example.org", 11), "only http(s) can be same-origin");
	ok(!it_origin_same(NULL, 0, "example.org", 11), "no Origin is not same-origin");

	is_str(it_origin_verdict_name(IT_ORIGIN_ABSENT), "absent", "verdict names");
	is_str(it_origin_verdict_name((it_origin_verdict)42), "?", "an unknown verdict");
}

/* The headers of a decision as "Name: value" lines, in order. */
static const char *cors_text(const it_cors *c)
{
	static char buf[2048];
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < c->n && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s: %.*s\n", c->h[i].name, (int)c->h[i].value_len,
				      c->h[i].value);
	return buf;
}

/* The CORS half: what every server answers for each verdict and method. */
static void test_cors(void)
{
	static const char listed[] = "https://app.example/extra";
	it_cors c;

	it_cors_decide(IT_ORIGIN_ABSENT, "GET", 3, NULL, 0, &c);
	ok(c.status == 0 && c.n == 0, "no Origin, GET: goes on, no CORS headers");
	it_cors_decide(IT_ORIGIN_ABSENT, "OPTIONS", 7, NULL, 0, &c);
	is_int(c.status, 204, "no Origin, OPTIONS: 204");
	is_str(cors_text(&c), "Allow: " IT_CORS_ALLOW_METHODS "\n", "with Allow only");
	it_cors_decide(IT_ORIGIN_REFUSED, "GET", 3, "https://evil.example", 20, &c);
	ok(c.status == 0 && c.n == 0, "refused origin, GET: answered without CORS headers");
	it_cors_decide(IT_ORIGIN_REFUSED, "HEAD", 4, "https://evil.example", 20, &c);
	ok(c.status == 0 && c.n == 0, "refused origin, HEAD: the same");
	it_cors_decide(IT_ORIGIN_REFUSED, "POST", 4, "https://evil.example", 20, &c);
	ok(c.status == 403 && c.n == 0, "refused origin, POST: 403");
	it_cors_decide(IT_ORIGIN_REFUSED, "get", 3, "https://evil.example", 20, &c);
	is_int(c.status, 403, "methods are case-sensitive: \"get\" counts as state-changing");
	it_cors_decide(IT_ORIGIN_REFUSED, "OPTIONS", 7, "https://evil.example", 20, &c);
	ok(c.status == 403 && c.n == 0, "refused origin, preflight: 403, naming no headers");
	it_cors_decide(IT_ORIGIN_LISTED, "GET", 3, listed, 19, &c);
	is_int(c.status, 0, "listed origin, GET: goes on");
	is_str(cors_text(&c),
	       "Access-Control-Allow-Origin: https://app.example\nVary: Origin\n"
	       "Access-Control-Expose-Headers: " IT_CORS_EXPOSE_HEADERS "\n",
	       "with Allow-Origin (olen bytes of Origin), Vary and Expose-Headers");
	it_cors_decide(IT_ORIGIN_LISTED, "OPTIONS", 7, listed, 19, &c);
	is_int(c.status, 204, "listed origin, preflight: 204");
	is_str(cors_text(&c),
	       "Access-Control-Allow-Origin: https://app.example\nVary: Origin\n"
	       "Access-Control-Allow-Methods: " IT_CORS_ALLOW_METHODS "\n"
	       "Access-Control-Allow-Headers: " IT_CORS_ALLOW_HEADERS "\n"
	       "Access-Control-Max-Age: " IT_CORS_MAX_AGE "\n",
	       "with Allow-Origin, Vary, Allow-Methods, Allow-Headers and Max-Age");
	it_cors_decide(IT_ORIGIN_SAME, "OPTIONS", 7, "http://example.org", 18, &c);
	ok(c.status == 204 && c.n == 3 && strcmp(c.h[0].name, "Access-Control-Allow-Methods") == 0,
	   "same origin, preflight: 204 without Allow-Origin");
	it_cors_decide(IT_ORIGIN_SAME, "DELETE", 6, "http://example.org", 18, &c);
	ok(c.status == 0 && c.n == 0, "same origin, DELETE: goes on, no CORS headers");
	ok(strstr(IT_CORS_ALLOW_HEADERS, "Cache-Control") && strstr(IT_CORS_ALLOW_HEADERS, "X-Requested-With"),
	   "Dropzone's headers are allowed");
}

int main(void)
{
	int rows = run_table();

	ok(rows >= 50, "the shared table has its rows (%d)", rows);
	test_edges();
	test_cors();
	return tap_done();
}

/* test_guard.c: unit tests for the checks fcgi/guard makes before a handler: the Host allow-list (common/host), and
 * what the guard and the session problem return. */
#include "config.h"

#include "common/host.h"
#include "fcgi/app.h"
#include "fcgi/guard.h"
#include "capture.h"
#include "guard.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	const char *names =
		"images.example.org  127.0.0.1:8080 localhost:8080 [::1]:8080 [2001:db8::7] tls.example:443";

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

/* The status line of the last answer, "" when nothing was answered. */
static char answered[64];

/* Runs it_guard_request on a CGI request (method, Host, Origin: NULL for
 * none) with stdout captured, and returns what it returned. */
static int run_guard(it_req *req, void *arg)
{
	(void)arg;
	return it_guard_request(req);
}

static int guard(const char *method, const char *host, const char *origin)
{
	char out[4096];
	const char *st;
	int rc;

	setenv("REQUEST_METHOD", method, 1);
	setenv("REQUEST_URI", "/api/v1/sessions", 1);
	setenv("REMOTE_ADDR", "127.0.0.1", 1);
	if (host)
		setenv("HTTP_HOST", host, 1);
	else
		unsetenv("HTTP_HOST");
	if (origin)
		setenv("HTTP_ORIGIN", origin, 1);
	else
		unsetenv("HTTP_ORIGIN");
	rc = capture_cgi(run_guard, NULL, out, sizeof(out));
	st = strstr(out, "Status: ");
	snprintf(answered, sizeof(answered), "%.11s", st ? st : "");
	return rc;
}

/* A function that may answer returns 0 to let the handler run, or the
 * status it answered with (src/fcgi/request.h), never a bare 1. */
static void test_answered(void)
{
	it_config_defaults(&it_g.cfg);
	free(it_g.cfg.server_names);
	it_g.cfg.server_names = strdup("images.example.org");
	free(it_g.cfg.allowed_origins);
	it_g.cfg.allowed_origins = strdup("https://app.example");

	is_int(guard("GET", "images.example.org", NULL), 0, "a request for a listed host goes on");
	is_str(answered, "", "and nothing is answered");
	is_int(guard("GET", "evil.example", NULL), 421, "another Host: the guard returns 421");
	is_str(answered, "Status: 421", "the status it answered with");
	is_int(guard("POST", "images.example.org", "https://evil.example"), 403, "a POST from a refused origin: 403");
	is_str(answered, "Status: 403", "the status it answered with");
	is_int(guard("OPTIONS", "images.example.org", "https://app.example"), 204, "a listed origin's preflight: 204");
	is_str(answered, "Status: 204", "the status it answered with");
	is_int(guard("POST", "images.example.org", "https://app.example"), 0, "a POST from a listed origin goes on");
	it_config_free(&it_g.cfg);
}

/* it_app_session_problem passes a store outcome on as the answer. */
static void test_session_problem(void)
{
	char path[] = "/tmp/it-guard-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDOUT_FILENO);
	int ok0, r404, r400, r503;
	it_req req;

	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	setenv("REQUEST_METHOD", "GET", 1);
	setenv("REQUEST_URI", "/api/v1/sessions/x", 1);
	it_req_init(&req, NULL, "");
	ok0 = it_app_session_problem(&req, 0);
	r404 = it_app_session_problem(&req, 404);
	fflush(stdout);
	it_buf_free(&req.headers);
	it_req_init(&req, NULL, "");
	r400 = it_app_session_problem(&req, 400);
	fflush(stdout);
	it_buf_free(&req.headers);
	it_req_init(&req, NULL, "");
	r503 = it_app_session_problem(&req, -1);
	fflush(stdout);
	it_buf_free(&req.headers);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(fd);
	unlink(path);
	is_int(ok0, 0, "no problem: 0, nothing answered");
	is_int(r404, 404, "unknown session: returns the 404 it answered");
	is_int(r400, 400, "malformed id: 400");
	is_int(r503, 503, "anything else: 503");
}

int main(void)
{
	test_server_names();
	test_split();
	test_answered();
	test_session_problem();
	return tap_done();
}

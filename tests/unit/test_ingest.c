/* test_ingest.c: unit tests for what both upload handlers share through fcgi/ingest: the first error, the refused
 * credential, the refusal's answer, and the sniffing of a file's first bytes. */
#include "config.h"

#include "db/metrics.h"
#include "fcgi/ingest.h"
#include "capture.h"
#include "guard.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_first_error(void)
{
	it_ingest_error e = {0};

	is_int(it_ingest_fail(&e, 413, "file-too-large", "A file is larger than %d bytes.", 10), -1, "fail: -1");
	is_int(e.status, 413, "the status is kept");
	is_str(e.slug, "file-too-large", "the slug is kept");
	is_str(e.detail, "A file is larger than 10 bytes.", "the detail is formatted");
	is_int(it_ingest_fail(&e, 503, "database-unavailable", "later"), -1, "a second failure: -1 all the same");
	is_int(e.status, 413, "the first error stays");
	is_str(e.detail, "A file is larger than 10 bytes.", "with its detail");
}

/* it_ingest_sniff_head on n bytes of p placed right before an unmapped
 * page, so that a read past them crashes instead of passing. */
static int sniff(unsigned char *head, size_t *head_len, const char *p, size_t n)
{
	size_t mapped;
	unsigned char *g = guard_copy(p, n, &mapped);
	int r = it_ingest_sniff_head(head, head_len, (const char *)g, n);

	guard_free(g, n, mapped);
	return r;
}

static void test_sniff_head(void)
{
	static const char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	unsigned char head[IT_SNIFF_MAGIC_BYTES];
	size_t len = 0;

	is_int(sniff(head, &len, png, 3), 0, "three bytes of a PNG: not refused");
	is_int(len, 3, "they are kept");
	is_int(sniff(head, &len, png + 3, 1), 0, "one more, split from the first ones");
	is_int(sniff(head, &len, png + 4, sizeof(png) - 1 - 4), 0, "the rest of the signature");
	is_int(len, IT_SNIFF_MAGIC_BYTES, "the head is full, and no more");
	ok(memcmp(head, png, IT_SNIFF_MAGIC_BYTES) == 0, "in order");
	is_int(sniff(head, &len, "<html>", 6), 0, "once full, later bytes are not looked at");
	is_int(len, IT_SNIFF_MAGIC_BYTES, "nor kept");

	len = 0;
	is_int(sniff(head, &len, "<html><body>hello", 17), 1, "an HTML page: refused from its first bytes");
	len = 0;
	is_int(sniff(head, &len, "", 0), 0, "no bytes: nothing to say yet");
	is_int(len, 0, "and nothing kept");
}

/* What it_ingest_answer returned in the last answer(). */
static int answered;

/* Runs the answer of e (after it_ingest_refused with why when why is not
 * NULL) on a CGI request, and returns what it wrote (static). */
struct answer_args {
	it_ingest_error *e;
	const it_auth_refusal *why;
};

static int run_answer(it_req *req, void *arg)
{
	struct answer_args *a = arg;

	if (a->why)
		it_ingest_refused(req, a->e, a->why);
	return it_ingest_answer(req, a->e);
}

static const char *answer(it_ingest_error *e, const it_auth_refusal *why)
{
	static char out[4096];
	struct answer_args a = {e, why};

	setenv("REQUEST_METHOD", "POST", 1);
	setenv("REQUEST_URI", "/api/v1/images", 1);
	answered = capture_cgi(run_answer, &a, out, sizeof(out));
	return out;
}

static void test_refused_and_answer(void)
{
	it_auth_refusal why = {.status = 429, .slug = "rate-limited", .detail = "Too many.", .retry_after = 42};
	it_ingest_error e = {0};
	int64_t before = it_metrics_get("imagetools_upload_errors_total", "status=\"429\"");
	const char *out = answer(&e, &why);

	is_int(e.status, 429, "a refused credential becomes the error");
	is_int(e.retry_after, 42, "with its Retry-After");
	ok(strstr(out, "Status: 429") != NULL, "answered 429");
	is_int(answered, 429, "and returns the status it answered with");
	ok(strstr(out, "Retry-After: 42\r\n") != NULL, "Retry-After from the refusal");
	ok(strstr(out, "urn:imagetools:problem:rate-limited") != NULL, "its slug");
	is_int(it_metrics_get("imagetools_upload_errors_total", "status=\"429\"") - before, 1, "counted by status");

	memset(&e, 0, sizeof(e));
	memset(&why, 0, sizeof(why));
	why.status = 401;
	why.slug = "invalid-token";
	why.detail = "The token is unknown.";
	snprintf(why.www_authenticate, sizeof(why.www_authenticate), "Bearer error=\"invalid_token\"");
	out = answer(&e, &why);
	ok(strstr(out, "Status: 401") != NULL, "a refused token: 401");
	ok(strstr(out, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n") != NULL, "with its WWW-Authenticate");
	ok(strstr(out, "Retry-After") == NULL, "and no Retry-After");

	memset(&e, 0, sizeof(e));
	why.status = 400;
	why.www_authenticate[0] = '\0';
	answer(&e, &why);
	is_str(e.slug, "invalid-session-id", "a malformed credential keeps the slug of the upload endpoints");

	memset(&why, 0, sizeof(why));
	why.status = 401;
	why.slug = "invalid-token";
	why.detail = "later";
	snprintf(why.www_authenticate, sizeof(why.www_authenticate), "Bearer");
	memset(&e, 0, sizeof(e));
	it_ingest_fail(&e, 413, "file-too-large", "first");
	out = answer(&e, &why);
	ok(strstr(out, "Status: 413") != NULL, "a refusal after another error: the first one is answered");
	ok(strstr(out, "WWW-Authenticate") == NULL, "without the later refusal's header");

	memset(&e, 0, sizeof(e));
	it_ingest_fail(&e, 503, "database-unavailable", "down");
	out = answer(&e, NULL);
	ok(strstr(out, "Status: 503") != NULL && strstr(out, "Retry-After: 5\r\n") != NULL, "503 with Retry-After: 5");

	memset(&e, 0, sizeof(e));
	out = answer(&e, NULL);
	ok(strstr(out, "Status: 500") != NULL && strstr(out, "urn:imagetools:problem:internal") != NULL,
	   "no error recorded: 500 internal");
	is_int(answered, 500, "returned as such");
}

int main(void)
{
	test_first_error();
	test_sniff_head();
	test_refused_and_answer();
	return tap_done();
}

/* test_log.c: unit tests for common/log: record format and the redaction of session ids, tokens and pairing codes. */
#include "config.h"

#include "common/log.h"
#include "tap.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Runs one it_log call with stderr on a pipe and returns what was written. */
static const char *capture(const char *fmt, const char *arg)
{
	static char got[4096];
	int p[2], saved;
	ssize_t n;

	if (pipe(p) != 0)
		return "";
	saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	it_log_info(fmt, arg);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], got, sizeof(got) - 1);
	close(p[0]);
	got[n > 0 ? n : 0] = '\0';
	return got;
}

int main(void)
{
	const char *sid = "AbCdEf0123456789_-ghijklmnopqrst"; /* 32 characters */
	const char *out;
	char red[16];

	it_log_init("test_log", IT_LOG_DEBUG);
	out = capture("hello %s", "world");
	ok(strstr(out, "test_log[") && strstr(out, "] info: hello world\n"), "record has program, pid, level, text");

	out = capture("insert failed: DETAIL: Key (session_id)=(%s) is not present", sid);
	ok(strstr(out, sid) == NULL, "a session id inside a message is not logged whole");
	ok(strstr(out, "Key (session_id)=(AbCdEf...) is not present") != NULL, "its six-character prefix is");

	out = capture("image %s", "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b");
	ok(strstr(out, "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b") != NULL, "UUIDs are left alone");
	out = capture("sha %s", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
	ok(strstr(out, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08") != NULL,
	   "64-character digests are left alone");
	out = capture("two: %s", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB.");
	ok(strstr(out, "two: AAAAAA... BBBBBB....\n") != NULL, "every id in a record is cut");
	out = capture("line%s", "\nforged 2026-01-01 record");
	ok(strchr(out, '\n') == out + strlen(out) - 1, "a newline from input cannot start a forged record");

	/* Scoped tokens ("itk." and 32 characters) and pairing codes ("itp." and
	 * 22) keep their type prefix and six characters, wherever they stand. */
	out = capture("auth failed for %s", "itk.Zq3xY7-_abcdefghijklmnopqrstuvwx");
	ok(strstr(out, "Zq3xY7-_abcdefghijklmnopqrstuvwx") == NULL && strstr(out, "for itk.Zq3xY7...\n"),
	   "a token is cut to itk. and six characters");
	out = capture("GET /api/v1/events?session_id=%s&cursor=3", "itk.Zq3xY7-_abcdefghijklmnopqrstuvwx");
	ok(strstr(out, "session_id=itk.Zq3xY7...&cursor=3") != NULL, "a token inside a query string is cut");
	out = capture("pairing code %s used", "itp.Pq9rS8tUvWxYz012345ABC");
	ok(strstr(out, "Pq9rS8tUvWxYz012345ABC") == NULL && strstr(out, "code itp.Pq9rS8... used"),
	   "a pairing code (22 characters, not a 32-run) is cut too");
	out = capture("bearer %s", "itk.Zq3xY7-_abcdefghij");
	ok(strstr(out, "bearer itk.Zq3xY7...\n") != NULL, "a truncated token is cut as well");
	out = capture("bearer %s", "itk.Zq3xY7-_abcdefghijklmnopqrstuvwxyz0123");
	ok(strstr(out, "bearer itk.Zq3xY7...\n") != NULL, "and one padded past its length");
	out = capture("file %s", "splitk.Zq3xY7-_abcdefg.png");
	ok(strstr(out, "splitk.Zq3xY7-_abcdefg.png") != NULL, "a name merely ending in itk. is left alone");

	is_str(it_log_redact(sid, red, sizeof(red)), "AbCdEf...", "it_log_redact keeps six characters");
	is_str(it_log_redact("itk.Zq3xY7-_abcdefghijklmnopqrstuvwx", red, sizeof(red)), "itk.Zq3xY7...",
	       "it_log_redact keeps a token's prefix and six characters");
	return tap_done();
}

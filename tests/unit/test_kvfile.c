/* test_kvfile.c: unit tests for common/kvfile, the key = value file reader. */
#include "config.h"

#include "common/kvfile.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Collects the pairs as "key=value;" and refuses the key "bad". */
static int collect(void *ud, const char *key, const char *val, char *why, size_t whylen)
{
	char *out = ud;

	if (strcmp(key, "bad") == 0) {
		snprintf(why, whylen, "bad is refused");
		return -EINVAL;
	}
	snprintf(out + strlen(out), 512 - strlen(out), "%s=%s;", key, val);
	return 0;
}

int main(void)
{
	char got[512], err[256], long_line[5000];
	const char *path;

	got[0] = '\0';
	path = tap_write_tmp(
		"# a comment\n\n   a = 1\nb=two words  \n\tc = \" padded \"\nd =\ne = \"\n  # indented comment\n"
		"f = x = y\nlast = no newline");
	is_int(it_kvfile_read(path, 0, collect, got, err, sizeof(err)), 0, "a well-formed file reads");
	is_str(got, "a=1;b=two words;c= padded ;d=;e=\";f=x = y;last=no newline;",
	       "spaces trimmed, quotes kept inside, the first = splits, comments and blank lines skipped");
	unlink(path);

	got[0] = '\0';
	path = tap_write_tmp("a = 1\nbad = 2\nc = 3\n");
	is_int(it_kvfile_read(path, 0, collect, got, err, sizeof(err)), -EINVAL,
	       "a refusal by the callback stops the read");
	ok(strstr(err, ":2: bad is refused") != NULL, "the error names the file and line: %s", err);
	is_str(got, "a=1;", "nothing after the refused line is read");
	unlink(path);

	path = tap_write_tmp("a = 1\nno equals sign here\n");
	is_int(it_kvfile_read(path, 0, collect, got, err, sizeof(err)), -EINVAL, "a line without = is an error");
	ok(strstr(err, ":2: expected key = value") != NULL, "and says so: %s", err);
	unlink(path);

	memset(long_line, 'x', sizeof(long_line) - 2);
	long_line[0] = 'k';
	long_line[1] = '=';
	long_line[sizeof(long_line) - 2] = '\n';
	long_line[sizeof(long_line) - 1] = '\0';
	path = tap_write_tmp(long_line);
	is_int(it_kvfile_read(path, 0, collect, got, err, sizeof(err)), -EINVAL, "a line over 4 KiB is an error");
	ok(strstr(err, ":1: line too long") != NULL, "and says so: %s", err);
	unlink(path);

	is_int(it_kvfile_read("/nonexistent/it.conf", 1, collect, got, err, sizeof(err)), 0,
	       "a missing file is fine when allowed");
	is_int(it_kvfile_read("/nonexistent/it.conf", 0, collect, got, err, sizeof(err)), -ENOENT,
	       "and an error otherwise");
	ok(strstr(err, "/nonexistent/it.conf: ") == err, "naming the file: %s", err);

	return tap_done();
}

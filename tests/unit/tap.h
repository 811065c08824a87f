/* tap.h: a minimal Test Anything Protocol emitter for the unit tests. */
#ifndef IT_TESTS_UNIT_TAP_H
#define IT_TESTS_UNIT_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tap_n, tap_failed;

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...) tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

__attribute__((format(printf, 4, 5), unused)) static int tap_ok(int pass, const char *file, int line, const char *fmt,
								...)
{
	va_list ap;

	tap_n++;
	printf("%sok %d - ", pass ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return pass;
}

__attribute__((format(printf, 5, 6), unused)) static int tap_is_int(long long got, long long want, const char *file,
								    int line, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!tap_ok(got == want, file, line, "%s", msg)) {
		printf("#   got %lld, want %lld\n", got, want);
		return 0;
	}
	return 1;
}

__attribute__((format(printf, 5, 6), unused)) static int tap_is_str(const char *got, const char *want, const char *file,
								    int line, const char *fmt, ...)
{
	va_list ap;
	char msg[512];
	int pass = (got == NULL && want == NULL) || (got && want && strcmp(got, want) == 0);

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!tap_ok(pass, file, line, "%s", msg)) {
		printf("#   got  '%s'\n#   want '%s'\n", got ? got : "(null)", want ? want : "(null)");
		return 0;
	}
	return 1;
}

/* Writes text to a new file under /tmp and returns its path, which stays
 * valid until the next call. */
__attribute__((unused)) static const char *tap_write_tmp(const char *text)
{
	static char path[32];
	int fd;

	strcpy(path, "/tmp/it-unit-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	return path;
}

__attribute__((unused)) static int tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif

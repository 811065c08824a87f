/* capture.h: runs a function on a plain-CGI request and keeps what it wrote to stdout. */
#ifndef IT_TESTS_UNIT_CAPTURE_H
#define IT_TESTS_UNIT_CAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fcgi/request.h"

/* Makes a CGI request from the environment the caller set (REQUEST_METHOD,
 * REQUEST_URI and the HTTP_* variables), runs fn(req, arg) on it with stdout
 * sent to a temporary file, and leaves what was written, cut to cap - 1
 * bytes and NUL-terminated, in out. Returns what fn returned. Aborts when
 * the temporary file cannot be made (a test cannot go on without it). */
static inline int capture_cgi(int (*fn)(it_req *, void *), void *arg, char *out, size_t cap)
{
	char path[] = "/tmp/it-capture-XXXXXX";
	int fd = mkstemp(path), saved, rc;
	ssize_t n;
	it_req req;

	if (fd < 0 || (saved = dup(STDOUT_FILENO)) < 0)
		abort();
	fflush(stdout);
	dup2(fd, STDOUT_FILENO);
	it_req_init(&req, NULL, "");
	rc = fn(&req, arg);
	fflush(stdout);
	it_buf_free(&req.headers);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	n = pread(fd, out, cap - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return rc;
}

#endif

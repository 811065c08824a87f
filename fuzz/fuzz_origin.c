/* fuzz_origin.c: libFuzzer target for the Origin rule of common/origin (same origin, the allowed list, the verdict). */
#include "config.h"

#include "common/origin.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Input layout: three NUL-separated strings, the allowed_origins list, the
 * Origin header and the Host header (missing ones are empty). The Origin and
 * Host are handed over in heap copies of their exact length, without a NUL,
 * so that ASan catches a read past either end. Besides memory safety it
 * checks the properties both servers rely on: the verdict is the two halves
 * of the rule combined (an empty Origin is none); null and whitespace-bearing
 * origins are never allowed; an http(s) origin is listed only when the list names its host;
 * and same-origin implies an http(s) origin without path, user or query. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A heap copy of s without its NUL (malloc(0) may return NULL: one byte). */
static char *exact_copy(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	if (p == NULL)
		abort();
	memcpy(p, s, n);
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 3), *allowed, *origin_s, *host_s, *origin, *host;
	size_t olen, hlen;
	int same, listed;
	it_origin_verdict v;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';
	allowed = buf;
	origin_s = allowed + strlen(allowed) + 1;
	if (origin_s > buf + size)
		origin_s = buf + size + 1;
	host_s = origin_s + strlen(origin_s) + 1;
	if (host_s > buf + size + 1)
		host_s = buf + size + 2;
	olen = strlen(origin_s);
	hlen = strlen(host_s);
	origin = exact_copy(origin_s, olen);
	host = exact_copy(host_s, hlen);

	same = it_origin_same(origin, olen, host, hlen);
	listed = it_origin_listed(allowed, origin, olen);
	v = it_origin_check(origin, olen, host, hlen, allowed);
	if (v != (olen == 0 ? IT_ORIGIN_ABSENT : same ? IT_ORIGIN_SAME : listed ? IT_ORIGIN_LISTED : IT_ORIGIN_REFUSED))
		abort();
	if (it_origin_check(NULL, 0, host, hlen, allowed) != IT_ORIGIN_ABSENT)
		abort();
	if (v != IT_ORIGIN_REFUSED && v != IT_ORIGIN_ABSENT) {
		if (olen == 0 || strcmp(origin_s, "null") == 0 || strpbrk(origin_s, " \t\r\n") != NULL)
			abort();
	}
	if (listed && (strncasecmp(origin_s, "http://", 7) == 0 || strncasecmp(origin_s, "https://", 8) == 0)) {
		/* The host part (up to a port, without a trailing dot) must
		 * appear in the list. */
		const char *h = strstr(origin_s, "://") + 3;
		size_t n = strcspn(h, ":");
		if (n > 1 && h[n - 1] == '.')
			n--;
		char *name = strndup(h, n);
		if (name == NULL || strcasestr(allowed, name) == NULL)
			abort();
		free(name);
	}
	if (same) {
		if (strncasecmp(origin_s, "http://", 7) != 0 && strncasecmp(origin_s, "https://", 8) != 0)
			abort();
		if (strpbrk(strstr(origin_s, "://") + 3, "/?#@") != NULL)
			abort();
	}
	free(origin);
	free(host);
	free(buf);
	return 0;
}

/* fuzz_origin.c: libFuzzer target for the Origin checks of fcgi/guard (allowed list and same-origin test). */
#include "config.h"

#include "fcgi/guard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Input layout: three NUL-separated strings, the allowed_origins list, the
 * Origin header and the Host header (missing ones are empty). Besides memory
 * safety it checks the properties the guard relies on: an origin is allowed
 * only if it literally appears in the list, and same-origin implies an
 * http(s) origin without path, user or query. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 3), *allowed, *origin, *host;

	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';
	allowed = buf;
	origin = allowed + strlen(allowed) + 1;
	if (origin > buf + size)
		origin = buf + size + 1;
	host = origin + strlen(origin) + 1;
	if (host > buf + size + 1)
		host = buf + size + 2;

	if (it_guard_origin_listed(allowed, origin)) {
		if (*origin == '\0' || strcmp(origin, "null") == 0 || strpbrk(origin, " \t") != NULL)
			abort();
		/* Never an http(s) origin unless listed word for word. */
		if ((strncasecmp(origin, "http://", 7) == 0 || strncasecmp(origin, "https://", 8) == 0) &&
		    strcasestr(allowed, origin) == NULL)
			abort();
	}
	if (it_guard_same_origin(origin, host)) {
		if (strncasecmp(origin, "http://", 7) != 0 && strncasecmp(origin, "https://", 8) != 0)
			abort();
		if (strpbrk(strstr(origin, "://") + 3, "/?#@") != NULL)
			abort();
	}
	free(buf);
	return 0;
}

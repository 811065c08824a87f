/* fuzz_query.c: libFuzzer target for the query-string and number parsers of fcgi/request (it_req_query, it_parse_uint).
 */
#include "config.h"

#include "fcgi/request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Input layout: byte 0 picks the output buffer size (1..64) so that the
 * length checks are hit at every size; the rest is the query string. Every
 * key the handlers look up is tried, plus a key taken from the input itself
 * (up to its first '='), so that matching is exercised beyond the fixed
 * names. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = {"session_id", "cursor", "timeout", "last_event_id", "limit", "before", ""};

static void check(const char *query, const char *key, size_t outlen)
{
	char *out = malloc(outlen);
	int n;

	/* Exactly outlen bytes, so ASan catches a write one past the end. */
	n = it_req_query(query, key, out, outlen);
	if (n >= 0) {
		if ((size_t)n >= outlen || out[n] != '\0' || memchr(out, '\0', (size_t)n) != NULL)
			abort(); /* the length must match, with no NUL inside */
		int64_t v;
		if (it_parse_uint(out, INT64_MAX / 2, &v) == 0 && v < 0)
			abort();
		if (it_parse_uint(out, 86400, &v) == 0 && (v < 0 || v > 86400))
			abort();
	} else if (n != -1 && n != -2) {
		abort();
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *query, key[64];
	size_t outlen, k = 0;

	if (size < 1)
		return 0;
	outlen = (size_t)(data[0] % 64) + 1;
	query = malloc(size);
	memcpy(query, data + 1, size - 1);
	query[size - 1] = '\0';
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		check(query, keys[i], outlen);
	while (query[k] && query[k] != '=' && query[k] != '&' && k < sizeof(key) - 1) {
		key[k] = query[k];
		k++;
	}
	key[k] = '\0';
	check(query, key, outlen);
	/* The whole input as a number, too: digits, signs, overflow. */
	{
		int64_t v;
		if (it_parse_uint(query, INT64_MAX, &v) == 0 && v < 0)
			abort();
	}
	free(query);
	return 0;
}

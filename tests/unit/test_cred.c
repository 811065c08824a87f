/* test_cred.c: unit tests for common/cred (the Bearer scheme and the credential's shape). */
#include "config.h"

#include "common/cred.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

/* The token it_cred_bearer finds in v, or "<none>" for another scheme. */
static const char *bearer(const char *v, char *out, size_t outlen)
{
	const char *tok;
	size_t n;

	if (!it_cred_bearer(v, strlen(v), &tok, &n))
		return "<none>";
	snprintf(out, outlen, "%.*s", (int)n, tok);
	return out;
}

static void scheme(void)
{
	char b[64];

	is_str(bearer("Bearer abc", b, sizeof(b)), "abc", "Bearer");
	is_str(bearer("bearer abc", b, sizeof(b)), "abc", "the scheme is case-insensitive");
	is_str(bearer("BEARER\tabc", b, sizeof(b)), "abc", "a tab after the scheme");
	is_str(bearer("  Bearer   abc  \t", b, sizeof(b)), "abc", "blanks around are not the token's");
	is_str(bearer("Bearer ", b, sizeof(b)), "", "an empty token is still the Bearer scheme");
	is_str(bearer("Bearer", b, sizeof(b)), "<none>", "the scheme alone");
	is_str(bearer("Bearerabc", b, sizeof(b)), "<none>", "no blank after the scheme");
	is_str(bearer("Basic dTpw", b, sizeof(b)), "<none>", "Basic is passed over");
	is_str(bearer("", b, sizeof(b)), "<none>", "empty");
	/* Not NUL-terminated: only len bytes count. */
	ok(it_cred_bearer("Bearer abcXYZ", 10, &(const char *){NULL}, &(size_t){0}) == 1, "len bounds the value");
}

static void copy(void)
{
	char out[8];

	is_int(it_cred_copy("abc", 3, out, sizeof(out)), 3, "visible ASCII is copied");
	is_str(out, "abc", "as it was");
	is_int(it_cred_copy("abcdefg", 7, out, sizeof(out)), 7, "the longest that fits");
	is_int(it_cred_copy("abcdefgh", 8, out, sizeof(out)), -EINVAL, "one more does not fit");
	is_int(it_cred_copy("", 0, out, sizeof(out)), -EINVAL, "empty");
	is_int(it_cred_copy("a b", 3, out, sizeof(out)), -EINVAL, "a space");
	is_int(it_cred_copy("a\x7f", 2, out, sizeof(out)), -EINVAL, "DEL");
	is_int(it_cred_copy("a\xc3\xa9", 3, out, sizeof(out)), -EINVAL, "a byte above ASCII");
	memcpy(out, "xyz", 4);
	is_int(it_cred_copy(out + 1, 2, out, sizeof(out)), 2, "from inside out");
	is_str(out, "yz", "moved, not garbled");
}

int main(void)
{
	scheme();
	copy();
	return tap_done();
}

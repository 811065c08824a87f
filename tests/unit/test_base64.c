/* test_base64.c: unit tests for common/base64: RFC 4648 vectors both ways, padding rules, refusals, no over-read. */
#include "config.h"

#include "common/base64.h"
#include "guard.h"
#include "tap.h"

#include <errno.h>

/* Decodes s placed right before an unmapped page; returns the length or a negative errno. */
static ssize_t dec(const char *s, unsigned char *out, size_t outlen)
{
	size_t n = strlen(s), mapped;
	unsigned char *g = guard_copy(s, n, &mapped);
	ssize_t r = it_base64_decode((const char *)g, n, out, outlen);

	guard_free(g, n, mapped);
	return r;
}

int main(void)
{
	static const char *const vectors[][2] = {
		{"", ""},
		{"Zg==", "f"},
		{"Zm8=", "fo"},
		{"Zm9v", "foo"},
		{"Zm9vYg==", "foob"},
		{"Zm9vYmE=", "fooba"},
		{"Zm9vYmFy", "foobar"},
		{"Zm9vYg", "foob"},
		{"Zm9vYmE", "fooba"},
	};
	unsigned char out[64];
	ssize_t r;

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		memset(out, 0, sizeof(out));
		r = dec(vectors[i][0], out, sizeof(out));
		ok(r == (ssize_t)strlen(vectors[i][1]) && memcmp(out, vectors[i][1], (size_t)r) == 0, "decodes \"%s\"",
		   vectors[i][0]);
	}
	r = dec("+/+/", out, sizeof(out));
	ok(r == 3 && out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf, "the standard alphabet's + and /");
	is_int(dec("-_-_", out, sizeof(out)), -EINVAL, "base64url characters refused");
	is_int(dec("Zm9v YmFy", out, sizeof(out)), -EINVAL, "a space refused");
	is_int(dec("Zm9vY", out, sizeof(out)), -EINVAL, "a length no encoding has refused");
	is_int(dec("Zg=", out, sizeof(out)), -EINVAL, "incomplete padding refused");
	is_int(dec("Zg===", out, sizeof(out)), -EINVAL, "too much padding refused");
	is_int(dec("Z===", out, sizeof(out)), -EINVAL, "padding after one character refused");
	is_int(dec("Zm=v", out, sizeof(out)), -EINVAL, "padding inside refused");
	is_int(dec("Zh==", out, sizeof(out)), -EINVAL, "non-zero leftover bits refused");
	is_int(dec("Zm9vYmFy", out, 5), -ENOSPC, "output too small refused");
	is_int(dec("Zm9vYmFy", out, 6), 6, "output exactly large enough");
	is_int(dec("YQ=", out, sizeof(out)), -EINVAL, "YQ= (as in a header cut short) refused");
	r = it_base64_decode_lax("-_+/", 4, out, sizeof(out));
	ok(r == 3 && out[0] == 0xfb && out[1] == 0xff && out[2] == 0xbf, "lax: either alphabet, mixed");
	is_int(it_base64_decode_lax("Zh", 2, out, sizeof(out)), 1, "lax: leftover bits ignored, padding optional");
	is_int(it_base64_decode_lax("Zg===", 5, out, sizeof(out)), 1, "lax: any padding");
	is_int(it_base64_decode_lax("Zm9vY", 5, out, sizeof(out)), -EINVAL, "lax: a length no encoding has refused");
	is_int(it_base64_decode_lax("Zm=v", 4, out, sizeof(out)), -EINVAL, "lax: padding inside refused");
	is_int(it_base64_decode_lax("Zm9vYmFy", 8, out, 5), -ENOSPC, "lax: output too small refused");
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]) - 2; i++) {
		char enc[16];
		it_base64_encode((const unsigned char *)vectors[i][1], strlen(vectors[i][1]), enc);
		is_str(enc, vectors[i][0], "encodes \"%s\"", vectors[i][1]);
	}
	return tap_done();
}

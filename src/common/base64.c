/* base64.c: strict decoding of standard base64 (RFC 4648 section 4), as tus headers carry it. */
#include "config.h"

#include "common/base64.h"

static int value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t it_base64_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
	size_t pad = 0, o = 0, i;
	unsigned acc = 0;
	int bits = 0;

	/* Padding: exactly what makes the length a multiple of four. */
	while (pad < 2 && n > 0 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0)
		return -1;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		int v = value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* What is left must be padding bits, and zero. */
	if (acc != 0)
		return -1;
	return (ssize_t)o;
}

/* base64.c: standard base64 (RFC 4648 section 4) as tus headers carry it: strict decoding, padded encoding. */
#include "config.h"

#include "common/base64.h"

#include <errno.h>
#include <string.h>

/* The one alphabet: encoding indexes it, decoding searches it. */
static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of c in the standard alphabet, with url also in base64url's
 * ("-" for 62, "_" for 63); -1 when it is not a digit. */
static int value(unsigned char c, int url)
{
	const char *p = memchr(alphabet, c, 64);

	if (p != NULL)
		return (int)(p - alphabet);
	if (url && c == '-')
		return 62;
	if (url && c == '_')
		return 63;
	return -1;
}

/* Decodes the n characters at in after the padding has been taken off;
 * lax takes either alphabet and ignores bits left over in the last one. */
static ssize_t decode(const char *in, size_t n, unsigned char *out, size_t outlen, int lax)
{
	size_t o = 0;
	unsigned acc = 0;
	int bits = 0;

	if (n % 4 == 1)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int v = value((unsigned char)in[i], lax);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outlen)
				return -ENOSPC;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* What is left must be padding bits, and zero. */
	if (acc != 0 && !lax)
		return -EINVAL;
	return (ssize_t)o;
}

ssize_t it_base64_decode(const char *in, size_t n, unsigned char *out, size_t outlen)
{
	size_t pad = 0;

	/* Padding: exactly what makes the length a multiple of four. */
	while (pad < 2 && n > 0 && in[n - 1] == '=') {
		n--;
		pad++;
	}
	if (pad > 0 && (n + pad) % 4 != 0)
		return -EINVAL;
	return decode(in, n, out, outlen, 0);
}

ssize_t it_base64_decode_lax(const char *in, size_t n, unsigned char *out, size_t outlen)
{
	while (n > 0 && in[n - 1] == '=')
		n--;
	return decode(in, n, out, outlen, 1);
}

void it_base64_encode(const unsigned char *in, size_t n, char *out)
{
	const char *a = alphabet;
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
}

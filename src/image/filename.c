/* filename.c: client-supplied file names made safe to store, display and send back in headers. */
#include "config.h"

#include "image/filename.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Decodes one UTF-8 character at s (n bytes available). Returns its length
 * and sets *cp, or 0 for a malformed, overlong or surrogate sequence. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t len, i;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

size_t it_filename_utf8(const char *in, char *out, size_t outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t n = strlen(in), i = 0, o = 0;

	if (outlen == 0)
		return 0;
	while (i < n) {
		uint32_t cp;
		size_t k = utf8_decode(s + i, n - i, &cp);
		const char *put = (const char *)s + i;
		size_t plen = k;
		if (k == 0) {
			put = "\xef\xbf\xbd";
			plen = 3;
			k = 1;
		}
		if (o + plen >= outlen)
			break;
		memcpy(out + o, put, plen);
		o += plen;
		i += k;
	}
	out[o] = '\0';
	return o;
}

static int dropped(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || /* C0, DEL, C1 */
	       (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || /* bidi overrides */
	       cp == 0x200e || cp == 0x200f || cp == 0xfeff;
}

size_t it_filename_sanitize(const char *in, const char *ext, char *out, size_t outlen)
{
	char clean[4096];
	const char *base, *p, *dot;
	size_t n, o = 0, start, end, extlen;

	if (outlen == 0)
		return 0;
	it_filename_utf8(in, clean, sizeof(clean));
	/* The last path component, whichever separator the client used. */
	base = clean;
	for (p = clean; *p; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	/* Drop control and bidi characters in place (the text is valid UTF-8
	 * now, so decoding cannot fail). */
	n = strlen(base);
	{
		char tmp[4096];
		size_t i = 0;
		while (i < n) {
			uint32_t cp = 0;
			size_t k = utf8_decode((const unsigned char *)base + i, n - i, &cp);
			if (k == 0)
				k = 1;
			if (cp == '\r' && i + 1 < n && base[i + 1] == '\n')
				; /* CRLF is one line break: one space, from the LF */
			else if (cp == '\t' || cp == '\r' || cp == '\n')
				tmp[o++] = ' ';
			else if (!dropped(cp)) {
				memcpy(tmp + o, base + i, k);
				o += k;
			}
			i += k;
		}
		tmp[o] = '\0';
		memcpy(clean, tmp, o + 1);
	}
	/* Trim spaces and dots at both ends: no hidden files, no "..". */
	start = 0;
	end = o;
	while (start < end && (clean[start] == ' ' || clean[start] == '.'))
		start++;
	while (end > start && (clean[end - 1] == ' ' || clean[end - 1] == '.'))
		end--;
	n = end - start;
	if (n == 0) {
		snprintf(out, outlen, "image%s%s", ext ? "." : "", ext ? ext : "");
		return strlen(out);
	}
	p = clean + start;
	if (n < outlen) {
		memcpy(out, p, n);
		out[n] = '\0';
		return n;
	}
	/* Too long: keep a short extension and cut the stem. */
	dot = NULL;
	for (const char *q = p; q < p + n; q++)
		if (*q == '.')
			dot = q;
	extlen = dot ? (size_t)(p + n - dot) : 0;
	if (extlen > 16 || extlen >= outlen / 2)
		extlen = 0;
	o = outlen - 1 - extlen;
	while (o > 0 && ((unsigned char)p[o] & 0xc0) == 0x80)
		o--;
	memcpy(out, p, o);
	memcpy(out + o, p + n - extlen, extlen);
	out[o + extlen] = '\0';
	return o + extlen;
}

int it_filename_disposition(const char *name, char *out, size_t outlen)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t o = 0;
	const unsigned char *s;
	int w = snprintf(out, outlen, "attachment; filename=\"");

	if (w < 0 || (size_t)w >= outlen)
		return -1;
	o = (size_t)w;
	for (s = (const unsigned char *)name; *s; s++) {
		if (o + 2 >= outlen)
			return -1;
		if (*s >= 0x80) {
			/* One '_' per character, not per byte. */
			if ((*s & 0xc0) == 0x80)
				continue;
			out[o++] = '_';
		} else {
			out[o++] = (*s == '"' || *s == '\\' || *s == '%' || *s < 0x20) ? '_' : (char)*s;
		}
	}
	w = snprintf(out + o, outlen - o, "\"; filename*=UTF-8''");
	if (w < 0 || (size_t)w >= outlen - o)
		return -1;
	o += (size_t)w;
	for (s = (const unsigned char *)name; *s; s++) {
		/* RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~" */
		int plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
			    (*s && strchr("!#$&+-.^_`|~", *s));
		if (o + (plain ? 1 : 3) >= outlen)
			return -1;
		if (plain) {
			out[o++] = (char)*s;
		} else {
			out[o++] = '%';
			out[o++] = hexd[*s >> 4];
			out[o++] = hexd[*s & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

/* filename.c: client-supplied file names made safe to store, display and send back in headers. */
#include "config.h"

#include "image/filename.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) ||		    /* C0, DEL, C1 */
		(cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || /* bidi overrides */
		cp == 0x200e || cp == 0x200f || cp == 0xfeff;
}

/* The extensions that name each accepted type; the first is the one given
 * to files whose name has none or a wrong one. */
static const struct {
	const char *content_type;
	const char *ext;
	const char *aliases[4];
} types[] = {
	{"image/jpeg", "jpg", {"jpg", "jpeg", "jpe", "jfif"}}, {"image/png", "png", {"png", NULL, NULL, NULL}},
	{"image/gif", "gif", {"gif", NULL, NULL, NULL}},       {"image/webp", "webp", {"webp", NULL, NULL, NULL}},
	{"image/heic", "heic", {"heic", "heif", "hif", NULL}}, {"image/heif", "heif", {"heif", "heic", "hif", NULL}},
	{"image/avif", "avif", {"avif", NULL, NULL, NULL}},
};

/* Whether e[0..n) names the same type as ext (case-insensitively). */
static int ext_matches(const char *e, size_t n, const char *ext)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(types[i].ext, ext) != 0)
			continue;
		for (size_t k = 0; k < 4 && types[i].aliases[k]; k++)
			if (strlen(types[i].aliases[k]) == n && strncasecmp(e, types[i].aliases[k], n) == 0)
				return 1;
		return 0;
	}
	return strlen(ext) == n && strncasecmp(e, ext, n) == 0;
}

/* The length of the extension at the end of p[0..n) (without its dot): 1
 * to 8 ASCII letters and digits, at least one a letter, after the last dot,
 * as extensions that systems act on look; 0 when the name has none
 * ("notes", "v1.final draft", "scan.001", "2024.05.01"). */
static size_t ext_len(const char *p, size_t n)
{
	size_t k = 0;
	int letter = 0;

	while (k < n && k <= 8 && (unsigned char)p[n - 1 - k] < 0x80 && isalnum((unsigned char)p[n - 1 - k])) {
		letter |= isalpha((unsigned char)p[n - 1 - k]) != 0;
		k++;
	}
	if (k == 0 || k > 8 || k >= n || p[n - 1 - k] != '.' || !letter)
		return 0;
	return k;
}

/* Writes stem p[0..n) with the extension of the content: a matching
 * extension is kept as written ("IMG.JPEG"), a wrong one is replaced
 * ("x.html" becomes "x.jpg", "a.jpg.html" becomes "a.jpg"), and a name
 * without one gets it ("scan" becomes "scan.jpg"). Only the last extension
 * decides how a saved file opens, so inner ones ("a.html.jpg") stay. */
static size_t with_ext(const char *p, size_t n, const char *ext, char *out, size_t outlen)
{
	size_t k = ext_len(p, n), o;
	const char *e = ext;
	size_t elen = strlen(ext);

	if (k > 0 && ext_matches(p + n - k, k, ext)) {
		e = p + n - k;
		elen = k;
		n -= k + 1;
	} else if (k > 0) {
		size_t k2;
		n -= k + 1;
		/* "a.jpg.html": the name already carried the right extension
		 * before the wrong one. */
		k2 = ext_len(p, n);
		if (k2 > 0 && ext_matches(p + n - k2, k2, ext)) {
			e = p + n - k2;
			elen = k2;
			n -= k2 + 1;
		}
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '.'))
		n--;
	if (n == 0) {
		p = "image";
		n = 5;
	}
	if (elen + 2 > outlen) {
		if (outlen > 0)
			out[0] = '\0';
		return 0;
	}
	/* Cut the stem (at a character boundary) so that the extension fits. */
	if (n + 1 + elen >= outlen) {
		n = outlen - 2 - elen;
		while (n > 0 && ((unsigned char)p[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(out, p, n);
	o = n;
	out[o++] = '.';
	memcpy(out + o, e, elen);
	o += elen;
	out[o] = '\0';
	return o;
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
	p = clean + start;
	if (ext != NULL)
		return with_ext(p, n, ext, out, outlen);
	if (n == 0) {
		snprintf(out, outlen, "image");
		return strlen(out);
	}
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

const char *it_filename_ext_for_type(const char *content_type)
{
	for (size_t i = 0; content_type != NULL && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(content_type, types[i].content_type) == 0)
			return types[i].ext;
	return NULL;
}

int it_filename_disposition(const char *name, char *out, size_t outlen)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t o = 0;
	const unsigned char *s;
	int w = snprintf(out, outlen, "attachment; filename=\"");

	if (w < 0 || (size_t)w >= outlen)
		return -ENOSPC;
	o = (size_t)w;
	for (s = (const unsigned char *)name; *s; s++) {
		if (o + 2 >= outlen)
			return -ENOSPC;
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
		return -ENOSPC;
	o += (size_t)w;
	for (s = (const unsigned char *)name; *s; s++) {
		/* RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~" */
		int plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
			(*s && strchr("!#$&+-.^_`|~", *s));
		if (o + (plain ? 1 : 3) >= outlen)
			return -ENOSPC;
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

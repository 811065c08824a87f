/* multipart.c: an incremental multipart/form-data parser (RFC 7578, RFC 2046) that never allocates. */
#include "config.h"

#include "parse/multipart.h"

#include "common/hex.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

enum { ST_START = 0, ST_PREAMBLE, ST_HEADERS, ST_DATA, ST_DONE, ST_ERROR };

/* What follows a boundary match. */
enum { D_NEED = 0, D_NOT = -1, D_NEXT = 1, D_CLOSE = 2 };

static int is_bchar(int c)
{
	/* RFC 2046 bcharsnospace, plus space (not as the last character). */
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		strchr("'()+_,-./:=? ", c) != NULL;
}

static int is_tchar(int c)
{
	/* RFC 9110 token characters. */
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_ows(int c)
{
	return c == ' ' || c == '\t';
}

/* ---------------------------------------------------------------- header values */

/* A cursor over one header value, [p, end). */
typedef struct span {
	const char *p, *end;
} span;

static void skip_ows(span *s)
{
	while (s->p < s->end && is_ows((unsigned char)*s->p))
		s->p++;
}

/* Reads a token into [*tok, *toklen]. Returns 0, or -1 when there is none. */
static int read_token(span *s, const char **tok, size_t *toklen)
{
	const char *start = s->p;

	while (s->p < s->end && is_tchar((unsigned char)*s->p))
		s->p++;
	*tok = start;
	*toklen = (size_t)(s->p - start);
	return *toklen ? 0 : -1;
}

/* Cuts a UTF-8 string at len bytes without splitting a character. */
static size_t utf8_cut(const char *s, size_t len)
{
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
		len--;
	return len;
}

/* Reads a parameter value (token or quoted-string) and writes it decoded to
 * out (cap bytes including the NUL). Sets *truncated when it did not fit.
 * Returns the decoded length, or -1 when malformed. */
static long read_value(span *s, char *out, size_t cap, int *truncated)
{
	size_t o = 0;
	int cut = 0;

	if (s->p < s->end && *s->p == '"') {
		s->p++;
		for (;;) {
			int c;
			if (s->p >= s->end)
				return -1; /* unterminated */
			c = (unsigned char)*s->p++;
			if (c == '"')
				break;
			/* quoted-pair only for the two characters that need it:
			 * old browsers send Windows paths with bare backslashes,
			 * which must survive as they are. */
			if (c == '\\' && s->p < s->end && (*s->p == '"' || *s->p == '\\'))
				c = (unsigned char)*s->p++;
			if (c == 0 || c == '\r' || c == '\n')
				return -1;
			if (o + 1 < cap)
				out[o++] = (char)c;
			else
				cut = 1;
		}
	} else {
		const char *tok;
		size_t n;
		if (read_token(s, &tok, &n) < 0)
			return -1;
		if (n + 1 > cap) {
			n = cap - 1;
			cut = 1;
		}
		memcpy(out, tok, n);
		o = n;
	}
	if (cut) {
		o = utf8_cut(out, o);
		if (truncated)
			*truncated = 1;
	}
	out[o] = '\0';
	return (long)o;
}

/* Decodes an RFC 5987 ext-value (charset'language'pct-encoded) into out
 * as UTF-8. Accepts UTF-8 and ISO-8859-1. Returns the length or -1. */
static long decode_ext(const char *in, size_t n, char *out, size_t cap, int *truncated)
{
	const char *q1 = memchr(in, '\'', n), *q2, *p, *end = in + n;
	int latin1;
	size_t o = 0;

	if (q1 == NULL)
		return -1;
	q2 = memchr(q1 + 1, '\'', (size_t)(end - q1 - 1));
	if (q2 == NULL)
		return -1;
	if ((size_t)(q1 - in) == 5 && strncasecmp(in, "UTF-8", 5) == 0)
		latin1 = 0;
	else if ((size_t)(q1 - in) == 10 && strncasecmp(in, "ISO-8859-1", 10) == 0)
		latin1 = 1;
	else
		return -1;
	for (p = q2 + 1; p < end;) {
		int c = (unsigned char)*p, h, l;
		if (c == '%') {
			if (end - p < 3 || (h = it_hex_value(p[1])) < 0 || (l = it_hex_value(p[2])) < 0)
				return -1;
			c = h << 4 | l;
			p += 3;
		} else if (c <= ' ' || c == '"' || c == 0x7f || c >= 0x80) {
			return -1; /* not an attr-char: must have been percent-encoded */
		} else {
			p++;
		}
		if (c == 0)
			return -1;
		if (latin1 && c >= 0x80) {
			if (o + 2 >= cap) {
				*truncated = 1;
				break;
			}
			out[o++] = (char)(0xc0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3f));
			continue;
		}
		if (o + 1 >= cap) {
			*truncated = 1;
			o = utf8_cut(out, o);
			break;
		}
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (long)o;
}

/* The Content-Disposition parameters a part reads, each at most once, and
 * what a second one or a malformed value is told. */
enum { P_NAME, P_FILENAME, P_FILENAME_EXT, P_OTHER };
static const struct {
	const char *key, *twice, *bad;
} params[] = {
	[P_NAME] = {"name", "A part's Content-Disposition has two name parameters.",
		    "A part's field name is malformed or too long."},
	[P_FILENAME] = {"filename", "A part's Content-Disposition has two filename parameters.",
			"A part's filename is malformed."},
	[P_FILENAME_EXT] = {"filename*", "A part's Content-Disposition has two filename* parameters.",
			    "A part's filename* is malformed."},
	[P_OTHER] = {NULL, NULL, "A part's Content-Disposition is malformed."},
};

/* Sets the part's file name from filename= (raw, vlen bytes, cut when it
 * did not fit), shortened at a character boundary to IT_MP_FILENAME_MAX. */
static void set_filename(it_mp_part *part, const char *raw, size_t vlen, int cut)
{
	if (vlen > IT_MP_FILENAME_MAX) {
		vlen = utf8_cut(raw, IT_MP_FILENAME_MAX);
		cut = 1;
	}
	memcpy(part->filename, raw, vlen);
	part->filename[vlen] = '\0';
	part->filename_truncated = cut;
}

/* Content-Disposition: form-data; name="x"; filename="y"; filename*=UTF-8''z */
static const char *parse_disposition(span s, it_mp_part *part)
{
	const char *tok;
	size_t n;
	unsigned seen = 0; /* 1 << P_*: the parameters read so far */
	int have_ext = 0;

	skip_ows(&s);
	if (read_token(&s, &tok, &n) < 0 || n != 9 || strncasecmp(tok, "form-data", 9) != 0)
		return "A part's Content-Disposition is not form-data.";
	for (;;) {
		char key[32], raw[IT_MP_FILENAME_MAX * 3 + 1], dec[IT_MP_FILENAME_MAX + 1];
		long vlen;
		int cut = 0, dcut = 0, k;

		skip_ows(&s);
		if (s.p >= s.end)
			break;
		if (*s.p != ';')
			return "A part's Content-Disposition is malformed.";
		s.p++;
		skip_ows(&s);
		if (s.p >= s.end)
			break;
		if (read_token(&s, &tok, &n) < 0)
			return "A part's Content-Disposition is malformed.";
		/* RFC 7578 4.2: "filename*" is a distinct parameter name. */
		if (n + 1 > sizeof(key))
			n = sizeof(key) - 1;
		memcpy(key, tok, n);
		key[n] = '\0';
		skip_ows(&s);
		if (s.p >= s.end || *s.p != '=')
			return "A part's Content-Disposition is malformed.";
		s.p++;
		skip_ows(&s);
		for (k = 0; k < P_OTHER && strcasecmp(key, params[k].key) != 0; k++)
			;
		/* A parameter given twice is refused rather than resolved: which
		 * one wins differs between parsers (a filter in front may check
		 * the first name while we would store under the last one). */
		if (k != P_OTHER && (seen & 1u << k))
			return params[k].twice;
		seen |= 1u << k;
		if (k == P_NAME)
			vlen = read_value(&s, part->name, sizeof(part->name), &cut);
		else
			vlen = read_value(&s, raw, sizeof(raw), &cut);
		if (vlen < 0 || (k == P_NAME && cut))
			return params[k].bad;
		if (k == P_FILENAME || k == P_FILENAME_EXT)
			part->has_filename = 1;
		if (k == P_FILENAME && !have_ext) {
			set_filename(part, raw, (size_t)vlen, cut);
		} else if (k == P_FILENAME_EXT && !cut && decode_ext(raw, (size_t)vlen, dec, sizeof(dec), &dcut) >= 0) {
			/* An undecodable filename* is ignored in favour of
			 * filename, as RFC 6266 asks of recipients. */
			memcpy(part->filename, dec, strlen(dec) + 1);
			part->filename_truncated = dcut;
			have_ext = 1;
		}
	}
	if (!(seen & 1u << P_NAME))
		return "A part has no field name.";
	return NULL;
}

/* Parses a header block [p, end) (lines ending in CRLF, without the blank
 * line) into part. Returns NULL or an error sentence. */
static const char *parse_headers(const char *p, const char *end, it_mp_part *part)
{
	int have_disposition = 0;

	memset(part, 0, sizeof(*part));
	while (p < end) {
		const char *eol = NULL, *colon, *q;
		span v;
		size_t nlen;

		for (q = p; q + 1 < end; q++)
			if (q[0] == '\r' && q[1] == '\n') {
				eol = q;
				break;
			}
		if (eol == NULL)
			eol = end;
		if (is_ows((unsigned char)*p))
			return "A part header is folded (not allowed in multipart/form-data).";
		colon = memchr(p, ':', (size_t)(eol - p));
		if (colon == NULL || colon == p)
			return "A part header is malformed.";
		for (q = p; q < colon; q++)
			if (!is_tchar((unsigned char)*q))
				return "A part header name is malformed.";
		for (q = colon + 1; q < eol; q++)
			if (*q == '\0' || *q == '\r' || *q == '\n' || ((unsigned char)*q < 0x20 && *q != '\t'))
				return "A part header contains control characters.";
		nlen = (size_t)(colon - p);
		v.p = colon + 1;
		v.end = eol;
		skip_ows(&v);
		while (v.end > v.p && is_ows((unsigned char)v.end[-1]))
			v.end--;
		if (nlen == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
			const char *err;
			if (have_disposition)
				return "A part has two Content-Disposition headers.";
			have_disposition = 1;
			if ((err = parse_disposition(v, part)) != NULL)
				return err;
		} else if (nlen == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
			size_t n = (size_t)(v.end - v.p);
			if (n > IT_MP_CTYPE_MAX)
				n = IT_MP_CTYPE_MAX;
			memcpy(part->content_type, v.p, n);
			part->content_type[n] = '\0';
		}
		p = eol == end ? end : eol + 2;
	}
	if (!have_disposition)
		return "A part has no Content-Disposition header.";
	return NULL;
}

/* ---------------------------------------------------------------- boundaries */

/* buf[0..len) starts with a boundary match of dl bytes: says whether it is a
 * delimiter line (D_NEXT, with *linelen), the close delimiter (D_CLOSE), not
 * a delimiter at all (D_NOT: the bytes are data), or cannot tell yet. */
static int classify(const char *buf, size_t len, size_t dl, size_t *linelen)
{
	size_t i = dl;

	if (i < len && buf[i] == '-') {
		if (i + 1 >= len)
			return D_NEED;
		if (buf[i + 1] != '-')
			return D_NOT;
		*linelen = i + 2;
		return D_CLOSE;
	}
	while (i < len && is_ows((unsigned char)buf[i])) {
		if (++i - dl > IT_MP_PADDING_MAX)
			return D_NOT;
	}
	if (i >= len)
		return D_NEED;
	if (buf[i] != '\r')
		return D_NOT;
	if (i + 1 >= len)
		return D_NEED;
	if (buf[i + 1] != '\n')
		return D_NOT;
	*linelen = i + 2;
	return D_NEXT;
}

/* Finds the first full match of d in buf[from..len) and sets *full; or else
 * the start of a partial match running off the end (*full = 0); or len. */
static size_t find_delim(const char *buf, size_t len, size_t from, const char *d, size_t dl, int *full)
{
	const char *m = len > from ? memmem(buf + from, len - from, d, dl) : NULL;
	size_t s;

	if (m) {
		*full = 1;
		return (size_t)(m - buf);
	}
	*full = 0;
	s = len > dl - 1 ? len - (dl - 1) : 0;
	if (s < from)
		s = from;
	for (; s < len; s++)
		if (buf[s] == d[0] && memcmp(buf + s, d, len - s) == 0)
			return s;
	return len;
}

int it_mp_boundary(const char *ct, char *out)
{
	span s;
	const char *tok;
	size_t n;
	int found = -EINVAL;

	if (ct == NULL)
		return -EINVAL;
	s.p = ct;
	s.end = ct + strlen(ct);
	skip_ows(&s);
	if (s.end - s.p < 19 || strncasecmp(s.p, "multipart/form-data", 19) != 0)
		return -EINVAL;
	s.p += 19;
	for (;;) {
		char key[16], val[IT_MP_BOUNDARY_MAX + 2];
		long vlen;
		int cut = 0;

		skip_ows(&s);
		if (s.p >= s.end)
			return found;
		if (*s.p != ';')
			return -EINVAL;
		s.p++;
		skip_ows(&s);
		if (read_token(&s, &tok, &n) < 0)
			return -EINVAL;
		if (n >= sizeof(key))
			n = sizeof(key) - 1;
		memcpy(key, tok, n);
		key[n] = '\0';
		skip_ows(&s);
		if (s.p >= s.end || *s.p != '=')
			return -EINVAL;
		s.p++;
		skip_ows(&s);
		if (s.p < s.end && *s.p != '"') {
			/* Unquoted boundaries may hold characters that are not token
			 * characters (":", "=", "?"); take everything up to ";". */
			const char *start = s.p;
			while (s.p < s.end && *s.p != ';' && !is_ows((unsigned char)*s.p))
				s.p++;
			n = (size_t)(s.p - start);
			if (n >= sizeof(val)) {
				cut = 1;
				n = 0;
			}
			memcpy(val, start, n);
			val[n] = '\0';
			vlen = (long)n;
		} else {
			vlen = read_value(&s, val, sizeof(val), &cut);
		}
		if (vlen < 0)
			return -EINVAL;
		if (strcasecmp(key, "boundary") == 0) {
			/* Two boundaries are ambiguous: a filter in front may split
			 * the body by the other one than we do, so neither is used. */
			if (found >= 0)
				return -EINVAL;
			if (cut || vlen < 1 || vlen > IT_MP_BOUNDARY_MAX || val[vlen - 1] == ' ')
				return -EINVAL;
			for (long i = 0; i < vlen; i++)
				if (!is_bchar((unsigned char)val[i]))
					return -EINVAL;
			memcpy(out, val, (size_t)vlen + 1);
			found = (int)vlen;
		}
	}
}

int it_mp_init(it_multipart *mp, const char *boundary, size_t max_header_bytes)
{
	size_t n = boundary ? strlen(boundary) : 0;

	memset(mp, 0, sizeof(*mp));
	if (n < 1 || n > IT_MP_BOUNDARY_MAX) {
		mp->state = ST_ERROR;
		mp->error = "The multipart boundary is malformed.";
		return -EINVAL;
	}
	memcpy(mp->delim, "\r\n--", 4);
	memcpy(mp->delim + 4, boundary, n);
	mp->dlen = n + 4;
	mp->max_header_bytes = max_header_bytes;
	mp->state = ST_START;
	return 0;
}

static ssize_t fail(it_multipart *mp, const char *why)
{
	mp->state = ST_ERROR;
	mp->error = why;
	return -EBADMSG;
}

/* Whether the body opens with the first delimiter, which may come without
 * the CRLF in front of it (RFC 2046 5.1.1): the answer of classify, with
 * D_NOT also when the bytes cannot be that delimiter. */
static int opening_delim(const it_multipart *mp, const char *buf, size_t len, size_t *linelen)
{
	if (len < mp->dlen - 2)
		return memcmp(buf, mp->delim + 2, len) == 0 ? D_NEED : D_NOT;
	if (memcmp(buf, mp->delim + 2, mp->dlen - 2) != 0)
		return D_NOT;
	return classify(buf, len, mp->dlen - 2, linelen);
}

/* Finds the next delimiter line in buf[from..len), passing over
 * boundary-like bytes that are not one. Sets *at to where it starts (or
 * where a possible one starts, or len) and returns D_NEXT or D_CLOSE (with
 * *linelen), or D_NEED when the bytes end before it is certain. */
static int next_delim(const it_multipart *mp, const char *buf, size_t len, size_t from, size_t *at, size_t *linelen)
{
	for (;;) {
		int full, c;

		*at = find_delim(buf, len, from, mp->delim, mp->dlen, &full);
		if (!full)
			return D_NEED;
		c = classify(buf + *at, len - *at, mp->dlen, linelen);
		if (c != D_NOT)
			return c;
		from = *at + 1;
	}
}

/* Reads a part's header block from h[0..avail) into part. Returns its
 * length with the blank line that ends it, 0 when it has not all arrived,
 * or -1 (mp failed). */
static ssize_t header_block(it_multipart *mp, const char *h, size_t avail, it_mp_part *part)
{
	size_t limit = mp->max_header_bytes + 4, n = avail, hlen;
	const char *end = NULL, *err;

	if (n >= 2 && h[0] == '\r' && h[1] == '\n')
		return fail(mp, "A part has no headers (a Content-Disposition is required).");
	if (n > limit)
		n = limit;
	for (size_t i = 0; i + 3 < n; i++) {
		if (h[i] == '\r' && h[i + 1] == '\n' && h[i + 2] == '\r' && h[i + 3] == '\n') {
			end = h + i;
			break;
		}
	}
	if (end == NULL) {
		if (avail >= limit)
			return fail(mp, "A part's header block is too large.");
		return 0;
	}
	hlen = (size_t)(end - h);
	if ((err = parse_headers(h, h + hlen + 2, part)) != NULL)
		return fail(mp, err);
	return (ssize_t)(hlen + 4);
}

/* The state machine stays one switch, so that every transition can be read
 * in one place: each case names what its state waits for and which state
 * follows; the reading itself is done by the functions above. */
ssize_t it_mp_parse(it_multipart *mp, const char *buf, size_t len, it_mp_event *ev)
{
	size_t off = 0, p = 0, ll = 0;
	ssize_t n;
	int c;

	ev->type = IT_MP_NEED_MORE;
	ev->data = NULL;
	ev->len = 0;
	for (;;) {
		switch (mp->state) {
		case ST_START:
			c = opening_delim(mp, buf + off, len - off, &ll);
			if (c == D_NEED)
				return (ssize_t)off;
			if (c == D_NOT) {
				mp->state = ST_PREAMBLE;
				break;
			}
			off += ll;
			mp->state = c == D_CLOSE ? ST_DONE : ST_HEADERS;
			break;

		case ST_PREAMBLE:
			/* The preamble is dropped; only a possible delimiter at
			 * the end is held back. */
			c = next_delim(mp, buf, len, off, &p, &ll);
			if (c == D_NEED)
				return (ssize_t)p;
			off = p + ll;
			mp->state = c == D_CLOSE ? ST_DONE : ST_HEADERS;
			break;

		case ST_HEADERS:
			n = header_block(mp, buf + off, len - off, &ev->part);
			if (n <= 0)
				return n < 0 ? -1 : (ssize_t)off;
			mp->parts++;
			mp->state = ST_DATA;
			ev->type = IT_MP_PART;
			return (ssize_t)off + n;

		case ST_DATA:
			c = next_delim(mp, buf, len, off, &p, &ll);
			if (p > off) {
				ev->type = IT_MP_DATA;
				ev->data = buf + off;
				ev->len = p - off;
				return (ssize_t)p;
			}
			if (c == D_NEED)
				return (ssize_t)off;
			mp->state = c == D_CLOSE ? ST_DONE : ST_HEADERS;
			ev->type = IT_MP_PART_END;
			return (ssize_t)(off + ll);

		case ST_DONE: ev->type = IT_MP_END; return (ssize_t)len;

		default: return -EBADMSG;
		}
	}
}

int it_mp_done(const it_multipart *mp)
{
	return mp->state == ST_DONE;
}

const char *it_mp_error(const it_multipart *mp)
{
	return mp->error;
}

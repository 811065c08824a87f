/* origin.c: the one Origin and CORS rule of every server: whether a request's Origin may use the API or open a
 * WebSocket, and the CORS answer. */
#include "config.h"

#include "common/origin.h"

#include "common/host.h"

#include <string.h>
#include <strings.h>

enum scheme { SCHEME_HTTP, SCHEME_HTTPS, SCHEME_OTHER };

/* An origin ("scheme://host[:port]") taken apart; everything points into the
 * string it was parsed from. */
typedef struct origin {
	const char *scheme;
	size_t scheme_len;
	enum scheme kind;
	const char *name; /* without a trailing dot */
	size_t name_len;
	long port; /* explicit, else the scheme's default; -1: none */
} origin;

/* No port: the scheme's default or none, and, for a Host, "a default port"
 * (see is_default). */
#define NO_PORT (-1L)

static int is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Length of the scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ))
 * at the start of s, when "://" follows it; 0 otherwise. */
static size_t scheme_length(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || !is_alpha(s[0]))
		return 0;
	for (i = 1; i < n; i++)
		if (!is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9') && s[i] != '+' && s[i] != '-' && s[i] != '.')
			break;
	if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
		return 0;
	return i;
}

static long port_value(const it_hostport *hp)
{
	long v = 0;
	size_t i;

	if (hp->port == NULL)
		return NO_PORT;
	for (i = 0; i < hp->port_len; i++) /* at most 5 digits (it_host_split) */
		v = v * 10 + (hp->port[i] - '0');
	return v;
}

/* The name of hp without one trailing dot: "example.org." is the absolute
 * form of "example.org", and some clients and proxies add or drop it. */
static void name_of(const it_hostport *hp, const char **name, size_t *len)
{
	*name = hp->name;
	*len = hp->name_len;
	if (*len > 1 && (*name)[0] != '[' && (*name)[*len - 1] == '.')
		(*len)--;
}

/* Parses s (n bytes) into *o. Returns 0, or -1 when s is not one
 * scheme://host[:port]. */
static int parse_origin(const char *s, size_t n, origin *o)
{
	it_hostport hp;
	size_t slen = scheme_length(s, n);

	if (slen == 0 || it_host_split(s + slen + 3, n - slen - 3, &hp) < 0)
		return -1;
	o->scheme = s;
	o->scheme_len = slen;
	if (slen == 4 && strncasecmp(s, "http", 4) == 0)
		o->kind = SCHEME_HTTP;
	else if (slen == 5 && strncasecmp(s, "https", 5) == 0)
		o->kind = SCHEME_HTTPS;
	else
		o->kind = SCHEME_OTHER;
	name_of(&hp, &o->name, &o->name_len);
	o->port = port_value(&hp);
	if (o->port == NO_PORT && o->kind != SCHEME_OTHER)
		o->port = o->kind == SCHEME_HTTP ? 80 : 443;
	return 0;
}

static int same_text(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

/* Whether port is a default port as far as same-origin goes: 80, 443, or
 * none written (a Host whose scheme is not known here). */
static int is_default(long port)
{
	return port == NO_PORT || port == 80 || port == 443;
}

static int same_as_host(const origin *o, const char *host, size_t hlen)
{
	it_hostport hp;
	const char *name;
	size_t name_len;
	long port;

	if (o->kind == SCHEME_OTHER || host == NULL || it_host_split(host, hlen, &hp) < 0)
		return 0;
	name_of(&hp, &name, &name_len);
	if (!same_text(o->name, o->name_len, name, name_len))
		return 0;
	port = port_value(&hp);
	return o->port == port || (is_default(o->port) && is_default(port));
}

/* Whether entry (n bytes) is a scheme wildcard ("<scheme>://" and a star,
 * the scheme not http or https) for o's scheme. */
static int wildcard_matches(const char *entry, size_t n, const origin *o)
{
	size_t slen = scheme_length(entry, n);

	if (slen == 0 || n != slen + 4 || entry[n - 1] != '*')
		return 0;
	if (same_text(entry, slen, "http", 4) || same_text(entry, slen, "https", 5))
		return 0;
	return same_text(entry, slen, o->scheme, o->scheme_len);
}

static int entry_matches(const char *entry, size_t n, const origin *o)
{
	origin e;

	if (wildcard_matches(entry, n, o))
		return 1;
	if (parse_origin(entry, n, &e) < 0)
		return 0;
	return same_text(e.scheme, e.scheme_len, o->scheme, o->scheme_len) &&
		same_text(e.name, e.name_len, o->name, o->name_len) && e.port == o->port;
}

static int listed(const char *allowed, const origin *o)
{
	const char *p = allowed;

	if (p == NULL)
		return 0;
	while (*p) {
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (n && entry_matches(p, n, o))
			return 1;
		p += n;
	}
	return 0;
}

int it_origin_same(const char *origin_value, size_t olen, const char *host, size_t hlen)
{
	origin o;

	return origin_value != NULL && parse_origin(origin_value, olen, &o) == 0 && same_as_host(&o, host, hlen);
}

int it_origin_listed(const char *allowed, const char *origin_value, size_t olen)
{
	origin o;

	return origin_value != NULL && parse_origin(origin_value, olen, &o) == 0 && listed(allowed, &o);
}

it_origin_verdict it_origin_check(const char *origin_value, size_t olen, const char *host, size_t hlen,
				  const char *allowed)
{
	origin o;

	if (origin_value == NULL || olen == 0)
		return IT_ORIGIN_ABSENT;
	if (parse_origin(origin_value, olen, &o) < 0)
		return IT_ORIGIN_REFUSED;
	if (same_as_host(&o, host, hlen))
		return IT_ORIGIN_SAME;
	if (listed(allowed, &o))
		return IT_ORIGIN_LISTED;
	return IT_ORIGIN_REFUSED;
}

const char *it_origin_verdict_name(it_origin_verdict v)
{
	switch (v) {
	case IT_ORIGIN_ABSENT: return "absent";
	case IT_ORIGIN_SAME: return "same";
	case IT_ORIGIN_LISTED: return "listed";
	case IT_ORIGIN_REFUSED: return "refused";
	}
	return "?";
}

static int is_method(const char *m, size_t mlen, const char *name)
{
	return m != NULL && mlen == strlen(name) && memcmp(m, name, mlen) == 0;
}

static void add(it_cors *c, const char *name, const char *value, size_t len)
{
	c->h[c->n].name = name;
	c->h[c->n].value = value;
	c->h[c->n].value_len = len;
	c->n++;
}

#define ADD_STATIC(c, name, value) add((c), (name), (value), sizeof(value) - 1)

void it_cors_decide(it_origin_verdict v, const char *method, size_t mlen, const char *origin_value, size_t olen,
		    it_cors *out)
{
	/* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET, and
	 * counts as state-changing. */
	int options = is_method(method, mlen, "OPTIONS");
	int safe = options || is_method(method, mlen, "GET") || is_method(method, mlen, "HEAD");

	out->status = 0;
	out->n = 0;
	switch (v) {
	case IT_ORIGIN_ABSENT:
		if (options) {
			ADD_STATIC(out, "Allow", IT_CORS_ALLOW_METHODS);
			out->status = 204;
		}
		return;
	case IT_ORIGIN_REFUSED:
		if (options || !safe)
			out->status = 403;
		return;
	case IT_ORIGIN_LISTED:
		add(out, "Access-Control-Allow-Origin", origin_value, olen);
		ADD_STATIC(out, "Vary", "Origin");
		if (!options)
			ADD_STATIC(out, "Access-Control-Expose-Headers", IT_CORS_EXPOSE_HEADERS);
		break;
	case IT_ORIGIN_SAME: break;
	}
	if (options) {
		ADD_STATIC(out, "Access-Control-Allow-Methods", IT_CORS_ALLOW_METHODS);
		ADD_STATIC(out, "Access-Control-Allow-Headers", IT_CORS_ALLOW_HEADERS);
		ADD_STATIC(out, "Access-Control-Max-Age", IT_CORS_MAX_AGE);
		out->status = 204;
	}
}

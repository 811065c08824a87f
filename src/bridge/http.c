/* http.c: the bridge's parser for the HTTP/1.1 request head of a WebSocket upgrade (no allocation). */
#include "config.h"

#include "bridge/http.h"

#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the blank line ending the head; returns its end offset or -2. */
static int head_end(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i + 3 < len; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
			return (int)(i + 4);
	return -2;
}

int it_http_parse_request(const char *buf, size_t len, it_http_request *req)
{
	size_t cap = req->num_headers, pos = 0, end, eol;
	int total;

	req->num_headers = 0;
	/* A request may not start with a blank line here: the head arrives on
	 * a fresh connection, and nothing legitimate sends one first. */
	total = head_end(buf, len);
	if (total < 0) {
		/* Fail early on bytes that can never begin a valid head. */
		if (len > 0 && !is_tchar((unsigned char)buf[0]))
			return -1;
		return -2;
	}
	end = (size_t)total - 2; /* the last header line ends here */

	/* Request line: method SP target SP HTTP/1.x CRLF */
	req->method = buf;
	while (pos < end && is_tchar((unsigned char)buf[pos]))
		pos++;
	req->method_len = pos;
	if (pos == 0 || pos >= end || buf[pos] != ' ')
		return -1;
	pos++;
	req->target = buf + pos;
	while (pos < end && (unsigned char)buf[pos] > ' ' && buf[pos] != 0x7F)
		pos++;
	req->target_len = (size_t)(buf + pos - req->target);
	if (req->target_len == 0 || pos >= end || buf[pos] != ' ')
		return -1;
	pos++;
	if (end - pos < 10 || memcmp(buf + pos, "HTTP/1.", 7) != 0 || buf[pos + 7] < '0' || buf[pos + 7] > '9' ||
	    buf[pos + 8] != '\r' || buf[pos + 9] != '\n')
		return -1;
	req->minor_version = buf[pos + 7] - '0';
	pos += 10;

	while (pos < end) {
		it_http_header *h;
		size_t vstart, vend;

		for (eol = pos; eol < end && buf[eol] != '\r'; eol++)
			;
		if (eol + 1 >= (size_t)total || buf[eol + 1] != '\n')
			return -1;
		/* Obsolete line folding (a line starting with a blank) is refused,
		 * as RFC 9112 allows, rather than guessed at. */
		if (buf[pos] == ' ' || buf[pos] == '\t')
			return -1;
		if (req->num_headers == cap)
			return -1;
		h = &req->headers[req->num_headers];
		h->name = buf + pos;
		while (pos < eol && is_tchar((unsigned char)buf[pos]))
			pos++;
		h->name_len = (size_t)(buf + pos - h->name);
		if (h->name_len == 0 || pos >= eol || buf[pos] != ':')
			return -1;
		pos++;
		vstart = pos;
		for (; pos < eol; pos++) {
			unsigned char c = (unsigned char)buf[pos];
			if ((c < ' ' && c != '\t') || c == 0x7F)
				return -1;
		}
		vend = eol;
		while (vstart < vend && (buf[vstart] == ' ' || buf[vstart] == '\t'))
			vstart++;
		while (vend > vstart && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
			vend--;
		h->value = buf + vstart;
		h->value_len = vend - vstart;
		req->num_headers++;
		pos = eol + 2;
	}
	return total;
}

const it_http_header *it_http_find(const it_http_request *req, const char *name)
{
	size_t i, n = strlen(name);

	for (i = 0; i < req->num_headers; i++)
		if (req->headers[i].name_len == n && strncasecmp(req->headers[i].name, name, n) == 0)
			return &req->headers[i];
	return NULL;
}

int it_http_has_token(const char *value, size_t value_len, const char *token)
{
	size_t tlen = strlen(token), i = 0;

	while (i < value_len) {
		size_t s, e;

		while (i < value_len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
			i++;
		s = i;
		while (i < value_len && value[i] != ',')
			i++;
		e = i;
		while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
			e--;
		if (e - s == tlen && strncasecmp(value + s, token, tlen) == 0)
			return 1;
	}
	return 0;
}

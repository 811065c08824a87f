/* request.c: one HTTP request as the FastCGI or CGI front sees it, and its response. */
#include "config.h"

#include "fcgi/request.h"

#include "common/clock.h"
#include "common/hex.h"
#include "common/id.h"
#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

/* Response headers are few and short; 8 KiB is far more than any handler needs. */
#define HEADERS_MAX 8192

const char *it_http_reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 423: return "Locked";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	/* tus 1.0: Upload-Checksum does not match the bytes. */
	case 460: return "Checksum Mismatch";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "";
	}
}

const char *it_req_env(const it_req *req, const char *name)
{
	if (req->fcgx)
		return FCGX_GetParam(name, req->envp);
	return getenv(name);
}

/* Whether a CGI request without CONTENT_LENGTH has a body that ends where
 * stdin does. RFC 3875 (4.1.2, 4.2) says it has no body at all: the server
 * sets CONTENT_LENGTH whenever there is one, and need not close stdin after
 * it. Apache's mod_cgi is the exception that matters: it passes a chunked
 * body de-chunked, without CONTENT_LENGTH, keeps the client's header as
 * HTTP_TRANSFER_ENCODING, and closes stdin at the body's end. Only that case
 * reads to the end of stdin; anything else would wait for an end that may
 * never come. (lighttpd collects a chunked body first and then sets
 * CONTENT_LENGTH; FastCGI needs none of this: its stdin stream ends with an
 * empty record.) */
static int body_to_eof(const it_req *req)
{
	const char *te = it_req_env(req, "HTTP_TRANSFER_ENCODING");

	return te != NULL && strcasestr(te, "chunked") != NULL;
}

int it_req_init(it_req *req, FCGX_Request *fcgx, const char *url_prefix)
{
	const char *uri, *q, *cl;
	size_t plen, prelen = url_prefix ? strlen(url_prefix) : 0;

	memset(req, 0, sizeof(*req));
	req->started = it_clock_s();
	req->fcgx = fcgx;
	req->envp = fcgx ? fcgx->envp : environ;
	it_buf_init(&req->headers, HEADERS_MAX);
	req->status = 0;
	req->content_length = -1;

	req->method = it_req_env(req, "REQUEST_METHOD");
	if (req->method == NULL || *req->method == '\0')
		req->method = "GET";
	req->remote_addr = it_req_env(req, "REMOTE_ADDR");
	if (req->remote_addr == NULL)
		req->remote_addr = "-";
	cl = it_req_env(req, "CONTENT_LENGTH");
	if (cl && *cl) {
		int64_t v;
		if (it_parse_uint(cl, INT64_MAX / 2, &v) < 0)
			return 400;
		req->content_length = v;
	} else if (fcgx == NULL && !body_to_eof(req)) {
		req->content_length = 0;
	}

	/* REQUEST_URI is the one variable lighttpd, Apache (mod_proxy_fcgi,
	 * mod_fcgid, mod_cgi) and rewrites all agree on: the original URI. */
	uri = it_req_env(req, "REQUEST_URI");
	if (uri == NULL || *uri == '\0') {
		const char *sn = it_req_env(req, "SCRIPT_NAME"), *pi = it_req_env(req, "PATH_INFO");
		snprintf(req->path, sizeof(req->path), "%s%s", sn ? sn : "", pi ? pi : "");
		q = it_req_env(req, "QUERY_STRING");
		req->query = q ? q : "";
	} else {
		q = strchr(uri, '?');
		plen = q ? (size_t)(q - uri) : strlen(uri);
		if (plen >= sizeof(req->path)) {
			snprintf(req->path, sizeof(req->path), "/");
			return 400;
		}
		memcpy(req->path, uri, plen);
		req->path[plen] = '\0';
		req->query = q ? q + 1 : "";
	}
	/* Only a whole path segment is a prefix: "/imagetools" must not be
	 * stripped from "/imagetoolsx/api/v1/...". */
	req->url_prefix = "";
	if (prelen && strncmp(req->path, url_prefix, prelen) == 0 &&
	    (req->path[prelen] == '/' || req->path[prelen] == '\0')) {
		memmove(req->path, req->path + prelen, strlen(req->path + prelen) + 1);
		req->url_prefix = url_prefix;
	}
	return 0;
}

static void log_path(const char *path, char *out, size_t outlen)
{
	/* Session ids are capabilities: only a short prefix reaches the log. */
	size_t o = 0;
	const char *p = path;

	while (*p && o + 12 < outlen) {
		const char *seg = p, *end = strchr(p, '/');
		size_t n;
		if (end == p) {
			out[o++] = '/';
			p++;
			continue;
		}
		n = end ? (size_t)(end - seg) : strlen(seg);
		if (n >= 22 && n != 36) {
			o += (size_t)snprintf(out + o, outlen - o, "%.6s...", seg);
		} else {
			if (n > outlen - o - 1)
				n = outlen - o - 1;
			memcpy(out + o, seg, n);
			o += n;
		}
		p = seg + (end ? (size_t)(end - seg) : strlen(seg));
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

void it_req_finish(it_req *req)
{
	double ms = (it_clock_s() - req->started) * 1e3;
	char path[256];

	log_path(req->path, path, sizeof(path));
	it_log_info("%s %s %s %d %lld %.1fms%s%s", req->remote_addr, req->method, path, req->status,
		    (long long)req->bytes_out, ms, req->log_note[0] ? " " : "", req->log_note);
	it_buf_free(&req->headers);
}

void it_req_body_limits(it_req *req, int64_t grace_s, int64_t min_rate, int64_t cap_s)
{
	req->body_grace_s = grace_s < 0 ? 0 : grace_s;
	req->body_min_rate = min_rate < 0 ? 0 : min_rate;
	req->body_cap_s = cap_s < 0 ? 0 : cap_s;
}

int64_t it_req_body_allowance_ms(int64_t grace_s, int64_t min_rate, int64_t cap_s, int64_t received)
{
	const int64_t big = INT64_MAX / 4;
	int64_t ms;

	if (min_rate <= 0)
		return INT64_MAX;
	if (grace_s < 0)
		grace_s = 0;
	if (received < 0)
		received = 0;
	/* received / min_rate seconds, in milliseconds, without overflow:
	 * whole seconds first, then the remainder (less than min_rate). */
	ms = received / min_rate;
	ms = ms > big / 1000 ? big : ms * 1000 + (received % min_rate) * 1000 / min_rate;
	ms += grace_s > big / 1000 ? big : grace_s * 1000;
	if (ms > big)
		ms = big;
	if (cap_s > 0 && cap_s <= big / 1000 && ms > cap_s * 1000)
		ms = cap_s * 1000;
	return ms;
}

/* Milliseconds left before the body's deadline, given extra bytes read in
 * the current call; INT64_MAX without a deadline. Starts the clock. */
static int64_t body_left_ms(it_req *req, size_t extra)
{
	int64_t allow, now;

	allow = it_req_body_allowance_ms(req->body_grace_s, req->body_min_rate, req->body_cap_s,
					 req->body_received + (int64_t)extra);
	if (allow == INT64_MAX)
		return INT64_MAX;
	now = it_clock_ms();
	if (!req->body_clock) {
		req->body_started = now;
		req->body_clock = 1;
	}
	return allow - (now - req->body_started);
}

/* Sets the receive timeout of a FastCGI connection (0: none). */
static int set_recv_timeout(int fd, int64_t ms)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
	return setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* FastCGI: libfcgi reads the connection whenever its stream has no bytes
 * left, blocking, and FCGX_GetStr keeps reading until it has all it was
 * asked for. Waiting in poll() first is not enough: libfcgi may already hold
 * the next records in a private buffer, and the descriptor would then stay
 * quiet although the body is complete. So the bytes the stream shows are
 * taken without waiting, and every read that may wait asks for one byte only
 * with the time left as the socket's receive timeout: libfcgi's read() then
 * fails with EAGAIN at the deadline, and no byte is ever waited for longer. */
static ssize_t fcgi_read(it_req *req, char *buf, size_t n)
{
	FCGX_Stream *in = req->fcgx->in;
	int fd = req->fcgx->ipcFd;
	size_t got = 0;

	while (got < n) {
		ptrdiff_t avail = in->stop - in->rdNext;
		int64_t left;
		int r, timed;

		if (avail > 0) {
			size_t m = (size_t)avail < n - got ? (size_t)avail : n - got;
			got += (size_t)FCGX_GetStr(buf + got, (int)m, in);
			continue;
		}
		if (FCGX_HasSeenEOF(in))
			break;
		left = body_left_ms(req, got);
		if (left == INT64_MAX) {
			r = FCGX_GetStr(buf + got, (int)(n - got), in);
			got += r > 0 ? (size_t)r : 0;
			break;
		}
		/* Past the deadline, bytes that are already there still count. */
		timed = set_recv_timeout(fd, left > 1 ? left : 1) == 0;
		r = FCGX_GetStr(buf + got, 1, in);
		if (timed)
			set_recv_timeout(fd, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	req->body_received += (int64_t)got;
	if (got > 0)
		return (ssize_t)got;
	switch (FCGX_GetError(in)) {
	case 0: return 0;
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
		req->body_too_slow = 1;
		return IT_REQ_TOO_SLOW;
	default: return -1;
	}
}

/* CGI: the body is a pipe or socket on fd 0 that nothing else buffers, so
 * poll() with the time left is exact. */
static ssize_t cgi_read(it_req *req, void *buf, size_t n)
{
	/* Never past CONTENT_LENGTH: stdin need not end there. */
	if (req->content_length >= 0) {
		if (req->body_received >= req->content_length)
			return 0;
		if ((int64_t)n > req->content_length - req->body_received)
			n = (size_t)(req->content_length - req->body_received);
	}
	for (;;) {
		int64_t left = body_left_ms(req, 0);
		ssize_t r;

		if (left != INT64_MAX) {
			struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
			int rc = poll(&p, 1, left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left);
			if (rc < 0 && errno == EINTR)
				continue;
			if (rc == 0) {
				req->body_too_slow = 1;
				return IT_REQ_TOO_SLOW;
			}
		}
		r = read(STDIN_FILENO, buf, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r > 0)
			req->body_received += r;
		return r;
	}
}

ssize_t it_req_read(it_req *req, void *buf, size_t n)
{
	if (req->body_too_slow)
		return IT_REQ_TOO_SLOW;
	if (n > INT32_MAX)
		n = INT32_MAX;
	if (n == 0)
		return 0;
	return req->fcgx ? fcgi_read(req, buf, n) : cgi_read(req, buf, n);
}

int it_req_drain(it_req *req, int64_t max)
{
	char tmp[8192];
	int64_t total = 0;
	ssize_t r;

	while ((r = it_req_read(req, tmp, sizeof(tmp))) > 0) {
		total += r;
		if (total > max)
			return -1;
	}
	return r < 0 ? -1 : 0;
}

int it_resp_header(it_req *req, const char *name, const char *fmt, ...)
{
	char value[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	for (char *p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	return it_buf_printf(&req->headers, "%s: %s\r\n", name, value) < 0 ? -1 : 0;
}

static int raw_write(it_req *req, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (req->fcgx) {
		if (FCGX_PutStr(p, (int)n, req->fcgx->out) != (int)n)
			return -1;
	} else if (fwrite(p, 1, n, stdout) != n) {
		return -1;
	}
	return 0;
}

int it_resp_head(it_req *req, int status, const char *content_type, it_buf *out)
{
	it_buf_printf(out, "Status: %d %s\r\n", status, it_http_reason(status));
	if (content_type)
		it_buf_printf(out, "Content-Type: %s\r\n", content_type);
	it_buf_puts(out, "X-Content-Type-Options: nosniff\r\n");
	if (req->headers.len)
		it_buf_append(out, req->headers.data, req->headers.len);
	return it_buf_puts(out, "\r\n") < 0 ? -1 : 0;
}

int it_resp_begin(it_req *req, int status, const char *content_type)
{
	it_buf h;
	int rc;

	if (req->headers_sent)
		return 0;
	req->headers_sent = 1;
	req->status = status;
	it_buf_init(&h, HEADERS_MAX * 2);
	rc = it_resp_head(req, status, content_type, &h);
	if (rc == 0)
		rc = raw_write(req, h.data, h.len);
	it_buf_free(&h);
	return rc;
}

int it_resp_write(it_req *req, const void *p, size_t n)
{
	if (!req->headers_sent && it_resp_begin(req, 200, NULL) < 0)
		return -1;
	if (raw_write(req, p, n) < 0)
		return -1;
	req->bytes_out += (int64_t)n;
	return 0;
}

int it_resp_puts(it_req *req, const char *s)
{
	return it_resp_write(req, s, strlen(s));
}

int it_resp_flush(it_req *req)
{
	if (req->fcgx)
		return FCGX_FFlush(req->fcgx->out) < 0 ? -1 : 0;
	return fflush(stdout) == 0 ? 0 : -1;
}

/* Sends obj as the whole body, as content type ctype. */
static int send_json(it_req *req, int status, const char *ctype, json_object *obj)
{
	size_t len;
	const char *s =
		json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);

	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_header(req, "Content-Length", "%zu", len + 1);
	if (it_resp_begin(req, status, ctype) < 0)
		return -1;
	if (it_resp_write(req, s, len) < 0)
		return -1;
	return it_resp_write(req, "\n", 1);
}

int it_resp_json(it_req *req, int status, json_object *obj)
{
	return send_json(req, status, "application/json", obj);
}

int it_resp_problem_ext(it_req *req, int status, const char *slug, json_object *ext, const char *detail, ...)
{
	json_object *o = json_object_new_object();
	char type[128], text[1024];
	va_list ap;
	int rc = -1;

	snprintf(type, sizeof(type), "urn:imagetools:problem:%s", slug);
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "title", json_object_new_string(it_http_reason(status)));
	json_object_object_add(o, "status", json_object_new_int(status));
	if (detail) {
		va_start(ap, detail);
		vsnprintf(text, sizeof(text), detail, ap);
		va_end(ap);
		json_object_object_add(o, "detail", json_object_new_string(text));
	}
	/* The path as the client knows it, so that it resolves on this site. */
	snprintf(text, sizeof(text), "%s%s", req->url_prefix ? req->url_prefix : "", req->path);
	json_object_object_add(o, "instance", json_object_new_string(text));
	if (ext) {
		json_object_object_foreach(ext, k, v) json_object_object_add(o, k, json_object_get(v));
	}
	snprintf(req->log_note, sizeof(req->log_note), "problem=%s", slug);
	/* Once the headers are out it is too late to change the status: the
	 * caller must end the stream. */
	if (!req->headers_sent)
		rc = send_json(req, status, "application/problem+json", o);
	json_object_put(o);
	return rc;
}

int it_req_query(const char *query, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = query;

	if (query == NULL || outlen == 0)
		return -1;
	while (*p) {
		const char *end = strchr(p, '&'), *eq;
		size_t seglen = end ? (size_t)(end - p) : strlen(p);
		eq = memchr(p, '=', seglen);
		size_t namelen = eq ? (size_t)(eq - p) : seglen;
		if (namelen == klen && memcmp(p, key, klen) == 0) {
			const char *v = eq ? eq + 1 : p + seglen;
			const char *vend = p + seglen;
			size_t o = 0;
			while (v < vend) {
				int c = (unsigned char)*v;
				if (c == '+') {
					c = ' ';
					v++;
				} else if (c == '%') {
					int h, l;
					if (vend - v < 3 || (h = it_hex_value(v[1])) < 0 ||
					    (l = it_hex_value(v[2])) < 0)
						return -2;
					c = h << 4 | l;
					v += 3;
				} else {
					v++;
				}
				if (c == 0 || o + 1 >= outlen)
					return -2;
				out[o++] = (char)c;
			}
			out[o] = '\0';
			return (int)o;
		}
		p += seglen;
		if (*p == '&')
			p++;
	}
	return -1;
}

int it_parse_uint(const char *s, int64_t max, int64_t *out)
{
	int64_t v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		if (v > (max - (*s - '0')) / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return 0;
}

json_object *it_req_read_json(it_req *req, size_t max, int depth)
{
	json_object *o = NULL;
	json_tokener *tok = NULL;
	char tmp[4096];
	ssize_t r;
	it_buf b;

	if (req->content_length > (int64_t)max) {
		it_req_drain(req, (int64_t)max);
		it_resp_problem(req, 413, "body-too-large", "The JSON body is limited to %zu bytes.", max);
		return NULL;
	}
	it_buf_init(&b, max);
	while ((r = it_req_read(req, tmp, sizeof(tmp))) > 0) {
		if (it_buf_append(&b, tmp, (size_t)r) != 0) {
			it_resp_problem(req, 413, "body-too-large", "The JSON body is limited to %zu bytes.", max);
			goto out;
		}
	}
	if (r < 0 || b.len == 0 || (tok = json_tokener_new_ex(depth)) == NULL) {
		it_resp_problem(req, 400, "bad-json", "The request body must be a JSON object.");
		goto out;
	}
	o = json_tokener_parse_ex(tok, b.data, (int)b.len);
	if (o == NULL || json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != b.len || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
		it_resp_problem(req, 400, "bad-json", "The request body must be a JSON object.");
	}
out:
	if (tok)
		json_tokener_free(tok);
	it_buf_free(&b);
	return o;
}

/* fanout.c: one event-delivery client for every server and transport: N subscribers over SSE, long-poll or WebSocket.
 */
/*
 * Usage: fanout --transport sse|longpoll|ws --flavor imagetools|nchan --url PATTERN
 *               --sessions FILE --clients N --events E [--burst B] [--open-timeout S]
 *               [--drain S] [--timeout S] [--ids]
 *
 * PATTERN is an http:// or ws:// URL on 127.0.0.1 in which "{s}" stands for a
 * session (channel) id and "{c}" for the long-poll cursor, e.g.
 *   http://127.0.0.1:8080/api/v1/events?session_id={s}&cursor={c}&timeout=30
 *   http://127.0.0.1:8090/sub/lp?id={s}
 * FILE holds one session id per line. Subscriber i listens on session i mod S.
 *
 * The publisher (bench/delivery.py) sends E events round-robin over the S
 * sessions, event i to session i mod S with sequence number i / S + 1, each
 * carrying {"seq":k,"t":<CLOCK_REALTIME seconds>} in its JSON payload. This
 * client therefore knows how many events every subscriber must receive, and
 * checks each one: a sequence number seen twice is a duplicate, one below the
 * highest seen so far is out of order. Latency is the receipt time (after
 * the client has parsed the event) minus t.
 *
 * The same binary speaks to both servers; --flavor only changes what is not
 * common to them. ImageTools: SSE and WebSocket subscribers are ready at
 * their connection.status event; long-polls follow the "cursor" of each
 * answer. Nchan: SSE is ready at the first body byte (its ": hi" comment),
 * WebSocket at the 101; long-polls follow the Last-Modified / Etag of each
 * answer with If-Modified-Since / If-None-Match (several messages in one
 * answer come as multipart/mixed; the payloads are found either way).
 *
 * Protocol with the driver: when every subscriber is ready (or after
 * --open-timeout) it prints "READY <seconds> <ready>/<N>" on stdout. The
 * driver publishes, then writes "END" on stdin. The client stops when every
 * event has arrived (and 0.3 s more, for duplicates), or --drain seconds
 * after END, or after --timeout seconds in all, and prints one JSON line of
 * results. Exit status 0 when delivered equals expected with no duplicate
 * and nothing out of order, 1 otherwise, 2 on a usage or setup error.
 *
 * --ids (ImageTools only) counts every event of the log instead: each event
 * object the server sends ({"id":N,...}, N its sequence number in the
 * session's log, whatever its type) must arrive once and in order, so E is
 * then the number of events the session's log will hold. Latency is not
 * measured then (the events need not carry "t").
 *
 * Bounds: 127.0.0.1 only, at most 19,000 subscribers and 2,000,000 events,
 * 1 MiB of buffered input per subscriber.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 19000
#define MAX_EVENTS 2000000
#define MAX_INPUT (1024 * 1024) /* per subscriber: a head, an SSE line or a long-poll answer */
#define MAX_LATENCIES 30000000
#define RETRY_DELAY 0.2 /* seconds before a failed long-poll is sent again */

enum transport { T_SSE, T_LONGPOLL, T_WS };
enum flavor { F_IMAGETOOLS, F_NCHAN };
enum state { S_IDLE, S_CONNECTING, S_HEAD, S_BODY, S_WS };

/* A growable byte buffer with a ceiling (network input). */
typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

typedef struct sub {
	int fd;
	int session;
	unsigned char state;
	unsigned char ready;  /* counted in G.ready */
	unsigned char opened; /* connected at least once */
	unsigned char dead;   /* an SSE or WebSocket stream that ended: not reopened */
	unsigned char chunked, close_after, body_done;
	long long clen;	      /* body bytes still due with Content-Length, -1 without */
	long long chunk_left; /* chunked: bytes left in this chunk; <0 see dechunk() */
	int status;
	long long cursor; /* ImageTools long-poll */
	int max_seq;
	unsigned char *seen; /* one bit per sequence number of its session */
	double retry_at;
	buf in, body;
	char lm[64], etag[64]; /* Nchan long-poll: the last answer's Last-Modified, Etag */
} sub;

static struct {
	enum transport transport;
	enum flavor flavor;
	struct sockaddr_in addr;
	char host[32];
	char *pattern; /* path and query, with {s} and {c} */
	char (*sids)[72];
	int nsessions, nclients, nevents;
	int ids;     /* --ids: every logged event counts, by its id */
	int *expect; /* events per session */
	sub *subs;
	int epfd;
	int opened, ready, retries;
	long long expected, delivered, dup, ooo, bogus;
	long long drops, reconnects, polls, s2xx, s3xx, s4xx, s5xx, connect_errors;
	float *lat;
	size_t nlat, caplat;
	double last_delivery;
	char rbuf[256 * 1024];
} G;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double realtime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "fanout: %s\n", what);
	exit(2);
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		ru.ru_stime.tv_usec / 1e6;
}

/* Appends n bytes; returns -1 past MAX_INPUT (the subscriber is then failed). */
static int buf_add(buf *b, const char *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;
		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > MAX_INPUT)
			return -1;
		np = realloc(b->p, cap);
		if (np == NULL)
			die("out of memory");
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static void buf_drop(buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	if (b->p)
		b->p[b->len] = '\0';
}

/* ---------------------------------------------------------------- events */

static void record(sub *s, int seq, double t, double now)
{
	int n = G.expect[s->session];

	if (seq < 1 || seq > n) {
		G.bogus++;
		return;
	}
	if (s->seen[(seq - 1) / 8] & (1u << ((seq - 1) % 8))) {
		G.dup++;
		return;
	}
	s->seen[(seq - 1) / 8] |= (unsigned char)(1u << ((seq - 1) % 8));
	if (seq < s->max_seq)
		G.ooo++;
	else
		s->max_seq = seq;
	G.delivered++;
	G.last_delivery = mono();
	if (G.nlat < MAX_LATENCIES) {
		if (G.nlat == G.caplat) {
			G.caplat = G.caplat ? G.caplat * 2 : 1 << 20;
			G.lat = realloc(G.lat, G.caplat * sizeof(float));
			if (G.lat == NULL)
				die("out of memory");
		}
		G.lat[G.nlat++] = (float)((now - t) * 1000.0);
	}
}

/* The number after "key" and a colon at p, or NULL when p is not that key. */
static const char *after_key(const char *p, const char *end, const char *key)
{
	size_t k = strlen(key);
	if ((size_t)(end - p) < k || memcmp(p, key, k) != 0)
		return NULL;
	p += k;
	while (p < end && (*p == ' ' || *p == ':'))
		p++;
	return p < end ? p : NULL;
}

/*
 * Finds every benchmark payload in text: a flat JSON object holding "seq" and
 * "t". The wrapping differs (an ImageTools event nests it under "data", a
 * long-poll answer holds many, Nchan sends it bare or in multipart parts)
 * but the object itself is the same everywhere. text is NUL-terminated.
 */
static void scan_payloads(sub *s, const char *text, size_t len, double now)
{
	const char *end = text + len, *p = text;

	if (G.ids) {
		/* The server writes each event as {"id":N,"type":...} with no
		 * space; data members come from jsonb, which writes "id": N. */
		while ((p = strstr(p, "{\"id\":")) != NULL && p < end) {
			p += 6;
			if (*p >= '0' && *p <= '9')
				record(s, atoi(p), now, now);
		}
		return;
	}

	while ((p = strstr(p, "\"seq\"")) != NULL && p < end) {
		const char *open = p, *close = p, *v, *q;
		double t = -1;
		int seq;

		while (open > text && *open != '{')
			open--;
		while (close < end && *close != '}')
			close++;
		v = after_key(p, close, "\"seq\"");
		seq = v ? atoi(v) : -1;
		for (q = open; q < close; q++) {
			const char *tv = after_key(q, close, "\"t\"");
			if (tv) {
				t = strtod(tv, NULL);
				break;
			}
		}
		if (t > 0)
			record(s, seq, t, now);
		else
			G.bogus++;
		p += 5;
	}
}

/* ---------------------------------------------------------------- connections */

static void sub_close(sub *s)
{
	if (s->fd >= 0) {
		epoll_ctl(G.epfd, EPOLL_CTL_DEL, s->fd, NULL);
		close(s->fd);
	}
	s->fd = -1;
	s->state = S_IDLE;
	s->in.len = 0;
	s->body.len = 0;
}

/* Builds the request path from the pattern: {s} the session, {c} the cursor. */
static void expand(const sub *s, char *out, size_t cap)
{
	const char *p = G.pattern;
	size_t n = 0;

	while (*p && n + 1 < cap) {
		if (p[0] == '{' && p[1] == 's' && p[2] == '}') {
			n += (size_t)snprintf(out + n, cap - n, "%s", G.sids[s->session]);
			p += 3;
		} else if (p[0] == '{' && p[1] == 'c' && p[2] == '}') {
			n += (size_t)snprintf(out + n, cap - n, "%lld", s->cursor);
			p += 3;
		} else {
			out[n++] = *p++;
		}
		if (n >= cap)
			n = cap - 1;
	}
	out[n] = '\0';
}

static int send_request(sub *s)
{
	char path[1024], req[2048];
	int n;

	expand(s, path, sizeof(path));
	if (G.transport == T_WS)
		n = snprintf(req, sizeof(req),
			     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			     path, G.host);
	else if (G.transport == T_SSE)
		n = snprintf(
			req, sizeof(req),
			"GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
			path, G.host);
	else if (s->lm[0])
		n = snprintf(req, sizeof(req),
			     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\nIf-Modified-Since: %s\r\n"
			     "If-None-Match: %s\r\n\r\n",
			     path, G.host, s->lm, s->etag);
	else
		n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", path, G.host);
	if (n <= 0 || (size_t)n >= sizeof(req))
		die("request too long");
	/* A fresh or idle socket's send buffer always takes a request this small. */
	if (write(s->fd, req, (size_t)n) != n)
		return -1;
	s->state = S_HEAD;
	s->status = 0;
	s->chunked = s->close_after = s->body_done = 0;
	s->clen = -1;
	s->chunk_left = -1;
	if (G.transport == T_LONGPOLL)
		G.polls++;
	return 0;
}

static void sub_open(sub *s)
{
	struct epoll_event e;
	int one = 1;

	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0)
		die("socket (raise the descriptor limit)");
	setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(s->fd, (struct sockaddr *)&G.addr, sizeof(G.addr)) < 0 && errno != EINPROGRESS) {
		G.connect_errors++;
		close(s->fd);
		s->fd = -1;
		s->retry_at = mono() + RETRY_DELAY;
		G.retries++;
		return;
	}
	s->state = S_CONNECTING;
	e.events = EPOLLOUT | EPOLLIN;
	e.data.ptr = s;
	epoll_ctl(G.epfd, EPOLL_CTL_ADD, s->fd, &e);
	if (!s->opened) {
		s->opened = 1;
		G.opened++;
	}
}

static void set_ready(sub *s)
{
	if (!s->ready) {
		s->ready = 1;
		G.ready++;
	}
}

/* A long-poll that failed or whose connection ended: send it again soon. */
static void lp_retry(sub *s, double delay)
{
	sub_close(s);
	s->retry_at = mono() + delay;
	G.retries++;
}

/* A stream (SSE, WebSocket) that ended: counted, and not reopened, so that
 * what it misses shows as loss. */
static void stream_lost(sub *s, const char *why)
{
	if (G.drops < 5)
		fprintf(stderr, "fanout: a subscriber's stream ended (%s)\n", why);
	G.drops++;
	sub_close(s);
	s->dead = 1;
}

/* ---------------------------------------------------------------- HTTP */

static void header_value(const char *head, const char *name, char *out, size_t cap)
{
	size_t k = strlen(name);
	const char *p = head;

	out[0] = '\0';
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, k) == 0 && p[k] == ':') {
			const char *v = p + k + 1, *e;
			size_t n;
			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			n = e ? (size_t)(e - v) : strlen(v);
			if (n >= cap)
				n = cap - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return;
		}
	}
}

/* Parses the response head at the start of s->in; returns its length, 0 when
 * incomplete, -1 when malformed or too large. */
static long parse_head(sub *s)
{
	char *e = strstr(s->in.p, "\r\n\r\n"), v[64];
	size_t hl;

	if (e == NULL)
		return s->in.len > 16384 ? -1 : 0;
	hl = (size_t)(e - s->in.p) + 4;
	e[2] = '\0'; /* the head's last line keeps its \r\n */
	if (strncmp(s->in.p, "HTTP/1.", 7) != 0 || strlen(s->in.p) < 12)
		return -1;
	s->status = atoi(s->in.p + 9);
	if (s->status >= 200 && s->status < 300)
		G.s2xx++;
	else if (s->status < 400)
		G.s3xx++;
	else if (s->status < 500)
		G.s4xx++;
	else
		G.s5xx++;
	header_value(s->in.p, "Transfer-Encoding", v, sizeof(v));
	s->chunked = strcasestr(v, "chunked") != NULL;
	header_value(s->in.p, "Content-Length", v, sizeof(v));
	s->clen = v[0] ? atoll(v) : -1;
	header_value(s->in.p, "Connection", v, sizeof(v));
	s->close_after = strcasestr(v, "close") != NULL || s->in.p[7] == '0';
	if (G.transport == T_LONGPOLL && G.flavor == F_NCHAN && s->status == 200) {
		header_value(s->in.p, "Last-Modified", s->lm, sizeof(s->lm));
		header_value(s->in.p, "Etag", s->etag, sizeof(s->etag));
	}
	return (long)hl;
}

/*
 * Moves the body bytes of s->in into s->body, undoing chunked encoding.
 * chunk_left: > 0 bytes left in the chunk, -1 a size line is due, -2 the CRLF
 * after a chunk's data, -3 the CRLF that ends the body (trailers are not
 * used by either server). Sets body_done at the end of the body. Returns -1
 * on malformed input or a body past the ceiling.
 */
static int dechunk(sub *s)
{
	size_t pos = 0;
	int rc = 0;

	if (!s->chunked) {
		size_t take = s->in.len;
		if (s->clen >= 0 && (long long)take > s->clen)
			take = (size_t)s->clen;
		if (buf_add(&s->body, s->in.p, take) < 0)
			return -1;
		pos = take;
		if (s->clen >= 0) {
			s->clen -= (long long)take;
			if (s->clen == 0)
				s->body_done = 1;
		}
		goto out;
	}
	while (pos < s->in.len && !s->body_done) {
		if (s->chunk_left > 0) {
			size_t take = s->in.len - pos;
			if ((long long)take > s->chunk_left)
				take = (size_t)s->chunk_left;
			if (buf_add(&s->body, s->in.p + pos, take) < 0) {
				rc = -1;
				goto out;
			}
			pos += take;
			s->chunk_left -= (long long)take;
			if (s->chunk_left == 0)
				s->chunk_left = -2;
		} else if (s->chunk_left == -2 || s->chunk_left == -3) {
			if (s->in.len - pos < 2)
				break;
			pos += 2;
			if (s->chunk_left == -3)
				s->body_done = 1;
			s->chunk_left = -1;
		} else {
			char *nl = strstr(s->in.p + pos, "\r\n");
			long long size;
			if (nl == NULL)
				break;
			size = strtoll(s->in.p + pos, NULL, 16);
			if (size < 0) {
				rc = -1;
				goto out;
			}
			pos = (size_t)(nl - s->in.p) + 2;
			s->chunk_left = size ? size : -3;
		}
	}
out:
	buf_drop(&s->in, pos);
	return rc;
}

/* SSE: every complete line of the body; data lines carry the events. */
static void sse_lines(sub *s, double now)
{
	size_t off = 0;
	char *nl;

	if (G.flavor == F_NCHAN && s->body.len > 0)
		set_ready(s); /* Nchan sends ": hi" once it has subscribed */
	while ((nl = memchr(s->body.p + off, '\n', s->body.len - off)) != NULL) {
		char *line = s->body.p + off;
		size_t n = (size_t)(nl - line);
		*nl = '\0';
		if (n > 5 && memcmp(line, "data:", 5) == 0) {
			if (G.flavor == F_IMAGETOOLS && strstr(line, "\"connection.status\""))
				set_ready(s);
			else
				scan_payloads(s, line + 5, n - 5, now);
		}
		off += n + 1;
	}
	buf_drop(&s->body, off);
}

/* A complete long-poll answer: its events, then the next poll. */
static void lp_answer(sub *s, double now)
{
	if (s->status == 200) {
		scan_payloads(s, s->body.p ? s->body.p : "", s->body.len, now);
		if (G.flavor == F_IMAGETOOLS && s->body.p) {
			/* The answer's cursor is its last member. */
			const char *c = NULL, *p = s->body.p;
			while ((p = strstr(p, "\"cursor\"")) != NULL)
				c = p++;
			if (c && (c = after_key(c, s->body.p + s->body.len, "\"cursor\"")) != NULL)
				s->cursor = atoll(c);
		}
	}
	s->body.len = 0;
	if (s->status >= 500 || s->status == 429 || s->status == 0) {
		lp_retry(s, RETRY_DELAY);
		return;
	}
	if (s->close_after || s->in.len > 0) {
		lp_retry(s, 0);
		return;
	}
	if (send_request(s) < 0)
		lp_retry(s, 0);
}

/* ---------------------------------------------------------------- WebSocket */

static void ws_frames(sub *s, double now)
{
	size_t off = 0;

	for (;;) {
		size_t avail = s->in.len - off, hl = 2;
		unsigned char *f = (unsigned char *)s->in.p + off;
		uint64_t plen;
		unsigned op;

		if (avail < 2)
			break;
		op = f[0] & 0x0F;
		plen = f[1] & 0x7F;
		if (plen == 126) {
			if (avail < 4)
				break;
			plen = ((uint64_t)f[2] << 8) | f[3];
			hl = 4;
		} else if (plen == 127) {
			if (avail < 10)
				break;
			plen = 0;
			for (int i = 2; i < 10; i++)
				plen = (plen << 8) | f[i];
			hl = 10;
		}
		if (plen > MAX_INPUT / 2) {
			stream_lost(s, "frame too large");
			return;
		}
		if (avail < hl + plen)
			break;
		if (op == 1 || op == 2) {
			/* The scanner wants a NUL-terminated payload: the byte after
			 * it (the next frame's first, or buf_add's terminator) is
			 * lent for that and put back. */
			char *text = (char *)f + hl, save = text[plen];
			text[plen] = '\0';
			if (G.flavor == F_IMAGETOOLS && strstr(text, "\"connection.status\""))
				set_ready(s);
			else
				scan_payloads(s, text, (size_t)plen, now);
			text[plen] = save;
		} else if (op == 9 && plen <= 125) {
			/* Answer a keepalive Ping (masked, zero key). */
			unsigned char pong[6 + 125] = {0x8A, (unsigned char)(0x80 | plen), 0, 0, 0, 0};
			memcpy(pong + 6, f + hl, (size_t)plen);
			if (write(s->fd, pong, 6 + (size_t)plen) < 0)
				perror("fanout: pong");
		} else if (op == 8) {
			stream_lost(s, "close frame");
			return;
		}
		off += hl + (size_t)plen;
	}
	buf_drop(&s->in, off);
}

/* ---------------------------------------------------------------- the loop */

static void on_event(sub *s, uint32_t ev, double now)
{
	ssize_t n;

	if (s->state == S_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		struct epoll_event e;
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0 || send_request(s) < 0) {
			G.connect_errors++;
			if (G.transport == T_LONGPOLL || !s->ready)
				lp_retry(s, RETRY_DELAY);
			else
				stream_lost(s, "connect");
			return;
		}
		e.events = EPOLLIN;
		e.data.ptr = s;
		epoll_ctl(G.epfd, EPOLL_CTL_MOD, s->fd, &e);
		if (G.transport == T_LONGPOLL)
			set_ready(s);
		return;
	}
	(void)ev;
	n = read(s->fd, G.rbuf, sizeof(G.rbuf) - 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (G.transport != T_LONGPOLL) {
			stream_lost(s, n == 0 ? "closed by the server" : strerror(errno));
			return;
		}
		if (s->state == S_BODY && !s->chunked && s->clen < 0) {
			s->close_after = 1;
			lp_answer(s, now); /* a body delimited by the close */
			if (s->fd >= 0)
				lp_retry(s, 0);
			return;
		}
		/* A kept-alive connection the server closed, or a poll cut short. */
		if (s->state != S_HEAD || s->in.len > 0)
			G.reconnects++;
		lp_retry(s, s->state == S_HEAD && s->in.len == 0 ? 0 : RETRY_DELAY);
		return;
	}
	if (buf_add(&s->in, G.rbuf, (size_t)n) < 0) {
		if (G.transport == T_LONGPOLL)
			lp_retry(s, RETRY_DELAY);
		else
			stream_lost(s, "input past the ceiling");
		return;
	}
	if (s->state == S_HEAD) {
		long hl = parse_head(s);
		if (hl == 0)
			return;
		if (hl < 0) {
			stream_lost(s, "malformed response head");
			return;
		}
		buf_drop(&s->in, (size_t)hl);
		if (G.transport == T_WS) {
			if (s->status != 101) {
				stream_lost(s, "upgrade refused");
				return;
			}
			s->state = S_WS;
			if (G.flavor == F_NCHAN)
				set_ready(s);
		} else {
			s->state = S_BODY;
			if (G.transport == T_SSE && s->status != 200) {
				stream_lost(s, "SSE status not 200");
				return;
			}
		}
	}
	if (s->state == S_WS) {
		ws_frames(s, now);
		return;
	}
	if (dechunk(s) < 0) {
		if (G.transport == T_LONGPOLL)
			lp_retry(s, RETRY_DELAY);
		else
			stream_lost(s, "malformed body");
		return;
	}
	if (G.transport == T_SSE)
		sse_lines(s, now);
	else if (s->body_done)
		lp_answer(s, now);
}

/* Opens more subscribers while fewer than burst are connecting, and resends
 * the long-polls whose retry time has come. */
static void open_more(int burst, double now)
{
	int i;

	while (G.opened < G.nclients && G.opened - G.ready < burst)
		sub_open(&G.subs[G.opened]);
	if (G.retries == 0)
		return;
	G.retries = 0;
	for (i = 0; i < G.opened; i++) {
		sub *s = &G.subs[i];
		if (s->fd >= 0 || s->dead)
			continue;
		if (s->retry_at <= now)
			sub_open(s);
		else
			G.retries++;
	}
}

static int stdin_says_end(void)
{
	char line[64];
	ssize_t n = read(0, line, sizeof(line) - 1);
	if (n <= 0)
		return 1; /* the driver went away: finish */
	line[n] = '\0';
	return strstr(line, "END") != NULL;
}

/* Runs the loop until done() says so or until deadline; returns 1 when END arrived. */
static int pump(double deadline, int burst, int (*done)(void), int *ended)
{
	struct epoll_event evs[1024];

	while (!done()) {
		double now = mono();
		int n, i, ms = (int)((deadline - now) * 1000);
		if (ms <= 0)
			return 0;
		open_more(burst, now);
		n = epoll_wait(G.epfd, evs, 1024, ms > 20 ? 20 : ms);
		now = realtime();
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL) {
				if (stdin_says_end()) {
					epoll_ctl(G.epfd, EPOLL_CTL_DEL, 0, NULL);
					*ended = 1;
					return 1;
				}
				continue;
			}
			on_event(evs[i].data.ptr, evs[i].events, now);
		}
	}
	return 0;
}

static int all_ready(void)
{
	return G.ready >= G.nclients;
}
static int all_delivered(void)
{
	return G.delivered >= G.expected;
}
static int never(void)
{
	return 0;
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static double quantile(double q)
{
	size_t i;
	if (G.nlat == 0)
		return 0;
	i = (size_t)(q * (double)G.nlat);
	return G.lat[i >= G.nlat ? G.nlat - 1 : i];
}

/* ---------------------------------------------------------------- setup */

static void parse_url(const char *url)
{
	const char *p = url, *slash, *colon;
	char host[64];

	if (strncmp(p, "http://", 7) == 0)
		p += 7;
	else if (strncmp(p, "ws://", 5) == 0)
		p += 5;
	else
		die("--url must start with http:// or ws://");
	slash = strchr(p, '/');
	colon = strchr(p, ':');
	if (slash == NULL || colon == NULL || colon > slash || (size_t)(colon - p) >= sizeof(host))
		die("--url needs host:port/path");
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	G.addr.sin_family = AF_INET;
	G.addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1 || G.addr.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
		die("the benchmark only targets 127.0.0.1");
	snprintf(G.host, sizeof(G.host), "%.*s", (int)(slash - p), p);
	G.pattern = strdup(slash);
}

static void read_sessions(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[128];
	int cap = 0;

	if (f == NULL)
		die("cannot open --sessions");
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (!line[0])
			continue;
		if (strlen(line) >= sizeof(G.sids[0]))
			die("session id too long");
		if (G.nsessions == cap) {
			cap = cap ? cap * 2 : 1024;
			G.sids = realloc(G.sids, (size_t)cap * sizeof(*G.sids));
			if (G.sids == NULL)
				die("out of memory");
		}
		strcpy(G.sids[G.nsessions++], line);
	}
	fclose(f);
	if (G.nsessions == 0)
		die("--sessions is empty");
}

static void setup(int nclients, int nevents)
{
	struct epoll_event e;
	struct rlimit rl;
	int i;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)nclients + 64)
			die("the descriptor limit is below --clients (ulimit -Hn)");
	}
	G.nclients = nclients;
	G.nevents = nevents;
	G.expect = calloc((size_t)G.nsessions, sizeof(int));
	G.subs = calloc((size_t)nclients, sizeof(sub));
	if (G.expect == NULL || G.subs == NULL)
		die("out of memory");
	for (i = 0; i < G.nsessions; i++)
		G.expect[i] = nevents / G.nsessions + (i < nevents % G.nsessions);
	for (i = 0; i < nclients; i++) {
		sub *s = &G.subs[i];
		s->fd = -1;
		s->session = i % G.nsessions;
		s->seen = calloc((size_t)G.expect[s->session] / 8 + 1, 1);
		if (s->seen == NULL)
			die("out of memory");
		G.expected += G.expect[s->session];
	}
	G.epfd = epoll_create1(EPOLL_CLOEXEC);
	e.events = EPOLLIN;
	e.data.ptr = NULL; /* stdin: the driver's END */
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	epoll_ctl(G.epfd, EPOLL_CTL_ADD, 0, &e);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"transport", 1, NULL, 'T'}, {"flavor", 1, NULL, 'F'},	     {"url", 1, NULL, 'u'},
		{"sessions", 1, NULL, 's'},  {"clients", 1, NULL, 'n'},	     {"events", 1, NULL, 'e'},
		{"burst", 1, NULL, 'b'},     {"open-timeout", 1, NULL, 'o'}, {"drain", 1, NULL, 'd'},
		{"timeout", 1, NULL, 't'},   {"ids", 0, NULL, 'i'},	     {NULL, 0, NULL, 0}};
	const char *url = NULL, *sessions = NULL, *transport = NULL, *flavor = NULL;
	int nclients = 100, nevents = 200, burst = 500, opt, ended = 0, i;
	double open_timeout = 120, drain = 30, timeout = 900, t0, t_ready, cpu0, cpu1, deadline, t_end = 0;
	long long lost;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'T': transport = optarg; break;
		case 'F': flavor = optarg; break;
		case 'u': url = optarg; break;
		case 's': sessions = optarg; break;
		case 'n': nclients = atoi(optarg); break;
		case 'e': nevents = atoi(optarg); break;
		case 'b': burst = atoi(optarg); break;
		case 'o': open_timeout = atof(optarg); break;
		case 'd': drain = atof(optarg); break;
		case 't': timeout = atof(optarg); break;
		case 'i': G.ids = 1; break;
		default: return 2;
		}
	}
	if (!url || !sessions || !transport || !flavor || nclients < 1 || nclients > MAX_CLIENTS || nevents < 0 ||
	    nevents > MAX_EVENTS || burst < 1 || timeout <= 0)
		die("usage: fanout --transport sse|longpoll|ws --flavor imagetools|nchan --url PATTERN "
		    "--sessions FILE [--clients N<=19000] [--events E<=2000000] [--burst B] "
		    "[--open-timeout S] [--drain S] [--timeout S] [--ids]");
	if (strcmp(transport, "sse") == 0)
		G.transport = T_SSE;
	else if (strcmp(transport, "longpoll") == 0)
		G.transport = T_LONGPOLL;
	else if (strcmp(transport, "ws") == 0)
		G.transport = T_WS;
	else
		die("--transport sse|longpoll|ws");
	if (strcmp(flavor, "imagetools") == 0)
		G.flavor = F_IMAGETOOLS;
	else if (strcmp(flavor, "nchan") == 0)
		G.flavor = F_NCHAN;
	else
		die("--flavor imagetools|nchan");
	if (G.ids && G.flavor != F_IMAGETOOLS)
		die("--ids needs --flavor imagetools");
	parse_url(url);
	read_sessions(sessions);
	if ((long long)nclients * (nevents / G.nsessions + 1) > 400000000LL)
		die("clients x events per session too large");
	setup(nclients, nevents);

	/* Phase 1: open every subscriber. */
	t0 = mono();
	pump(t0 + open_timeout, burst, all_ready, &ended);
	t_ready = mono();
	printf("READY %.3f %d/%d\n", t_ready - t0, G.ready, G.nclients);
	fflush(stdout);

	/* Phase 2: the driver publishes; wait for every event or END + drain. */
	cpu0 = cpu_seconds();
	deadline = t0 + timeout;
	if (!ended)
		pump(deadline, burst, all_delivered, &ended);
	if (ended) {
		t_end = mono();
		pump(t_end + drain < deadline ? t_end + drain : deadline, burst, all_delivered, &ended);
	}
	/* Anything more would be a duplicate. */
	pump(mono() + 0.3, burst, never, &ended);
	cpu1 = cpu_seconds();
	qsort(G.lat, G.nlat, sizeof(float), cmp_float);
	lost = G.expected - G.delivered;
	printf("{\"clients\": %d, \"ready\": %d, \"open_s\": %.3f, \"expected\": %lld, \"delivered\": %lld, "
	       "\"dup\": %lld, \"ooo\": %lld, \"bogus\": %lld, \"drops\": %lld, \"p50_ms\": %.2f, \"p99_ms\": %.2f, "
	       "\"max_ms\": %.2f, \"cpu_s\": %.3f, \"polls\": %lld, \"s2xx\": %lld, \"s3xx\": %lld, \"s4xx\": %lld, "
	       "\"s5xx\": %lld, \"reconnects\": %lld, \"connect_errors\": %lld, \"tail_s\": %.3f}\n",
	       G.nclients, G.ready, t_ready - t0, G.expected, G.delivered, G.dup, G.ooo, G.bogus, G.drops,
	       quantile(0.5), quantile(0.99), G.nlat ? (double)G.lat[G.nlat - 1] : 0.0, cpu1 - cpu0, G.polls, G.s2xx,
	       G.s3xx, G.s4xx, G.s5xx, G.reconnects, G.connect_errors,
	       t_end > 0 && G.last_delivery > t_end ? G.last_delivery - t_end : 0.0);
	for (i = 0; i < G.nclients; i++)
		if (G.subs[i].fd >= 0)
			close(G.subs[i].fd);
	return lost == 0 && G.dup == 0 && G.ooo == 0 ? 0 : 1;
}

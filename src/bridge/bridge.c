/* bridge.c: the WebSocket bridge's event loop: the upgrade, frames, and a transport on the feed (docs/bridge.md). */
#include "config.h"

#include "bridge/bridge.h"

#include "bridge/http.h"
#include "bridge/addrlimit.h"
#include "bridge/ws.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/cred.h"
#include "common/hex.h"
#include "common/host.h"
#include "common/id.h"
#include "common/list.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/origin.h"
#include "common/scope.h"
#include "common/token.h"
#include "db/metrics.h"
#include "feed/feed.h"
#include "feed/ident.h"
#include "feed/longpoll.h"
#include "feed/outq.h"
#include "feed/presence.h"
#include "feed/sse.h"

#include <json-c/json.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Limits that are not worth a configuration key. */
#define HEAD_MAX 8192	   /* bytes of an upgrade request head */
#define HEAD_TIMEOUT 10.0  /* seconds to send it */
#define CLOSE_LINGER 2.0   /* seconds to wait for the peer after a close */
#define SHUTDOWN_GRACE 3.0 /* seconds to let clients go on SIGTERM */
#define TICK_MS 250	   /* housekeeping period */
#define RATE_WINDOW 10.0   /* ws_rate counts messages per this many seconds */
#define AUTH_TIMEOUT 10.0  /* seconds for the auth message on /api/v1/ws */
#define AUTH_MSG_MAX 4096  /* bytes of an auth message */

/* Close codes for credentials (docs/api.md): refused, and a scope too small. */
#define WS_CLOSE_BAD_CREDENTIAL 4401
#define WS_CLOSE_SCOPE 4403

static const char ws_prefix[] = "/api/v1/ws/";
static const char ws_bare[] = "/api/v1/ws";
static const char events_path[] = "/api/v1/events";
static const char stream_path[] = "/api/v1/events/stream";

enum handle_kind { H_CLIENT, H_LISTEN, H_SIGNAL, H_TIMER, H_PG, H_PRESENCE };

/* What epoll's data.ptr points at: every watched object starts with one. */
typedef struct handle {
	enum handle_kind kind;
} handle;

/* What a client asked for. */
enum client_kind {
	K_WS,	/* GET /api/v1/ws/{session}: a WebSocket */
	K_SSE,	/* GET /api/v1/events/stream: Server-Sent Events */
	K_POLL, /* GET /api/v1/events: one long-poll */
};

enum client_state {
	C_HANDSHAKE, /* reading the upgrade request */
	C_OPEN,	     /* upgraded (or a stream answered): subscribed to its session in the feed */
	C_CLOSING,   /* Close (or an HTTP error) queued; draining, then waiting for the peer */
};

/* A client's output is an it_outq (src/feed/outq.h): shared events by
 * reference (the bytes are the event's WebSocket frame or SSE form, the same
 * for every client of the session) and bytes of its own (the 101 answer,
 * heads, control frames, connection.status and session.resync), written with
 * writev. */

/* Queues a copy of a and b (either may be empty). Returns 0 or -ENOMEM. */
static int oq_copy(it_outq *q, const void *a, size_t na, const void *b, size_t nb)
{
	return it_outq_copy(q, NULL, 0, a, na, b, nb) < 0 ? -ENOMEM : 0;
}

/* Queues a shared event's bytes (w: one of its wire forms) by reference. */
static int oq_event(it_outq *q, it_feed_event *ev, const struct iovec *w)
{
	return it_outq_push(q, NULL, 0, ev, NULL, w->iov_base, w->iov_len) < 0 ? -ENOMEM : 0;
}

/* it_longpoll_put for a client's output queue: events by reference, the
 * rest copied. */
static int lp_put(void *q, it_feed_event *ev, const char *p, size_t n)
{
	if (ev != NULL)
		return it_outq_push(q, NULL, 0, ev, NULL, p, n) < 0 ? -ENOMEM : 0;
	return oq_copy(q, p, n, NULL, 0);
}

/* The metrics label of each kind. */
static const char *const kind_label[] = {"transport=\"websocket\"", "transport=\"sse\"", "transport=\"longpoll\""};

typedef struct client {
	handle h;
	int fd;
	enum client_state state;
	enum client_kind kind;
	it_feed_sub sub;    /* the feed's view of this client, once open */
	uint8_t subscribed; /* sub is in the feed */
	it_list alink;	    /* in bridge.clients */
	it_buf in;	    /* the request head, freed after the upgrade */
	it_outq out;	    /* bytes not yet accepted by the socket */
	it_ws_reader rd;
	double created, ping_sent, last_tx, rate_start, close_deadline;
	unsigned rate_count;
	unsigned msg_n;	  /* bytes of the current message, saturating at 5 */
	uint8_t msg_ping; /* the current message still reads as a prefix of "ping" */
	uint8_t ping_out; /* the last Ping (sent at ping_sent) is not answered yet */
	uint8_t behind;	  /* told the feed "no room": resumed once drained */
	uint8_t want_out; /* registered for EPOLLOUT */
	uint8_t wr_shut;  /* our side of the TCP connection is shut down */
	uint8_t dead;	  /* freed at the end of this loop iteration */
	/* SSE and long-poll only */
	uint8_t admitted;  /* the feed checked the session: the answer is 200 */
	uint8_t head_sent; /* the HTTP head is queued */
	char *cors;	   /* CORS header lines for a listed origin, or NULL */
	char *instance;	   /* the path as the client sent it (problem answers) */
	double deadline;   /* long-poll: answer by then */
	double next_keepalive;
	it_longpoll lp; /* long-poll: the answer gathered so far */
	/* Credentials */
	it_feed_credq cq;  /* a token check in flight (cq.feed set while it is) */
	uint8_t auth_wait; /* WebSocket on /api/v1/ws: the auth message is still to come */
	uint8_t joined;	   /* admitted: presence_joined was called */
	uint8_t end_why;   /* enum it_feed_end when the feed ended it, else 0 */
	double auth_deadline;
	it_buf authmsg;		     /* the auth message so far, at most AUTH_MSG_MAX bytes */
	int64_t cursor0;	     /* where to start once the credential is known */
	int64_t timeout0;	     /* long-poll: its timeout, likewise */
	char addr[64];		     /* the client's address (rate limits) */
	it_ident *ident;	     /* what it says of itself and what its token says; NULL: nothing */
	it_presence_entry *presence; /* its entry while joined (docs/presence.md) */
} client;

static struct bridge {
	const it_config *cfg;
	int epfd, lfd, sigfd, tfd;
	handle listen_h, signal_h, timer_h, pg_h, presence_h;
	it_feed *feed;
	it_presence *presence; /* the entries of this bridge's clients */
	it_list clients;
	it_list dead; /* clients to free once the epoll batch is done */
	size_t soft, hard;
	double now;
	double started; /* when the loop began */
	double listen_paused_until;
	int stopping;
	double stop_deadline;
	int64_t delivered_unreported[3]; /* events taken, per client_kind, since the metric was last added to */
	it_addrlimit rate;		 /* upgrades per client address (rate_streams) */
	it_addrlimit authfail;		 /* failed credentials per client address */
	double rate_pruned;
	unsigned char rbuf[65536];
} B;

/* ------------------------------------------------------------ client output */

static void client_free(client *c);

static void set_want_out(client *c, int on)
{
	struct epoll_event e;

	if (c->want_out == on)
		return;
	e.events = EPOLLIN | (on ? EPOLLOUT : 0);
	e.data.ptr = &c->h;
	epoll_ctl(B.epfd, EPOLL_CTL_MOD, c->fd, &e);
	c->want_out = (uint8_t)on;
}

/* Writes what is queued. Returns 0, or -1 when the client was freed. */
static int client_flush(client *c)
{
	ssize_t n = it_outq_write(&c->out, c->fd);

	if (n < 0) {
		client_free(c);
		return -1;
	}
	if (n > 0)
		c->last_tx = B.now;
	if (c->out.n == 0) {
		c->last_tx = B.now;
		set_want_out(c, 0);
		if (c->state == C_CLOSING && !c->wr_shut) {
			/* Only our half is closed: the peer may still send its
			 * Close, and reading on avoids a reset that could
			 * destroy the Close frame we sent before it is read. */
			shutdown(c->fd, SHUT_WR);
			c->wr_shut = 1;
		}
	} else {
		set_want_out(c, 1);
	}
	/* A slow client stops being fed at the soft limit; once it has
	 * drained to half of that, the feed offers again from its cursor. */
	if (c->behind && c->out.bytes <= B.soft / 2 && c->subscribed) {
		c->behind = 0;
		it_feed_resume(&c->sub);
	}
	return 0;
}

/* Queues one frame (header + payload) and writes when nothing was queued
 * before. A frame is refused (1, nothing queued) when it would take the
 * queue past stream_buffer, except into an empty queue, so that one
 * message larger than the limit still gets through; a Close frame (at most
 * 127 bytes) is always taken. So a client holds at most stream_buffer, or
 * one event, plus a Close. Returns 0, 1, or -1 when the client was freed. */
static int client_frame(client *c, int opcode, const void *payload, size_t len)
{
	unsigned char hdr[10];
	size_t hl = it_ws_frame_header(hdr, opcode, len);
	int was_empty = c->out.n == 0;

	if (opcode != IT_WS_OP_CLOSE && c->out.bytes > 0 && c->out.bytes + hl + len > B.hard)
		return 1;
	if (oq_copy(&c->out, hdr, hl, payload, len) < 0) {
		/* The limits were checked above, so only malloc can fail. */
		it_log_error("out of memory for a client's send queue");
		client_free(c);
		return -1;
	}
	return was_empty ? client_flush(c) : 0;
}

/* ------------------------------------------------------------ presence hooks
 *
 * The two places where a subscriber starts and stops counting as a
 * connected client of its session, on every transport of the bridge:
 * presence_joined when the feed admits it (its credential and session
 * hold, events follow), presence_left once when it leaves the feed after
 * that, for whatever reason: reason is "revoked" (its token was revoked),
 * "expired" (its token or session expired) or "closed" (anything else: the
 * client went away or closed, a long-poll answered, the session was
 * deleted, the bridge stops). c->ident says who the client is (its
 * session_id is set at admission); it is NULL for an anonymous client (a
 * session id and no client_id), which presence does not show. Both run on
 * the loop's thread inside feed callbacks or client teardown: they must not
 * block, nor end or free the client. */

static const char *const transport_name[] = {"websocket", "sse", "longpoll"};

static void presence_joined(client *c)
{
	if (c->ident == NULL || !it_ident_announces(c->ident))
		return;
	c->presence = it_presence_join(B.presence, c->ident, transport_name[c->kind]);
}

static void presence_left(client *c, const char *reason)
{
	/* A revoked device's entries are gone with the revocation itself
	 * (sql/010); for the others the grace starts, and a long-poll's next
	 * poll comes right after this one. */
	(void)reason;
	it_presence_leave(B.presence, c->presence, c->kind == K_POLL ? IT_PRESENCE_LONGPOLL_HOLD * 1000 : 0);
	c->presence = NULL;
}

static void client_detach(client *c)
{
	/* A token check still in flight is withdrawn: whatever ends the
	 * client ends it here. */
	it_feed_cred_cancel(&c->cq);
	if (c->joined) {
		c->joined = 0;
		presence_left(c,
			      c->end_why == IT_FEED_END_REVOKED ? "revoked"
				      : c->end_why == IT_FEED_END_TOKEN_EXPIRED || c->end_why == IT_FEED_END_EXPIRED
				      ? "expired"
				      : "closed");
	}
	if (!c->subscribed)
		return;
	it_feed_unsubscribe(&c->sub);
	c->subscribed = 0;
	it_metrics_gauge_add("imagetools_connections_open", kind_label[c->kind], -1);
}

static int stream_end(client *c, int retry_ms);

/* Starts the closing handshake with code and reason (reason < 124 bytes);
 * an SSE stream or a long-poll just ends its answer. Returns -1 when the
 * client was freed, else 0. */
static int client_close(client *c, int code, const char *reason)
{
	unsigned char p[125];
	size_t rl = strlen(reason);

	if (c->state == C_CLOSING)
		return 0;
	if (c->kind != K_WS) {
		if (c->head_sent) {
			stream_end(c, 0);
		} else {
			client_free(c);
			return -1;
		}
		return c->dead ? -1 : 0;
	}
	if (rl > sizeof(p) - 2)
		rl = sizeof(p) - 2;
	client_detach(c);
	c->state = C_CLOSING;
	c->close_deadline = B.now + CLOSE_LINGER;
	if (c->behind && c->out.bytes > B.hard / 2) {
		/* A stalled consumer will not read the Close either. */
		c->close_deadline = B.now + 0.5;
	}
	p[0] = (unsigned char)(code >> 8);
	p[1] = (unsigned char)code;
	memcpy(p + 2, reason, rl);
	if (client_frame(c, IT_WS_OP_CLOSE, p, rl + 2) < 0)
		return -1;
	it_log_debug("closing a WebSocket with %d (%s)", code, reason);
	return client_flush(c);
}

/* Answers the upgrade request with an HTTP error and closes. */
static int client_http_error(client *c, int status, const char *title, const char *slug, const char *detail,
			     const char *extra_header)
{
	char body[512], head[768];
	int bl, hl;

	bl = snprintf(body, sizeof(body),
		      "{\"type\":\"urn:imagetools:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"}", slug,
		      title, status, detail);
	hl = snprintf(head, sizeof(head),
		      "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nContent-Length: %d\r\n"
		      "Connection: close\r\n%s\r\n",
		      status, title, bl, extra_header ? extra_header : "");
	it_buf_free(&c->in);
	c->state = C_CLOSING;
	c->close_deadline = B.now + CLOSE_LINGER;
	if (oq_copy(&c->out, head, (size_t)hl, body, (size_t)bl) < 0) {
		client_free(c);
		return -1;
	}
	return client_flush(c);
}

/* ------------------------------------------------------------ the feed's callbacks */

static client *sub_client(it_feed_sub *sub)
{
	return it_container_of(sub, client, sub);
}

/* One stored event: its frame, shared by every client of the session, goes
 * into the queue; batch_end writes them all with one writev. Past the soft
 * limit the feed is told "no room" and offers again from this client's
 * cursor once the queue has drained (client_flush). An event goes into an
 * empty queue whatever its size. */
static int on_event(it_feed_sub *sub, it_feed_event *ev)
{
	client *c = sub_client(sub);
	struct iovec w;

	if (c->out.bytes > 0 && c->out.bytes + ev->json_len + 10 > B.soft) {
		c->behind = 1;
		return 1;
	}
	if (it_feed_event_wire(ev, IT_FEED_FMT_WS, &w) < 0 || oq_event(&c->out, ev, &w) < 0) {
		it_log_error("out of memory for a client's send queue");
		client_close(c, IT_WS_CLOSE_INTERNAL, "Out of memory");
		return -1;
	}
	B.delivered_unreported[K_WS]++;
	return 0;
}

/* connection.status or session.resync: a text frame of the client's own. */
static int on_transient(it_feed_sub *sub, const it_feed_transient *t)
{
	client *c = sub_client(sub);
	char *json = it_feed_transient_json(t, "websocket");
	int rc;

	if (strcmp(t->type, "session.resync") == 0)
		it_metrics_inc("imagetools_resyncs_total", NULL, 1);
	if (json == NULL)
		return 0;
	rc = client_frame(c, IT_WS_OP_TEXT, json, strlen(json));
	free(json);
	if (rc == 1)
		client_close(c, IT_WS_CLOSE_TRY_LATER, "Send buffer full");
	return c->subscribed ? 0 : -1;
}

static int on_batch_end(it_feed_sub *sub)
{
	client *c = sub_client(sub);

	if (client_flush(c) < 0)
		return -1;
	return c->subscribed ? 0 : -1;
}

/* The session is unknown, deleted or expired: 4004, as a browser reports
 * the close code of an open socket. The token it came with was revoked or
 * expired: 4401, after the session.revoked frame the feed sent. */
static void on_ended(it_feed_sub *sub, enum it_feed_end why)
{
	client *c = sub_client(sub);

	c->end_why = (uint8_t)why;
	client_detach(c); /* the feed has unsubscribed it: only the bookkeeping */
	if (why == IT_FEED_END_REVOKED)
		client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Token revoked");
	else if (why == IT_FEED_END_TOKEN_EXPIRED)
		client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Token expired");
	else
		client_close(c, IT_WS_CLOSE_INVALID_SESSION, "Invalid session");
}

/* The feed let the client in: it counts as connected from here on. */
static void on_admitted(it_feed_sub *sub)
{
	client *c = sub_client(sub);

	c->joined = 1;
	if (c->ident)
		snprintf(c->ident->session_id, sizeof(c->ident->session_id), "%s", it_feed_sub_session(sub));
	presence_joined(c);
}

static const it_feed_sub_ops ws_ops = {on_event, on_transient, on_batch_end, on_ended, on_admitted};

/* ------------------------------------------------------------ SSE and long-poll
 *
 * The same URLs and answers as imagetools.fcgi (src/fcgi/h_events.c and the
 * hub): the head goes out once the feed has checked the session (so an
 * unknown session is a 404 problem), then SSE frames (IT_FEED_FMT_SSE,
 * shared) or one long-poll answer built around the events' own JSON. Every
 * answer closes the connection. */

static void report_delivered(void)
{
	for (int k = 0; k < 3; k++) {
		if (B.delivered_unreported[k] > 0)
			it_metrics_inc("imagetools_events_delivered_total", kind_label[k], B.delivered_unreported[k]);
		B.delivered_unreported[k] = 0;
	}
}

/* Queues an HTTP head: status line, the headers every API answer has (as
 * imagetools.fcgi's it_resp_head writes them), type (may be NULL: no
 * Content-Type), extra (may be NULL), the CORS lines and Connection: close. */
static int stream_head(client *c, int status, const char *title, const char *type, const char *extra)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%sX-Content-Type-Options: nosniff\r\n%s", status,
			 title, type ? "Content-Type: " : "", type ? type : "", type ? "\r\n" : "", extra ? extra : "");

	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	c->head_sent = 1;
	return oq_copy(&c->out, head, (size_t)n, c->cors ? c->cors : "", c->cors ? strlen(c->cors) : 0) < 0 ||
			oq_copy(&c->out, "Connection: close\r\n\r\n", 21, NULL, 0) < 0
		? -1
		: 0;
}

/* Answers with a problem (application/problem+json, worded and laid out as
 * imagetools.fcgi's it_resp_problem writes it: type, title, status, detail,
 * instance, then ext, a JSON fragment of further members, may be NULL) and
 * closes. extra: header lines (may be NULL). Returns -1 (the client is
 * closing or freed). */
static int stream_problem_ext(client *c, int status, const char *title, const char *slug, const char *detail,
			      const char *extra, const char *ext)
{
	char body[768], hdr[160];
	int bl = snprintf(body, sizeof(body),
			  "{\"type\":\"urn:imagetools:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\","
			  "\"instance\":\"%s\"%s}\n",
			  slug, title, status, detail, c->instance ? c->instance : "", ext ? ext : "");

	client_detach(c);
	if (bl < 0 || (size_t)bl >= sizeof(body))
		bl = 0;
	snprintf(hdr, sizeof(hdr), "%sCache-Control: no-store\r\nContent-Length: %d\r\n", extra ? extra : "", bl);
	c->state = C_CLOSING;
	c->close_deadline = B.now + CLOSE_LINGER;
	if (stream_head(c, status, title, "application/problem+json", hdr) < 0 ||
	    oq_copy(&c->out, body, (size_t)bl, NULL, 0) < 0) {
		client_free(c);
		return -1;
	}
	client_flush(c);
	return -1;
}

static int stream_problem(client *c, int status, const char *title, const char *slug, const char *detail,
			  const char *extra)
{
	return stream_problem_ext(c, status, title, slug, detail, extra, NULL);
}

/* Ends the answer: a long-poll's body goes now (the head too if it has not
 * gone yet, then with a length), a stream just ends. retry_ms > 0 adds the
 * hint of a refused long-poll. Returns -1 (the client is closing or freed). */
static int stream_end(client *c, int retry_ms)
{
	if (c->state == C_CLOSING)
		return -1;
	client_detach(c);
	if (c->kind == K_POLL) {
		char len[48];
		int rc = 0;

		if (!c->head_sent) {
			snprintf(len, sizeof(len), "Cache-Control: no-store\r\nContent-Length: %zu\r\n",
				 it_longpoll_size(&c->lp, c->sub.cursor, retry_ms > 0));
			rc = stream_head(c, 200, "OK", "application/json", len);
		}
		if (rc == 0)
			rc = it_longpoll_write(&c->lp, c->sub.cursor, retry_ms > 0, lp_put, &c->out);
		else
			it_longpoll_clear(&c->lp);
		if (rc < 0) {
			client_free(c);
			return -1;
		}
	}
	c->state = C_CLOSING;
	c->close_deadline = B.now + CLOSE_LINGER;
	client_flush(c);
	return -1;
}

/* Queues an SSE stream's 200 head, the retry hint of retry_ms and the
 * transient of type whose JSON is json (freed here). Returns 0, or -1 when
 * out of memory. */
static int sse_start(client *c, int64_t retry_ms, const char *type, char *json)
{
	it_buf b;
	int rc;

	it_buf_init(&b, strlen(json) + 128);
	rc = it_sse_retry(&b, retry_ms) < 0 || it_sse_transient(&b, type, json) < 0 ? -1 : 0;
	free(json);
	if (rc == 0)
		rc = stream_head(c, 200, "OK", "text/event-stream",
				 "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
	if (rc == 0)
		rc = oq_copy(&c->out, b.data, b.len, NULL, 0);
	it_buf_free(&b);
	return rc;
}

/* The feed has admitted the client: the 200 head. SSE also gets its retry
 * hint and connection.status "connected" (t). */
static int stream_admit(client *c, const it_feed_transient *t)
{
	char *json;

	c->admitted = 1;
	if (c->kind != K_SSE || (json = it_feed_transient_json(t, "sse")) == NULL)
		return 0;
	return sse_start(c, B.cfg->sse_retry_ms, t->type, json);
}

static int on_stream_event(it_feed_sub *sub, it_feed_event *ev)
{
	client *c = sub_client(sub);
	struct iovec w;

	if (c->kind == K_POLL) {
		/* A full answer goes now; the next poll continues. */
		if (it_longpoll_full(&c->lp, ev, B.hard) || it_longpoll_add(&c->lp, ev, NULL) < 0)
			return 1;
		B.delivered_unreported[K_POLL]++;
		return 0;
	}
	if (c->out.bytes > 0 && c->out.bytes + ev->json_len + 64 > B.soft) {
		c->behind = 1;
		return 1;
	}
	if (it_feed_event_wire(ev, IT_FEED_FMT_SSE, &w) < 0 || oq_event(&c->out, ev, &w) < 0) {
		it_log_error("out of memory for a client's send queue");
		stream_end(c, 0);
		return -1;
	}
	B.delivered_unreported[K_SSE]++;
	return 0;
}

static int on_stream_transient(it_feed_sub *sub, const it_feed_transient *t)
{
	client *c = sub_client(sub);
	int resync = strcmp(t->type, "session.resync") == 0;
	char *json;

	if (!c->admitted) {
		if (resync || t->status == NULL || strcmp(t->status, "connected") != 0)
			return 0;
		if (stream_admit(c, t) < 0) {
			client_free(c);
			return -1;
		}
		return 0;
	}
	if (resync)
		it_metrics_inc("imagetools_resyncs_total", NULL, 1);
	else if (c->kind == K_POLL && strcmp(t->type, "session.revoked") != 0)
		return 0; /* a long-poll's answer is about the session (and its credential) only */
	if ((json = it_feed_transient_json(t, "sse")) == NULL)
		return 0;
	if (c->kind == K_SSE) {
		it_buf b;
		it_buf_init(&b, strlen(json) + 128);
		if (it_sse_transient(&b, t->type, json) == 0)
			oq_copy(&c->out, b.data, b.len, NULL, 0);
		it_buf_free(&b);
		free(json);
	} else if (it_longpoll_add(&c->lp, NULL, json) < 0) {
		free(json);
	}
	return 0;
}

static int on_stream_batch_end(it_feed_sub *sub)
{
	client *c = sub_client(sub);

	if (c->kind == K_POLL) {
		if (c->lp.n > 0)
			return stream_end(c, 0);
		if (!c->head_sent) {
			/* Waiting: the head and a space (allowed before JSON),
			 * as the hub sends them. */
			if (stream_head(c, 200, "OK", "application/json",
					"Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n") < 0 ||
			    oq_copy(&c->out, " ", 1, NULL, 0) < 0) {
				client_free(c);
				return -1;
			}
		}
	}
	if (client_flush(c) < 0)
		return -1;
	return c->subscribed ? 0 : -1;
}

static int token_refused(client *c);

static void on_stream_ended(it_feed_sub *sub, enum it_feed_end why)
{
	client *c = sub_client(sub);

	c->end_why = (uint8_t)why;
	client_detach(c);
	if (c->head_sent)
		stream_end(c, 0); /* a revoked token's stream got session.revoked first */
	else if (why == IT_FEED_END_REVOKED || why == IT_FEED_END_TOKEN_EXPIRED)
		token_refused(c);
	else
		stream_problem(c, 404, "Not Found", "unknown-session", "No such session, or it has expired.", NULL);
}

static const it_feed_sub_ops stream_ops = {on_stream_event, on_stream_transient, on_stream_batch_end, on_stream_ended,
					   on_admitted};

/* Reads key's value out of query (qlen bytes, may be NULL) into out,
 * decoded as imagetools.fcgi's it_req_query decodes it (%XX and '+').
 * Returns its length, -1 when absent, -2 when it does not fit, holds a NUL
 * or a broken escape. */
static int query_get(const char *q, size_t qlen, const char *key, char *out, size_t outlen)
{
	size_t i = 0, kl = strlen(key);

	while (q && i < qlen) {
		size_t e = i, o = 0;
		while (e < qlen && q[e] != '&')
			e++;
		if (e - i >= kl && memcmp(q + i, key, kl) == 0 && (e - i == kl || q[i + kl] == '=')) {
			for (size_t k = i + kl + (e - i > kl); k < e; k++) {
				int ch = (unsigned char)q[k], h, l;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					if (e - k < 3 || (h = it_hex_value(q[k + 1])) < 0 ||
					    (l = it_hex_value(q[k + 2])) < 0)
						return -2;
					ch = h << 4 | l;
					k += 2;
				}
				if (ch == 0 || o + 1 >= outlen)
					return -2;
				out[o++] = (char)ch;
			}
			out[o] = '\0';
			return (int)o;
		}
		i = e + 1;
	}
	return -1;
}

/* The session credential a request presents, as imagetools.fcgi takes it
 * (src/fcgi/auth.c): "Authorization: Bearer <value>" first (another scheme
 * is passed over), else the session_id query parameter. Returns 1 with it
 * in out, 0 when there is none, -1 when it is empty, too long or not
 * visible ASCII. */
static int credential(const it_http_request *req, const char *q, size_t qlen, char *out, size_t outlen)
{
	const it_http_header *a = it_http_find(req, "Authorization");
	const char *tok;
	size_t toklen;
	int rc;

	if (a && it_cred_bearer(a->value, a->value_len, &tok, &toklen))
		return it_cred_copy(tok, toklen, out, outlen);
	if ((rc = query_get(q, qlen, "session_id", out, outlen)) == -1)
		return 0;
	if (rc < 0)
		return -1;
	return it_cred_copy(out, (size_t)rc, out, outlen);
}

/* A non-negative integer of at most 18 digits. */
static int parse_count(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0;

	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static void client_address(const client *c, const it_http_request *req, char *out, size_t outlen);

/* Whether the database is out of reach, as far as a new request can tell:
 * the feed's connection was up and is down now, or it has not come up in
 * the connect deadline since the bridge started (a request in the first
 * moments waits for it instead). */
static int feed_down(void)
{
	it_feed_stats fs;

	it_feed_stats_get(B.feed, &fs);
	return !fs.db_up && (fs.reconnects > 0 || B.now - B.started > 10.0);
}

/* An SSE request while the database is out of reach, answered as
 * imagetools.fcgi answers it: EventSource gives up for good on a status
 * other than 200, so a short stream tells it to come back (retry: 5000) and
 * why (connection.status degraded). Returns -1 (closing or freed). */
static int stream_degraded(client *c)
{
	it_feed_transient t = {.type = "connection.status", .status = "degraded"};
	char *json = it_feed_transient_json(&t, "sse");

	if (json == NULL || sse_start(c, 5000, t.type, json) < 0) {
		client_free(c);
		return -1;
	}
	return stream_end(c, 0);
}

/* The CORS part of an answer (src/common/origin.h): c->cors gets the
 * header lines it_cors_decide chose. Returns its status (0, 204 or 403),
 * or -1 when out of memory. */
static int stream_cors(client *c, const it_http_request *req)
{
	const it_http_header *o = it_http_find(req, "Origin"), *h = it_http_find(req, "Host");
	it_origin_verdict v = it_origin_check(o ? o->value : NULL, o ? o->value_len : 0, h ? h->value : NULL,
					      h ? h->value_len : 0, B.cfg->allowed_origins);
	it_cors cors;
	it_buf b;

	it_cors_decide(v, req->method, req->method_len, o ? o->value : NULL, o ? o->value_len : 0, &cors);
	if (cors.n == 0)
		return cors.status;
	/* The Origin echoed is part of the head, so at most HEAD_MAX. */
	it_buf_init(&b, HEAD_MAX + 2048);
	for (unsigned i = 0; i < cors.n; i++)
		if (it_buf_printf(&b, "%s: %.*s\r\n", cors.h[i].name, (int)cors.h[i].value_len, cors.h[i].value) < 0) {
			it_buf_free(&b);
			return -1;
		}
	c->cors = b.data; /* NUL-terminated by it_buf_printf */
	return cors.status;
}

/* ------------------------------------------------------------ credentials */

/* Whether a scope (as it_credential_check names it) may read events. */
static int scope_views(const char *scope)
{
	return (it_scope_parse(scope) & IT_SCOPE_VIEW) != 0;
}

/* The client's identity, made on first use. Returns NULL when out of memory. */
static it_ident *ident_get(client *c)
{
	if (c->ident == NULL)
		c->ident = calloc(1, sizeof(*c->ident));
	return c->ident;
}

/* Counts a refused credential against the client's address. */
static void auth_failed(client *c)
{
	it_addrlimit_hit(&B.authfail, c->addr, B.now);
}

/* Why the feed's answer refuses a token, whatever the transport. */
enum cred_refusal {
	R_SCOPE,    /* not of scope view */
	R_NOMEM,    /* out of memory */
	R_TOKEN,    /* unknown, expired or revoked */
	R_SESSION,  /* its session is gone */
	R_DATABASE, /* the database did not answer */
};

static void cred_done(it_feed_credq *q, const it_feed_principal *p);

/* Sends a token's hash to the feed for checking; cred_done is called with
 * the answer. Returns 0, or -1 when out of memory (nothing pending). */
static int token_check(client *c, const char *cred)
{
	unsigned char h[IT_TOKEN_HASH_LEN];

	it_token_hash(cred, h);
	c->cq.done = cred_done;
	return it_feed_cred_check(B.feed, &c->cq, h) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------ SSE and long-poll: the request */

/* Answers 401 invalid-token, as imagetools.fcgi does for a token that is
 * malformed, unknown, expired or revoked (it does not say which). Returns -1. */
static int token_refused(client *c)
{
	return stream_problem(c, 401, "Unauthorized", "invalid-token",
			      "The token is unknown, expired or revoked. Ask the session's owner for a new one.",
			      "WWW-Authenticate: Bearer realm=\"imagetools\", error=\"invalid_token\"\r\n");
}

/* Answers 429 for an address whose failed credentials are used up. */
static int authfail_refused(client *c, unsigned wait)
{
	char hdr[48], ext[40], detail[112];

	snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", wait);
	snprintf(ext, sizeof(ext), ",\"retry_after\":%u", wait);
	snprintf(detail, sizeof(detail), "Too many refused credentials from this address; try again in %u seconds.",
		 wait);
	it_metrics_inc("imagetools_rate_limited_total", "limit=\"auth-fail\"", 1);
	return stream_problem_ext(c, 429, "Too Many Requests", "rate-limited", detail, hdr, ext);
}

/* Counts the stream against rate_streams. Returns 0 when allowed, -1 once
 * refused with 429. */
static int stream_rate(client *c)
{
	unsigned wait = it_addrlimit_hit(&B.rate, c->addr, B.now);
	char hdr[48], ext[40], detail[96];

	if (!wait)
		return 0;
	snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", wait);
	snprintf(ext, sizeof(ext), ",\"retry_after\":%u", wait);
	snprintf(detail, sizeof(detail), "Too many streams requests; try again in %u seconds.", wait);
	it_metrics_inc("imagetools_rate_limited_total", "limit=\"streams\"", 1);
	return stream_problem_ext(c, 429, "Too Many Requests", "rate-limited", detail, hdr, ext);
}

/* Subscribes an SSE stream or long-poll (its kind, cursor0 and timeout0 set)
 * to session sid, for a token with its device and until (else "" and 0).
 * rated: rate_streams was counted already. Returns 0 while it waits for the
 * feed, -1 once it is answered (or freed). */
static int stream_open(client *c, const char *sid, const char *device, int64_t until, int rated)
{
	it_feed_info fi;

	/* rate_streams counts streams, and long-polls that will wait: one
	 * the feed can answer at once is an ordinary request. */
	if (!rated && (c->kind == K_SSE || it_feed_lookup(B.feed, sid, &fi) < 0 || c->cursor0 >= fi.last_seq) &&
	    stream_rate(c) < 0)
		return -1;
	if (c->kind == K_SSE && c->cursor0 > 0)
		it_metrics_inc("imagetools_resumes_total", "transport=\"sse\"", 1);
	if (c->kind == K_SSE && feed_down())
		return stream_degraded(c);
	c->state = C_OPEN;
	c->deadline = B.now + (double)c->timeout0;
	c->next_keepalive = B.now + (double)B.cfg->keepalive_interval;
	c->sub.ops = &stream_ops;
	c->sub.until = until;
	snprintf(c->sub.device, sizeof(c->sub.device), "%s", device);
	if (it_feed_subscribe(B.feed, &c->sub, sid, c->cursor0, IT_FEED_HELLO | IT_FEED_FRESH) < 0) {
		client_free(c);
		return -1;
	}
	c->subscribed = 1;
	it_metrics_gauge_add("imagetools_connections_open", kind_label[c->kind], 1);
	if (it_feed_sub_count(&c->sub) > (unsigned)B.cfg->max_streams_per_session) {
		/* Too many streams on one session: this one ends at once with
		 * a hint to come back later, as the hub does. */
		client_detach(c);
		if (c->kind == K_SSE) {
			static const char retry[] = "retry: 5000\n\n";
			if (stream_head(c, 200, "OK", "text/event-stream", "Cache-Control: no-cache\r\n") < 0 ||
			    oq_copy(&c->out, retry, sizeof(retry) - 1, NULL, 0) < 0) {
				client_free(c);
				return -1;
			}
		}
		return stream_end(c, 5000);
	}
	return 0;
}

/* Refuses an SSE stream's or long-poll's token with the answer
 * imagetools.fcgi gives (R_NOMEM: the client is freed). */
static void stream_refuse(client *c, enum cred_refusal why)
{
	switch (why) {
	case R_SCOPE:
		stream_problem(c, 403, "Forbidden", "insufficient-scope",
			       "This credential's scope does not allow this request: it needs a credential of"
			       " scope \\\"view\\\". Nothing was changed.",
			       "WWW-Authenticate: Bearer realm=\"imagetools\", error=\"insufficient_scope\","
			       " scope=\"view\"\r\n");
		return;
	case R_NOMEM: client_free(c); return;
	case R_TOKEN: token_refused(c); return;
	case R_SESSION:
		stream_problem(c, 404, "Not Found", "unknown-session", "No such session, or it has expired.", NULL);
		return;
	case R_DATABASE:
		stream_problem(c, 503, "Service Unavailable", "database-unavailable",
			       "The database cannot be reached; try again shortly.", "Retry-After: 5\r\n");
		return;
	}
}

/* Reads client_id, client_label and client_source out of the query into
 * c->ident (made only when one is present). Returns 0, 1 when one is
 * malformed (name set to its key), -1 when out of memory. */
static int parse_ident(client *c, const char *q, size_t qlen, const char **name)
{
	static const struct {
		const char *key;
		int (*valid)(const char *, size_t);
		size_t off, size;
	} fields[] = {
		{"client_id", it_ident_client_id_valid, offsetof(it_ident, client_id),
		 sizeof(((it_ident *)0)->client_id)},
		{"client_label", it_ident_label_valid, offsetof(it_ident, label), sizeof(((it_ident *)0)->label)},
		{"client_source", it_ident_source_valid, offsetof(it_ident, source), sizeof(((it_ident *)0)->source)},
	};
	char v[IT_DEVICE_LABEL_SIZE + 3];

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		int n = query_get(q, qlen, fields[i].key, v, sizeof(v));
		if (n == -1)
			continue;
		if (n < 0 || !fields[i].valid(v, (size_t)n)) {
			*name = fields[i].key;
			return 1;
		}
		if (ident_get(c) == NULL)
			return -1;
		memcpy((char *)c->ident + fields[i].off, v, (size_t)n + 1);
	}
	return 0;
}

/* Answers a request for /api/v1/events or /api/v1/events/stream once its
 * head is parsed (server_names already checked), in the order
 * imagetools.fcgi answers it: the Origin and CORS rule (a refused
 * state-changing request or preflight is 403, a preflight 204), then the
 * method, the credential, the cursor, the client's identity, the rate
 * limit, then the session (the feed checks it: unknown is 404). A token is
 * checked by the feed first (401, 403, 404; failures count against the
 * address). q is the query (qlen bytes, may be NULL). req points into
 * c->in, which the caller frees afterwards. Returns 0 while the request
 * waits for the feed, -1 once it is answered (or the client freed). */
/* Applies the Origin and CORS rule to a stream request: a preflight is
 * answered 204, a refused origin 403. Returns 0 to go on, -1 once answered
 * (or the client freed). */
static int stream_origin(client *c, const it_http_request *req)
{
	switch (stream_cors(c, req)) {
	case 0: return 0;
	case 204:
		client_detach(c);
		c->state = C_CLOSING;
		c->close_deadline = B.now + CLOSE_LINGER;
		if (stream_head(c, 204, "No Content", NULL, NULL) < 0) {
			client_free(c);
			return -1;
		}
		client_flush(c);
		return -1;
	case 403:
		it_metrics_inc("imagetools_origin_refused_total", NULL, 1);
		return stream_problem(c, 403, "Forbidden", "origin-not-allowed",
				      "Requests from this origin are not allowed; see allowed_origins.", NULL);
	default: client_free(c); return -1;
	}
}

/* Checks the method and reads the credential (a session id or a token)
 * into sid (sidlen bytes); *token says which. Returns 0 to go on, -1 once
 * answered (405 or 400). */
static int stream_credential(client *c, const it_http_request *req, const char *q, size_t qlen, char *sid,
			     size_t sidlen, int *token)
{
	char detail[112];
	int n;

	if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
		/* The method is a token (no quote or backslash): safe in JSON. */
		snprintf(detail, sizeof(detail), "%.*s is not allowed here; allowed: GET.", (int)req->method_len,
			 req->method);
		return stream_problem(c, 405, "Method Not Allowed", "method-not-allowed", detail, "Allow: GET\r\n");
	}
	n = credential(req, q, qlen, sid, sidlen);
	if (n == 0)
		return stream_problem(c, 400, "Bad Request", "missing-session-id",
				      "The session_id query parameter is required.", NULL);
	*token = n > 0 && it_token_is(sid);
	if (!*token && (n < 0 || !it_id_session_valid(sid)))
		return stream_problem(c, 400, "Bad Request", "invalid-session-id", "The session id is malformed.",
				      NULL);
	return 0;
}

/* Reads the cursor (Last-Event-ID, else last_event_id for SSE, cursor for
 * long-poll) and a long-poll's timeout (capped at longpoll_timeout) into
 * *cursor and *timeout, which keep their values when not given. Returns 0
 * to go on, -1 once answered (400). */
static int stream_cursor(client *c, const it_http_request *req, enum client_kind kind, const char *q, size_t qlen,
			 int64_t *cursor, int64_t *timeout)
{
	const it_http_header *lei = kind == K_SSE ? it_http_find(req, "Last-Event-ID") : NULL;
	const char *ckey = kind == K_SSE ? "last_event_id" : "cursor";
	char v[32];
	int n;

	if (lei && lei->value_len > 0) {
		if (parse_count(lei->value, lei->value_len, cursor) < 0)
			return stream_problem(c, 400, "Bad Request", "invalid-cursor",
					      "Last-Event-ID must be a non-negative integer.", NULL);
	} else if ((n = query_get(q, qlen, ckey, v, sizeof(v))) != -1) {
		if (n < 0 || parse_count(v, (size_t)n, cursor) < 0)
			return stream_problem(c, 400, "Bad Request", "invalid-cursor",
					      kind == K_SSE ? "last_event_id must be a non-negative integer."
							    : "cursor must be a non-negative integer.",
					      NULL);
	}
	if (kind == K_POLL && (n = query_get(q, qlen, "timeout", v, sizeof(v))) != -1) {
		if (n < 0 || parse_count(v, (size_t)n, timeout) < 0 || *timeout > 86400)
			return stream_problem(c, 400, "Bad Request", "invalid-timeout",
					      "timeout must be a whole number of seconds.", NULL);
		if (*timeout > B.cfg->longpoll_timeout)
			*timeout = B.cfg->longpoll_timeout;
	}
	return 0;
}

/* Hands a stream's token to the feed to check, after the limits in the
 * order imagetools.fcgi applies them: an SSE stream counts against
 * rate_streams before its credential is looked at, then the address's
 * failed credentials, then the form, then the database. Returns 0 while
 * the client waits for the feed, -1 once answered (or freed). */
static int stream_token(client *c, enum client_kind kind, const char *sid)
{
	unsigned wait;

	if (kind == K_SSE && stream_rate(c) < 0)
		return -1;
	wait = it_addrlimit_peek(&B.authfail, c->addr, B.now);
	if (wait)
		return authfail_refused(c, wait);
	if (!it_token_valid(sid)) {
		auth_failed(c);
		return token_refused(c);
	}
	if (token_check(c, sid) < 0) {
		client_free(c);
		return -1;
	}
	/* Waiting for the feed: input is ignored from here on, and the
	 * tick answers 503 if the database does not answer in time. */
	c->state = C_OPEN;
	c->deadline = B.now + HEAD_TIMEOUT;
	return 0;
}

static int stream_start(client *c, const it_http_request *req, enum client_kind kind, const char *q, size_t qlen)
{
	char sid[1024], detail[112];
	int64_t cursor = 0, timeout = B.cfg->longpoll_timeout;
	const char *bad;
	int n, token;

	c->kind = kind;
	c->instance = strndup(req->target, q ? (size_t)(q - 1 - req->target) : req->target_len);
	if (c->instance == NULL) {
		client_free(c);
		return -1;
	}
	client_address(c, req, c->addr, sizeof(c->addr));
	if (stream_origin(c, req) < 0 || stream_credential(c, req, q, qlen, sid, sizeof(sid), &token) < 0 ||
	    stream_cursor(c, req, kind, q, qlen, &cursor, &timeout) < 0)
		return -1;
	if ((n = parse_ident(c, q, qlen, &bad)) != 0) {
		if (n < 0) {
			client_free(c);
			return -1;
		}
		snprintf(detail, sizeof(detail), "%s is malformed; see docs/api.md, \\\"Client identity\\\".", bad);
		return stream_problem(c, 400, "Bad Request", "invalid-client-identity", detail, NULL);
	}
	c->cursor0 = cursor;
	c->timeout0 = timeout;
	/* imagetools.fcgi asks the database for the session (or the token) at
	 * this point; while it cannot, a long-poll is 503, an SSE stream with
	 * a session id (after its rate check) a short degraded one. */
	if ((kind == K_POLL || token) && feed_down())
		return stream_problem(c, 503, "Service Unavailable", "database-unavailable",
				      "The database cannot be reached; try again shortly.", "Retry-After: 5\r\n");
	if (!token)
		return stream_open(c, sid, "", 0, 0);
	return stream_token(c, kind, sid);
}

/* Housekeeping of one SSE stream or long-poll. */
static void stream_tick(client *c)
{
	if (c->cq.feed != NULL) {
		/* A token check the database has not answered in time. */
		if (B.now >= c->deadline)
			stream_problem(c, 503, "Service Unavailable", "database-unavailable",
				       "The database cannot be reached; try again shortly.", "Retry-After: 5\r\n");
		return;
	}
	if (c->behind && c->out.bytes > 0 && B.now - c->last_tx >= (double)B.cfg->stream_stall_timeout) {
		client_free(c);
		return;
	}
	if (c->kind == K_POLL && B.now >= c->deadline) {
		if (c->admitted)
			stream_end(c, 0);
		else
			stream_problem(c, 503, "Service Unavailable", "database-unavailable",
				       "The database cannot be reached; try again shortly.", "Retry-After: 5\r\n");
		return;
	}
	if (c->head_sent && B.now >= c->next_keepalive) {
		static const char ka[] = ": keepalive\n\n";
		c->next_keepalive = B.now + (double)B.cfg->keepalive_interval;
		/* JSON allows leading whitespace: a waiting long-poll sends a
		 * space so proxies see traffic. */
		if ((c->kind == K_SSE ? oq_copy(&c->out, ka, sizeof(ka) - 1, NULL, 0)
				      : oq_copy(&c->out, " ", 1, NULL, 0)) == 0)
			client_flush(c);
	}
}

/* ------------------------------------------------------------ the upgrade */

/* Whether origin (the Origin header) may open a socket: the rule
 * imagetools.fcgi applies too (src/common/origin.h). */
static int origin_allowed(const it_http_request *req)
{
	const it_http_header *o = it_http_find(req, "Origin"), *h = it_http_find(req, "Host");

	return it_origin_check(o ? o->value : NULL, o ? o->value_len : 0, h ? h->value : NULL, h ? h->value_len : 0,
			       B.cfg->allowed_origins) != IT_ORIGIN_REFUSED;
}

/* Parses ?last_event_id=N out of query (may be NULL). Returns 0 with *out
 * set (0 when absent), or -1 when it is present but not a number. */
static int parse_query(const char *q, size_t qlen, int64_t *out)
{
	static const char key[] = "last_event_id=";
	size_t i = 0;

	*out = 0;
	while (q && i < qlen) {
		size_t e = i;
		while (e < qlen && q[e] != '&')
			e++;
		if (e - i >= sizeof(key) - 1 && memcmp(q + i, key, sizeof(key) - 1) == 0) {
			size_t k = i + sizeof(key) - 1;
			int64_t v = 0;
			if (k == e || e - k > 18)
				return -1;
			for (; k < e; k++) {
				if (q[k] < '0' || q[k] > '9')
					return -1;
				v = v * 10 + (q[k] - '0');
			}
			*out = v;
		}
		i = e + 1;
	}
	return 0;
}

/* The client's address for rate limiting: the peer, or, when the peer is
 * the web server on this machine, the last X-Forwarded-For entry (the one
 * that web server added; earlier ones come from the client and may lie). */
static void client_address(const client *c, const it_http_request *req, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	const it_http_header *xff;
	int loopback = 0;

	snprintf(out, outlen, "unknown");
	if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)outlen);
			loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)outlen);
			loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
		}
	}
	xff = it_http_find(req, "X-Forwarded-For");
	if (loopback && xff && xff->value_len > 0) {
		const char *v = xff->value, *last = v;
		size_t i, n;
		for (i = 0; i < xff->value_len; i++)
			if (v[i] == ',')
				last = v + i + 1;
		while (last < v + xff->value_len && *last == ' ')
			last++;
		n = (size_t)(v + xff->value_len - last);
		if (n > 0 && n < outlen) {
			memcpy(out, last, n);
			out[n] = '\0';
		}
	}
}

/* ------------------------------------------------------------ WebSocket credentials */

/* Subscribes an open WebSocket to session sid from c->cursor0, for a token
 * with its device and until (else "" and 0). Returns 0, or -1 when the
 * client is closing or was freed. */
static int ws_subscribe(client *c, const char *sid, const char *device, int64_t until)
{
	c->sub.ops = &ws_ops;
	c->sub.until = until;
	snprintf(c->sub.device, sizeof(c->sub.device), "%s", device);
	if (it_feed_subscribe(B.feed, &c->sub, sid, c->cursor0, IT_FEED_HELLO | IT_FEED_FRESH) < 0) {
		client_close(c, IT_WS_CLOSE_INVALID_SESSION, "Invalid session");
		return -1;
	}
	c->subscribed = 1;
	it_metrics_gauge_add("imagetools_connections_open", "transport=\"websocket\"", 1);
	if (c->cursor0 > 0)
		it_metrics_inc("imagetools_resumes_total", "transport=\"websocket\"", 1);
	if (it_feed_sub_count(&c->sub) > (unsigned)B.cfg->max_streams_per_session) {
		/* One capability should not pin unbounded resources: extras
		 * are told to come back later, as the hub does for SSE. */
		client_close(c, IT_WS_CLOSE_TRY_LATER, "Too many connections to this session");
		return -1;
	}
	if (device[0]) {
		it_log_debug("WebSocket for device %s from id %lld", device, (long long)c->cursor0);
	} else {
		char red[16];
		it_log_debug("WebSocket for session %s from id %lld", it_log_redact(sid, red, sizeof(red)),
			     (long long)c->cursor0);
	}
	return 0;
}

/* Refuses a WebSocket's token with a close code. */
static void ws_refuse(client *c, enum cred_refusal why)
{
	static const struct {
		int code;
		const char *reason;
	} close_with[] = {
		[R_SCOPE] = {WS_CLOSE_SCOPE, "Insufficient scope"},
		[R_NOMEM] = {IT_WS_CLOSE_INTERNAL, "Out of memory"},
		[R_TOKEN] = {WS_CLOSE_BAD_CREDENTIAL, "Invalid token"},
		[R_SESSION] = {IT_WS_CLOSE_INVALID_SESSION, "Invalid session"},
		[R_DATABASE] = {IT_WS_CLOSE_TRY_LATER, "Database unavailable"},
	};

	client_close(c, close_with[why].code, close_with[why].reason);
}

/* The feed's answer about a client's token: a token of scope view opens
 * the client's stream or subscribes its WebSocket, anything else is
 * refused the way the client's transport refuses. */
static void cred_done(it_feed_credq *q, const it_feed_principal *p)
{
	client *c = it_container_of(q, client, cq);
	void (*refuse)(client *, enum cred_refusal) = c->kind == K_WS ? ws_refuse : stream_refuse;

	switch (p->status) {
	case 200:
		if (!scope_views(p->scope)) {
			refuse(c, R_SCOPE);
			return;
		}
		if (ident_get(c) == NULL) {
			refuse(c, R_NOMEM);
			return;
		}
		it_ident_set_device(c->ident, p->device_id, p->label, p->source);
		if (c->kind == K_WS)
			ws_subscribe(c, p->session_id, p->device_id, p->until);
		else
			stream_open(c, p->session_id, p->device_id, p->until, c->kind == K_SSE);
		return;
	case 401:
		auth_failed(c);
		refuse(c, R_TOKEN);
		return;
	case 404: refuse(c, R_SESSION); return;
	default: refuse(c, R_DATABASE); return;
	}
}

/* Takes the credential of a WebSocket on /api/v1/ws: a session id is
 * subscribed at once (the feed checks it: 4004 when unknown), a token is
 * checked by the feed first. Returns 0, or -1 when the client is closing or
 * was freed. */
static int ws_authenticate(client *c, const char *cred)
{
	if (it_token_is(cred)) {
		if (it_addrlimit_peek(&B.authfail, c->addr, B.now)) {
			client_close(c, IT_WS_CLOSE_TRY_LATER, "Too many failed credentials");
			return -1;
		}
		if (!it_token_valid(cred)) {
			auth_failed(c);
			client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Invalid token");
			return -1;
		}
		if (token_check(c, cred) < 0) {
			client_close(c, IT_WS_CLOSE_INTERNAL, "Out of memory");
			return -1;
		}
		return 0;
	}
	if (!it_id_session_valid(cred)) {
		client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Invalid credential");
		return -1;
	}
	return ws_subscribe(c, cred, "", 0);
}

/* Copies a string member of o (at most outlen - 1 bytes, checked by valid)
 * into out. Returns 0 (absent or copied) or -1 (not a string, or invalid). */
static int json_field(json_object *o, const char *key, int (*valid)(const char *, size_t), char *out, size_t outlen)
{
	json_object *v;
	const char *s;
	size_t n;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	s = json_object_get_string(v);
	n = (size_t)json_object_get_string_len(v);
	if (n >= outlen || strlen(s) != n || (valid && !valid(s, n)))
		return -1;
	memcpy(out, s, n + 1);
	return 0;
}

/* The first text message on /api/v1/ws, c->authmsg:
 * {"type":"auth","credential":"...","last_event_id":n,"client_id":"...",
 *  "client_label":"...","client_source":"..."}. Returns 0, or -1 when the
 * client is closing or was freed. */
static int ws_auth_message(client *c)
{
	json_tokener *tk = json_tokener_new();
	json_object *o = NULL, *v;
	char cred[72];
	it_ident id;
	int rc = -1;

	memset(&id, 0, sizeof(id));
	cred[0] = '\0';
	if (tk != NULL)
		o = json_tokener_parse_ex(tk, c->authmsg.data ? c->authmsg.data : "", (int)c->authmsg.len);
	if (o == NULL || json_tokener_get_error(tk) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "type", &v) ||
	    !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "auth") != 0 ||
	    json_field(o, "credential", NULL, cred, sizeof(cred)) < 0 || cred[0] == '\0' ||
	    it_cred_copy(cred, strlen(cred), cred, sizeof(cred)) < 0 ||
	    json_field(o, "client_id", it_ident_client_id_valid, id.client_id, sizeof(id.client_id)) < 0 ||
	    json_field(o, "client_label", it_ident_label_valid, id.label, sizeof(id.label)) < 0 ||
	    json_field(o, "client_source", it_ident_source_valid, id.source, sizeof(id.source)) < 0)
		goto refuse;
	if (json_object_object_get_ex(o, "last_event_id", &v)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
		    json_object_get_int64(v) > INT64_MAX / 2)
			goto refuse;
		c->cursor0 = json_object_get_int64(v);
	}
	if (id.client_id[0] || id.label[0] || id.source[0]) {
		if (ident_get(c) == NULL)
			goto refuse;
		if (id.client_id[0])
			memcpy(c->ident->client_id, id.client_id, sizeof(id.client_id));
		if (id.label[0])
			memcpy(c->ident->label, id.label, sizeof(id.label));
		if (id.source[0])
			memcpy(c->ident->source, id.source, sizeof(id.source));
	}
	c->auth_wait = 0;
	it_buf_free(&c->authmsg);
	rc = ws_authenticate(c, cred);
	goto out;
refuse:
	c->auth_wait = 0;
	it_buf_free(&c->authmsg);
	client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Invalid auth message");
out:
	if (o)
		json_object_put(o);
	if (tk)
		json_tokener_free(tk);
	return rc;
}

/* Reads the credential offered as a subprotocol, "Sec-WebSocket-Protocol:
 * imagetools.v1, imagetools.bearer.<credential>", into out, and whether
 * imagetools.v1 was offered (the answer selects it: a client that offers
 * subprotocols must get one of them back, and never the one that holds its
 * credential). Returns 1 with the credential, 0 when none was offered, -1
 * when the one offered is malformed. */
static int ws_protocols(const it_http_request *req, char *out, size_t outlen, int *offer_v1)
{
	static const char bearer[] = "imagetools.bearer.";
	int rc = 0;

	*offer_v1 = 0;
	for (size_t i = 0; i < req->num_headers; i++) {
		const it_http_header *h = &req->headers[i];
		size_t k = 0;

		if (h->name_len != 22 || strncasecmp(h->name, "Sec-WebSocket-Protocol", 22) != 0)
			continue;
		while (k < h->value_len) {
			size_t b, e;
			while (k < h->value_len && (h->value[k] == ' ' || h->value[k] == '\t' || h->value[k] == ','))
				k++;
			b = k;
			while (k < h->value_len && h->value[k] != ',')
				k++;
			e = k;
			while (e > b && (h->value[e - 1] == ' ' || h->value[e - 1] == '\t'))
				e--;
			if (e - b == 13 && memcmp(h->value + b, "imagetools.v1", 13) == 0)
				*offer_v1 = 1;
			else if (e - b > sizeof(bearer) - 1 && memcmp(h->value + b, bearer, sizeof(bearer) - 1) == 0 &&
				 rc == 0)
				rc = it_cred_copy(h->value + b + sizeof(bearer) - 1, e - b - (sizeof(bearer) - 1), out,
						  outlen);
		}
	}
	return rc;
}

static int process_frames(client *c, unsigned char *buf, size_t len);

/* The target of a request head: the path without url_prefix, and the query
 * (q after the '?', qlen bytes; NULL when there is none). Both point into
 * the head. */
struct target {
	const char *path, *q;
	size_t plen, qlen;
};

/* Splits req's target into path and query, dropping url_prefix. */
static void split_target(const it_http_request *req, struct target *t)
{
	size_t prelen = strlen(B.cfg->url_prefix);
	const char *q;

	t->path = req->target;
	t->plen = req->target_len;
	t->q = NULL;
	t->qlen = 0;
	if (prelen && t->plen >= prelen && memcmp(t->path, B.cfg->url_prefix, prelen) == 0) {
		t->path += prelen;
		t->plen -= prelen;
	}
	q = memchr(t->path, '?', t->plen);
	if (q) {
		t->qlen = t->plen - (size_t)(q - t->path) - 1;
		t->plen = (size_t)(q - t->path);
		t->q = q + 1;
	}
}

/* Whether the path is p (a string literal's array, NUL included). */
#define PATH_IS(t, p) ((t)->plen == sizeof(p) - 1 && memcmp((t)->path, (p), (t)->plen) == 0)

/* Answers SSE and long-poll, as imagetools.fcgi serves them, and frees the
 * head (parsed into c->in) once it is no longer looked at. */
static int stream_handshake(client *c, const it_http_request *req, const struct target *t)
{
	int rc = stream_start(c, req, PATH_IS(t, stream_path) ? K_SSE : K_POLL, t->q, t->qlen);

	if (!c->dead)
		it_buf_free(&c->in);
	return rc;
}

/* A refusal of a WebSocket upgrade: status line, problem and extra header. */
struct refusal {
	int status;
	const char *title, *slug, *detail, *header;
};

/* Checks, in this order, that req is a WebSocket upgrade of version 13 to
 * one of the WebSocket URLs with a valid key and cursor. Returns NULL, with
 * *bare (whether the URL is the one without a session), accept (the
 * Sec-WebSocket-Accept value, 29 bytes and a NUL) and *requested (the
 * cursor) set, or the refusal. */
static const struct refusal *upgrade_refusal(const it_http_request *req, const struct target *t, int *bare,
					     char *accept, int64_t *requested)
{
	static const struct refusal not_get = {400, "Bad Request", "bad-request",
					       "A WebSocket upgrade is a GET over HTTP/1.1.", NULL};
	static const struct refusal no_host = {400, "Bad Request", "bad-request",
					       "An HTTP/1.1 request needs a Host header.", NULL};
	static const struct refusal not_found = {404, "Not Found", "not-found", "No such WebSocket endpoint.", NULL};
	static const struct refusal not_ws = {426, "Upgrade Required", "upgrade-required",
					      "This endpoint speaks WebSocket only.", "Upgrade: websocket\r\n"};
	static const struct refusal version = {426, "Upgrade Required", "websocket-version",
					       "Only WebSocket version 13 is supported.",
					       "Sec-WebSocket-Version: 13\r\n"};
	static const struct refusal bad_key = {400, "Bad Request", "bad-request",
					       "Missing or malformed Sec-WebSocket-Key.", NULL};
	static const struct refusal bad_cursor = {400, "Bad Request", "bad-cursor",
						  "last_event_id must be a non-negative integer.", NULL};
	const it_http_header *h;

	if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0 || req->minor_version < 1)
		return &not_get;
	if (it_http_find(req, "Host") == NULL)
		return &no_host;
	*bare = PATH_IS(t, ws_bare);
	if (!*bare && (t->plen <= sizeof(ws_prefix) - 1 || memcmp(t->path, ws_prefix, sizeof(ws_prefix) - 1) != 0))
		return &not_found;
	h = it_http_find(req, "Upgrade");
	if (h == NULL || !it_http_has_token(h->value, h->value_len, "websocket") ||
	    (h = it_http_find(req, "Connection")) == NULL || !it_http_has_token(h->value, h->value_len, "upgrade"))
		return &not_ws;
	h = it_http_find(req, "Sec-WebSocket-Version");
	if (h == NULL || h->value_len != 2 || memcmp(h->value, "13", 2) != 0)
		return &version;
	h = it_http_find(req, "Sec-WebSocket-Key");
	if (h == NULL || it_ws_accept_key(h->value, h->value_len, accept) < 0)
		return &bad_key;
	if (parse_query(t->q, t->qlen, requested) < 0)
		return &bad_cursor;
	return NULL;
}

/* Notes the client's address in c->addr and counts the upgrade against
 * rate_streams for it. Returns 0 when allowed, else the whole seconds to
 * wait. */
static unsigned upgrade_wait(client *c, const it_http_request *req)
{
	client_address(c, req, c->addr, sizeof(c->addr));
	return it_addrlimit_hit(&B.rate, c->addr, B.now);
}

/* Copies the credential of an upgrade into sid (sidlen bytes): from the
 * URL /api/v1/ws/<session>, or for the bare URL from a header, never the
 * URL: the subprotocol (which a browser can set), else Authorization. sid
 * is left empty when the first message after the upgrade is to bring it,
 * and "-" when the one offered is malformed (refused after the upgrade).
 * *offer_v1 says whether imagetools.v1 was offered. */
static void upgrade_credential(const it_http_request *req, const struct target *t, int bare, char *sid, size_t sidlen,
			       int *offer_v1)
{
	const it_http_header *h;
	size_t plen;

	sid[0] = '\0';
	if (bare) {
		int r = ws_protocols(req, sid, sidlen, offer_v1);
		if (r == 0 && (h = it_http_find(req, "Authorization")) != NULL) {
			const char *tok;
			size_t toklen;
			if (it_cred_bearer(h->value, h->value_len, &tok, &toklen))
				r = it_cred_copy(tok, toklen, sid, sidlen);
		}
		if (r < 0)
			snprintf(sid, sidlen, "-");
		return;
	}
	plen = t->plen - (sizeof(ws_prefix) - 1);
	if (plen >= sidlen)
		plen = sidlen - 1; /* too long to be valid; still closed with 4004 */
	memcpy(sid, t->path + sizeof(ws_prefix) - 1, plen);
	sid[plen] = '\0';
}

/* Answers 101 Switching Protocols (selecting imagetools.v1 when offered)
 * and starts the WebSocket: the reader, the ping clock. Returns 0, or -1
 * when the client is gone. */
static int upgrade_answer(client *c, const char *accept, int offer_v1)
{
	char resp[256];
	int rl = snprintf(resp, sizeof(resp),
			  "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			  "Sec-WebSocket-Accept: %s\r\n%s\r\n",
			  accept, offer_v1 ? "Sec-WebSocket-Protocol: imagetools.v1\r\n" : "");

	if (oq_copy(&c->out, resp, (size_t)rl, NULL, 0) < 0) {
		client_free(c);
		return -1;
	}
	c->state = C_OPEN;
	/* The first Ping goes out one ws_ping_interval after the upgrade. */
	c->ping_sent = B.now;
	it_ws_reader_init(&c->rd, (uint64_t)B.cfg->ws_max_message);
	return client_flush(c);
}

/* Reads the frames that came in the same packet as the request head (the
 * head is n bytes of c->in), and frees c->in. */
static int upgrade_leftover(client *c, int n)
{
	it_buf leftover;

	if ((size_t)n >= c->in.len) {
		it_buf_free(&c->in);
		return 0;
	}
	leftover = c->in;
	it_buf_init(&c->in, 0);
	if (process_frames(c, (unsigned char *)leftover.data + n, leftover.len - (size_t)n) < 0) {
		it_buf_free(&leftover);
		return -1;
	}
	it_buf_free(&leftover);
	return 0;
}

/* Answers a request head in c->in once it is whole: SSE and long-poll go to
 * stream_start, anything else must be a WebSocket upgrade. The checks run
 * in the order the tests and imagetools.fcgi expect: the head, Host, the
 * upgrade itself, Origin, the rate limit, the client's identity. */
static int handshake(client *c)
{
	it_http_header hdrs[64];
	it_http_request req = {.headers = hdrs, .num_headers = 64};
	const struct refusal *why;
	const it_http_header *h;
	struct target t;
	const char *bad;
	char sid[72], accept[32], hdr[48];
	int64_t requested;
	unsigned wait;
	int n, r, bare, offer_v1 = 0;

	n = it_http_parse_request(c->in.data, c->in.len, &req);
	if (n == -2) {
		if (c->in.len >= HEAD_MAX)
			return client_http_error(c, 431, "Request Header Fields Too Large", "head-too-large",
						 "The request head is too large.", NULL);
		return 0;
	}
	if (n < 0)
		return client_http_error(c, 400, "Bad Request", "bad-request", "Malformed request.", NULL);
	/* Before anything else, as in imagetools.fcgi (src/fcgi/guard.c): a
	 * Host that is not one of server_names is a DNS-rebinding page. */
	h = it_http_find(&req, "Host");
	if (!it_host_listed(B.cfg->server_names, h ? h->value : NULL, h ? h->value_len : 0)) {
		it_log_info("WebSocket upgrade refused: Host not in server_names");
		return client_http_error(
			c, 421, "Misdirected Request", "misdirected-request",
			"This server does not answer for the host named in the request; see server_names.", NULL);
	}
	split_target(&req, &t);
	if (PATH_IS(&t, events_path) || PATH_IS(&t, stream_path))
		return stream_handshake(c, &req, &t);
	why = upgrade_refusal(&req, &t, &bare, accept, &requested);
	if (why != NULL)
		return client_http_error(c, why->status, why->title, why->slug, why->detail, why->header);
	if (!origin_allowed(&req)) {
		it_metrics_inc("imagetools_origin_refused_total", NULL, 1);
		it_log_info("WebSocket upgrade refused: origin not allowed");
		return client_http_error(c, 403, "Forbidden", "origin-not-allowed",
					 "This origin may not open WebSockets here.", NULL);
	}
	if ((wait = upgrade_wait(c, &req)) != 0) {
		snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", wait);
		return client_http_error(c, 429, "Too Many Requests", "rate-limited",
					 "Too many WebSocket connections from this address; retry later.", hdr);
	}
	c->cursor0 = requested;
	upgrade_credential(&req, &t, bare, sid, sizeof(sid), &offer_v1);
	/* Both WebSocket URLs take the client's identity from the query. */
	r = parse_ident(c, t.q, t.qlen, &bad);
	if (r < 0) {
		client_free(c);
		return -1;
	}
	if (r > 0)
		return client_http_error(c, 400, "Bad Request", "invalid-client-identity",
					 "client_id, client_label or client_source is malformed.", NULL);
	if (upgrade_answer(c, accept, offer_v1) < 0)
		return -1;
	/* The credential is checked after the upgrade, so that a browser sees
	 * the close code (4004, 4401, 4403) rather than a failed handshake.
	 * The feed checks the session, sends connection.status "connected" on
	 * admission, weighs the cursor against the log and then hands over
	 * the events. */
	if (bare && sid[0] == '\0') {
		c->auth_wait = 1;
		c->auth_deadline = B.now + AUTH_TIMEOUT;
		it_buf_init(&c->authmsg, AUTH_MSG_MAX);
	} else if (bare) {
		ws_authenticate(c, sid);
	} else {
		ws_subscribe(c, sid, "", 0);
	}
	if (c->dead)
		return -1;
	if (c->state == C_CLOSING) {
		it_buf_free(&c->in);
		return 0;
	}
	return upgrade_leftover(c, n);
}

/* ------------------------------------------------------------ client input */

/* Counts n frames against ws_rate. Returns -1 when the client was closed
 * for it (or freed), else 0. */
static int rate_hit(client *c, unsigned n)
{
	if (B.now - c->rate_start >= RATE_WINDOW) {
		c->rate_start = B.now;
		c->rate_count = 0;
	}
	c->rate_count = n > UINT_MAX - c->rate_count ? UINT_MAX : c->rate_count + n;
	if (c->rate_count > (unsigned)B.cfg->ws_rate) {
		client_close(c, IT_WS_CLOSE_POLICY, "Message rate limit exceeded");
		return -1;
	}
	return 0;
}

static int process_frames(client *c, unsigned char *buf, size_t len)
{
	for (;;) {
		it_ws_event ev;
		ssize_t n = it_ws_read(&c->rd, buf, len, &ev);
		size_t i;

		/* Every frame counts against ws_rate, data or control, empty
		 * or not, and before anything is done for it: otherwise a
		 * message that never ends (endless empty continuation frames)
		 * would never be counted at all. */
		if (c->rd.frames > 0) {
			unsigned frames = c->rd.frames;
			c->rd.frames = 0;
			if (rate_hit(c, frames) < 0)
				return -1;
		}
		if (n < 0) {
			int code = (int)-n;
			const char *why = code == IT_WS_CLOSE_BAD_DATA ? "Invalid UTF-8"
				: code == IT_WS_CLOSE_TOO_BIG	       ? "Message too big"
								       : "Protocol error";
			client_close(c, code, why);
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		switch (ev.kind) {
		case IT_WS_MORE: return 0;
		case IT_WS_DATA:
			for (i = 0; i < ev.len && c->msg_n < 5; i++, c->msg_n++)
				if (c->msg_n >= 4 || ev.data[i] != (unsigned char)"ping"[c->msg_n])
					c->msg_ping = 0;
			if (c->auth_wait && ev.len > 0) {
				/* The auth message is gathered (it is small); any
				 * other message is never kept. */
				if (c->authmsg.len + ev.len > AUTH_MSG_MAX ||
				    it_buf_append(&c->authmsg, ev.data, ev.len) < 0) {
					client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Auth message too large");
					return -1;
				}
			}
			if (!ev.fin)
				break;
			if (ev.opcode == IT_WS_OP_BINARY) {
				client_close(c, IT_WS_CLOSE_UNSUPPORTED, "Binary messages are not accepted");
				return -1;
			}
			if (c->msg_n == 4 && c->msg_ping) {
				if (client_frame(c, IT_WS_OP_TEXT, "pong", 4) < 0)
					return -1;
				it_buf_reset(&c->authmsg); /* "ping" is not the auth message */
			} else if (c->auth_wait) {
				if (ws_auth_message(c) < 0 || c->dead || c->state == C_CLOSING)
					return -1;
			}
			/* Other text messages mean nothing to the bridge. */
			c->msg_n = 0;
			c->msg_ping = 1;
			break;
		case IT_WS_PING:
			if (client_frame(c, IT_WS_OP_PONG, ev.data, ev.len) < 0)
				return -1;
			break;
		case IT_WS_PONG:
			/* Only a Pong answers a Ping: other traffic does not
			 * show that the peer follows the protocol. */
			c->ping_out = 0;
			break;
		case IT_WS_CLOSE: {
			/* Echo the code (RFC 6455 5.5.1), then wait for
			 * the peer to close the TCP connection. */
			unsigned char p[2] = {(unsigned char)(ev.close_code >> 8), (unsigned char)ev.close_code};
			client_detach(c);
			c->state = C_CLOSING;
			c->close_deadline = B.now + CLOSE_LINGER;
			if (client_frame(c, IT_WS_OP_CLOSE, p, ev.close_code == 1005 ? 0 : 2) < 0)
				return -1;
			client_flush(c);
			return -1;
		}
		}
	}
}

static void client_readable(client *c)
{
	int rounds;

	/* A few reads per wakeup, so one fast sender cannot starve others
	 * (epoll is level-triggered and comes back). */
	for (rounds = 0; rounds < 4; rounds++) {
		ssize_t n = recv(c->fd, B.rbuf, sizeof(B.rbuf), 0);
		if (n == 0) {
			client_free(c);
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				client_free(c);
			return;
		}
		if (c->state == C_CLOSING)
			continue; /* after a Close, input is only drained */
		if (c->state == C_HANDSHAKE) {
			size_t room = HEAD_MAX - c->in.len;
			if (it_buf_append(&c->in, B.rbuf, (size_t)n < room ? (size_t)n : room) < 0) {
				client_free(c);
				return;
			}
			if (handshake(c) < 0)
				return;
			continue;
		}
		if (c->kind != K_WS)
			continue; /* a request body or pipelined requests mean nothing here */
		if (process_frames(c, B.rbuf, (size_t)n) < 0)
			return;
	}
}

/* ------------------------------------------------------------ client life */

/* Closes the connection now but frees the memory only after the current
 * epoll batch, which may still hold events pointing at it. */
static void client_free(client *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	client_detach(c);
	epoll_ctl(B.epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
	it_list_unlink(&c->alink);
	it_list_push(&B.dead, &c->alink);
	it_buf_free(&c->in);
	it_buf_free(&c->authmsg);
	free(c->ident);
	c->ident = NULL;
	it_outq_free(&c->out);
	it_longpoll_free(&c->lp);
	free(c->cors);
	c->cors = NULL;
	free(c->instance);
	c->instance = NULL;
}

static void reap(void)
{
	while (!it_list_empty(&B.dead)) {
		client *c = it_container_of(B.dead.next, client, alink);
		it_list_unlink(&c->alink);
		free(c);
	}
}

static void accept_clients(void)
{
	for (;;) {
		struct epoll_event e;
		client *c;
		int one = 1;
		int fd = accept4(B.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a
				 * moment instead of spinning on the backlog. */
				it_log_warn("accept: %s; pausing for a second", strerror(errno));
				epoll_ctl(B.epfd, EPOLL_CTL_DEL, B.lfd, NULL);
				B.listen_paused_until = B.now + 1.0;
			}
			return;
		}
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->h.kind = H_CLIENT;
		c->fd = fd;
		c->state = C_HANDSHAKE;
		c->created = c->ping_sent = c->last_tx = c->rate_start = B.now;
		c->msg_ping = 1;
		it_list_push(&B.clients, &c->alink);
		it_buf_init(&c->in, HEAD_MAX);
		e.events = EPOLLIN;
		e.data.ptr = &c->h;
		if (epoll_ctl(B.epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
			client_free(c);
			return;
		}
	}
}

/* ------------------------------------------------------------ housekeeping */

static void tick(void)
{
	it_list *pos, *tmp;
	double interval = (double)B.cfg->ws_ping_interval;
	double pong_timeout = (double)B.cfg->ws_pong_timeout;

	it_feed_tick(B.feed, (int64_t)(B.now * 1000.0));
	it_presence_tick(B.presence, (int64_t)(B.now * 1000.0));
	if (B.now - B.rate_pruned >= 10.0) {
		it_addrlimit_prune(&B.rate, B.now);
		it_addrlimit_prune(&B.authfail, B.now);
		B.rate_pruned = B.now;
	}
	if (B.listen_paused_until > 0 && B.now >= B.listen_paused_until && !B.stopping) {
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &B.listen_h};
		epoll_ctl(B.epfd, EPOLL_CTL_ADD, B.lfd, &e);
		B.listen_paused_until = 0;
	}
	it_list_foreach_safe (pos, tmp, &B.clients) {
		client *c = it_container_of(pos, client, alink);
		switch (c->state) {
		case C_HANDSHAKE:
			if (B.now - c->created > HEAD_TIMEOUT)
				client_free(c);
			break;
		case C_CLOSING:
			if (B.now >= c->close_deadline)
				client_free(c);
			break;
		case C_OPEN:
			if (c->kind != K_WS) {
				stream_tick(c);
				break;
			}
			if (c->auth_wait && B.now >= c->auth_deadline) {
				client_close(c, WS_CLOSE_BAD_CREDENTIAL, "Authentication timeout");
				break;
			}
			if (c->behind && c->out.bytes > 0 && B.now - c->last_tx >= interval) {
				client_close(c, IT_WS_CLOSE_TRY_LATER, "Consumer too slow");
			} else if (c->ping_out && B.now - c->ping_sent >= pong_timeout) {
				/* No Pong within ws_pong_timeout: the peer is gone
				 * or ignores the protocol. Say why, in case it
				 * still reads, but do not wait long for its Close. */
				it_log_debug("closing a WebSocket whose Ping went unanswered");
				if (client_close(c, IT_WS_CLOSE_POLICY, "Ping not answered") == 0)
					c->close_deadline = B.now + 0.5;
			} else if (!c->ping_out && B.now - c->ping_sent >= interval) {
				/* A Ping every ws_ping_interval, however busy the
				 * client is: a peer that sends but never answers
				 * is no more alive than a silent one. */
				static const char payload[] = "keepalive";
				c->ping_out = 1;
				c->ping_sent = B.now;
				if (client_frame(c, IT_WS_OP_PING, payload, sizeof(payload) - 1) == 0)
					client_flush(c);
			}
			break;
		}
	}
}

static void begin_shutdown(void)
{
	it_list *pos, *tmp;

	if (B.stopping)
		return;
	it_log_info("shutting down: closing every socket");
	B.stopping = 1;
	B.stop_deadline = B.now + SHUTDOWN_GRACE;
	epoll_ctl(B.epfd, EPOLL_CTL_DEL, B.lfd, NULL);
	close(B.lfd);
	B.lfd = -1;
	it_list_foreach_safe (pos, tmp, &B.clients) {
		client *c = it_container_of(pos, client, alink);
		if (c->state == C_HANDSHAKE)
			client_free(c);
		else
			client_close(c, IT_WS_CLOSE_GOING_AWAY, "Server shutting down");
	}
}

/* ------------------------------------------------------------ set-up */

static int open_listener(const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints = {0}, *ai = NULL;
	int fd = -1, one = 1, rc;
	size_t hl;

	if (colon == NULL || colon == addr || (hl = (size_t)(colon - addr)) >= sizeof(host)) {
		it_log_error("listen address '%s' is not HOST:PORT", addr);
		return -1;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc != 0) {
		it_log_error("listen address '%s': %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		it_log_error("cannot listen on %s: %s", addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static int add_watch(int fd, handle *h)
{
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
	return epoll_ctl(B.epfd, EPOLL_CTL_ADD, fd, &e);
}

/* Resets the bridge's state for cfg (nothing is opened yet). */
static void bridge_init(const it_config *cfg)
{
	memset(&B, 0, sizeof(B));
	B.cfg = cfg;
	B.lfd = B.sigfd = B.tfd = -1;
	B.hard = (size_t)cfg->stream_buffer;
	B.soft = B.hard / 2;
	B.now = B.started = it_clock_s();
	it_list_init(&B.clients);
	it_list_init(&B.dead);
	B.listen_h.kind = H_LISTEN;
	B.signal_h.kind = H_SIGNAL;
	B.timer_h.kind = H_TIMER;
	B.pg_h.kind = H_PG;
	B.presence_h.kind = H_PRESENCE;
	/* 100,000 addresses at most in one minute's table (some 10 MB); past
	 * that, new ones share one counter. */
	it_addrlimit_init(&B.rate, (unsigned)cfg->rate_streams, 60.0, 100000);
	it_addrlimit_init(&B.authfail, (unsigned)cfg->rate_auth_failures, 60.0, 100000);
}

/* Opens the event loop: the epoll set with the listening socket, a
 * signalfd for SIGTERM and SIGINT (blocked from here on) and the tick's
 * timerfd. Returns 0, or -1 (logged). */
static int loop_open(const char *listen_addr)
{
	struct itimerspec its = {{0, TICK_MS * 1000000L}, {0, TICK_MS * 1000000L}};
	sigset_t mask;

	it_proc_raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	B.epfd = epoll_create1(EPOLL_CLOEXEC);
	B.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	B.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (B.epfd < 0 || B.sigfd < 0 || B.tfd < 0 || timerfd_settime(B.tfd, 0, &its, NULL) < 0) {
		it_log_error("cannot set up the event loop: %s", strerror(errno));
		return -1;
	}
	B.lfd = open_listener(listen_addr);
	if (B.lfd < 0)
		return -1;
	if (add_watch(B.lfd, &B.listen_h) < 0 || add_watch(B.sigfd, &B.signal_h) < 0 ||
	    add_watch(B.tfd, &B.timer_h) < 0)
		return -1;
	return 0;
}

/* Makes the feed and the presence registry, each with its own database
 * connection in the epoll set, and gives each its first tick. Returns 0,
 * or -1 (logged). */
static int feeds_open(const it_config *cfg)
{
	it_feed_opts fo;
	it_presence_opts po = {.conninfo = cfg->database_url,
			       .app_name = "imagetools-wsbridge presence",
			       .epfd = B.epfd,
			       .pg_tag = &B.presence_h,
			       .ttl = cfg->presence_ttl};

	memset(&fo, 0, sizeof(fo));
	fo.conninfo = cfg->database_url;
	fo.app_name = "imagetools-wsbridge";
	fo.epfd = B.epfd;
	fo.pg_tag = &B.pg_h;
	if (it_feed_new(&B.feed, &fo) < 0) {
		it_log_error("out of memory");
		return -1;
	}
	if (it_presence_new(&B.presence, &po) < 0) {
		it_log_error("out of memory");
		return -1;
	}
	it_presence_tick(B.presence, (int64_t)(B.now * 1000.0));
	it_feed_tick(B.feed, (int64_t)(B.now * 1000.0));
	return 0;
}

/* Hands one event of the epoll set to whom it belongs. */
static void dispatch(const struct epoll_event *ev)
{
	handle *h = ev->data.ptr;

	switch (h->kind) {
	case H_LISTEN:
		if (!B.stopping)
			accept_clients();
		break;
	case H_SIGNAL: {
		struct signalfd_siginfo si;
		while (read(B.sigfd, &si, sizeof(si)) == sizeof(si))
			;
		begin_shutdown();
		break;
	}
	case H_TIMER: {
		uint64_t ticks;
		if (read(B.tfd, &ticks, sizeof(ticks)) > 0)
			tick();
		break;
	}
	case H_PG: it_feed_handle_pg(B.feed, ev->events); break;
	case H_PRESENCE: it_presence_handle_pg(B.presence, ev->events); break;
	case H_CLIENT: {
		client *c = (client *)h;
		if (c->dead)
			break;
		if ((ev->events & EPOLLOUT) && client_flush(c) < 0)
			break;
		if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			client_readable(c);
		break;
	}
	}
}

/* Runs the event loop until a shutdown has let every client go (or its
 * deadline passed), or epoll_wait fails. */
static void run_loop(void)
{
	struct epoll_event evs[256];

	for (;;) {
		int n;

		if (B.stopping && (it_list_empty(&B.clients) || B.now >= B.stop_deadline))
			break;
		n = epoll_wait(B.epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);
		if (n < 0 && errno != EINTR) {
			it_log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		B.now = it_clock_s();
		for (int i = 0; i < n; i++)
			dispatch(&evs[i]);
		it_feed_run(B.feed);
		report_delivered();
		reap();
	}
}

/* Frees every client, then the feed and the presence registry, then the
 * event loop; safe after a start that failed half-way. */
static void bridge_close(void)
{
	it_list *pos, *tmp;

	it_list_foreach_safe (pos, tmp, &B.clients) {
		client_free(it_container_of(pos, client, alink));
	}
	reap();
	/* Every client is gone: the feed has no subscriber left, and the
	 * presence entries still held here are let go in one statement. */
	it_presence_free(B.presence);
	B.presence = NULL;
	it_feed_free(B.feed);
	B.feed = NULL;
	if (B.lfd >= 0)
		close(B.lfd);
	if (B.sigfd >= 0)
		close(B.sigfd);
	if (B.tfd >= 0)
		close(B.tfd);
	if (B.epfd >= 0)
		close(B.epfd);
	it_addrlimit_free(&B.rate);
	it_addrlimit_free(&B.authfail);
}

int it_bridge_run(const it_config *cfg, const char *listen_addr)
{
	it_feed_stats fs;
	int rc = -1;

	bridge_init(cfg);
	if (loop_open(listen_addr) < 0 || feeds_open(cfg) < 0)
		goto out;
	it_log_info("listening on %s", listen_addr);
	run_loop();
	rc = 0;
	it_feed_stats_get(B.feed, &fs);
	it_log_info("stopped: %llu event frames delivered, %llu reads of the log, %llu session checks, %llu token"
		    " checks, %llu streams ended by their token",
		    (unsigned long long)fs.delivered, (unsigned long long)fs.reads, (unsigned long long)fs.checks,
		    (unsigned long long)fs.creds, (unsigned long long)fs.revoked);
out:
	bridge_close();
	return rc;
}

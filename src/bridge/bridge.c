/* bridge.c: the WebSocket bridge's event loop: clients, the session registry and event fan-out. */
#include "config.h"

#include "bridge/bridge.h"

#include "bridge/http.h"
#include "db/pgl.h"
#include "bridge/ratelimit.h"
#include "bridge/ws.h"
#include "common/buf.h"
#include "common/host.h"
#include "common/id.h"
#include "common/list.h"
#include "common/log.h"
#include "common/origin.h"
#include "db/metrics.h"
#include "db/eventlog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Limits that are not worth a configuration key. */
#define HEAD_MAX 8192	      /* bytes of an upgrade request head */
#define HEAD_TIMEOUT 10.0     /* seconds to send it */
#define CLOSE_LINGER 2.0      /* seconds to wait for the peer after a close */
#define SHUTDOWN_GRACE 3.0    /* seconds to let clients go on SIGTERM */
#define FETCH_LIMIT 200	      /* events per backlog read */
#define BATCH 32	      /* frames per writev */
#define READ_BATCH 64	      /* sessions per read of the log */
#define JSON_COL 3	      /* wire JSON column of it_event_read_many_sql */
#define TICK_MS 250	      /* housekeeping period */
#define RATE_WINDOW 10.0      /* ws_rate counts messages per this many seconds */
#define CLOSE_RESERVE 256     /* room for a Close frame past the send limit */

static const char ws_prefix[] = "/api/v1/ws/";

enum handle_kind { H_CLIENT, H_LISTEN, H_SIGNAL, H_TIMER, H_PG };

/* What epoll's data.ptr points at: every watched object starts with one. */
typedef struct handle {
	enum handle_kind kind;
} handle;

enum client_state {
	C_HANDSHAKE, /* reading the upgrade request */
	C_CHECKING,  /* upgraded, waiting for the session check */
	C_LIVE,	     /* receiving events */
	C_CLOSING,   /* Close (or an HTTP error) queued; draining, then waiting for the peer */
};

enum query_kind { Q_NONE, Q_CHECK, Q_FETCH };

struct session;

typedef struct client {
	handle h;
	int fd;
	enum client_state state;
	struct session *session; /* NULL before the upgrade and once closing */
	it_list slink;		 /* in session->clients */
	it_list alink;		 /* in bridge.clients */
	it_buf in;		 /* the request head, freed after the upgrade */
	it_buf out;		 /* bytes not yet accepted by the socket */
	it_ws_reader rd;
	int64_t cursor;		/* id of the last event sent */
	int64_t requested;	/* last_event_id asked for */
	double created, ping_sent, last_tx, rate_start, close_deadline;
	unsigned rate_count;
	unsigned msg_n;		/* bytes of the current message, saturating at 5 */
	uint8_t msg_ping;	/* the current message still reads as a prefix of "ping" */
	uint8_t ping_out;	/* the last Ping (sent at ping_sent) is not answered yet */
	uint8_t behind;		/* stopped feeding: the send buffer is over the soft limit */
	uint8_t want_out;	/* registered for EPOLLOUT */
	uint8_t wr_shut;	/* our side of the TCP connection is shut down */
	uint8_t dead;		/* freed at the end of this loop iteration */
} client;

typedef struct session {
	struct session *hnext;
	char id[72];
	it_list clients;	/* client.slink, every one C_CHECKING or C_LIVE */
	it_list work;		/* link in bridge.work while queued */
	unsigned nclients;
	unsigned pins;		/* callers walking the client list */
	enum query_kind busy;	/* query in flight for it */
	uint8_t need_check, need_fetch, stale, valid;
	int64_t known_seq;	/* highest id known to exist */
	int64_t first_kept;
	int64_t expires;	/* wall-clock seconds; INT64_MAX while unknown */
} session;

static struct bridge {
	const it_config *cfg;
	int epfd, lfd, sigfd, tfd;
	handle listen_h, signal_h, timer_h, pg_h;
	it_pgl pg;
	int pg_up, was_degraded;
	it_list clients;
	it_list dead;		/* clients to free once the epoll batch is done */
	it_list work;
	session **buckets;
	size_t nbuckets, nsessions;
	enum query_kind inflight_kind;
	session *inflight[READ_BATCH]; /* sessions the query in flight is for */
	int64_t inflight_after[READ_BATCH];
	int ninflight;
	size_t soft, hard;
	size_t frame_max;	/* largest frame queued into an empty buffer */
	double now;
	double listen_paused_until;
	int stopping;
	double stop_deadline;
	unsigned long long delivered, reads, checks; /* for the log line at exit */
	it_rl rate;		/* upgrades per client address (rate_streams) */
	double rate_pruned;
	unsigned char rbuf[65536];
} B;

/* ------------------------------------------------------------ time */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ sessions */

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static session *session_find(const char *id)
{
	session *s;

	if (B.nbuckets == 0)
		return NULL;
	for (s = B.buckets[hash(id) & (B.nbuckets - 1)]; s; s = s->hnext)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static int grow_table(void)
{
	size_t n = B.nbuckets ? B.nbuckets * 2 : 256, i;
	session **nb = calloc(n, sizeof(*nb));

	if (nb == NULL)
		return -1;
	for (i = 0; i < B.nbuckets; i++) {
		session *s = B.buckets[i], *next;
		for (; s; s = next) {
			size_t b = hash(s->id) & (n - 1);
			next = s->hnext;
			s->hnext = nb[b];
			nb[b] = s;
		}
	}
	free(B.buckets);
	B.buckets = nb;
	B.nbuckets = n;
	return 0;
}

static session *session_get(const char *id)
{
	session *s = session_find(id);
	size_t b;

	if (s)
		return s;
	if (B.nsessions >= B.nbuckets && grow_table() < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	it_list_init(&s->clients);
	it_list_init(&s->work);
	s->expires = INT64_MAX;
	b = hash(id) & (B.nbuckets - 1);
	s->hnext = B.buckets[b];
	B.buckets[b] = s;
	B.nsessions++;
	return s;
}

/* Frees a session nobody watches any more, unless a query for it is in
 * flight or a caller is walking its clients (it is then freed later). */
static void session_release(session *s)
{
	session **pp;

	if (s->nclients || s->busy != Q_NONE || s->pins)
		return;
	for (pp = &B.buckets[hash(s->id) & (B.nbuckets - 1)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	}
	it_list_unlink(&s->work);
	B.nsessions--;
	free(s);
}

static void session_queue(session *s)
{
	if (s->busy == Q_NONE && it_list_empty(&s->work) && (s->need_check || s->need_fetch))
		it_list_push(&B.work, &s->work);
}

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

static void became_writable(client *c);

/* Writes what is buffered. Returns 0, or -1 when the client was freed. */
static int client_flush(client *c)
{
	while (c->out.len > 0) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			client_free(c);
			return -1;
		}
		it_buf_consume(&c->out, (size_t)n);
		c->last_tx = B.now;
	}
	if (c->out.len == 0) {
		c->last_tx = B.now;
		/* Idle connections give their buffer back: with thousands of
		 * them, memory follows the clients that are actually busy. */
		if (c->out.cap > 4096)
			it_buf_free(&c->out);
		set_want_out(c, 0);
		if (c->state == C_CLOSING && !c->wr_shut) {
			/* Only our half is closed: the peer may still send its
			 * Close, and reading on avoids a reset that could
			 * destroy the Close frame we sent before it is read. */
			shutdown(c->fd, SHUT_WR);
			c->wr_shut = 1;
		}
		became_writable(c);
	} else {
		set_want_out(c, 1);
	}
	return 0;
}

/* Queues one frame (header + payload). A frame is refused (1, nothing
 * queued) when it would take the buffer past stream_buffer, except into an
 * empty buffer, so that one event larger than the limit still gets through;
 * a Close frame (at most 127 bytes) is always taken. So a client holds at
 * most stream_buffer, or one event, plus a Close. Returns 0, 1, or -1 when
 * the client was freed. */
static int client_frame(client *c, int opcode, const void *payload, size_t len)
{
	unsigned char hdr[10];
	size_t hl = it_ws_frame_header(hdr, opcode, len);

	if (opcode != IT_WS_OP_CLOSE && c->out.len > 0 && c->out.len + hl + len > B.hard)
		return 1;
	if (c->out.len == 0) {
		/* The common case: nothing queued, so hand the frame straight
		 * to the kernel and copy only what it does not take. */
		struct iovec iov[2] = {{hdr, hl}, {(void *)payload, len}};
		ssize_t n;

		do
			n = writev(c->fd, iov, len ? 2 : 1);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				client_free(c);
				return -1;
			}
			n = 0;
		}
		c->last_tx = B.now;
		if ((size_t)n == hl + len)
			return 0;
		if ((size_t)n < hl) {
			if (it_buf_append(&c->out, hdr + n, hl - (size_t)n) < 0 ||
			    it_buf_append(&c->out, payload, len) < 0)
				goto nomem;
		} else if (it_buf_append(&c->out, (const char *)payload + (n - (ssize_t)hl),
					 len - (size_t)(n - (ssize_t)hl)) < 0) {
			goto nomem;
		}
		set_want_out(c, 1);
		return 0;
	}
	if (it_buf_append(&c->out, hdr, hl) < 0 || it_buf_append(&c->out, payload, len) < 0)
		goto nomem;
	return 0;
nomem:
	/* The limits were checked above, so only malloc can fail here, and a
	 * half-queued frame cannot be taken back: drop the connection. */
	it_log_error("out of memory for a client's send buffer");
	client_free(c);
	return -1;
}

/* Queues rows [first, first + k) of res (their wire JSON) as text
 * frames with one writev when nothing is queued: a client that lagged gets
 * its backlog in one system call instead of one per event. The caller has
 * checked the limits. Returns 0, or -1 when the client was freed. */
static int client_texts(client *c, PGresult *res, int first, int k)
{
	unsigned char hdrs[BATCH][10];
	struct iovec iov[2 * BATCH];
	size_t total = 0, skip;
	ssize_t n = 0;
	int j;

	for (j = 0; j < k; j++) {
		size_t len = (size_t)PQgetlength(res, first + j, JSON_COL);
		iov[2 * j].iov_base = hdrs[j];
		iov[2 * j].iov_len = it_ws_frame_header(hdrs[j], IT_WS_OP_TEXT, len);
		iov[2 * j + 1].iov_base = PQgetvalue(res, first + j, JSON_COL);
		iov[2 * j + 1].iov_len = len;
		total += iov[2 * j].iov_len + len;
	}
	if (c->out.len == 0) {
		do
			n = writev(c->fd, iov, 2 * k);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				client_free(c);
				return -1;
			}
			n = 0;
		}
		c->last_tx = B.now;
		if ((size_t)n == total)
			return 0;
	}
	skip = (size_t)n;
	for (j = 0; j < 2 * k; j++) {
		if (skip >= iov[j].iov_len) {
			skip -= iov[j].iov_len;
			continue;
		}
		if (it_buf_append(&c->out, (char *)iov[j].iov_base + skip, iov[j].iov_len - skip) < 0) {
			it_log_error("out of memory for a client's send buffer");
			client_free(c);
			return -1;
		}
		skip = 0;
	}
	set_want_out(c, 1);
	return 0;
}

static void client_detach(client *c)
{
	session *s = c->session;

	if (s == NULL)
		return;
	it_list_unlink(&c->slink);
	s->nclients--;
	it_metrics_gauge_add("imagetools_connections_open", "transport=\"websocket\"", -1);
	c->session = NULL;
	session_release(s);
}

/* Starts the closing handshake with code and reason (reason < 124 bytes).
 * Returns -1 when the client was freed, else 0. */
static int client_close(client *c, int code, const char *reason)
{
	unsigned char p[125];
	size_t rl = strlen(reason);

	if (c->state == C_CLOSING)
		return 0;
	if (rl > sizeof(p) - 2)
		rl = sizeof(p) - 2;
	client_detach(c);
	c->state = C_CLOSING;
	c->close_deadline = B.now + CLOSE_LINGER;
	if (c->behind && c->out.len > B.hard / 2) {
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
	if (it_buf_append(&c->out, head, (size_t)hl) < 0 || it_buf_append(&c->out, body, (size_t)bl) < 0) {
		client_free(c);
		return -1;
	}
	return client_flush(c);
}

static char *transient(const char *type, json_object *data)
{
	char *s = it_event_transient(type, data);
	json_object_put(data);
	return s;
}

static int send_text(client *c, const char *s)
{
	int rc;

	if (s == NULL)
		return 0;
	rc = client_frame(c, IT_WS_OP_TEXT, s, strlen(s));
	if (rc == 1)
		return client_close(c, IT_WS_CLOSE_TRY_LATER, "Send buffer full");
	return rc;
}

static int send_status(client *c, const char *status)
{
	json_object *d = json_object_new_object();
	char *s;
	int rc;

	json_object_object_add(d, "status", json_object_new_string(status));
	json_object_object_add(d, "transport", json_object_new_string("websocket"));
	s = transient("connection.status", d);
	rc = send_text(c, s);
	free(s);
	return rc;
}

static int send_resync(client *c, const char *reason, int64_t last)
{
	json_object *d = json_object_new_object();
	char *s;
	int rc;

	it_metrics_inc("imagetools_resyncs_total", NULL, 1);
	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "last_event_id", json_object_new_int64(last));
	s = transient("session.resync", d);
	rc = send_text(c, s);
	free(s);
	return rc;
}

/* ------------------------------------------------------------ fan-out */

/* A slow client stops being fed at half its buffer; once drained it is
 * fed again from its cursor through the log. */
static void became_writable(client *c)
{
	if (c->behind && c->out.len <= B.soft / 2 && c->session) {
		c->behind = 0;
		c->session->need_fetch = 1;
		session_queue(c->session);
	}
}

/* Whether any live client of s that can take more is behind known_seq. */
static int session_lagging(session *s)
{
	it_list *pos, *tmp;

	it_list_foreach_safe(pos, tmp, &s->clients) {
		client *c = it_container_of(pos, client, slink);
		if (c->state == C_LIVE && !c->behind && c->cursor < s->known_seq)
			return 1;
	}
	return 0;
}

static void session_close_all(session *s, int code, const char *reason)
{
	it_list *pos, *tmp;

	s->pins++;
	it_list_foreach_safe(pos, tmp, &s->clients) {
		client *c = it_container_of(pos, client, slink);
		client_close(c, code, reason);
	}
	s->pins--;
	session_release(s);
}

/* Lets a checked client in: status frame, cursor decision, then events. */
static int admit(client *c, session *s, int64_t last_seq)
{
	int64_t want = c->requested;

	c->state = C_LIVE;
	if (want > 0)
		it_metrics_inc("imagetools_resumes_total", "transport=\"websocket\"", 1);
	if (send_status(c, "connected") < 0 || c->state != C_LIVE)
		return -1;
	if (want < s->first_kept - 1 || want > last_seq) {
		/* The log cannot say what happened since want: the client
		 * must reload its state, then follows from the newest id. */
		if (send_resync(c, want > last_seq ? "cursor-ahead" : "cursor-expired", last_seq) < 0 ||
		    c->state != C_LIVE)
			return -1;
		c->cursor = last_seq;
	} else {
		c->cursor = want;
	}
	if (c->cursor < s->known_seq) {
		s->need_fetch = 1;
		session_queue(s);
	}
	return 0;
}

/* Applies a session check. Returns 0 when the query failed (to be retried). */
static int on_check(session *s, PGresult *res)
{
	it_list *pos, *tmp;
	int64_t last, first, exp;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		it_log_warn("session check failed: %s", PQresultErrorMessage(res));
		return 0;
	}
	if (PQntuples(res) != 1) {
		s->valid = 0;
		session_close_all(s, IT_WS_CLOSE_INVALID_SESSION, "Invalid session");
		return 1;
	}
	last = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	first = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	exp = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	s->valid = 1;
	s->first_kept = first;
	s->expires = exp;
	if (last > s->known_seq)
		s->known_seq = last;
	s->pins++;
	it_list_foreach_safe(pos, tmp, &s->clients) {
		client *c = it_container_of(pos, client, slink);
		if (c->state == C_CHECKING)
			admit(c, s, last);
	}
	s->pins--;
	if (session_lagging(s))
		s->need_fetch = 1;
	return 1;
}

/* Sends a client the rows it has not had yet, up to its soft limit. The
 * session's rows are res rows [base, base + n), their ids in seqs. */
static int deliver(client *c, PGresult *res, int base, const int64_t *seqs, int n, int64_t after)
{
	int i;

	if (c->state != C_LIVE || c->behind || n == 0)
		return 0;
	if (c->cursor + 1 < seqs[0]) {
		/* A gap in front of the rows. When the read started at this
		 * client's cursor, those events are gone (pruned while it
		 * lagged): say so rather than skip silently. Otherwise a later
		 * read from its cursor will serve it. */
		if (c->cursor != after)
			return 0;
		if (send_resync(c, "gap", seqs[0] - 1) < 0 || c->state != C_LIVE)
			return -1;
		c->cursor = seqs[0] - 1;
	}
	if (c->cursor >= seqs[n - 1])
		return 0;
	i = (int)(c->cursor + 1 - seqs[0]);
	while (i < n && seqs[i] == c->cursor + 1) {
		size_t bytes = 0;
		int k = 0;

		/* A batch of consecutive rows that keeps the buffer under the
		 * soft limit; the first may go into an empty buffer whatever
		 * its size (see client_frame). */
		while (i + k < n && k < BATCH && seqs[i + k] == seqs[i] + k) {
			size_t fl = (size_t)PQgetlength(res, base + i + k, JSON_COL) + 10;
			if (k > 0 && c->out.len + bytes + fl > B.soft)
				break;
			if (k == 0 && c->out.len > 0 && c->out.len + fl > B.hard) {
				c->behind = 1;
				return 0;
			}
			bytes += fl;
			k++;
		}
		if (client_texts(c, res, base + i, k) < 0)
			return -1;
		c->cursor = seqs[i + k - 1];
		B.delivered += (unsigned long long)k;
		it_metrics_inc("imagetools_events_delivered_total", "transport=\"websocket\"", k);
		i += k;
		if (c->out.len >= B.soft) {
			c->behind = 1;
			break;
		}
	}
	return 0;
}

/* Hands a session its rows [base, base + n) of a read. */
static void on_fetch(session *s, PGresult *res, int base, int n, int64_t after)
{
	it_list *pos, *tmp;
	int64_t *seqs = NULL;
	int i;

	if (n > 0) {
		seqs = malloc(sizeof(*seqs) * (size_t)n);
		if (seqs == NULL) {
			s->need_fetch = 1;
			return;
		}
		for (i = 0; i < n; i++)
			seqs[i] = strtoll(PQgetvalue(res, base + i, 1), NULL, 10);
		if (seqs[n - 1] > s->known_seq)
			s->known_seq = seqs[n - 1];
		s->pins++;
		it_list_foreach_safe(pos, tmp, &s->clients) {
			client *c = it_container_of(pos, client, slink);
			deliver(c, res, base, seqs, n, after);
		}
		s->pins--;
		free(seqs);
	}
	/* Read again when the page was full, when a notification came in
	 * after this read was sent, or when some client is still behind and
	 * this read made progress (without progress, waiting for the next
	 * notification avoids a busy loop). */
	if (n == FETCH_LIMIT || s->stale || (n > 0 && session_lagging(s)))
		s->need_fetch = 1;
}

/* ------------------------------------------------------------ the database */

/* The expiry is rounded up: rounded down, the bridge would ask again before
 * the session has really expired. */
static const char check_sql[] = "SELECT last_event_seq, first_kept_seq, ceil(extract(epoch from expires_at))::bigint"
				" FROM sessions WHERE id = $1 AND expires_at > now()";

/* The smallest cursor among the clients of s that can take more, or -1. */
static int64_t read_from(const session *s)
{
	const it_list *pos;
	int64_t after = INT64_MAX;

	for (pos = s->clients.next; pos != &s->clients; pos = pos->next) {
		const client *c = it_container_of(pos, client, slink);
		if (c->state == C_LIVE && !c->behind && c->cursor < after)
			after = c->cursor;
	}
	return after == INT64_MAX ? -1 : after;
}

/* Appends s to a PostgreSQL array literal (ids are base64url: no quoting
 * needed, but quoted anyway). */
static int array_add(it_buf *b, const char *item, int quote)
{
	return it_buf_printf(b, "%s%s%s%s", b->len > 1 ? "," : "", quote ? "\"" : "", item, quote ? "\"" : "");
}

/* Sends the next query, if the connection is free: a session check when one
 * is due (they come first, as clients wait on them), else one read of the
 * log for up to READ_BATCH sessions, so that a burst of notifications over
 * many sessions costs a few round trips rather than one each. */
static void pump(void)
{
	it_list *pos, *tmp;
	it_buf ids, afters;
	char limit[16];
	const char *params[3];
	int n = 0;

	if (!it_pgl_idle(&B.pg) || it_list_empty(&B.work))
		return;
	it_list_foreach_safe(pos, tmp, &B.work) {
		session *s = it_container_of(pos, session, work);
		if (s->nclients == 0) {
			it_list_unlink(&s->work);
			s->need_check = s->need_fetch = 0;
			session_release(s);
			continue;
		}
		if (s->need_check) {
			const char *p[1] = {s->id};
			it_list_unlink(&s->work);
			s->need_check = 0;
			s->busy = Q_CHECK;
			B.inflight_kind = Q_CHECK;
			B.inflight[0] = s;
			B.ninflight = 1;
			B.checks++;
			it_pgl_send(&B.pg, check_sql, 1, p);
			return;
		}
	}
	it_buf_init(&ids, (size_t)READ_BATCH * 80 + 16);
	it_buf_init(&afters, (size_t)READ_BATCH * 24 + 16);
	it_buf_puts(&ids, "{");
	it_buf_puts(&afters, "{");
	it_list_foreach_safe(pos, tmp, &B.work) {
		session *s = it_container_of(pos, session, work);
		char num[24];
		int64_t after;

		if (n == READ_BATCH)
			break;
		it_list_unlink(&s->work);
		after = s->need_fetch ? read_from(s) : -1;
		s->need_fetch = 0;
		if (after < 0)
			continue;
		snprintf(num, sizeof(num), "%lld", (long long)after);
		if (array_add(&ids, s->id, 1) < 0 || array_add(&afters, num, 0) < 0) {
			s->need_fetch = 1;
			it_list_push(&B.work, &s->work);
			break;
		}
		s->stale = 0;
		s->busy = Q_FETCH;
		B.inflight[n] = s;
		B.inflight_after[n] = after;
		n++;
	}
	if (n > 0 && it_buf_puts(&ids, "}") == 0 && it_buf_puts(&afters, "}") == 0) {
		snprintf(limit, sizeof(limit), "%d", FETCH_LIMIT);
		params[0] = ids.data;
		params[1] = afters.data;
		params[2] = limit;
		B.inflight_kind = Q_FETCH;
		B.ninflight = n;
		B.reads++;
		it_pgl_send(&B.pg, it_event_read_many_sql, 3, params);
	}
	it_buf_free(&ids);
	it_buf_free(&afters);
}

/* Ends the query in flight for every session it was for. redo: the work
 * is still to be done; queue: queue it now (after a failed query, the tick
 * queues it again a moment later instead, so that a query that keeps
 * failing does not spin). */
static void inflight_done(int redo, int queue)
{
	int i;

	for (i = 0; i < B.ninflight; i++) {
		session *s = B.inflight[i];
		if (redo) {
			if (B.inflight_kind == Q_CHECK)
				s->need_check = 1;
			else
				s->need_fetch = 1;
		}
		s->busy = Q_NONE;
		if (queue)
			session_queue(s);
		session_release(s);
	}
	B.ninflight = 0;
	B.inflight_kind = Q_NONE;
}

static void pg_result(void *arg, PGresult *res)
{
	int i, row = 0, rows;

	(void)arg;
	if (B.ninflight == 0)
		return;
	if (B.inflight_kind == Q_CHECK) {
		int ok = on_check(B.inflight[0], res);
		inflight_done(!ok, ok);
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		it_log_warn("event read failed: %s", PQresultErrorMessage(res));
		inflight_done(1, 0);
		return;
	}
	/* Rows come grouped by session, in the order the sessions were sent. */
	rows = PQntuples(res);
	for (i = 0; i < B.ninflight; i++) {
		session *s = B.inflight[i];
		int first = row;
		while (row < rows && strcmp(PQgetvalue(res, row, 0), s->id) == 0)
			row++;
		on_fetch(s, res, first, row - first, B.inflight_after[i]);
	}
	inflight_done(0, 1);
}

static void broadcast_status(const char *status)
{
	it_list *pos, *tmp;

	it_list_foreach_safe(pos, tmp, &B.clients) {
		client *c = it_container_of(pos, client, alink);
		if (c->state == C_LIVE)
			send_status(c, status);
	}
}

static void pg_ready(void *arg)
{
	size_t i;

	(void)arg;
	B.pg_up = 1;
	/* Notifications may have been missed while the connection was down:
	 * check every watched session again (it may have ended) and read
	 * from every client's cursor. */
	for (i = 0; i < B.nbuckets; i++) {
		session *s;
		for (s = B.buckets[i]; s; s = s->hnext) {
			s->need_check = 1;
			s->need_fetch = 1;
			session_queue(s);
		}
	}
	if (B.was_degraded)
		broadcast_status("connected");
	B.was_degraded = 0;
}

static void pg_lost(void *arg)
{
	(void)arg;
	B.pg_up = 0;
	inflight_done(1, 1);
	B.was_degraded = 1;
	broadcast_status("degraded");
}

static void pg_notify(void *arg, const char *payload)
{
	const char *colon = strrchr(payload, ':');
	char id[72];
	session *s;
	int64_t seq;
	size_t n;

	(void)arg;
	if (colon == NULL || (n = (size_t)(colon - payload)) >= sizeof(id))
		return;
	memcpy(id, payload, n);
	id[n] = '\0';
	s = session_find(id);
	if (s == NULL)
		return;
	seq = strtoll(colon + 1, NULL, 10);
	if (seq == 0) {
		s->valid = 0;
		session_close_all(s, IT_WS_CLOSE_INVALID_SESSION, "Invalid session");
		return;
	}
	if (seq > s->known_seq)
		s->known_seq = seq;
	s->stale = 1;
	s->need_fetch = 1;
	session_queue(s);
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

static int process_frames(client *c, unsigned char *buf, size_t len);

static int handshake(client *c)
{
	it_http_header hdrs[64];
	it_http_request req = {.headers = hdrs, .num_headers = 64};
	const it_http_header *h, *key;
	const char *path, *q;
	size_t plen, prelen, qlen = 0;
	char sid[72], accept[32], resp[256];
	int n, rl;
	session *s;

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
		return client_http_error(c, 421, "Misdirected Request", "misdirected-request",
					 "This server does not answer for the host named in the request; see server_names.",
					 NULL);
	}
	if (req.method_len != 3 || memcmp(req.method, "GET", 3) != 0 || req.minor_version < 1)
		return client_http_error(c, 400, "Bad Request", "bad-request",
					 "A WebSocket upgrade is a GET over HTTP/1.1.", NULL);
	if (it_http_find(&req, "Host") == NULL)
		return client_http_error(c, 400, "Bad Request", "bad-request", "An HTTP/1.1 request needs a Host header.",
					 NULL);
	path = req.target;
	plen = req.target_len;
	prelen = strlen(B.cfg->url_prefix);
	if (prelen && plen >= prelen && memcmp(path, B.cfg->url_prefix, prelen) == 0) {
		path += prelen;
		plen -= prelen;
	}
	q = memchr(path, '?', plen);
	if (q) {
		qlen = plen - (size_t)(q - path) - 1;
		plen = (size_t)(q - path);
		q++;
	}
	if (plen <= sizeof(ws_prefix) - 1 || memcmp(path, ws_prefix, sizeof(ws_prefix) - 1) != 0)
		return client_http_error(c, 404, "Not Found", "not-found", "No such WebSocket endpoint.", NULL);
	h = it_http_find(&req, "Upgrade");
	if (h == NULL || !it_http_has_token(h->value, h->value_len, "websocket") ||
	    (h = it_http_find(&req, "Connection")) == NULL || !it_http_has_token(h->value, h->value_len, "upgrade"))
		return client_http_error(c, 426, "Upgrade Required", "upgrade-required",
					 "This endpoint speaks WebSocket only.", "Upgrade: websocket\r\n");
	h = it_http_find(&req, "Sec-WebSocket-Version");
	if (h == NULL || h->value_len != 2 || memcmp(h->value, "13", 2) != 0)
		return client_http_error(c, 426, "Upgrade Required", "websocket-version",
					 "Only WebSocket version 13 is supported.", "Sec-WebSocket-Version: 13\r\n");
	key = it_http_find(&req, "Sec-WebSocket-Key");
	if (key == NULL || it_ws_accept_key(key->value, key->value_len, accept) < 0)
		return client_http_error(c, 400, "Bad Request", "bad-request", "Missing or malformed Sec-WebSocket-Key.",
					 NULL);
	if (parse_query(q, qlen, &c->requested) < 0)
		return client_http_error(c, 400, "Bad Request", "bad-cursor",
					 "last_event_id must be a non-negative integer.", NULL);
	if (!origin_allowed(&req)) {
		it_metrics_inc("imagetools_origin_refused_total", NULL, 1);
		it_log_info("WebSocket upgrade refused: origin not allowed");
		return client_http_error(c, 403, "Forbidden", "origin-not-allowed",
					 "This origin may not open WebSockets here.", NULL);
	}
	{
		char addr[64], hdr[48];
		unsigned wait;

		client_address(c, &req, addr, sizeof(addr));
		wait = it_rl_hit(&B.rate, addr, B.now);
		if (wait) {
			snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", wait);
			return client_http_error(c, 429, "Too Many Requests", "rate-limited",
						 "Too many WebSocket connections from this address; retry later.", hdr);
		}
	}
	plen -= sizeof(ws_prefix) - 1;
	path += sizeof(ws_prefix) - 1;
	if (plen >= sizeof(sid))
		plen = sizeof(sid) - 1; /* too long to be valid; still closed with 4004 */
	memcpy(sid, path, plen);
	sid[plen] = '\0';

	rl = snprintf(resp, sizeof(resp),
		      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		      "Sec-WebSocket-Accept: %s\r\n\r\n",
		      accept);
	if (it_buf_append(&c->out, resp, (size_t)rl) < 0) {
		client_free(c);
		return -1;
	}
	c->state = C_CHECKING;
	/* The first Ping goes out one ws_ping_interval after the upgrade. */
	c->ping_sent = B.now;
	it_ws_reader_init(&c->rd, (uint64_t)B.cfg->ws_max_message);
	if (client_flush(c) < 0)
		return -1;

	/* The session is checked after the upgrade, so that a browser sees
	 * the 4004 close code rather than a failed handshake. */
	s = it_id_session_valid(sid) ? session_get(sid) : NULL;
	if (s == NULL) {
		it_buf_free(&c->in);
		return client_close(c, IT_WS_CLOSE_INVALID_SESSION, "Invalid session");
	}
	c->session = s;
	it_list_push(&s->clients, &c->slink);
	s->nclients++;
	it_metrics_gauge_add("imagetools_connections_open", "transport=\"websocket\"", 1);
	if (s->nclients > (unsigned)B.cfg->max_streams_per_session) {
		/* One capability should not pin unbounded resources: extras
		 * are told to come back later, as the hub does for SSE. */
		it_buf_free(&c->in);
		return client_close(c, IT_WS_CLOSE_TRY_LATER, "Too many connections to this session");
	}
	{
		char red[16];
		it_log_debug("WebSocket for session %s from id %lld", it_log_redact(sid, red, sizeof(red)),
			     (long long)c->requested);
	}
	if (s->valid && B.pg_up && c->requested == s->known_seq && s->busy != Q_CHECK && !s->need_check) {
		/* A client that is up to date with a session already watched
		 * needs nothing from the log: admit it without a round trip.
		 * Any other cursor is checked against the log's bounds. */
		if (admit(c, s, s->known_seq) < 0)
			return -1;
	} else {
		s->need_check = 1;
		session_queue(s);
	}
	/* Frames that came in the same packet as the request head. */
	if ((size_t)n < c->in.len) {
		it_buf leftover = c->in;
		it_buf_init(&c->in, 0);
		if (process_frames(c, (unsigned char *)leftover.data + n, leftover.len - (size_t)n) < 0) {
			it_buf_free(&leftover);
			return -1;
		}
		it_buf_free(&leftover);
	} else {
		it_buf_free(&c->in);
	}
	return 0;
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
			const char *why = code == IT_WS_CLOSE_BAD_DATA	? "Invalid UTF-8"
					  : code == IT_WS_CLOSE_TOO_BIG ? "Message too big"
									: "Protocol error";
			client_close(c, code, why);
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		switch (ev.kind) {
		case IT_WS_MORE:
			return 0;
		case IT_WS_DATA:
			for (i = 0; i < ev.len && c->msg_n < 5; i++, c->msg_n++)
				if (c->msg_n >= 4 || ev.data[i] != (unsigned char)"ping"[c->msg_n])
					c->msg_ping = 0;
			if (!ev.fin)
				break;
			if (ev.opcode == IT_WS_OP_BINARY) {
				client_close(c, IT_WS_CLOSE_UNSUPPORTED, "Binary messages are not accepted");
				return -1;
			}
			if (c->msg_n == 4 && c->msg_ping && client_frame(c, IT_WS_OP_TEXT, "pong", 4) < 0)
				return -1;
			/* Other text messages mean nothing to the bridge yet. */
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
		case IT_WS_CLOSE:
			{
				/* Echo the code (RFC 6455 5.5.1), then wait for
				 * the peer to close the TCP connection. */
				unsigned char p[2] = {(unsigned char)(ev.close_code >> 8),
						      (unsigned char)ev.close_code};
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
	it_buf_free(&c->out);
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
		it_list_init(&c->slink);
		it_list_push(&B.clients, &c->alink);
		it_buf_init(&c->in, HEAD_MAX);
		/* client_frame enforces stream_buffer itself (see there); the
		 * ceiling here only backs it up. */
		it_buf_init(&c->out, B.hard + B.frame_max + CLOSE_RESERVE);
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
	int64_t wall = (int64_t)time(NULL);
	double interval = (double)B.cfg->ws_ping_interval;
	double pong_timeout = (double)B.cfg->ws_pong_timeout;
	size_t i;

	it_pgl_tick(&B.pg, B.now);
	if (B.now - B.rate_pruned >= 10.0) {
		it_rl_prune(&B.rate, B.now);
		B.rate_pruned = B.now;
	}
	if (B.listen_paused_until > 0 && B.now >= B.listen_paused_until && !B.stopping) {
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &B.listen_h};
		epoll_ctl(B.epfd, EPOLL_CTL_ADD, B.lfd, &e);
		B.listen_paused_until = 0;
	}
	it_list_foreach_safe(pos, tmp, &B.clients) {
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
		case C_CHECKING:
		case C_LIVE:
			if (c->behind && c->out.len > 0 && B.now - c->last_tx >= interval) {
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
	for (i = 0; i < B.nbuckets; i++) {
		session *s, *next;
		for (s = B.buckets[i]; s; s = next) {
			next = s->hnext;
			if (s->valid && wall >= s->expires) {
				/* Ask the database rather than trust the clock
				 * alone: the session may have been extended. */
				s->expires = INT64_MAX;
				s->need_check = 1;
			}
			session_queue(s);
		}
	}
}

static void begin_shutdown(void)
{
	it_list *pos, *tmp;

	if (B.stopping)
		return;
	it_log_info("shutting down: closing %zu sessions' sockets", B.nsessions);
	B.stopping = 1;
	B.stop_deadline = B.now + SHUTDOWN_GRACE;
	epoll_ctl(B.epfd, EPOLL_CTL_DEL, B.lfd, NULL);
	close(B.lfd);
	B.lfd = -1;
	it_list_foreach_safe(pos, tmp, &B.clients) {
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

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* Every client is a descriptor: take all the hard limit allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int add_watch(int fd, handle *h)
{
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
	return epoll_ctl(B.epfd, EPOLL_CTL_ADD, fd, &e);
}

int it_bridge_run(const it_config *cfg, const char *listen_addr)
{
	static const it_pgl_hooks hooks = {pg_ready, pg_lost, pg_notify, pg_result};
	struct itimerspec its = {{0, TICK_MS * 1000000L}, {0, TICK_MS * 1000000L}};
	struct epoll_event evs[256];
	sigset_t mask;
	int rc = -1;

	memset(&B, 0, sizeof(B));
	B.cfg = cfg;
	B.lfd = B.sigfd = B.tfd = -1;
	B.hard = (size_t)cfg->stream_buffer;
	B.soft = B.hard / 2;
	/* Events are small JSON objects; this only keeps a pathological one
	 * from being buffered for every client. */
	B.frame_max = 16u << 20;
	B.now = mono();
	it_list_init(&B.clients);
	it_list_init(&B.dead);
	it_list_init(&B.work);
	B.listen_h.kind = H_LISTEN;
	B.signal_h.kind = H_SIGNAL;
	B.timer_h.kind = H_TIMER;
	B.pg_h.kind = H_PG;
	/* 100,000 addresses at most in one minute's table (some 10 MB); past
	 * that, new ones share one counter. */
	if (it_rl_init(&B.rate, (unsigned)cfg->rate_streams, 60.0, 100000) < 0) {
		it_log_error("out of memory");
		return -1;
	}
	raise_fd_limit();
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
		goto out;
	}
	B.lfd = open_listener(listen_addr);
	if (B.lfd < 0)
		goto out;
	if (add_watch(B.lfd, &B.listen_h) < 0 || add_watch(B.sigfd, &B.signal_h) < 0 ||
	    add_watch(B.tfd, &B.timer_h) < 0)
		goto out;
	it_pgl_init(&B.pg, B.epfd, &B.pg_h, cfg->database_url, IT_EVENT_CHANNEL, &hooks, NULL);
	it_pgl_tick(&B.pg, B.now);
	it_log_info("listening on %s", listen_addr);

	for (;;) {
		int n, i;

		if (B.stopping && (it_list_empty(&B.clients) || B.now >= B.stop_deadline))
			break;
		n = epoll_wait(B.epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);
		if (n < 0 && errno != EINTR) {
			it_log_error("epoll_wait: %s", strerror(errno));
			break;
		}
		B.now = mono();
		for (i = 0; i < n; i++) {
			handle *h = evs[i].data.ptr;
			switch (h->kind) {
			case H_LISTEN:
				if (!B.stopping)
					accept_clients();
				break;
			case H_SIGNAL:
				{
					struct signalfd_siginfo si;
					while (read(B.sigfd, &si, sizeof(si)) == sizeof(si))
						;
					begin_shutdown();
				}
				break;
			case H_TIMER:
				{
					uint64_t ticks;
					if (read(B.tfd, &ticks, sizeof(ticks)) > 0)
						tick();
				}
				break;
			case H_PG:
				it_pgl_handle(&B.pg, evs[i].events);
				break;
			case H_CLIENT:
				{
					client *c = (client *)h;
					if (c->dead)
						break;
					if ((evs[i].events & EPOLLOUT) && client_flush(c) < 0)
						break;
					if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
						client_readable(c);
				}
				break;
			}
		}
		pump();
		reap();
	}
	rc = 0;
	it_log_info("stopped: %llu event frames delivered, %llu reads of the log, %llu session checks", B.delivered,
		    B.reads, B.checks);
out:
	{
		it_list *pos, *tmp;
		it_list_foreach_safe(pos, tmp, &B.clients) {
			client_free(it_container_of(pos, client, alink));
		}
		reap();
	}
	if (B.pg.channel)
		it_pgl_free(&B.pg);
	if (B.lfd >= 0)
		close(B.lfd);
	if (B.sigfd >= 0)
		close(B.sigfd);
	if (B.tfd >= 0)
		close(B.tfd);
	if (B.epfd >= 0)
		close(B.epfd);
	{
		size_t i;
		for (i = 0; i < B.nbuckets; i++) {
			session *s, *next;
			for (s = B.buckets[i]; s; s = next) {
				next = s->hnext;
				free(s);
			}
		}
		free(B.buckets);
	}
	it_rl_free(&B.rate);
	return rc;
}

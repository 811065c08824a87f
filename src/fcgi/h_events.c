/* h_events.c: GET /events (long-poll) and GET /events/stream (Server-Sent Events).
 *
 * Both look the session up: in the hub's registry when it follows the
 * session (no query), else in the database (one query); either decides 404
 * and resync. A long-poll whose session has no event after the cursor reads
 * nothing; one that has events answers at once, from the log, or, under
 * FastCGI when the hub follows the session, from the hub's ring of recent
 * events. Under FastCGI a request that waits sends nothing itself: it
 * formats the response head and hands the raw connection to the hub
 * (hub/hub.h), which waits for events without a thread or a database
 * connection per client. Under plain CGI there is no hub: the process waits
 * on its own connection with LISTEN, and a cross-process cap (advisory
 * locks) bounds how many may wait.
 *
 * The credential is a session id (as ever: checked by the session look-up
 * above, no extra query) or a token of scope view or full, resolved with
 * it_auth_principal; a token's stream carries its device and expiry, and
 * ends with session.revoked when the token is revoked or expires. */
#include "config.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/token.h"
#include "db/db.h"
#include "db/event.h"
#include "db/metrics.h"
#include "db/presence.h"
#include "db/sessions.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "hub/hub.h"
#include "feed/feed.h"
#include "feed/ident.h"
#include "feed/sse.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Events in one long-poll answer or one backlog read. */
#define BATCH 500
/* Advisory lock class for the CGI waiter slots. */
#define CGI_SLOT_LOCK 7324002
/* Advice to a client turned away by a full server, in milliseconds. */
#define BUSY_RETRY_MS 2000

struct stream_args {
	char session[72];
	int64_t cursor;
	int64_t timeout_s;
	/* A token: the credential until it is resolved, then its device and
	 * expiry. */
	int token;
	char cred[IT_TOKEN_LEN + 1];
	char device[IT_DEVICE_ID_SIZE];
	int64_t until;
	it_ident ident; /* what the client says of itself (and its token) */
};

/* Reads client_id, client_label and client_source from the query into
 * a->ident. Sends the problem and returns -1 when one is malformed. */
static int parse_ident(it_req *req, struct stream_args *a)
{
	static const struct {
		const char *key;
		int (*valid)(const char *, size_t);
		size_t off;
	} fields[] = {
		{"client_id", it_ident_client_id_valid, offsetof(it_ident, client_id)},
		{"client_label", it_ident_label_valid, offsetof(it_ident, label)},
		{"client_source", it_ident_source_valid, offsetof(it_ident, source)},
	};
	char v[IT_DEVICE_LABEL_SIZE + 3];

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		int n = it_req_query(req->query, fields[i].key, v, sizeof(v));
		if (n == -1)
			continue;
		if (n < 0 || !fields[i].valid(v, (size_t)n)) {
			it_resp_problem(req, 400, "invalid-client-identity",
					"%s is malformed; see docs/api.md, \"Client identity\".", fields[i].key);
			return -1;
		}
		memcpy((char *)&a->ident + fields[i].off, v, (size_t)n + 1);
	}
	return 0;
}

/* Reads session_id and an optional integer from the query. Sends the problem
 * and returns -1 on bad input. */
static int parse_args(it_req *req, struct stream_args *a, const char *cursor_key, const char *header)
{
	/* Larger than any credential: a token with a tail is still judged as
	 * a token (401), as it_auth_principal judges it. */
	char v[32], cred[1024];
	int n;

	memset(a, 0, sizeof(*a));
	/* The credential as every other endpoint takes it (Bearer first, then
	 * the query), and as the bridge takes it for the same URLs. */
	n = it_auth_credential(req, cred, sizeof(cred));
	if (n == 0) {
		it_resp_problem(req, 400, "missing-session-id", "The session_id query parameter is required.");
		return -1;
	}
	a->token = n > 0 && it_token_is(cred);
	if (!a->token && (n < 0 || !it_id_session_valid(cred))) {
		it_resp_problem(req, 400, "invalid-session-id", "The session id is malformed.");
		return -1;
	}
	/* A token that is not exactly a token's form is refused (401) when it
	 * is resolved, after the checks before it. */
	if (a->token)
		snprintf(a->cred, sizeof(a->cred), "%.36s", it_token_valid(cred) ? cred : "itk.");
	else
		snprintf(a->session, sizeof(a->session), "%.64s", cred);
	memset(cred, 0, sizeof(cred));
	a->cursor = 0;
	const char *h = header ? it_req_env(req, header) : NULL;
	if (h && *h) {
		if (it_parse_uint(h, INT64_MAX / 2, &a->cursor) < 0) {
			it_resp_problem(req, 400, "invalid-cursor", "Last-Event-ID must be a non-negative integer.");
			return -1;
		}
	} else if ((n = it_req_query(req->query, cursor_key, v, sizeof(v))) != -1) {
		if (n < 0 || it_parse_uint(v, INT64_MAX / 2, &a->cursor) < 0) {
			it_resp_problem(req, 400, "invalid-cursor", "%s must be a non-negative integer.", cursor_key);
			return -1;
		}
	}
	a->timeout_s = it_g.cfg.longpoll_timeout;
	if ((n = it_req_query(req->query, "timeout", v, sizeof(v))) != -1) {
		if (n < 0 || it_parse_uint(v, 86400, &a->timeout_s) < 0) {
			it_resp_problem(req, 400, "invalid-timeout", "timeout must be a whole number of seconds.");
			return -1;
		}
		if (a->timeout_s > it_g.cfg.longpoll_timeout)
			a->timeout_s = it_g.cfg.longpoll_timeout;
	}
	return parse_ident(req, a);
}

/* Resolves a token (a->token) with it_auth_principal, which answers every
 * refusal itself (401, 403, 404, 429, 503). Returns 0 with a->session,
 * a->device and a->until set (nothing to do for a session id), or -1. */
static int resolve_token(it_req *req, struct stream_args *a)
{
	it_principal p;
	int rc;

	if (!a->token)
		return 0;
	rc = it_auth_principal(req, a->cred, IT_SCOPE_VIEW, &p);
	memset(a->cred, 0, sizeof(a->cred));
	if (rc != 0)
		return -1;
	snprintf(a->session, sizeof(a->session), "%s", p.session_id);
	snprintf(a->device, sizeof(a->device), "%s", p.device_id);
	a->until = p.until;
	it_ident_set_device(&a->ident, p.device_id, p.label, p.source);
	return 0;
}

/* A cursor the log cannot serve: older than what is kept, or newer than the
 * session's last event (a client from before a database restore). */
static int needs_resync(const it_session *s, int64_t cursor)
{
	return cursor < s->first_kept_seq - 1 || cursor > s->last_event_seq;
}

static char *resync_json(const it_session *s, const char *reason)
{
	it_feed_transient t = {.type = "session.resync", .reason = reason, .last_event_id = s->last_event_seq};

	return it_feed_transient_json(&t, NULL);
}

/* The session.revoked message of a token's stream, as the feed makes it. */
static char *revoked_json(const struct stream_args *a, const char *reason)
{
	it_feed_transient t = {.type = "session.revoked", .reason = reason, .device_id = a->device};

	return it_feed_transient_json(&t, NULL);
}

static char *status_json(const char *status, const char *transport)
{
	it_feed_transient t = {.type = "connection.status", .status = status};

	return it_feed_transient_json(&t, transport);
}

/* ------------------------------------------------------------------ long-poll body */

struct lp_body {
	it_buf items; /* comma-separated wire JSON */
	int64_t cursor;
	int count;
};

static int lp_collect(const it_event *ev, void *arg)
{
	struct lp_body *b = arg;

	if (it_buf_printf(&b->items, "%s", b->count ? "," : "") < 0 ||
	    it_buf_append(&b->items, ev->json, ev->json_len) < 0)
		return 1; /* full: the client continues from the cursor */
	b->cursor = ev->seq;
	b->count++;
	return 0;
}

/* Sends {"events":[...],"cursor":N} (plus extra members, a JSON fragment
 * starting with a comma, or NULL). */
static void lp_answer(it_req *req, struct lp_body *b, const char *extra)
{
	it_buf out;

	it_buf_init(&out, b->items.max + 256);
	it_buf_printf(&out, "{\"events\":[%s],\"cursor\":%lld%s}\n", b->items.data ? b->items.data : "",
		      (long long)b->cursor, extra ? extra : "");
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_header(req, "Content-Length", "%zu", out.len);
	it_resp_begin(req, 200, "application/json");
	it_resp_write(req, out.data, out.len);
	it_buf_free(&out);
	snprintf(req->log_note, sizeof(req->log_note), "events=%d", b->count);
	it_metrics_inc("imagetools_events_delivered_total", "transport=\"longpoll\"", b->count);
}

/* Writes the answer when the head was already sent (CGI mode, waiting). */
static void lp_write_body(it_req *req, struct lp_body *b)
{
	it_buf out;

	it_buf_init(&out, b->items.max + 256);
	it_buf_printf(&out, "{\"events\":[%s],\"cursor\":%lld}\n", b->items.data ? b->items.data : "",
		      (long long)b->cursor);
	it_resp_write(req, out.data, out.len);
	it_buf_free(&out);
	snprintf(req->log_note, sizeof(req->log_note), "events=%d", b->count);
	it_metrics_inc("imagetools_events_delivered_total", "transport=\"longpoll\"", b->count);
}

/* ------------------------------------------------------------------ hand-over to the hub */

/* Gives the FastCGI connection to the hub. Returns 0 (the request is then
 * complete as far as this thread is concerned) or a negative errno with
 * nothing taken. */
static int handover(it_req *req, enum it_stream_kind kind, const struct stream_args *a, const it_session *s,
		    const it_buf *head)
{
	it_park p;
	int fd, hi, rc;

	if (it_g.hub == NULL || req->fcgx == NULL)
		return -ENOTSUP;
	/* The request body (none for a GET) is read to its end, so only
	 * records that concern the hub can follow on the connection. */
	if (it_req_drain(req, 65536) < 0)
		return -EIO;
	fd = req->fcgx->ipcFd;
	/* Parked connections live above descriptor 1023: libfcgi's own
	 * close path uses select(), which cannot take higher numbers, and
	 * this way the connections it handles keep low ones. */
	hi = fcntl(fd, F_DUPFD_CLOEXEC, 1024);
	if (hi < 0)
		return -errno;
	memset(&p, 0, sizeof(p));
	p.fd = hi;
	p.request_id = (uint16_t)req->fcgx->requestId;
	p.kind = kind;
	p.session = a->session;
	p.cursor = a->cursor;
	p.expires_unix = s->expires_unix;
	p.until = a->until;
	p.device = a->device;
	p.ident = &a->ident;
	p.timeout_ms = a->timeout_s * 1000;
	p.head = head->data;
	p.head_len = head->len;
	rc = it_hub_park(it_g.hub, &p);
	if (rc < 0) {
		close(hi);
		return rc;
	}
	close(fd);
	req->detached = 1;
	req->headers_sent = 1;
	req->status = 200;
	snprintf(req->log_note, sizeof(req->log_note), "parked");
	return 0;
}

/* Fills *s from the hub's registry instead of a query, when the hub can
 * vouch for the session: it checked it while its LISTEN connection stayed
 * up, and every change since (events, pruning, the session's end) has been
 * announced to it by NOTIFY (docs/hub.md, "What a poll costs"). What the
 * registry says is exact as of the last notification the hub handled, so
 * it decides only what a notification still on its way cannot change:
 * - a cursor at the newest id: never expired (pruning keeps first kept - 1
 *   at most the last id) and not ahead;
 * - a cursor below the first kept id - 1: expired (that id only grows);
 * - a cursor behind the newest id whose next event the hub's ring holds:
 *   the hub answers with events it has in memory, in order, from the
 *   cursor on. A prune that committed a moment ago, its notification still
 *   on the way, cannot take them from the client: they were in the log and
 *   they are delivered exactly once.
 * A cursor beyond the last id the hub knows may only mean that its event's
 * notification is late, and one between the first kept id and the ring may
 * have been pruned a moment ago: the database decides those, as before.
 * Returns 1 with *s filled (id, expiry, last and first kept ids), 0 when the
 * caller must ask the database. */
static int hub_session(const char *session, int64_t cursor, it_session *s)
{
	it_feed_info fi;

	if (it_g.hub == NULL || it_g.cgi || it_hub_lookup(it_g.hub, session, &fi) < 0)
		return 0;
	if (cursor > fi.last_seq)
		return 0;
	if (cursor != fi.last_seq && cursor >= fi.first_kept - 1 && cursor + 1 < fi.held_from)
		return 0;
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", session);
	s->expires_unix = fi.expires;
	s->last_event_seq = fi.last_seq;
	s->first_kept_seq = fi.first_kept;
	return 1;
}

/* Whether the hub follows session closely enough to answer a poll from its
 * ring of recent events (or one read shared by every stream of the session)
 * instead of this thread reading the log. */
static int hub_follows(const char *session)
{
	it_feed_info fi;

	return it_g.hub != NULL && !it_g.cgi && it_hub_lookup(it_g.hub, session, &fi) == 0;
}

/* Parks a long-poll on the hub. Returns 0 or a negative errno (nothing
 * sent; the caller answers). */
static int park_longpoll(it_req *req, const struct stream_args *a, const it_session *s)
{
	it_buf head;
	int rc;

	it_buf_init(&head, 16384);
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_header(req, "X-Accel-Buffering", "no");
	it_resp_head(req, 200, "application/json", &head);
	/* Apache's mod_proxy_fcgi sends no header before the first body
	 * byte: a space (allowed before JSON) releases them. */
	it_buf_puts(&head, " ");
	rc = handover(req, IT_STREAM_LONGPOLL, a, s, &head);
	it_buf_free(&head);
	if (rc < 0) {
		it_buf_free(&req->headers);
		it_buf_init(&req->headers, 8192);
	}
	return rc;
}

/* Answers a long-poll the hub could not take (max_streams): nothing yet,
 * come back in a moment. */
static void busy_answer(it_req *req, struct lp_body *b)
{
	char extra[48];

	snprintf(extra, sizeof(extra), ",\"retry_after_ms\":%d", BUSY_RETRY_MS);
	it_resp_header(req, "Retry-After", "%d", BUSY_RETRY_MS / 1000);
	lp_answer(req, b, extra);
}

/* ------------------------------------------------------------------ CGI mode */

/* Takes one of cgi_max_waiters slots, shared by every CGI process through
 * advisory locks (released when the connection closes, even on a crash).
 * Returns 1 with a slot, 0 when all are taken, -1 on a database error. */
static int cgi_slot(PGconn **conn)
{
	char cap[24], cls[24];
	const char *params[2] = {cls, cap};
	PGresult *res;
	int rc = -1;

	if (it_g.cfg.cgi_max_waiters <= 0)
		return 0;
	snprintf(cls, sizeof(cls), "%d", CGI_SLOT_LOCK);
	snprintf(cap, sizeof(cap), "%lld", (long long)it_g.cfg.cgi_max_waiters);
	/* LIMIT 1 stops at the first lock taken, so at most one is held. */
	res = it_db_exec(conn, 0,
			 "SELECT s FROM generate_series(0, $2::int - 1) s"
			 " WHERE pg_try_advisory_lock($1::int, s) LIMIT 1",
			 2, params);
	if (it_db_ok(res, PGRES_TUPLES_OK))
		rc = PQntuples(res) == 1;
	PQclear(res);
	return rc;
}

/* What a NOTIFY payload means to a's wait: the seq of an event committed
 * in a's session (0: the session ended), -4 when it revokes the device of
 * a's token, -1 for anything else (another session, another device, a
 * pruning or expiry note, a malformed payload). */
static int64_t note_for(const struct stream_args *a, const char *payload)
{
	char id[72];
	int64_t num;
	enum it_feed_note kind;
	it_feed_carried ce;

	if (it_feed_parse_notify(payload, strlen(payload), id, sizeof(id), &num, &kind, &ce) != 0 ||
	    strcmp(id, a->session) != 0)
		return -1;
	if (kind == IT_FEED_NOTE_EVENT || kind == IT_FEED_NOTE_ENDED)
		return num;
	if (kind == IT_FEED_NOTE_REVOKED && a->device[0] && ce.device_len == strlen(a->device) &&
	    memcmp(ce.device, a->device, ce.device_len) == 0)
		return -4;
	return -1;
}

/* Waits on conn (which LISTENs) until a notification for a's session
 * arrives (returns its seq, 0 meaning the session ended), deadline passes
 * (-1), or the connection fails (-2). Calls keepalive(arg) every
 * keepalive_interval; a non-zero return from it (the client went away) ends
 * the wait with -3. A token's wait ends with -4 when its device is revoked,
 * -5 when it expires. */
static int64_t cgi_wait(PGconn *conn, const struct stream_args *a, int64_t deadline, int (*keepalive)(void *),
			void *arg)
{
	int64_t next_ka = it_clock_ms() + it_g.cfg.keepalive_interval * 1000;

	for (;;) {
		PGnotify *n;
		int64_t now = it_clock_ms(), wait;
		struct pollfd pfd;

		while ((n = PQnotifies(conn)) != NULL) {
			int64_t seq = note_for(a, n->extra);
			PQfreemem(n);
			if (seq >= 0 || seq == -4)
				return seq;
		}
		if (a->until && time(NULL) >= a->until)
			return -5;
		if (now >= deadline)
			return -1;
		if (now >= next_ka) {
			next_ka = now + it_g.cfg.keepalive_interval * 1000;
			if (keepalive && keepalive(arg))
				return -3;
		}
		wait = (deadline < next_ka ? deadline : next_ka) - now;
		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)(wait > 1000 ? 1000 : wait)) > 0 && !PQconsumeInput(conn))
			return -2;
	}
}

static int listen_on(PGconn **conn)
{
	PGresult *res = it_db_exec(conn, 0, "LISTEN " IT_EVENT_CHANNEL, 0, NULL);
	int ok = it_db_ok(res, PGRES_COMMAND_OK);

	PQclear(res);
	return ok ? 0 : -1;
}

static int lp_keepalive(void *arg)
{
	it_req *req = arg;

	return it_resp_write(req, " ", 1) < 0 || it_resp_flush(req) < 0;
}

static void cgi_longpoll(it_req *req, PGconn **conn, const struct stream_args *a, struct lp_body *b)
{
	int slot = cgi_slot(conn);
	int64_t deadline = it_clock_ms() + a->timeout_s * 1000, seq;

	if (slot <= 0 || listen_on(conn) < 0) {
		char extra[48];
		snprintf(extra, sizeof(extra), ",\"retry_after_ms\":%d", BUSY_RETRY_MS);
		it_resp_header(req, "Retry-After", "%d", BUSY_RETRY_MS / 1000);
		lp_answer(req, b, extra);
		return;
	}
	/* Anything committed between the first read and LISTEN. */
	if (it_event_read(conn, a->session, a->cursor, BATCH, lp_collect, b) > 0) {
		lp_answer(req, b, NULL);
		return;
	}
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_header(req, "X-Accel-Buffering", "no");
	it_resp_begin(req, 200, "application/json");
	it_resp_write(req, " ", 1);
	it_resp_flush(req);
	do {
		seq = cgi_wait(*conn, a, deadline, lp_keepalive, req);
	} while (seq > 0 && it_event_read(conn, a->session, a->cursor, BATCH, lp_collect, b) == 0);
	if (seq == -4 || seq == -5) {
		char *j = revoked_json(a, seq == -4 ? "revoked" : "expired");
		if (j && it_buf_printf(&b->items, "%s%s", b->count ? "," : "", j) == 0)
			b->count++;
		free(j);
	}
	lp_write_body(req, b);
}

static int sse_keepalive(void *arg)
{
	it_req *req = arg;

	return it_resp_puts(req, ": keepalive\n\n") < 0 || it_resp_flush(req) < 0;
}

struct sse_out {
	it_req *req;
	int64_t cursor;
	int failed;
};

static int sse_write(const it_event *ev, void *arg)
{
	struct sse_out *o = arg;
	it_buf b;

	it_buf_init(&b, ev->json_len + 256);
	if (it_sse_event(&b, ev->seq, ev->type, ev->json, ev->json_len) < 0 || it_resp_write(o->req, b.data, b.len) < 0)
		o->failed = 1;
	it_buf_free(&b);
	if (o->failed)
		return 1;
	o->cursor = ev->seq;
	it_metrics_inc("imagetools_events_delivered_total", "transport=\"sse\"", 1);
	return 0;
}

/* CGI mode keeps a stream open for cgi_stream_lifetime seconds, then ends it
 * so the process goes away; EventSource reconnects with Last-Event-ID. */
static void cgi_stream(it_req *req, PGconn **conn, const struct stream_args *a)
{
	struct sse_out o = {req, a->cursor, 0};
	int64_t deadline = it_clock_ms() + it_g.cfg.cgi_stream_lifetime * 1000, seq = 1;
	int n;

	if (cgi_slot(conn) <= 0 || listen_on(conn) < 0) {
		it_buf b;
		it_buf_init(&b, 64);
		it_sse_retry(&b, BUSY_RETRY_MS);
		it_resp_write(req, b.data, b.len);
		it_buf_free(&b);
		snprintf(req->log_note, sizeof(req->log_note), "busy");
		return;
	}
	it_resp_flush(req);
	while (!o.failed && seq > 0) {
		do {
			n = it_event_read(conn, a->session, o.cursor, BATCH, sse_write, &o);
		} while (n == BATCH && !o.failed);
		if (n < 0 || o.failed || it_resp_flush(req) < 0)
			break;
		seq = cgi_wait(*conn, a, deadline, sse_keepalive, req);
	}
	if (seq == -4 || seq == -5) {
		/* The token was revoked or expired: said once, then the end. */
		char *j = revoked_json(a, seq == -4 ? "revoked" : "expired");
		it_buf b;
		it_buf_init(&b, 4096);
		if (j && it_sse_transient(&b, "session.revoked", j) == 0)
			it_resp_write(req, b.data, b.len);
		it_buf_free(&b);
		free(j);
	}
}

/* ------------------------------------------------------------------ handlers */

void it_h_events_poll(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	struct stream_args a;
	struct lp_body b;
	it_session s;
	int n, cached;

	if (parse_args(req, &a, "cursor", NULL) < 0 || resolve_token(req, &a) < 0)
		return;
	it_buf_init(&b.items, (size_t)it_g.cfg.stream_buffer);
	b.cursor = a.cursor;
	b.count = 0;
	/* A re-poll of a session the hub follows costs no query. */
	cached = hub_session(a.session, a.cursor, &s);
	if (!cached && it_app_session_problem(req, it_sessions_get(&conn, a.session, &s)))
		goto out;
	if (needs_resync(&s, a.cursor)) {
		char *j = resync_json(&s, a.cursor > s.last_event_seq ? "cursor-ahead" : "cursor-expired");
		it_buf_puts(&b.items, j);
		free(j);
		b.cursor = s.last_event_seq;
		it_metrics_inc("imagetools_resyncs_total", NULL, 1);
		lp_answer(req, &b, NULL);
		goto out;
	}
	if (a.cursor < s.last_event_seq && a.timeout_s > 0 && (cached || hub_follows(a.session))) {
		/* The events exist and the hub has them (or reads them once for
		 * every stream of the session): it answers at once. */
		if (park_longpoll(req, &a, &s) == 0)
			goto out;
	}
	/* The session's last id is the cursor: nothing to read. */
	n = a.cursor < s.last_event_seq ? it_event_read(&conn, a.session, a.cursor, BATCH, lp_collect, &b) : 0;
	if (n < 0) {
		it_app_session_problem(req, 503);
		goto out;
	}
	if (n > 0 || a.timeout_s == 0) {
		lp_answer(req, &b, NULL);
		goto out;
	}
	/* Only a long-poll that waits holds a connection: one that answers at
	 * once is an ordinary request and is not counted as a stream. */
	if (it_guard_rate(req, "streams", req->remote_addr, it_g.cfg.rate_streams))
		goto out;
	if (it_g.cgi) {
		/* No process here renews a presence entry: it lives as long as
		 * the wait, and the grace in which the next poll comes. */
		if (it_ident_announces(&a.ident))
			it_presence_db_join(&conn, a.session, &a.ident, "longpoll", NULL, NULL,
					    a.timeout_s + IT_PRESENCE_GRACE);
		cgi_longpoll(req, &conn, &a, &b);
		goto out;
	}
	if (park_longpoll(req, &a, &s) < 0)
		busy_answer(req, &b);
out:
	it_buf_free(&b.items);
}

void it_h_events_stream(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	struct stream_args a;
	it_session s;
	it_buf head;
	char *j;
	int rc;

	if (parse_args(req, &a, "last_event_id", "HTTP_LAST_EVENT_ID") < 0)
		return;
	if (it_guard_rate(req, "streams", req->remote_addr, it_g.cfg.rate_streams) || resolve_token(req, &a) < 0)
		return;
	if (a.cursor > 0)
		it_metrics_inc("imagetools_resumes_total", "transport=\"sse\"", 1);
	/* A resume on a session the hub follows costs no query. */
	rc = hub_session(a.session, a.cursor, &s) ? 0 : it_sessions_get(&conn, a.session, &s);
	it_resp_header(req, "Cache-Control", "no-cache");
	it_resp_header(req, "X-Accel-Buffering", "no");
	if (rc == 503) {
		/* EventSource gives up for good on a non-200 answer; a short
		 * stream with a retry hint makes it come back instead. */
		it_buf_init(&head, 4096);
		it_sse_retry(&head, 5000);
		j = status_json("degraded", "sse");
		it_sse_transient(&head, "connection.status", j);
		free(j);
		it_resp_begin(req, 200, "text/event-stream");
		it_resp_write(req, head.data, head.len);
		it_buf_free(&head);
		snprintf(req->log_note, sizeof(req->log_note), "database-unavailable");
		return;
	}
	if (rc != 0) {
		it_buf_free(&req->headers);
		it_buf_init(&req->headers, 8192);
		it_app_session_problem(req, rc);
		return;
	}

	it_buf_init(&head, 16384);
	if (!it_g.cgi)
		it_resp_head(req, 200, "text/event-stream", &head);
	it_sse_retry(&head, it_g.cfg.sse_retry_ms);
	j = status_json("connected", "sse");
	it_sse_transient(&head, "connection.status", j);
	free(j);
	if (needs_resync(&s, a.cursor)) {
		j = resync_json(&s, a.cursor > s.last_event_seq ? "cursor-ahead" : "cursor-expired");
		it_sse_transient(&head, "session.resync", j);
		free(j);
		it_metrics_inc("imagetools_resyncs_total", NULL, 1);
		a.cursor = s.last_event_seq;
	}
	if (it_g.cgi) {
		it_resp_begin(req, 200, "text/event-stream");
		it_resp_write(req, head.data, head.len);
		it_buf_free(&head);
		if (it_ident_announces(&a.ident))
			it_presence_db_join(&conn, a.session, &a.ident, "sse", NULL, NULL,
					    it_g.cfg.cgi_stream_lifetime + IT_PRESENCE_GRACE);
		cgi_stream(req, &conn, &a);
		return;
	}
	rc = handover(req, IT_STREAM_SSE, &a, &s, &head);
	it_buf_free(&head);
	if (rc < 0) {
		/* Full: come back later rather than fail for good. */
		it_buf b;
		it_buf_init(&b, 64);
		it_sse_retry(&b, BUSY_RETRY_MS * 2);
		it_resp_begin(req, 200, "text/event-stream");
		it_resp_write(req, b.data, b.len);
		it_buf_free(&b);
		snprintf(req->log_note, sizeof(req->log_note), "busy");
	}
}

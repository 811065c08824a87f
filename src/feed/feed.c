/* feed.c: the event-delivery core shared by every transport (docs/feed.md). */
#include "config.h"

#include "feed/feed.h"

#include "common/buf.h"
#include "common/htab.h"
#include "common/id.h"
#include "common/log.h"
#include "common/token.h"
#include "db/event.h"
#include "db/pgl.h"
#include "feed/sse.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEF_RING_EVENTS 256
#define DEF_RING_BYTES (1u << 20)
#define DEF_LINGER_MS 30000
/* Rows read per session per query; a session further behind is read in
 * several passes. */
#define READ_LIMIT 500
/* Sessions read (or checked) together in one query. */
#define BATCH_SESSIONS 128
#define ID_MAX 72

enum { SUB_PENDING, SUB_LIVE };
/* How long a revocation is remembered, so that a token check whose query
 * ran before the revocation committed cannot let the device back in. */
#define REVOKED_MEMORY_MS 60000
#define REVOKED_SLOTS 64

enum q_kind { Q_NONE, Q_CHECK, Q_READ, Q_CRED };

const char it_feed_check_sql[] =
	"SELECT s.id, s.last_event_seq, s.first_kept_seq, ceil(extract(epoch from s.expires_at))::bigint"
	" FROM sessions s WHERE s.id = ANY($1::text[]) AND s.expires_at > now()";

const char it_feed_cred_sql[] =
	"SELECT c.i, r.status, r.session_id, r.scope, r.device_id, r.label, r.source, r.until_epoch,"
	" encode(r.token_hash, 'hex')"
	" FROM unnest($1::text[]) WITH ORDINALITY AS c(h, i)"
	" CROSS JOIN LATERAL it_credential_check(NULL, decode(c.h, 'hex')) r ORDER BY c.i";

typedef struct it_feed_sess {
	it_hnode node; /* in feed->sessions, named by id */
	struct it_feed *feed;
	it_list subs;	    /* it_feed_sub.link */
	it_list *iter_next; /* the next subscriber of a walk in progress */
	it_list work;	    /* in feed->work while it needs a query */
	unsigned nsubs, pins;
	uint8_t busy; /* enum q_kind in flight for it */
	uint8_t need_check, need_read;
	uint8_t checked;    /* a check answered since the connection came up, and still valid */
	uint8_t ever_valid; /* some check said it exists */
	uint8_t stale;	    /* a NOTIFY came while a read was in flight */
	uint8_t seen;	    /* scratch: in the check result */
	uint64_t check_gen; /* feed->gen when the check in effect was sent */
	uint64_t sent_gen;  /* feed->gen when the check in flight was sent */
	int64_t known_last, first_kept, expires;
	int64_t idle_since; /* ms; when it was last watched or looked up */
	int64_t read_after; /* cursor of the read in flight */
	int64_t next_until; /* the earliest until among its subscribers (or later); 0: none */
	it_feed_event **ring;
	unsigned rhead, rcount;
	size_t rbytes;
	/* The rows of the last read that lie below the ring, a run of
	 * consecutive ids (allocated on first use, READ_LIMIT entries). */
	it_feed_event **back;
	unsigned bcount;
	size_t bbytes;
	char id[ID_MAX];
} sess;

struct it_feed {
	it_feed_opts o;
	char *conninfo;
	const it_feed_db_ops *dbops;
	void *db;
	it_pgl pgl;
	it_htab sessions; /* of sess.node */
	it_list work;	  /* sessions with need_check / need_read, not busy */
	it_list ready;	  /* subscribers to look at in it_feed_run */
	int db_up, degraded;
	int walking;  /* walking the whole registry: sessions are freed by the tick instead */
	uint64_t gen; /* counts check queries sent */
	enum q_kind q;
	sess *inflight[BATCH_SESSIONS];
	int ninflight;
	it_list creds; /* token checks not sent yet (it_feed_credq.link) */
	it_feed_credq *cinflight[BATCH_SESSIONS];
	struct {
		char device[24];
		int64_t at_ms;
	} revoked[REVOKED_SLOTS]; /* recent revocations, a ring */
	unsigned revoked_next;
	int64_t now_ms;
	it_feed_stats st;
};

/* ------------------------------------------------------------------ events */

it_feed_event *it_feed_event_new(int64_t seq, const char *type, const char *json, size_t json_len)
{
	size_t tl = strlen(type);
	it_feed_event *ev = calloc(1, sizeof(*ev) + tl + 1 + json_len + 1);
	char *p;

	if (ev == NULL)
		return NULL;
	p = (char *)(ev + 1);
	memcpy(p, type, tl + 1);
	ev->type = p;
	p += tl + 1;
	memcpy(p, json, json_len);
	p[json_len] = '\0';
	ev->json = p;
	ev->json_len = json_len;
	ev->seq = seq;
	ev->refs = 1;
	return ev;
}

it_feed_event *it_feed_event_ref(it_feed_event *ev)
{
	ev->refs++;
	return ev;
}

void it_feed_event_unref(it_feed_event *ev)
{
	if (ev == NULL || --ev->refs > 0)
		return;
	for (int i = 0; i < IT_FEED_NFMT; i++)
		free(ev->wire[i]);
	free(ev);
}

/* An unmasked WebSocket frame header (RFC 6455 5.2) for a final text frame. */
static size_t ws_text_header(unsigned char h[10], size_t len)
{
	h[0] = 0x81;
	if (len < 126) {
		h[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(len >> 8);
		h[3] = (unsigned char)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

int it_feed_event_wire(it_feed_event *ev, enum it_feed_fmt fmt, struct iovec *out)
{
	if ((unsigned)fmt >= IT_FEED_NFMT)
		return -EINVAL;
	if (ev->wire[fmt] == NULL) {
		if (fmt == IT_FEED_FMT_SSE) {
			it_buf b;
			it_buf_init(&b, ev->json_len + strlen(ev->type) + 64);
			if (it_sse_event(&b, ev->seq, ev->type, ev->json, ev->json_len) < 0) {
				it_buf_free(&b);
				return -ENOMEM;
			}
			ev->wire[fmt] = b.data;
			ev->wire_len[fmt] = b.len;
		} else {
			unsigned char h[10];
			size_t hl = ws_text_header(h, ev->json_len);
			char *p = malloc(hl + ev->json_len);
			if (p == NULL)
				return -ENOMEM;
			memcpy(p, h, hl);
			memcpy(p + hl, ev->json, ev->json_len);
			ev->wire[fmt] = p;
			ev->wire_len[fmt] = hl + ev->json_len;
		}
	}
	out->iov_base = ev->wire[fmt];
	out->iov_len = ev->wire_len[fmt];
	return 0;
}

char *it_feed_transient_json(const it_feed_transient *t, const char *transport)
{
	json_object *d = json_object_new_object();
	char *j;

	if (d == NULL)
		return NULL;
	if (strcmp(t->type, "session.resync") == 0) {
		json_object_object_add(d, "reason", json_object_new_string(t->reason ? t->reason : "gap"));
		json_object_object_add(d, "last_event_id", json_object_new_int64(t->last_event_id));
	} else if (strcmp(t->type, "session.revoked") == 0) {
		json_object_object_add(d, "reason", json_object_new_string(t->reason ? t->reason : "revoked"));
		if (t->device_id && *t->device_id)
			json_object_object_add(d, "device_id", json_object_new_string(t->device_id));
	} else {
		json_object_object_add(d, "status", json_object_new_string(t->status ? t->status : "connected"));
		if (transport)
			json_object_object_add(d, "transport", json_object_new_string(transport));
	}
	j = it_event_transient(t->type, d);
	json_object_put(d);
	return j;
}

/* ------------------------------------------------------------------ NOTIFY */

/* Parses "<id>:<n>" (n whole, at most 18 digits). */
static int parse_id_num(const char *p, size_t len, char *id, size_t idlen, int64_t *num)
{
	size_t colon = len, i;
	int64_t v = 0;

	/* The id is base64url and has no colon; the last one separates. */
	for (i = len; i > 0; i--)
		if (p[i - 1] == ':') {
			colon = i - 1;
			break;
		}
	if (colon == len || colon == 0 || colon + 1 >= idlen || colon + 1 == len || len - colon - 1 > 18)
		return -EINVAL;
	for (i = colon + 1; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		v = v * 10 + (p[i] - '0');
	}
	memcpy(id, p, colon);
	id[colon] = '\0';
	*num = v;
	return 0;
}

/* Parses "<id>:<seq>:<type>\n<json>", nl pointing at the first newline. */
static int parse_carried(const char *p, size_t len, const char *nl, char *id, size_t idlen, int64_t *num,
			 it_feed_carried *ev)
{
	size_t hl = (size_t)(nl - p);
	const char *c1 = memchr(p, ':', hl), *c2, *type;

	if (c1 == NULL || (c2 = memchr(c1 + 1, ':', hl - (size_t)(c1 + 1 - p))) == NULL)
		return -EINVAL;
	if (parse_id_num(p, (size_t)(c2 - p), id, idlen, num) < 0 || *num < 1)
		return -EINVAL;
	type = c2 + 1;
	/* The JSON is an object: a cheap guard against anything else. */
	if (type == nl || memchr(type, ':', (size_t)(nl - type)) != NULL || len - hl - 1 < 2 || nl[1] != '{' ||
	    p[len - 1] != '}')
		return -EINVAL;
	if (ev) {
		ev->type = type;
		ev->type_len = (size_t)(nl - type);
		ev->json = nl + 1;
		ev->json_len = len - hl - 1;
	}
	return 0;
}

static int b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Parses "<session>:<device>" (after "revoked:"): both base64url-ish, the
 * device id 1-23 characters. */
static int parse_revoked(const char *p, size_t len, char *id, size_t idlen, int64_t *num, enum it_feed_note *kind,
			 it_feed_carried *ev)
{
	const char *c = memchr(p, ':', len);
	size_t sl, dl;

	if (c == NULL)
		return -EINVAL;
	sl = (size_t)(c - p);
	dl = len - sl - 1;
	if (sl == 0 || sl + 1 > idlen || dl == 0 || dl > 23)
		return -EINVAL;
	for (size_t i = 0; i < sl; i++)
		if (!b64url_char(p[i]))
			return -EINVAL;
	for (size_t i = 0; i < dl; i++)
		if (!b64url_char(c[1 + i]))
			return -EINVAL;
	memcpy(id, p, sl);
	id[sl] = '\0';
	*num = 0;
	*kind = IT_FEED_NOTE_REVOKED;
	if (ev) {
		ev->device = c + 1;
		ev->device_len = dl;
	}
	return 0;
}

int it_feed_parse_notify(const char *p, size_t len, char *id, size_t idlen, int64_t *num, enum it_feed_note *kind,
			 it_feed_carried *ev)
{
	static const struct {
		const char *prefix;
		size_t len;
		enum it_feed_note kind;
	} forms[] = {{"kept:", 5, IT_FEED_NOTE_KEPT}, {"expires:", 8, IT_FEED_NOTE_EXPIRES}};
	const char *nl = memchr(p, '\n', len);

	if (ev)
		memset(ev, 0, sizeof(*ev));
	if (nl != NULL) {
		if (parse_carried(p, len, nl, id, idlen, num, ev) < 0)
			return -EINVAL;
		*kind = IT_FEED_NOTE_EVENT;
		return 0;
	}
	if (len > 8 && memcmp(p, "revoked:", 8) == 0)
		return parse_revoked(p + 8, len - 8, id, idlen, num, kind, ev);
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		if (len <= forms[i].len || memcmp(p, forms[i].prefix, forms[i].len) != 0)
			continue;
		if (parse_id_num(p + forms[i].len, len - forms[i].len, id, idlen, num) < 0 || *num < 1 ||
		    strchr(id, ':') != NULL)
			return -EINVAL;
		*kind = forms[i].kind;
		return 0;
	}
	if (parse_id_num(p, len, id, idlen, num) < 0)
		return -EINVAL;
	*kind = *num == 0 ? IT_FEED_NOTE_ENDED : IT_FEED_NOTE_EVENT;
	return 0;
}

/* ------------------------------------------------------------------ the registry */

static sess *sess_find(const it_feed *f, const char *id)
{
	it_hnode *n = it_htab_find(&f->sessions, id);

	return n ? it_container_of(n, sess, node) : NULL;
}

static sess *sess_get(it_feed *f, const char *id)
{
	sess *s = sess_find(f, id);

	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->ring = calloc(f->o.ring_events, sizeof(*s->ring));
	if (s->ring == NULL) {
		free(s);
		return NULL;
	}
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->feed = f;
	it_list_init(&s->subs);
	it_list_init(&s->work);
	s->expires = INT64_MAX;
	s->idle_since = f->now_ms;
	s->node.key = s->id;
	if (it_htab_add(&f->sessions, &s->node) < 0) {
		free(s->ring);
		free(s);
		return NULL;
	}
	return s;
}

static void ring_clear(sess *s, unsigned cap)
{
	for (unsigned i = 0; i < s->rcount; i++)
		it_feed_event_unref(s->ring[(s->rhead + i) % cap]);
	s->rhead = s->rcount = 0;
	s->rbytes = 0;
}

static void back_clear(sess *s)
{
	for (unsigned i = 0; i < s->bcount; i++)
		it_feed_event_unref(s->back[i]);
	s->bcount = 0;
	s->bbytes = 0;
}

/* Forgets every cached event of s: its ring and the rows of its last read. */
static void caches_clear(it_feed *f, sess *s)
{
	ring_clear(s, f->o.ring_events);
	back_clear(s);
}

static void sess_free(it_feed *f, sess *s)
{
	it_htab_del(&f->sessions, &s->node);
	it_list_unlink(&s->work);
	caches_clear(f, s);
	free(s->ring);
	free(s->back);
	free(s);
}

/* Frees s when nothing refers to it and its check is not worth keeping. A
 * checked session lingers (the tick frees it later) so that a re-poll or a
 * resume soon after costs no query. */
static void sess_release(it_feed *f, sess *s)
{
	if (s->nsubs || s->pins || s->busy != Q_NONE || f->walking)
		return;
	if (s->checked && f->db_up)
		return;
	sess_free(f, s);
}

static void sess_queue(it_feed *f, sess *s)
{
	if (s->busy == Q_NONE && it_list_empty(&s->work) && (s->need_check || s->need_read))
		it_list_push(&f->work, &s->work);
}

/* ------------------------------------------------------------------ the ring */

static it_feed_event *ring_get(const it_feed *f, const sess *s, int64_t seq)
{
	int64_t first;

	if (s->rcount == 0)
		return NULL;
	first = s->ring[s->rhead]->seq;
	if (seq < first || seq >= first + s->rcount)
		return NULL;
	return s->ring[(s->rhead + (unsigned)(seq - first)) % f->o.ring_events];
}

static int64_t ring_last(const it_feed *f, const sess *s)
{
	return s->rcount ? s->ring[(s->rhead + s->rcount - 1) % f->o.ring_events]->seq : -1;
}

/* Keeps ev (a new reference) as the ring's newest event. The ring holds a
 * run of consecutive ids: an event that does not follow the newest starts
 * the run again; older ones go first when it is full. */
static void ring_push(it_feed *f, sess *s, it_feed_event *ev)
{
	unsigned cap = f->o.ring_events;

	if (s->rcount && ev->seq != ring_last(f, s) + 1)
		ring_clear(s, cap);
	while (s->rcount && (s->rcount == cap || s->rbytes + ev->json_len > f->o.ring_bytes)) {
		it_feed_event *old = s->ring[s->rhead];
		s->rbytes -= old->json_len;
		it_feed_event_unref(old);
		s->rhead = (s->rhead + 1) % cap;
		s->rcount--;
	}
	if (ev->json_len > f->o.ring_bytes)
		return; /* too large to cache: reads serve it */
	s->ring[(s->rhead + s->rcount) % cap] = it_feed_event_ref(ev);
	s->rcount++;
	s->rbytes += ev->json_len;
}

static it_feed_event *back_get(const sess *s, int64_t seq)
{
	int64_t first;

	if (s->bcount == 0)
		return NULL;
	first = s->back[0]->seq;
	if (seq < first || seq >= first + s->bcount)
		return NULL;
	return s->back[seq - first];
}

/* Event seq of s if the feed still holds it: in the ring, or among the rows
 * of the last read. */
static it_feed_event *cached_get(const it_feed *f, const sess *s, int64_t seq)
{
	it_feed_event *ev = ring_get(f, s, seq);

	return ev ? ev : back_get(s, seq);
}

/* Keeps the rows of a read that the ring does not hold (evs, in seq order,
 * already pushed into the ring where they belong there). A subscriber that
 * took only some of them before it paused (a slow stream) resumes from here
 * instead of reading the same rows again. A run of consecutive ids, at most
 * READ_LIMIT events and ring_bytes of JSON. */
static void back_keep(it_feed *f, sess *s, it_feed_event **evs, int n)
{
	back_clear(s);
	if (n == 0 || ring_get(f, s, evs[0]->seq) != NULL)
		return;
	if (s->back == NULL && (s->back = calloc(READ_LIMIT, sizeof(*s->back))) == NULL)
		return;
	for (int i = 0; i < n && s->bcount < READ_LIMIT; i++) {
		if (ring_get(f, s, evs[i]->seq) != NULL)
			break; /* the ring has the rest */
		if (s->bcount && evs[i]->seq != s->back[s->bcount - 1]->seq + 1)
			break;
		if (s->bbytes + evs[i]->json_len > f->o.ring_bytes)
			break;
		s->back[s->bcount++] = it_feed_event_ref(evs[i]);
		s->bbytes += evs[i]->json_len;
	}
}

/* Whether a subscriber of s may still want an event of the back buffer. */
static int back_wanted(const sess *s)
{
	int64_t first, last;

	if (s->bcount == 0)
		return 0;
	first = s->back[0]->seq;
	last = first + s->bcount - 1;
	for (const it_list *pos = s->subs.next; pos != &s->subs; pos = pos->next) {
		const it_feed_sub *sub = it_container_of(pos, it_feed_sub, link);
		if (sub->cursor + 1 >= first && sub->cursor < last)
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ subscribers */

/* Walks the subscribers of s so that any of them may be unsubscribed (and
 * freed) by a callback on the way: the walk keeps only the next link, which
 * unsubscribe moves on when it removes that one. */
#define FOREACH_SUB(s, sub)                                                                                            \
	for (it_list *pos_ = ((s)->iter_next = (s)->subs.next, (s)->iter_next);                                        \
	     pos_ != &(s)->subs && ((sub) = it_container_of(pos_, it_feed_sub, link), (s)->iter_next = pos_->next, 1); \
	     pos_ = (s)->iter_next)

static void pin(sess *s)
{
	s->pins++;
}

static void unpin(it_feed *f, sess *s)
{
	if (--s->pins == 0) {
		s->iter_next = NULL;
		sess_release(f, s);
	}
}

static int send_transient(it_feed *f, it_feed_sub *sub, const it_feed_transient *t)
{
	if (strcmp(t->type, "session.resync") == 0)
		f->st.resyncs++;
	return sub->ops->transient ? sub->ops->transient(sub, t) : 0;
}

static int send_resync(it_feed *f, it_feed_sub *sub, const char *reason, int64_t last)
{
	it_feed_transient t = {.type = "session.resync", .reason = reason, .last_event_id = last};

	return send_transient(f, sub, &t);
}

static int send_status(it_feed *f, it_feed_sub *sub, const char *status)
{
	it_feed_transient t = {.type = "connection.status", .status = status};

	return send_transient(f, sub, &t);
}

/* Offers sub one event. Returns 1 taken, 0 paused (or not live), -1 gone. */
static int offer(it_feed *f, it_feed_sub *sub, it_feed_event *ev)
{
	int r = sub->ops->event(sub, ev);

	if (r < 0)
		return -1;
	if (r == 1) {
		sub->paused = 1;
		return 0;
	}
	sub->cursor = ev->seq;
	f->st.delivered++;
	return 1;
}

static int batch_end(it_feed_sub *sub)
{
	return sub->ops->batch_end ? sub->ops->batch_end(sub) : 0;
}

/* Hands sub what the ring holds after its cursor, then marks the session
 * for a read if it still lags. *touched is set when something was handed
 * over. Returns -1 when sub went away. */
static int from_ring(it_feed *f, sess *s, it_feed_sub *sub, int *touched)
{
	it_feed_event *ev;

	while (!sub->paused && sub->cursor < s->known_last && (ev = cached_get(f, s, sub->cursor + 1)) != NULL) {
		int r = offer(f, sub, ev);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		f->st.ring_served++;
		*touched = 1;
	}
	if (!sub->paused && sub->cursor < s->known_last) {
		s->need_read = 1;
		sess_queue(f, s);
	}
	return 0;
}

/* Whether device was revoked within REVOKED_MEMORY_MS. */
static int recently_revoked(const it_feed *f, const char *device, size_t len)
{
	for (unsigned i = 0; i < REVOKED_SLOTS; i++)
		if (f->revoked[i].device[0] && strlen(f->revoked[i].device) == len &&
		    memcmp(f->revoked[i].device, device, len) == 0 &&
		    f->now_ms - f->revoked[i].at_ms < REVOKED_MEMORY_MS)
			return 1;
	return 0;
}

/* Ends sub because its own credential no longer holds (revoked, or its
 * until passed), whatever its session does: a live subscriber is told first
 * with a session.revoked transient, so that a client knows not to come back
 * with the same token. */
static void end_for_credential(it_feed *f, it_feed_sub *sub, enum it_feed_end why)
{
	f->st.revoked++;
	if (sub->state == SUB_LIVE) {
		it_feed_transient t = {.type = "session.revoked",
				       .reason = why == IT_FEED_END_REVOKED ? "revoked" : "expired",
				       .device_id = sub->device};
		if (send_transient(f, sub, &t) < 0)
			return;
	}
	it_feed_unsubscribe(sub);
	if (sub->ops->ended)
		sub->ops->ended(sub, why);
}

/* Decides what a checked session can do for a pending subscriber. Returns
 * -1 when sub went away, 0 otherwise (it may stay pending). */
static int admit(it_feed *f, sess *s, it_feed_sub *sub)
{
	int touched = 0;

	/* A token revoked or expired while its subscriber waited for the
	 * check goes no further. */
	if (sub->device[0] && recently_revoked(f, sub->device, strlen(sub->device))) {
		end_for_credential(f, sub, IT_FEED_END_REVOKED);
		return -1;
	}
	if (sub->until && f->o.wall() >= sub->until) {
		end_for_credential(f, sub, IT_FEED_END_TOKEN_EXPIRED);
		return -1;
	}

	if (s->check_gen <= sub->gen &&
	    (sub->cursor > s->known_last || ((sub->flags & IT_FEED_FRESH) && sub->cursor != s->known_last))) {
		/* The cursor is ahead of what this feed knows, but the check is
		 * older than the subscriber: its NOTIFY may simply not have
		 * arrived yet. Only a newer check may call it ahead. With
		 * IT_FEED_FRESH, any cursor but the newest id waits for a newer
		 * check too: pruning raises first_kept without a notification,
		 * so only the database can say whether it is still served. */
		s->need_check = 1;
		sess_queue(f, s);
		return 0;
	}
	sub->state = SUB_LIVE;
	if (sub->ops->admitted)
		sub->ops->admitted(sub);
	if (sub->flags & IT_FEED_HELLO) {
		if (send_status(f, sub, "connected") < 0)
			return -1;
		touched = 1;
	}
	if (sub->cursor > s->known_last || sub->cursor < s->first_kept - 1) {
		/* The log cannot say what happened since the cursor: the client
		 * reloads its state and follows from the newest id. */
		if (send_resync(f, sub, sub->cursor > s->known_last ? "cursor-ahead" : "cursor-expired",
				s->known_last) < 0)
			return -1;
		sub->cursor = s->known_last;
		touched = 1;
	}
	if (from_ring(f, s, sub, &touched) < 0)
		return -1;
	return touched ? (batch_end(sub) < 0 ? -1 : 0) : 0;
}

static void mark_ready(it_feed *f, it_feed_sub *sub)
{
	if (it_list_empty(&sub->work))
		it_list_push(&f->ready, &sub->work);
}

/* Ends every subscriber of s. */
static void end_all(it_feed *f, sess *s, enum it_feed_end why)
{
	it_feed_sub *sub;

	pin(s);
	FOREACH_SUB(s, sub)
	{
		it_feed_unsubscribe(sub);
		if (sub->ops->ended)
			sub->ops->ended(sub, why);
	}
	unpin(f, s);
}

static void announce(it_feed *f, const char *status)
{
	it_hnode *n, *next;
	size_t i;

	f->walking++;
	it_htab_foreach_safe (&f->sessions, i, n, next) {
		sess *s = it_container_of(n, sess, node);
		it_feed_sub *sub;
		pin(s);
		FOREACH_SUB(s, sub)
		{
			if (sub->state == SUB_LIVE && send_status(f, sub, status) == 0)
				batch_end(sub);
		}
		unpin(f, s);
	}
	f->walking--;
}

/* ------------------------------------------------------------------ queries */

static int array_add(it_buf *b, const char *item, int quote)
{
	return it_buf_printf(b, "%s%s%s%s", b->len > 1 ? "," : "", quote ? "\"" : "", item, quote ? "\"" : "");
}

/* The smallest cursor among live subscribers of s that can take more and
 * lag behind what is known, or -1. */
static int64_t read_from(const sess *s)
{
	int64_t after = INT64_MAX;

	for (const it_list *pos = s->subs.next; pos != &s->subs; pos = pos->next) {
		const it_feed_sub *sub = it_container_of(pos, it_feed_sub, link);
		if (sub->state == SUB_LIVE && !sub->paused && sub->cursor < s->known_last && sub->cursor < after)
			after = sub->cursor;
	}
	return after == INT64_MAX ? -1 : after;
}

/* Sends sql with its parameters as query q for the n sessions or tokens
 * just put in flight, counted in *count. A failed send loses the
 * connection (unless that already ended the query). */
static void send_query(it_feed *f, enum q_kind q, int n, uint64_t *count, const char *sql, int nparams,
		       const char *const *params)
{
	f->q = q;
	f->ninflight = n;
	(*count)++;
	if (f->dbops->send(f->db, sql, nparams, params) < 0 && f->q == q)
		it_feed_db_lost(f);
}

/* Closes the array literal ids and sends it as the one parameter of sql, as
 * for send_query. Returns whether a query went out (n > 0). */
static int send_ids(it_feed *f, enum q_kind q, int n, uint64_t *count, const char *sql, it_buf *ids)
{
	const char *params[1];

	if (n == 0)
		return 0;
	it_buf_puts(ids, "}");
	params[0] = ids->data;
	send_query(f, q, n, count, sql, 1, params);
	return 1;
}

/* Sends one check of the sessions that need one, up to BATCH_SESSIONS of
 * them; ids is the open array literal. Returns whether a query went out. */
static int send_checks(it_feed *f, it_buf *ids)
{
	it_list *pos, *tmp;
	int n = 0;

	it_list_foreach_safe (pos, tmp, &f->work) {
		sess *s = it_container_of(pos, sess, work);
		if (n == BATCH_SESSIONS)
			break;
		if (!s->need_check)
			continue;
		if (array_add(ids, s->id, 1) < 0)
			break;
		it_list_unlink(&s->work);
		s->need_check = 0;
		s->busy = Q_CHECK;
		s->sent_gen = f->gen;
		f->inflight[n++] = s;
	}
	return send_ids(f, Q_CHECK, n, &f->st.checks, it_feed_check_sql, ids);
}

/* Sends one check of waiting tokens, up to BATCH_SESSIONS of them; ids is
 * the open array literal. Returns whether a query went out. */
static int send_creds(it_feed *f, it_buf *ids)
{
	it_list *pos, *tmp;
	int n = 0;

	it_list_foreach_safe (pos, tmp, &f->creds) {
		it_feed_credq *q = it_container_of(pos, it_feed_credq, link);
		char hex[IT_TOKEN_HASH_HEX_SIZE];

		if (n == BATCH_SESSIONS)
			break;
		/* The array holds the bare digits, without the "\\x" in front. */
		it_token_hash_hex(q->hash, hex);
		if (array_add(ids, hex + 2, 1) < 0)
			break;
		it_list_unlink(&q->link);
		q->slot = n;
		f->cinflight[n++] = q;
	}
	return send_ids(f, Q_CRED, n, &f->st.creds, it_feed_cred_sql, ids);
}

/* Sends one read of the log for the sessions that need one, each from its
 * lowest cursor; ids and afters are the open array literals. Sessions that
 * turn out to need nothing are released. */
static void send_reads(it_feed *f, it_buf *ids, it_buf *afters)
{
	const char *params[3];
	char limit[16];
	it_list *pos, *tmp;
	int n = 0;

	it_list_foreach_safe (pos, tmp, &f->work) {
		sess *s = it_container_of(pos, sess, work);
		char num[24];
		int64_t after;

		if (n == BATCH_SESSIONS)
			break;
		it_list_unlink(&s->work);
		after = s->need_read ? read_from(s) : -1;
		s->need_read = 0;
		if (after < 0) {
			sess_release(f, s);
			continue;
		}
		snprintf(num, sizeof(num), "%lld", (long long)after);
		if (array_add(ids, s->id, 1) < 0 || array_add(afters, num, 0) < 0) {
			s->need_read = 1;
			sess_queue(f, s);
			break;
		}
		s->stale = 0;
		s->busy = Q_READ;
		s->read_after = after;
		f->inflight[n++] = s;
	}
	if (n == 0)
		return;
	snprintf(limit, sizeof(limit), "%d", READ_LIMIT);
	it_buf_puts(ids, "}");
	it_buf_puts(afters, "}");
	params[0] = ids->data;
	params[1] = afters->data;
	params[2] = limit;
	send_query(f, Q_READ, n, &f->st.reads, it_event_read_many_sql, 3, params);
}

/* Sends the next query when the connection is free: session checks first
 * (subscribers wait on them), then token checks (a client waits on each),
 * else one read for up to BATCH_SESSIONS sessions, each from its lowest
 * cursor. */
static void pump(it_feed *f)
{
	it_buf ids, afters;

	if (f->q != Q_NONE || !f->db_up || (it_list_empty(&f->work) && it_list_empty(&f->creds)) ||
	    !f->dbops->idle(f->db))
		return;
	it_buf_init(&ids, (size_t)BATCH_SESSIONS * 80 + 16);
	it_buf_init(&afters, (size_t)BATCH_SESSIONS * 24 + 16);
	it_buf_puts(&ids, "{");
	it_buf_puts(&afters, "{");
	f->gen++;
	if (!send_checks(f, &ids) && !send_creds(f, &ids))
		send_reads(f, &ids, &afters);
	it_buf_free(&ids);
	it_buf_free(&afters);
}

/* Answers every token check still in the query in flight (n of them) with
 * status, unless redo: then they go back to the front of the queue, in
 * their order, for the next query. */
static void creds_done(it_feed *f, int n, int redo)
{
	for (int i = n - 1; i >= 0; i--) {
		it_feed_credq *q = f->cinflight[i];
		if (q == NULL)
			continue;
		f->cinflight[i] = NULL;
		q->slot = -1;
		if (redo) {
			it_list_push(f->creds.next, &q->link); /* at the front */
		} else {
			it_feed_principal p;
			memset(&p, 0, sizeof(p));
			p.status = 503;
			q->feed = NULL;
			q->done(q, &p);
		}
	}
}

/* Ends the query in flight. redo: its work is still to be done; queue:
 * queue the sessions again now (after a failed query the tick does it a
 * moment later instead, so that a query that keeps failing does not spin). */
static void inflight_done(it_feed *f, int redo, int queue)
{
	int n = f->ninflight;
	enum q_kind q = f->q;

	f->ninflight = 0;
	f->q = Q_NONE;
	if (q == Q_CRED) {
		creds_done(f, n, redo);
		return;
	}
	for (int i = 0; i < n; i++) {
		sess *s = f->inflight[i];
		if (redo) {
			if (q == Q_CHECK)
				s->need_check = 1;
			else
				s->need_read = 1;
		}
		s->busy = Q_NONE;
		if (queue)
			sess_queue(f, s);
		sess_release(f, s);
	}
}

static void on_check_row(it_feed *f, sess *s, int64_t last, int64_t first, int64_t exp)
{
	it_feed_sub *sub;

	/* first_kept only grows while the connection stays up: a prune's
	 * notification may be handled before the answer of a check that
	 * started earlier. */
	if (first > s->first_kept)
		s->first_kept = first;
	s->checked = 1;
	s->ever_valid = 1;
	s->check_gen = s->sent_gen;
	s->expires = exp;
	if (last > s->known_last)
		s->known_last = last;
	pin(s);
	FOREACH_SUB(s, sub)
	{
		if (sub->state == SUB_PENDING)
			admit(f, s, sub);
		else if (!sub->paused && sub->cursor < s->known_last)
			mark_ready(f, sub);
	}
	unpin(f, s);
}

static void on_check(it_feed *f, PGresult *res)
{
	int rows = PQntuples(res);
	time_t wall = f->o.wall();

	for (int i = 0; i < f->ninflight; i++)
		f->inflight[i]->seen = 0;
	for (int r = 0; r < rows; r++) {
		sess *s = sess_find(f, PQgetvalue(res, r, 0));
		if (s == NULL || s->busy != Q_CHECK)
			continue;
		s->seen = 1;
		on_check_row(f, s, strtoll(PQgetvalue(res, r, 1), NULL, 10), strtoll(PQgetvalue(res, r, 2), NULL, 10),
			     strtoll(PQgetvalue(res, r, 3), NULL, 10));
	}
	for (int i = 0; i < f->ninflight; i++) {
		sess *s = f->inflight[i];
		enum it_feed_end why;
		if (s->seen)
			continue;
		why = !s->ever_valid	     ? IT_FEED_END_UNKNOWN
			: wall >= s->expires ? IT_FEED_END_EXPIRED
					     : IT_FEED_END_DELETED;
		s->checked = 0;
		s->need_read = 0;
		caches_clear(f, s);
		end_all(f, s, why);
	}
}

/* Hands the rows of one session, [base, base + n) of res, to its
 * subscribers, and keeps them in its ring. */
static void on_rows(it_feed *f, sess *s, PGresult *res, int base, int n)
{
	it_feed_event **evs = NULL;
	it_feed_sub *sub;
	int progress = 0;

	if (n > 0 && (evs = calloc((size_t)n, sizeof(*evs))) == NULL) {
		s->need_read = 1;
		return;
	}
	for (int i = 0; i < n; i++) {
		int64_t seq = strtoll(PQgetvalue(res, base + i, 1), NULL, 10);
		it_feed_event *ev = cached_get(f, s, seq);
		evs[i] = ev ? it_feed_event_ref(ev)
			    : it_feed_event_new(seq, PQgetvalue(res, base + i, 2), PQgetvalue(res, base + i, 3),
						(size_t)PQgetlength(res, base + i, 3));
		if (evs[i] == NULL) {
			n = i; /* out of memory: deliver what was made, read the rest again */
			s->need_read = 1;
			break;
		}
		if (ring_get(f, s, seq) == NULL && (s->rcount == 0 || seq > ring_last(f, s)))
			ring_push(f, s, evs[i]);
		if (seq > s->known_last)
			s->known_last = seq;
	}
	f->st.rows += (uint64_t)n;
	back_keep(f, s, evs, n);
	pin(s);
	FOREACH_SUB(s, sub)
	{
		int touched = 0, i = 0, gone = 0;

		if (sub->state != SUB_LIVE || sub->paused)
			continue;
		while (i < n && evs[i]->seq <= sub->cursor)
			i++;
		if (i < n && evs[i]->seq > sub->cursor + 1 && sub->cursor < s->read_after) {
			/* This read started after the cursor (the subscriber
			 * came since it was sent): the rows are not its next
			 * ones. A read from its cursor will serve it. */
			s->need_read = 1;
			continue;
		}
		for (; i < n && !sub->paused; i++) {
			int r;
			if (evs[i]->seq > sub->cursor + 1) {
				/* The read covered the cursor, so the events in
				 * between are gone from the log (pruned while the
				 * client lagged): say so rather than skip silently. */
				it_log_warn("feed: events %lld..%lld are gone from the log; subscriber told to resync",
					    (long long)sub->cursor + 1, (long long)evs[i]->seq - 1);
				if (send_resync(f, sub, "gap", evs[i]->seq - 1) < 0) {
					gone = 1;
					break;
				}
				sub->cursor = evs[i]->seq - 1;
			}
			r = offer(f, sub, evs[i]);
			if (r < 0) {
				gone = 1;
				break;
			}
			if (r == 1) {
				touched = 1;
				progress = 1;
			}
		}
		if (gone)
			continue;
		if (from_ring(f, s, sub, &touched) < 0)
			continue;
		if (touched)
			batch_end(sub);
	}
	unpin(f, s);
	for (int i = 0; i < n; i++)
		it_feed_event_unref(evs[i]);
	free(evs);
	/* Read again when the page was full, when a notification came while
	 * the read was in flight, or when a subscriber still lags and this
	 * read made progress (without progress, the next notification will
	 * do: no busy loop). */
	if (n == READ_LIMIT || s->stale || (progress && read_from(s) >= 0))
		s->need_read = 1;
}

static void on_read(it_feed *f, PGresult *res)
{
	int rows = PQntuples(res), row = 0;

	/* Rows come grouped by session, in the order the sessions were sent. */
	for (int i = 0; i < f->ninflight; i++) {
		sess *s = f->inflight[i];
		int first = row;
		while (row < rows && strcmp(PQgetvalue(res, row, 0), s->id) == 0)
			row++;
		on_rows(f, s, res, first, row - first);
	}
}

/* Compares two 32-byte hashes in time that does not depend on where they
 * differ. */
static int hash_equal(const unsigned char *a, const unsigned char *b)
{
	volatile unsigned char d = 0;

	for (int i = 0; i < 32; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

/* Decodes 64 hex digits into 32 bytes. Returns 0 or -1. */
static int unhex32(const char *s, unsigned char *out)
{
	if (strlen(s) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char c = s[2 * i + k];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

static void copy_col(PGresult *res, int row, int col, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

/* Answers the token checks of the query that just returned res. */
static void on_cred(it_feed *f, PGresult *res, int n)
{
	int rows = PQntuples(res);

	for (int r = 0; r < rows; r++) {
		long i = strtol(PQgetvalue(res, r, 0), NULL, 10) - 1;
		it_feed_credq *q;
		it_feed_principal p;
		unsigned char stored[32];

		if (i < 0 || i >= n || (q = f->cinflight[i]) == NULL)
			continue;
		f->cinflight[i] = NULL;
		q->slot = -1;
		q->feed = NULL;
		memset(&p, 0, sizeof(p));
		p.status = (int)strtol(PQgetvalue(res, r, 1), NULL, 10);
		if (p.status == 200) {
			copy_col(res, r, 2, p.session_id, sizeof(p.session_id));
			copy_col(res, r, 3, p.scope, sizeof(p.scope));
			copy_col(res, r, 4, p.device_id, sizeof(p.device_id));
			copy_col(res, r, 5, p.label, sizeof(p.label));
			copy_col(res, r, 6, p.source, sizeof(p.source));
			p.until = strtoll(PQgetvalue(res, r, 7), NULL, 10);
			/* The row was found by its hash; comparing again in
			 * constant time costs nothing and does not lean on the
			 * index alone. */
			if (PQgetisnull(res, r, 8) || unhex32(PQgetvalue(res, r, 8), stored) < 0 ||
			    !hash_equal(stored, q->hash) || !it_id_session_valid(p.session_id) ||
			    recently_revoked(f, p.device_id, strlen(p.device_id))) {
				memset(&p, 0, sizeof(p));
				p.status = 401;
			}
		} else if (p.status != 401 && p.status != 404) {
			p.status = 401;
		}
		q->done(q, &p);
	}
	/* A check without a row (not expected): the database did not say. */
	creds_done(f, n, 0);
}

/* ------------------------------------------------------------------ database events */

void it_feed_db_result(it_feed *f, PGresult *res)
{
	if (f->q == Q_NONE)
		return;
	if (f->q == Q_CRED) {
		int n = f->ninflight;
		/* The query is over before anyone is answered: a callback may
		 * ask for new checks, which wait for the next query. */
		f->q = Q_NONE;
		f->ninflight = 0;
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			it_log_warn("feed: token check failed: %s", PQresultErrorMessage(res));
			creds_done(f, n, 0);
		} else {
			on_cred(f, res, n);
		}
		return;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		/* Retried from the tick, so that a query that keeps failing
		 * does not spin. */
		it_log_warn("feed: %s failed: %s", f->q == Q_CHECK ? "session check" : "event read",
			    PQresultErrorMessage(res));
		inflight_done(f, 1, 0);
		return;
	}
	if (f->q == Q_CHECK)
		on_check(f, res);
	else
		on_read(f, res);
	inflight_done(f, 0, 1);
}

void it_feed_db_ready(it_feed *f)
{
	it_hnode *n, *next;
	size_t i;

	f->db_up = 1;
	f->st.reconnects++;
	/* Notifications may have been missed while the connection was down:
	 * check every watched session again (it may have ended) and read from
	 * every subscriber's cursor. */
	it_htab_foreach_safe (&f->sessions, i, n, next) {
		sess *s = it_container_of(n, sess, node);
		s->need_check = 1;
		s->need_read = 1;
		sess_queue(f, s);
	}
	if (f->degraded) {
		f->degraded = 0;
		announce(f, "connected");
	}
}

void it_feed_db_lost(it_feed *f)
{
	int was_up = f->db_up;
	it_hnode *n, *next;
	size_t i;

	f->db_up = 0;
	inflight_done(f, 1, 1);
	/* What was known may have changed unseen: nothing is trusted until
	 * checked again, and sessions nobody watches are forgotten. */
	it_htab_foreach_safe (&f->sessions, i, n, next) {
		sess *s = it_container_of(n, sess, node);
		s->checked = 0;
		s->first_kept = 0;  /* the next check says it again */
		sess_release(f, s); /* frees only s itself */
	}
	if (was_up) {
		f->degraded = 1;
		announce(f, "degraded");
	}
}

/* Ends every subscriber of s that came with the token of device. */
static void revoke_device(it_feed *f, sess *s, const char *device, size_t len)
{
	it_feed_sub *sub;

	pin(s);
	FOREACH_SUB(s, sub)
	{
		if (strlen(sub->device) == len && memcmp(sub->device, device, len) == 0)
			end_for_credential(f, sub, IT_FEED_END_REVOKED);
	}
	unpin(f, s);
}

/* Ends the subscribers of s whose until has passed, and notes the next
 * until to come. */
static void expire_tokens(it_feed *f, sess *s, time_t wall)
{
	it_feed_sub *sub;
	int64_t next = 0;

	pin(s);
	FOREACH_SUB(s, sub)
	{
		if (sub->until == 0)
			continue;
		if (wall >= sub->until)
			end_for_credential(f, sub, IT_FEED_END_TOKEN_EXPIRED);
		else if (next == 0 || sub->until < next)
			next = sub->until;
	}
	s->next_until = next;
	unpin(f, s);
}

/* Keeps an event its NOTIFY carried as the ring's newest, as a read would
 * have. Returns 1 when the ring holds it, 0 when it must be read instead
 * (out of memory, an odd type, too large for the ring). */
static int take_carried(it_feed *f, sess *s, int64_t seq, const it_feed_carried *ce)
{
	char type[128];
	it_feed_event *ev;
	int kept;

	if (ce->type_len >= sizeof(type))
		return 0;
	memcpy(type, ce->type, ce->type_len);
	type[ce->type_len] = '\0';
	ev = it_feed_event_new(seq, type, ce->json, ce->json_len);
	if (ev == NULL)
		return 0;
	ring_push(f, s, ev);
	kept = ring_get(f, s, seq) == ev;
	it_feed_event_unref(ev);
	if (kept)
		f->st.carried++;
	return kept;
}

void it_feed_db_notify(it_feed *f, const char *payload)
{
	char id[ID_MAX];
	int64_t seq;
	enum it_feed_note kind;
	it_feed_carried ce;
	sess *s;

	if (it_feed_parse_notify(payload, strlen(payload), id, sizeof(id), &seq, &kind, &ce) < 0)
		return;
	if (kind == IT_FEED_NOTE_REVOKED) {
		/* Remembered even for a session nobody here watches: a token
		 * check in flight may have been answered before the revocation
		 * committed. */
		unsigned k = f->revoked_next++ % REVOKED_SLOTS;
		memcpy(f->revoked[k].device, ce.device, ce.device_len);
		f->revoked[k].device[ce.device_len] = '\0';
		f->revoked[k].at_ms = f->now_ms;
		if ((s = sess_find(f, id)) != NULL)
			revoke_device(f, s, ce.device, ce.device_len);
		return;
	}
	if ((s = sess_find(f, id)) == NULL)
		return;
	if (kind == IT_FEED_NOTE_KEPT) {
		/* Pruning committed: a cursor below the new first kept id - 1
		 * now gets cursor-expired from the cached check, as it would
		 * from a query. Events the ring still holds below it are no
		 * longer offered to anyone admitted from here on. */
		if (seq > s->first_kept)
			s->first_kept = seq;
		return;
	}
	if (kind == IT_FEED_NOTE_EXPIRES) {
		/* The expiry changed (not something the application does, but
		 * the cache must not outlive it). An unchecked session learns
		 * it from its check; a watched one past its new expiry is
		 * checked again by the tick. */
		if (s->checked)
			s->expires = seq;
		return;
	}
	if (kind == IT_FEED_NOTE_ENDED) {
		s->checked = 0;
		s->need_read = 0;
		caches_clear(f, s);
		end_all(f, s, IT_FEED_END_DELETED); /* frees s when nothing else holds it */
		return;
	}
	if (seq <= s->known_last)
		return;
	s->known_last = seq;
	if (ce.json != NULL && take_carried(f, s, seq, &ce)) {
		/* The event is in the ring: a subscriber whose cursor is
		 * right before it takes it from there at the next
		 * it_feed_run, with no read; one further behind asks for a
		 * read then. */
		for (it_list *pos = s->subs.next; pos != &s->subs; pos = pos->next) {
			it_feed_sub *sub = it_container_of(pos, it_feed_sub, link);
			if (sub->state == SUB_LIVE && !sub->paused && sub->cursor < s->known_last)
				mark_ready(f, sub);
		}
		return;
	}
	if (s->busy == Q_READ)
		s->stale = 1;
	if (read_from(s) >= 0) {
		s->need_read = 1;
		sess_queue(f, s);
	}
}

/* ------------------------------------------------------------------ the pgl adapter */

static int pgl_idle(void *impl)
{
	return it_pgl_idle(impl);
}

static int pgl_send(void *impl, const char *sql, int nparams, const char *const *params)
{
	return it_pgl_send(impl, sql, nparams, params);
}

static void pgl_handle(void *impl, unsigned events)
{
	it_pgl_handle(impl, events);
}

static void pgl_tick(void *impl, double now)
{
	it_pgl_tick(impl, now);
}

static void pgl_destroy(void *impl)
{
	it_pgl_free(impl);
}

static const it_feed_db_ops pgl_ops = {pgl_idle, pgl_send, pgl_handle, pgl_tick, pgl_destroy};

static void hook_ready(void *arg)
{
	it_feed_db_ready(arg);
}

static void hook_lost(void *arg)
{
	it_feed_db_lost(arg);
}

static void hook_notify(void *arg, const char *payload)
{
	it_feed_db_notify(arg, payload);
}

static void hook_result(void *arg, PGresult *res)
{
	it_feed_db_result(arg, res);
}

/* ------------------------------------------------------------------ public */

static it_feed *feed_alloc(const it_feed_opts *o)
{
	it_feed *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->o = *o;
	if (f->o.ring_events == 0)
		f->o.ring_events = DEF_RING_EVENTS;
	if (f->o.ring_bytes == 0)
		f->o.ring_bytes = DEF_RING_BYTES;
	if (f->o.linger_ms == 0)
		f->o.linger_ms = DEF_LINGER_MS;
	it_list_init(&f->work);
	it_list_init(&f->ready);
	it_list_init(&f->creds);
	it_htab_init(&f->sessions);
	return f;
}

static time_t wall_now(void)
{
	return time(NULL);
}

int it_feed_new_db(it_feed **out, const it_feed_opts *o, const it_feed_db_ops *ops, void *impl)
{
	it_feed *f = feed_alloc(o);

	if (f == NULL)
		return -ENOMEM;
	if (f->o.wall == NULL)
		f->o.wall = wall_now;
	f->dbops = ops;
	f->db = impl;
	*out = f;
	return 0;
}

int it_feed_new(it_feed **out, const it_feed_opts *o)
{
	static const it_pgl_hooks hooks = {hook_ready, hook_lost, hook_notify, hook_result};
	it_feed *f = feed_alloc(o);

	if (f == NULL)
		return -ENOMEM;
	if (f->o.wall == NULL)
		f->o.wall = wall_now;
	it_pgl_init(&f->pgl, o->epfd, o->pg_tag, o->conninfo, IT_EVENT_CHANNEL, &hooks, f);
	if (f->pgl.channel == NULL || f->pgl.conninfo == NULL) {
		it_pgl_free(&f->pgl);
		free(f);
		return -ENOMEM;
	}
	it_pgl_set_app(&f->pgl, o->app_name ? o->app_name : "imagetools");
	f->dbops = &pgl_ops;
	f->db = &f->pgl;
	*out = f;
	return 0;
}

void it_feed_free(it_feed *f)
{
	it_hnode *n, *next;
	size_t b;

	if (f == NULL)
		return;
	if (f->dbops->destroy)
		f->dbops->destroy(f->db);
	while (!it_list_empty(&f->creds)) {
		it_feed_credq *q = it_container_of(f->creds.next, it_feed_credq, link);
		it_list_unlink(&q->link);
		q->feed = NULL;
	}
	for (int i = 0; f->q == Q_CRED && i < f->ninflight; i++)
		if (f->cinflight[i]) {
			f->cinflight[i]->feed = NULL;
			f->cinflight[i]->slot = -1;
		}
	it_htab_foreach_safe (&f->sessions, b, n, next) {
		sess *s = it_container_of(n, sess, node);
		while (!it_list_empty(&s->subs)) {
			it_feed_sub *sub = it_container_of(s->subs.next, it_feed_sub, link);
			it_list_unlink(&sub->link);
			it_list_unlink(&sub->work);
			sub->sess = NULL;
		}
		caches_clear(f, s);
		free(s->ring);
		free(s->back);
		free(s);
	}
	it_htab_free(&f->sessions);
	free(f);
}

void it_feed_handle_pg(it_feed *f, unsigned events)
{
	if (f->dbops->handle)
		f->dbops->handle(f->db, events);
	it_feed_run(f);
}

/* The tick's look at one session: frees it when nobody has wanted it for
 * long enough, ends what has expired, and queues work a failed query left
 * undone. */
static void tick_sess(it_feed *f, sess *s, int64_t now_ms, time_t wall)
{
	if (s->nsubs == 0) {
		if (s->pins == 0 && s->busy == Q_NONE &&
		    (!s->checked || !f->db_up || now_ms - s->idle_since >= (int64_t)f->o.linger_ms))
			sess_free(f, s);
		else if (s->pins == 0)
			back_clear(s); /* lingering: the ring is enough */
		return;
	}
	if (s->next_until && wall >= s->next_until)
		expire_tokens(f, s, wall);
	if (s->nsubs == 0)
		return;
	if (s->checked && wall >= s->expires) {
		s->checked = 0;
		if (f->db_up) {
			/* Ask the database rather than trust the
			 * clock alone. */
			s->need_check = 1;
		} else {
			caches_clear(f, s);
			end_all(f, s, IT_FEED_END_EXPIRED);
			return;
		}
	}
	/* The rows of the last read are kept while a
	 * subscriber may still want them. */
	if (s->bcount && !back_wanted(s))
		back_clear(s);
	/* Work a failed query left undone. */
	sess_queue(f, s);
}

void it_feed_tick(it_feed *f, int64_t now_ms)
{
	time_t wall = f->o.wall();
	it_hnode *n, *next;
	size_t i;

	f->now_ms = now_ms;
	if (f->dbops->tick)
		f->dbops->tick(f->db, (double)now_ms / 1000.0);
	f->walking++;
	it_htab_foreach_safe (&f->sessions, i, n, next) {
		tick_sess(f, it_container_of(n, sess, node), now_ms, wall);
	}
	f->walking--;
	it_feed_run(f);
}

void it_feed_run(it_feed *f)
{
	while (!it_list_empty(&f->ready)) {
		it_feed_sub *sub = it_container_of(f->ready.next, it_feed_sub, work);
		sess *s = sub->sess;
		int touched = 0;

		it_list_unlink(&sub->work);
		if (s == NULL)
			continue;
		pin(s);
		if (sub->state == SUB_PENDING) {
			if (s->checked && f->db_up) {
				admit(f, s, sub);
			} else {
				s->need_check = 1;
				sess_queue(f, s);
			}
		} else if (!sub->paused && from_ring(f, s, sub, &touched) == 0 && touched) {
			batch_end(sub);
		}
		unpin(f, s);
	}
	pump(f);
}

int it_feed_subscribe(it_feed *f, it_feed_sub *sub, const char *session, int64_t cursor, unsigned flags)
{
	sess *s;

	if (session == NULL || strlen(session) >= ID_MAX || !it_id_session_valid(session))
		return -EINVAL;
	s = sess_get(f, session);
	if (s == NULL)
		return -ENOMEM;
	sub->sess = s;
	sub->cursor = cursor < 0 ? 0 : cursor;
	sub->gen = f->gen;
	sub->state = SUB_PENDING;
	sub->paused = 0;
	sub->flags = (uint8_t)flags;
	sub->device[sizeof(sub->device) - 1] = '\0';
	if (sub->until && (s->next_until == 0 || sub->until < s->next_until))
		s->next_until = sub->until;
	it_list_init(&sub->work);
	it_list_push(&s->subs, &sub->link);
	s->nsubs++;
	f->st.subs++;
	mark_ready(f, sub);
	return 0;
}

void it_feed_unsubscribe(it_feed_sub *sub)
{
	sess *s = sub->sess;
	it_feed *f;

	if (s == NULL)
		return;
	f = s->feed;
	if (s->iter_next == &sub->link)
		s->iter_next = sub->link.next;
	it_list_unlink(&sub->link);
	it_list_unlink(&sub->work);
	sub->sess = NULL;
	s->nsubs--;
	f->st.subs--;
	if (s->nsubs == 0) {
		s->idle_since = f->now_ms;
		sess_release(f, s);
	}
}

void it_feed_resume(it_feed_sub *sub)
{
	if (sub->sess == NULL || !sub->paused)
		return;
	sub->paused = 0;
	mark_ready(sub->sess->feed, sub);
}

unsigned it_feed_sub_count(const it_feed_sub *sub)
{
	return sub->sess ? sub->sess->nsubs : 0;
}

const char *it_feed_sub_session(const it_feed_sub *sub)
{
	return sub->sess ? sub->sess->id : NULL;
}

int it_feed_lookup(it_feed *f, const char *session, it_feed_info *out)
{
	sess *s = sess_find(f, session);

	/* The expiry is in whole seconds rounded up: within its last second
	 * the session may already have expired, and the database decides. A
	 * check asked for by a subscriber (a cursor ahead, IT_FEED_FRESH)
	 * does not make the cached answer less true: refusing then would send
	 * every other poll of the session to the database meanwhile. */
	if (s == NULL || !f->db_up || !s->checked || f->o.wall() >= s->expires - 1)
		return -ENOENT;
	s->idle_since = f->now_ms;
	out->last_seq = s->known_last;
	out->first_kept = s->first_kept;
	out->expires = s->expires;
	out->held_from = s->rcount ? s->ring[s->rhead]->seq : s->known_last + 1;
	return 0;
}

void it_feed_forget(it_feed *f, const char *session)
{
	sess *s = sess_find(f, session);

	if (s == NULL || !s->checked)
		return;
	s->checked = 0;
	if (s->nsubs) {
		s->need_check = 1;
		sess_queue(f, s);
	}
	sess_release(f, s);
}

int it_feed_cred_check(it_feed *f, it_feed_credq *q, const unsigned char hash[32])
{
	if (q->feed != NULL)
		return -EBUSY;
	q->feed = f;
	q->slot = -1;
	memcpy(q->hash, hash, sizeof(q->hash));
	it_list_init(&q->link);
	it_list_push(&f->creds, &q->link);
	return 0;
}

void it_feed_cred_cancel(it_feed_credq *q)
{
	it_feed *f = q->feed;

	if (f == NULL)
		return;
	if (q->slot >= 0)
		f->cinflight[q->slot] = NULL;
	else
		it_list_unlink(&q->link);
	q->slot = -1;
	q->feed = NULL;
}

void it_feed_stats_get(const it_feed *f, it_feed_stats *out)
{
	*out = f->st;
	out->sessions = f->sessions.count;
	out->db_up = f->db_up;
}

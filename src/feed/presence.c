/* presence.c: the presence entries of one event loop's connections, kept in the database (docs/presence.md). */
#include "config.h"

#include "feed/presence.h"

#include "common/buf.h"
#include "common/id.h"
#include "common/list.h"
#include "common/log.h"
#include "db/metrics.h"
#include "db/pgl.h"
#include "db/presence.h"
#include "feed/feed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Keys in one heartbeat statement; more entries take several. */
#define BEAT_KEYS 1000
/* Sessions one sweep statement goes through. */
#define SWEEP_SESSIONS "200"
/* A channel nobody notifies: it_pgl LISTENs, this connection only queries. */
#define CHANNEL "imagetools_presence"

/* ------------------------------------------------------------------ entries */

struct it_presence_entry {
	struct it_presence_entry *hnext; /* hash chain */
	it_list link;			 /* in p->work (a statement is due), p->held, or self-linked */
	char session[72];
	it_ident id;			/* client_id is the key (the device id when the client gave none) */
	const char *transport;		/* a literal */
	const char *db_transport;	/* what the database was told, NULL when not joined */
	const char *inflight_transport; /* what the join in flight tells it */
	unsigned conns;			/* connections here that hold it */
	int64_t hold_until;		/* ms: kept after the last connection ended, until then */
	int64_t retry_at;		/* ms: a join that failed is tried again then */
	uint8_t in_db;			/* joined and not known lost */
	uint8_t refused;		/* the join was refused (session gone, device revoked) */
	uint8_t busy;			/* its join is in flight */
	uint8_t queued;			/* in p->work */
};

enum inflight { IF_NONE, IF_JOIN, IF_LEAVE, IF_BEAT, IF_SWEEP };

struct it_presence {
	it_pgl pg;
	const struct it_feed_db_ops *ops; /* a stand-in for pg (tests), or NULL */
	void *impl;
	char holder[96];
	int64_t ttl;
	int64_t beat_ms;   /* heartbeat and sweep period */
	int64_t now;	   /* ms, the last tick */
	int64_t next_beat; /* a heartbeat round starts then */
	int64_t next_sweep;
	unsigned beat_bucket; /* where the running heartbeat round goes on; nbuckets: none running */
	enum inflight inflight;
	it_presence_entry *inflight_e;
	it_presence_entry **buckets;
	unsigned nbuckets, nentries;
	unsigned nheld; /* entries with in_db set: what imagetools_presence_entries counts */
	it_list work, held;
	it_presence_stats stats;
};

static uint32_t key_hash(const char *session, const char *client)
{
	uint32_t h = 2166136261u;

	for (const char *s = session; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ 0xFFu) * 16777619u;
	for (const char *s = client; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

static it_presence_entry **slot_of(it_presence *p, const char *session, const char *client)
{
	it_presence_entry **e = &p->buckets[key_hash(session, client) & (p->nbuckets - 1)];

	while (*e && (strcmp((*e)->session, session) != 0 || strcmp((*e)->id.client_id, client) != 0))
		e = &(*e)->hnext;
	return e;
}

/* Doubles the table when it holds twice as many entries as buckets. */
static void maybe_grow(it_presence *p)
{
	unsigned n = p->nbuckets * 2;
	it_presence_entry **b;

	if (p->nentries < p->nbuckets * 2 || (b = calloc(n, sizeof(*b))) == NULL)
		return;
	for (unsigned i = 0; i < p->nbuckets; i++) {
		it_presence_entry *e = p->buckets[i], *next;
		for (; e; e = next) {
			unsigned k = key_hash(e->session, e->id.client_id) & (n - 1);
			next = e->hnext;
			e->hnext = b[k];
			b[k] = e;
		}
	}
	free(p->buckets);
	p->buckets = b;
	p->nbuckets = n;
	p->beat_bucket = n; /* a round in progress ends; the next starts on time */
}

/* Marks whether the database holds e for this process, keeping the
 * entries gauge in step: it moves by the change, so several instances in
 * one process (tests) add up. */
static void set_in_db(it_presence *p, it_presence_entry *e, int in_db)
{
	if (!e->in_db == !in_db)
		return;
	e->in_db = in_db ? 1 : 0;
	if (in_db)
		p->nheld++;
	else
		p->nheld--;
	it_metrics_gauge_add(IT_PRESENCE_M_ENTRIES, NULL, in_db ? 1 : -1);
}

static void entry_free(it_presence *p, it_presence_entry *e)
{
	it_presence_entry **s = slot_of(p, e->session, e->id.client_id);

	if (*s == e)
		*s = e->hnext;
	it_list_unlink(&e->link);
	set_in_db(p, e, 0);
	p->nentries--;
	free(e);
}

static void queue(it_presence *p, it_presence_entry *e)
{
	it_list_unlink(&e->link);
	it_list_push(&p->work, &e->link);
	e->queued = 1;
}

/* ------------------------------------------------------------------ statements */

/* The database connection: pg, or the stand-in of a test. */
static int db_idle(it_presence *p)
{
	return p->ops ? p->ops->idle(p->impl) : it_pgl_idle(&p->pg);
}

static int db_send(it_presence *p, const char *sql, int nparams, const char *const *params)
{
	return p->ops ? p->ops->send(p->impl, sql, nparams, params) : it_pgl_send(&p->pg, sql, nparams, params);
}

static int live(const it_presence *p, const it_presence_entry *e)
{
	return e->conns > 0 || p->now < e->hold_until;
}

/* Whether the database holds e as its connections here have it. */
static int joined(const it_presence_entry *e)
{
	return e->in_db && e->db_transport && strcmp(e->db_transport, e->transport) == 0;
}

/* Sends what e needs, if anything. Returns 1 when a statement went out. */
static int service(it_presence *p, it_presence_entry *e)
{
	char ttl[24], grace[24];

	e->queued = 0;
	it_list_unlink(&e->link);
	if (e->busy)
		return 0; /* its join's result queues it again */
	if (live(p, e)) {
		if (e->refused || joined(e) || p->now < e->retry_at) {
			/* Nothing to send now; the tick looks at it again when its
			 * hold ends or its retry is due. */
			if (e->conns == 0 || (!joined(e) && !e->refused))
				it_list_push(&p->held, &e->link);
			return 0;
		}
		snprintf(ttl, sizeof(ttl), "%lld", (long long)p->ttl);
		const char *params[8] = {e->session,
					 e->id.client_id,
					 e->id.device_id[0] ? e->id.device_id : NULL,
					 e->id.label[0] ? e->id.label : NULL,
					 e->id.source[0] ? e->id.source : NULL,
					 e->transport,
					 p->holder,
					 ttl};
		if (db_send(p, "SELECT it_presence_join($1, $2, $3, $4, $5, $6, NULL, $7, $8::integer)", 8, params) <
		    0) {
			queue(p, e);
			return 1;
		}
		p->inflight = IF_JOIN;
		p->inflight_e = e;
		e->inflight_transport = e->transport;
		e->busy = 1;
		p->stats.joins++;
		return 1;
	}
	if (!e->in_db) {
		entry_free(p, e);
		return 0;
	}
	/* The last connection here ended: the entry is kept for the grace,
	 * without a holder, then swept as "closed" unless a connection (here
	 * or elsewhere) takes it again. The key is copied into the
	 * statement, so the entry goes now. */
	snprintf(grace, sizeof(grace), "%d", IT_PRESENCE_GRACE);
	{
		const char *params[4] = {e->session, e->id.client_id, p->holder, grace};
		if (db_send(p, "SELECT it_presence_leave($1, $2, $3, $4::integer)", 4, params) < 0) {
			queue(p, e);
			return 1;
		}
	}
	p->inflight = IF_LEAVE;
	p->stats.leaves++;
	entry_free(p, e);
	/* Its presence.left is due when the grace ends. */
	if (p->next_sweep > p->now + IT_PRESENCE_GRACE * 1000 + 250)
		p->next_sweep = p->now + IT_PRESENCE_GRACE * 1000 + 250;
	return 1;
}

/* Sends the next part of a heartbeat round: up to BEAT_KEYS keys of
 * entries joined here. Returns 1 when a statement went out. */
static int beat(it_presence *p)
{
	it_buf s, c;
	char ttl[24];
	unsigned n = 0;
	int rc = 0;

	/* A bucket is taken whole: room for a long chain past BEAT_KEYS. */
	it_buf_init(&s, (size_t)(BEAT_KEYS + 256) * 70);
	it_buf_init(&c, (size_t)(BEAT_KEYS + 256) * 70);
	it_buf_puts(&s, "{");
	it_buf_puts(&c, "{");
	/* Session and client ids are of [A-Za-z0-9_-]: nothing in an array
	 * literal needs quoting. */
	for (; p->beat_bucket < p->nbuckets && n < BEAT_KEYS; p->beat_bucket++) {
		for (it_presence_entry *e = p->buckets[p->beat_bucket]; e; e = e->hnext) {
			if (!e->in_db || !live(p, e))
				continue;
			if (it_buf_printf(&s, "%s%s", n ? "," : "", e->session) < 0 ||
			    it_buf_printf(&c, "%s%s", n ? "," : "", e->id.client_id) < 0)
				goto out;
			n++;
		}
	}
	if (n == 0)
		goto out;
	if (it_buf_puts(&s, "}") < 0 || it_buf_puts(&c, "}") < 0)
		goto out;
	snprintf(ttl, sizeof(ttl), "%lld", (long long)p->ttl);
	{
		const char *params[4] = {p->holder, ttl, s.data, c.data};
		if (db_send(p,
			    "SELECT session_id, client_id"
			    " FROM it_presence_beat($1, $2::integer, $3::text[], $4::text[])",
			    4, params) < 0)
			goto out;
	}
	p->inflight = IF_BEAT;
	p->stats.beats++;
	rc = 1;
out:
	it_buf_free(&s);
	it_buf_free(&c);
	return rc;
}

/* Sends the next statement, if one is due and the connection can take it. */
static void pump(it_presence *p)
{
	while (p->inflight == IF_NONE && db_idle(p)) {
		if (p->now >= p->next_beat && p->beat_bucket >= p->nbuckets) {
			p->beat_bucket = 0;
			p->next_beat = p->now + p->beat_ms;
		}
		if (p->beat_bucket < p->nbuckets) {
			if (beat(p))
				return;
			continue;
		}
		if (!it_list_empty(&p->work)) {
			service(p, it_container_of(p->work.next, it_presence_entry, link));
			continue;
		}
		if (p->now >= p->next_sweep) {
			p->next_sweep = p->now + p->beat_ms;
			if (db_send(p, "SELECT it_presence_sweep_reasons(" SWEEP_SESSIONS ")", 0, NULL) == 0) {
				p->inflight = IF_SWEEP;
				p->stats.sweeps++;
			}
		}
		return;
	}
}

/* ------------------------------------------------------------------ the connection's hooks */

static void on_ready(void *arg)
{
	it_presence *p = arg;

	/* Whatever happened while the database was out of reach (entries
	 * swept, the database restored), each live entry is joined again:
	 * one that is still there costs a statement and no event. */
	for (unsigned i = 0; i < p->nbuckets; i++)
		for (it_presence_entry *e = p->buckets[i]; e; e = e->hnext) {
			set_in_db(p, e, 0);
			e->db_transport = NULL;
			queue(p, e);
		}
	pump(p);
}

static void on_lost(void *arg)
{
	it_presence *p = arg;

	if (p->inflight == IF_JOIN && p->inflight_e) {
		p->inflight_e->busy = 0;
		queue(p, p->inflight_e);
	}
	/* A heartbeat that got no answer renewed nothing that this process
	 * knows of: the entries may expire if it stays so. */
	if (p->inflight == IF_BEAT) {
		p->stats.beat_failures++;
		it_metrics_inc(IT_PRESENCE_M_RENEW_FAILURES, NULL, 1);
	}
	p->inflight = IF_NONE;
	p->inflight_e = NULL;
	p->beat_bucket = p->nbuckets;
}

static void on_notify(void *arg, const char *payload)
{
	(void)arg;
	(void)payload;
}

static void on_result(void *arg, PGresult *res)
{
	it_presence *p = arg;
	int ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		it_log_warn("presence statement failed: %s", PQresultErrorMessage(res));
	switch (p->inflight) {
	case IF_JOIN: {
		it_presence_entry *e = p->inflight_e;
		e->busy = 0;
		if (ok && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
			set_in_db(p, e, 1);
			e->db_transport = e->inflight_transport;
			/* "joined" is the one answer that appended presence.joined
			 * ("updated" and "kept" found the entry there). */
			if (strcmp(PQgetvalue(res, 0, 0), "joined") == 0) {
				p->stats.joined++;
				it_metrics_inc(IT_PRESENCE_M_JOINS, NULL, 1);
			}
		} else if (ok) {
			/* The session is gone or the device revoked: its
			 * connections end on their own; nothing to hold. */
			e->refused = 1;
		} else {
			e->retry_at = p->now + p->beat_ms;
		}
		/* Whatever changed meanwhile (the client left, or came
		 * back over another transport) is looked at now. */
		queue(p, e);
	} break;
	case IF_BEAT:
		if (!ok) {
			p->stats.beat_failures++;
			it_metrics_inc(IT_PRESENCE_M_RENEW_FAILURES, NULL, 1);
		}
		for (int i = 0; ok && i < PQntuples(res); i++) {
			it_presence_entry *e = *slot_of(p, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
			if (e) {
				set_in_db(p, e, 0);
				e->db_transport = NULL;
				queue(p, e);
			}
		}
		break;
	case IF_SWEEP:
		if (ok && PQntuples(res) == 1) {
			/* The counts by reason it appended presence.left with. */
			int64_t n = it_presence_db_count_swept(PQgetvalue(res, 0, 0));
			if (n > 0)
				p->stats.swept += (uint64_t)n;
		}
		break;
	default: break;
	}
	p->inflight = IF_NONE;
	p->inflight_e = NULL;
}

/* ------------------------------------------------------------------ public */

/* Makes everything but the connection. */
static it_presence *make(const it_presence_opts *o)
{
	it_presence *p = calloc(1, sizeof(*p));
	unsigned char rnd[4] = {0};

	if (p == NULL || (p->buckets = calloc(64, sizeof(*p->buckets))) == NULL) {
		free(p);
		return NULL;
	}
	p->nbuckets = 64;
	p->beat_bucket = p->nbuckets;
	p->ttl = o->ttl < 3 ? 3 : o->ttl;
	p->beat_ms = p->ttl * 1000 / 3;
	it_list_init(&p->work);
	it_list_init(&p->held);
	it_id_random(rnd, sizeof(rnd));
	snprintf(p->holder, sizeof(p->holder), "%s/%ld/%02x%02x%02x%02x", o->app_name ? o->app_name : "imagetools",
		 (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
	return p;
}

int it_presence_new(it_presence **out, const it_presence_opts *o)
{
	it_presence *p = make(o);
	it_pgl_hooks hooks = {on_ready, on_lost, on_notify, on_result};

	if (p == NULL)
		return -ENOMEM;
	it_pgl_init(&p->pg, o->epfd, o->pg_tag, o->conninfo, CHANNEL, &hooks, p);
	it_pgl_set_app(&p->pg, o->app_name ? o->app_name : "imagetools");
	*out = p;
	return 0;
}

int it_presence_new_db(it_presence **out, const it_presence_opts *o, const struct it_feed_db_ops *ops, void *impl,
		       struct it_pgl_hooks *hooks)
{
	it_presence *p = make(o);

	if (p == NULL)
		return -ENOMEM;
	p->ops = ops;
	p->impl = impl;
	*hooks = (it_pgl_hooks){on_ready, on_lost, on_notify, on_result};
	*out = p;
	return 0;
}

void it_presence_free(it_presence *p)
{
	if (p == NULL)
		return;
	if (p->pg.conn && (p->pg.state == IT_PGL_READY || p->pg.state == IT_PGL_BUSY)) {
		/* A process that stops lets its entries go now rather than
		 * leaving them to expire: their clients get the grace to
		 * reconnect elsewhere, and otherwise leave as "closed". */
		char grace[24];
		const char *params[2] = {p->holder, grace};
		PGresult *res;

		snprintf(grace, sizeof(grace), "%d", IT_PRESENCE_GRACE);
		PQsetnonblocking(p->pg.conn, 0);
		while ((res = PQgetResult(p->pg.conn)) != NULL)
			PQclear(res);
		res = PQexecParams(p->pg.conn,
				   "UPDATE presence SET holder = NULL,"
				   " expires_at = least(expires_at, now() + make_interval(secs => $2::integer))"
				   " WHERE holder = $1",
				   2, NULL, params, NULL, NULL, 0);
		PQclear(res);
	}
	it_pgl_free(&p->pg);
	if (p->ops && p->ops->destroy)
		p->ops->destroy(p->impl);
	it_metrics_gauge_add(IT_PRESENCE_M_ENTRIES, NULL, -(int64_t)p->nheld);
	for (unsigned i = 0; i < p->nbuckets; i++) {
		it_presence_entry *e = p->buckets[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			free(e);
		}
	}
	free(p->buckets);
	free(p);
}

void it_presence_handle_pg(it_presence *p, unsigned events)
{
	if (p->ops == NULL)
		it_pgl_handle(&p->pg, events);
	else if (p->ops->handle)
		p->ops->handle(p->impl, events);
	pump(p);
}

void it_presence_tick(it_presence *p, int64_t now_ms)
{
	it_list *pos, *tmp;

	if (p->next_beat == 0) {
		/* Spread the rounds of processes started together. */
		p->next_beat = now_ms + p->beat_ms;
		p->next_sweep = now_ms + p->beat_ms / 2 + rand() % (p->beat_ms / 2 + 1);
	}
	p->now = now_ms;
	if (p->ops == NULL)
		it_pgl_tick(&p->pg, (double)now_ms / 1000.0);
	else if (p->ops->tick)
		p->ops->tick(p->impl, (double)now_ms / 1000.0);
	it_list_foreach_safe (pos, tmp, &p->held) {
		it_presence_entry *e = it_container_of(pos, it_presence_entry, link);
		if (!e->busy && (!live(p, e) || (!joined(e) && !e->refused && p->now >= e->retry_at)))
			queue(p, e);
	}
	pump(p);
}

/* The order in which a client's transports are shown (sql/010). */
static int rank(const char *transport)
{
	static const char *const order[] = {"http", "longpoll", "sse", "websocket"};

	for (int i = 0; i < 4; i++)
		if (strcmp(transport, order[i]) == 0)
			return i;
	return -1;
}

/* Whether s is a non-empty run of [A-Za-z0-9_-] shorter than max: what a
 * session id, a client id and a device id are made of, so that nothing in a
 * heartbeat's array literal needs quoting. */
static int key_ok(const char *s, size_t max)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");

	return n > 0 && s[n] == '\0' && n < max;
}

it_presence_entry *it_presence_join(it_presence *p, const it_ident *ident, const char *transport)
{
	it_presence_entry **s, *e;
	it_ident id;

	if (p == NULL || ident == NULL || !it_ident_announces(ident))
		return NULL;
	id = *ident;
	if (id.client_id[0] == '\0')
		snprintf(id.client_id, sizeof(id.client_id), "%s", id.device_id);
	if (!key_ok(id.session_id, sizeof(e->session)) || !key_ok(id.client_id, sizeof(id.client_id)))
		return NULL;
	s = slot_of(p, id.session_id, id.client_id);
	e = *s;
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return NULL;
		snprintf(e->session, sizeof(e->session), "%s", id.session_id);
		e->id = id;
		it_list_init(&e->link);
		*s = e;
		p->nentries++;
		maybe_grow(p);
	} else if (strcmp(e->id.label, id.label) != 0 || strcmp(e->id.source, id.source) != 0 ||
		   strcmp(e->id.device_id, id.device_id) != 0) {
		/* The same client says something new about itself. */
		e->id = id;
		e->db_transport = NULL;
	}
	/* Several connections of one client show as the best of them: a
	 * WebSocket beside a long-poll is a WebSocket client (the database
	 * keeps the better one too, across processes). */
	if (e->conns == 0 || rank(transport) > rank(e->transport))
		e->transport = transport;
	e->conns++;
	e->hold_until = 0;
	if (!e->busy && !joined(e) && !e->refused)
		queue(p, e);
	pump(p);
	return e;
}

void it_presence_leave(it_presence *p, it_presence_entry *e, int64_t hold_ms)
{
	if (p == NULL || e == NULL || e->conns == 0)
		return;
	e->conns--;
	if (hold_ms > 0 && p->now + hold_ms > e->hold_until)
		e->hold_until = p->now + hold_ms;
	if (e->conns > 0 || e->busy)
		return;
	if (live(p, e)) {
		it_list_unlink(&e->link);
		e->queued = 0;
		it_list_push(&p->held, &e->link);
		return;
	}
	queue(p, e);
	pump(p);
}

const char *it_presence_holder(const it_presence *p)
{
	return p->holder;
}

void it_presence_stats_get(const it_presence *p, it_presence_stats *out)
{
	*out = p->stats;
	out->entries = p->nentries;
	out->held = p->nheld;
}

/* hub.c: the per-process event hub of imagetools.fcgi (docs/hub.md). */
#include "config.h"

#include "hub/hub.h"

#include "common/list.h"
#include "common/log.h"
#include "db/db.h"
#include "db/eventlog.h"
#include "hub/fcgi_record.h"
#include "feed/sse.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Events read per session per query; a session further behind is read in
 * several passes. */
#define FETCH_LIMIT 500
/* Sessions read together in one query (one round trip however many are due). */
#define FETCH_SESSIONS 128
/* How often timers (keepalives, long-poll deadlines, expiry) are looked at. */
#define TICK_MS 250
/* An ended stream gets this long to drain its last bytes. */
#define LINGER_MS 10000
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000

enum tag_kind { TAG_STREAM, TAG_PG, TAG_CMD };

struct tag {
	enum tag_kind kind;
};

struct hsess {
	struct hsess *hnext;	/* hash chain */
	it_list streams;	/* struct hstream.sess_link */
	it_list queue_link;	/* in hub->fetch_queue while queued */
	int nstreams;
	uint8_t queued, inflight, again;
	uint8_t pinned;		/* being iterated: not to be freed yet */
	int64_t max_seen;	/* highest seq read from the log so far */
	int64_t fetch_after;	/* the cursor the read in flight started from */
	char id[72];
};

struct hstream {
	struct tag tag; /* first: epoll data points here */
	it_list sess_link, all_link;
	struct hsess *sess;
	char *pending_sid;	/* until the hub thread adopts the stream */
	int fd;
	uint16_t rid;
	uint8_t kind;
	uint8_t ending;		/* end records queued; close once written */
	uint8_t want_out;	/* EPOLLOUT registered */
	uint8_t behind;		/* skipped events because its buffer was half full */
	uint8_t refused;	/* over a limit: ended at once with a retry hint */
	int64_t cursor;
	int64_t expires_unix;
	int64_t deadline_ms;	/* long-poll answer time, or linger limit once ending */
	int64_t next_keepalive_ms;
	int64_t last_progress_ms;
	it_fcgi_scan scan;
	it_buf out;		/* FastCGI records not yet written */
	it_buf lp;		/* long-poll: events gathered for the answer, comma-separated */
};

enum pg_state { PG_DOWN, PG_CONNECTING, PG_LISTENING, PG_READY };

struct it_hub {
	const it_config *cfg;
	pthread_t thread;
	int epfd, evfd;
	struct tag cmd_tag, pg_tag;

	pthread_mutex_t lock; /* guards incoming and stats */
	it_list incoming;     /* streams parked by request threads, not yet adopted */
	int64_t nstreams;     /* parked or adopted; bounded by cfg->max_streams */
	int stopping;
	it_hub_stats stats;

	struct hsess **buckets;
	size_t nbuckets, nsess;
	it_list all;
	it_list fetch_queue;

	PGconn *pg;
	enum pg_state pg_state;
	int pg_fd;		/* registered with epoll, or -1 */
	uint32_t pg_events;
	int pg_busy;
	int announced_down;
	int64_t pg_retry_ms, backoff_ms;
	int64_t pg_deadline_ms;	/* a connection attempt gives up then */
	struct hsess *inflight[FETCH_SESSIONS];
	int ninflight;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void stat_add(it_hub *hub, int64_t *field, int64_t d)
{
	__atomic_add_fetch(field, d, __ATOMIC_RELAXED);
	(void)hub;
}

/* ------------------------------------------------------------------ sessions */

static size_t hash_id(const char *s)
{
	size_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static int grow_buckets(it_hub *hub)
{
	size_t n = hub->nbuckets ? hub->nbuckets * 2 : 1024;
	struct hsess **b = calloc(n, sizeof(*b));

	if (b == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < hub->nbuckets; i++) {
		struct hsess *s = hub->buckets[i], *next;
		for (; s; s = next) {
			next = s->hnext;
			size_t k = hash_id(s->id) & (n - 1);
			s->hnext = b[k];
			b[k] = s;
		}
	}
	free(hub->buckets);
	hub->buckets = b;
	hub->nbuckets = n;
	return 0;
}

static struct hsess *sess_find(it_hub *hub, const char *id)
{
	struct hsess *s;

	if (hub->nbuckets == 0)
		return NULL;
	for (s = hub->buckets[hash_id(id) & (hub->nbuckets - 1)]; s; s = s->hnext)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static struct hsess *sess_get(it_hub *hub, const char *id)
{
	struct hsess *s = sess_find(hub, id);
	size_t k;

	if (s)
		return s;
	if (hub->nsess >= hub->nbuckets && grow_buckets(hub) < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	snprintf(s->id, sizeof(s->id), "%s", id);
	it_list_init(&s->streams);
	it_list_init(&s->queue_link);
	k = hash_id(id) & (hub->nbuckets - 1);
	s->hnext = hub->buckets[k];
	hub->buckets[k] = s;
	hub->nsess++;
	return s;
}

/* Frees a session once nothing refers to it any more. */
static void sess_maybe_free(it_hub *hub, struct hsess *s)
{
	struct hsess **pp;

	if (s->nstreams > 0 || s->inflight || s->pinned)
		return;
	it_list_unlink(&s->queue_link);
	for (pp = &hub->buckets[hash_id(s->id) & (hub->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
		if (*pp == s) {
			*pp = s->hnext;
			break;
		}
	hub->nsess--;
	free(s);
}

static void queue_fetch(it_hub *hub, struct hsess *s)
{
	if (s->inflight) {
		s->again = 1;
		return;
	}
	if (!s->queued) {
		s->queued = 1;
		it_list_push(&hub->fetch_queue, &s->queue_link);
	}
}

/* ------------------------------------------------------------------ streams */

static void set_out_interest(it_hub *hub, struct hstream *st, int want)
{
	struct epoll_event ev;

	if (st->want_out == want)
		return;
	st->want_out = (uint8_t)want;
	ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
	ev.data.ptr = &st->tag;
	epoll_ctl(hub->epfd, EPOLL_CTL_MOD, st->fd, &ev);
}

static void stream_close(it_hub *hub, struct hstream *st)
{
	struct hsess *s = st->sess;

	epoll_ctl(hub->epfd, EPOLL_CTL_DEL, st->fd, NULL);
	close(st->fd);
	it_list_unlink(&st->all_link);
	it_list_unlink(&st->sess_link);
	it_buf_free(&st->out);
	it_buf_free(&st->lp);
	pthread_mutex_lock(&hub->lock);
	hub->nstreams--;
	pthread_mutex_unlock(&hub->lock);
	stat_add(hub, st->kind == IT_STREAM_SSE ? &hub->stats.open_sse : &hub->stats.open_longpoll, -1);
	free(st);
	if (s) {
		s->nstreams--;
		sess_maybe_free(hub, s);
	}
}

/* Writes what is buffered. Returns -1 when the stream was closed. */
static int stream_flush(it_hub *hub, struct hstream *st)
{
	size_t done = 0;

	while (done < st->out.len) {
		ssize_t w = write(st->fd, st->out.data + done, st->out.len - done);
		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		stat_add(hub, &hub->stats.released, 1);
		stream_close(hub, st);
		return -1;
	}
	if (done > 0) {
		it_buf_consume(&st->out, done);
		st->last_progress_ms = now_ms();
	}
	if (st->out.len == 0) {
		if (st->ending) {
			stream_close(hub, st);
			return -1;
		}
		/* Idle streams keep no buffer: that is most of them. */
		if (st->out.cap > 4096)
			it_buf_free(&st->out);
		set_out_interest(hub, st, 0);
		if (st->behind && st->sess) {
			st->behind = 0;
			queue_fetch(hub, st->sess);
		}
	} else {
		set_out_interest(hub, st, 1);
	}
	return 0;
}

/* Queues body bytes as FastCGI records. Returns -1 when they do not fit (the
 * caller decides whether that drops the stream). */
static int stream_put(struct hstream *st, const void *p, size_t n)
{
	return it_fcgi_stdout(&st->out, st->rid, p, n) < 0 ? -1 : 0;
}

/* Completes the response and closes once the bytes are out. */
static void stream_end(it_hub *hub, struct hstream *st)
{
	if (st->ending)
		return;
	if (st->kind == IT_STREAM_LONGPOLL) {
		static const char open[] = "{\"events\":[";
		char tail[80];
		int n = snprintf(tail, sizeof(tail), "],\"cursor\":%lld%s}\n", (long long)st->cursor,
				 st->refused ? ",\"retry_after_ms\":5000" : "");
		/* Only whitespace was sent while waiting; the answer goes now,
		 * in one piece. */
		if (stream_put(st, open, sizeof(open) - 1) < 0 || (st->lp.len && stream_put(st, st->lp.data, st->lp.len) < 0) ||
		    stream_put(st, tail, (size_t)n) < 0) {
			stream_close(hub, st);
			return;
		}
	}
	it_fcgi_end(&st->out, st->rid);
	st->ending = 1;
	st->deadline_ms = now_ms() + LINGER_MS;
	it_list_unlink(&st->sess_link);
	if (st->sess) {
		struct hsess *s = st->sess;
		st->sess = NULL;
		s->nstreams--;
		sess_maybe_free(hub, s);
	}
	stream_flush(hub, st);
}

static void stream_transient(it_hub *hub, struct hstream *st, const char *type, json_object *data)
{
	char *json = it_event_transient(type, data);
	it_buf tmp;

	if (json == NULL)
		return;
	if (st->kind == IT_STREAM_SSE) {
		it_buf_init(&tmp, 4096);
		if (it_sse_transient(&tmp, type, json) == 0 && stream_put(st, tmp.data, tmp.len) == 0)
			stream_flush(hub, st);
		it_buf_free(&tmp);
	} else if (it_buf_printf(&st->lp, "%s%s", st->lp.len ? "," : "", json) < 0) {
		/* No room: the client resumes from its cursor anyway. */
	}
	free(json);
}

static void send_resync(it_hub *hub, struct hstream *st, const char *reason, int64_t last)
{
	json_object *d = json_object_new_object();

	json_object_object_add(d, "reason", json_object_new_string(reason));
	json_object_object_add(d, "last_event_id", json_object_new_int64(last));
	stream_transient(hub, st, "session.resync", d);
	json_object_put(d);
	stat_add(hub, &hub->stats.resyncs, 1);
}

/* Hands one event to one stream. Returns -1 when the stream went away. */
static int deliver(it_hub *hub, struct hstream *st, int64_t seq, const char *type, const char *json, size_t len)
{
	if (seq <= st->cursor || st->ending || st->behind)
		return 0;
	if (st->sess && st->cursor < st->sess->fetch_after) {
		/* The stream arrived after this read was sent, from an older
		 * cursor: these rows are not its next ones. Read again for it. */
		st->sess->again = 1;
		return 0;
	}
	if (st->out.len > st->out.max / 2) {
		/* Backpressure: stop here; the stream asks again once drained. */
		st->behind = 1;
		return 0;
	}
	if (seq > st->cursor + 1) {
		/* Only pruning makes a gap in the log: worth a line. */
		it_log_warn("hub: events %lld..%lld are gone from the log; stream told to resync",
			    (long long)st->cursor + 1, (long long)seq - 1);
		send_resync(hub, st, "gap", seq - 1);
	}
	if (st->kind == IT_STREAM_SSE) {
		it_buf tmp;
		int rc;
		it_buf_init(&tmp, st->out.max);
		rc = it_sse_event(&tmp, seq, type, json, len);
		if (rc == 0)
			rc = stream_put(st, tmp.data, tmp.len);
		it_buf_free(&tmp);
		if (rc < 0) {
			st->behind = 1;
			return 0;
		}
		stat_add(hub, &hub->stats.events_sse, 1);
	} else {
		if (it_buf_printf(&st->lp, "%s", st->lp.len ? "," : "") < 0 || it_buf_append(&st->lp, json, len) < 0)
			return 0; /* full: this answer ends here, the next poll continues */
		stat_add(hub, &hub->stats.events_longpoll, 1);
	}
	st->cursor = seq;
	return 0;
}

/* ------------------------------------------------------------------ PostgreSQL */

static void pg_register(it_hub *hub, uint32_t events)
{
	struct epoll_event ev;
	int fd = hub->pg ? PQsocket(hub->pg) : -1;

	if (fd != hub->pg_fd && hub->pg_fd >= 0) {
		epoll_ctl(hub->epfd, EPOLL_CTL_DEL, hub->pg_fd, NULL);
		hub->pg_fd = -1;
	}
	if (fd < 0)
		return;
	ev.events = events;
	ev.data.ptr = &hub->pg_tag;
	if (hub->pg_fd == fd) {
		if (hub->pg_events != events)
			epoll_ctl(hub->epfd, EPOLL_CTL_MOD, fd, &ev);
	} else {
		epoll_ctl(hub->epfd, EPOLL_CTL_ADD, fd, &ev);
		hub->pg_fd = fd;
	}
	hub->pg_events = events;
}

static void announce(it_hub *hub, const char *status)
{
	it_list *pos, *tmp;
	json_object *d = json_object_new_object();

	json_object_object_add(d, "status", json_object_new_string(status));
	json_object_object_add(d, "transport", json_object_new_string("sse"));
	it_list_foreach_safe(pos, tmp, &hub->all)
	{
		struct hstream *st = it_container_of(pos, struct hstream, all_link);
		if (st->kind == IT_STREAM_SSE && !st->ending)
			stream_transient(hub, st, "connection.status", d);
	}
	json_object_put(d);
}

static void pg_lost(it_hub *hub, const char *why)
{
	if (hub->pg) {
		/* Said once per outage, not on every retry. */
		if (!hub->announced_down)
			it_log_warn("hub: database connection lost (%s); reconnecting", why);
		if (hub->pg_fd >= 0)
			epoll_ctl(hub->epfd, EPOLL_CTL_DEL, hub->pg_fd, NULL);
		hub->pg_fd = -1;
		PQfinish(hub->pg);
		hub->pg = NULL;
	}
	for (int i = 0; i < hub->ninflight; i++) {
		hub->inflight[i]->inflight = 0;
		sess_maybe_free(hub, hub->inflight[i]);
	}
	hub->ninflight = 0;
	hub->pg_busy = 0;
	hub->pg_state = PG_DOWN;
	hub->pg_retry_ms = now_ms() + hub->backoff_ms;
	hub->backoff_ms = hub->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : hub->backoff_ms * 2;
	__atomic_store_n(&hub->stats.db_up, 0, __ATOMIC_RELAXED);
	if (!hub->announced_down) {
		hub->announced_down = 1;
		announce(hub, "degraded");
	}
}

static void pg_connect_start(it_hub *hub)
{
	const char *keys[4] = {NULL}, *vals[4] = {NULL};
	int k = 0;

	if (hub->cfg->database_url[0]) {
		keys[k] = "dbname";
		vals[k++] = hub->cfg->database_url;
	}
	keys[k] = "application_name";
	vals[k++] = "imagetools-hub";
	hub->pg = PQconnectStartParams(keys, vals, 1);
	if (hub->pg == NULL || PQstatus(hub->pg) == CONNECTION_BAD) {
		pg_lost(hub, hub->pg ? PQerrorMessage(hub->pg) : "out of memory");
		return;
	}
	hub->pg_state = PG_CONNECTING;
	hub->pg_deadline_ms = now_ms() + 10000;
	pg_register(hub, EPOLLOUT);
}

static void pg_send_next(it_hub *hub);

static void pg_connect_poll(it_hub *hub)
{
	switch (PQconnectPoll(hub->pg)) {
	case PGRES_POLLING_READING: pg_register(hub, EPOLLIN); break;
	case PGRES_POLLING_WRITING: pg_register(hub, EPOLLOUT); break;
	case PGRES_POLLING_OK:
		PQsetnonblocking(hub->pg, 1);
		pg_register(hub, EPOLLIN);
		if (!PQsendQuery(hub->pg, "LISTEN " IT_EVENT_CHANNEL)) {
			pg_lost(hub, PQerrorMessage(hub->pg));
			return;
		}
		hub->pg_busy = 1;
		hub->pg_state = PG_LISTENING;
		break;
	default: pg_lost(hub, PQerrorMessage(hub->pg)); break;
	}
}

static void on_listening(it_hub *hub)
{
	int was_down = hub->announced_down;

	hub->pg_state = PG_READY;
	hub->backoff_ms = BACKOFF_MIN_MS;
	__atomic_store_n(&hub->stats.db_up, 1, __ATOMIC_RELAXED);
	stat_add(hub, &hub->stats.reconnects, 1);
	/* Whatever was committed while we were not listening is read now:
	 * every session re-reads from its streams' cursors. */
	for (size_t i = 0; i < hub->nbuckets; i++)
		for (struct hsess *s = hub->buckets[i]; s; s = s->hnext)
			queue_fetch(hub, s);
	if (was_down) {
		hub->announced_down = 0;
		announce(hub, "connected");
		it_log_info("hub: listening again");
	}
}

/* Hands the rows of one read (many sessions, grouped) to the streams. */
static void on_rows(it_hub *hub, PGresult *res)
{
	int n = PQntuples(res), count = 0;
	struct hsess *s = NULL;
	it_list *pos, *tmp;

	stat_add(hub, &hub->stats.fetches, 1);
	if (n > 0)
		it_log_debug("hub: read %d events, %s..%s", n, PQgetvalue(res, 0, 1), PQgetvalue(res, n - 1, 1));
	for (int i = 0; i < n; i++) {
		const char *sid = PQgetvalue(res, i, 0);
		int64_t seq = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		const char *type = PQgetvalue(res, i, 2), *json = PQgetvalue(res, i, 3);
		size_t len = (size_t)PQgetlength(res, i, 3);

		if (s == NULL || strcmp(s->id, sid) != 0) {
			if (s && count == FETCH_LIMIT)
				s->again = 1;
			s = sess_find(hub, sid);
			count = 0;
		}
		count++;
		if (s == NULL)
			continue;
		if (seq > s->max_seen)
			s->max_seen = seq;
		it_list_foreach_safe(pos, tmp, &s->streams)
		{
			deliver(hub, it_container_of(pos, struct hstream, sess_link), seq, type, json, len);
		}
	}
	if (s && count == FETCH_LIMIT)
		s->again = 1;
	/* Long-polls answer with everything this read gave them; SSE streams
	 * get their bytes now. */
	for (int k = 0; k < hub->ninflight; k++) {
		s = hub->inflight[k];
		it_list_foreach_safe(pos, tmp, &s->streams)
		{
			struct hstream *st = it_container_of(pos, struct hstream, sess_link);
			if (st->kind == IT_STREAM_LONGPOLL && st->lp.len > 0)
				stream_end(hub, st);
			else if (st->out.len > 0)
				stream_flush(hub, st);
		}
	}
}

static void pg_results(it_hub *hub)
{
	PGresult *res;

	while (hub->pg_busy && !PQisBusy(hub->pg)) {
		res = PQgetResult(hub->pg);
		if (res == NULL) {
			hub->pg_busy = 0;
			if (hub->pg_state == PG_LISTENING) {
				on_listening(hub);
			} else {
				int k = hub->ninflight;
				hub->ninflight = 0;
				for (int i = 0; i < k; i++) {
					struct hsess *s = hub->inflight[i];
					s->inflight = 0;
					if (s->again) {
						s->again = 0;
						queue_fetch(hub, s);
					}
					sess_maybe_free(hub, s);
				}
			}
			break;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			if (hub->ninflight)
				on_rows(hub, res);
		} else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			it_log_warn("hub: query failed: %s", PQresultErrorMessage(res));
		}
		PQclear(res);
	}
}

static void on_notify(it_hub *hub, const char *payload)
{
	const char *colon = strrchr(payload, ':');
	char id[72];
	struct hsess *s;
	int64_t seq;

	if (colon == NULL || (size_t)(colon - payload) >= sizeof(id))
		return;
	memcpy(id, payload, (size_t)(colon - payload));
	id[colon - payload] = '\0';
	s = sess_find(hub, id);
	if (s == NULL)
		return;
	seq = strtoll(colon + 1, NULL, 10);
	if (seq == 0) {
		/* The session ended: its streams end too. */
		it_list *pos, *tmp;
		s->pinned = 1;
		it_list_foreach_safe(pos, tmp, &s->streams)
		{
			stream_end(hub, it_container_of(pos, struct hstream, sess_link));
		}
		s->pinned = 0;
		sess_maybe_free(hub, s);
		return;
	}
	if (seq > s->max_seen)
		queue_fetch(hub, s);
}

/* Sends one read for up to FETCH_SESSIONS queued sessions, each from the
 * lowest cursor among its streams that can take more. */
static void pg_send_next(it_hub *hub)
{
	it_buf sids, afters;
	char limit[16];
	const char *params[3];

	if (hub->pg_state != PG_READY || hub->pg_busy || it_list_empty(&hub->fetch_queue))
		return;
	it_buf_init(&sids, (size_t)FETCH_SESSIONS * 80 + 16);
	it_buf_init(&afters, (size_t)FETCH_SESSIONS * 24 + 16);
	it_buf_puts(&sids, "{");
	it_buf_puts(&afters, "{");
	while (hub->ninflight < FETCH_SESSIONS && !it_list_empty(&hub->fetch_queue)) {
		struct hsess *s = it_container_of(hub->fetch_queue.next, struct hsess, queue_link);
		int64_t min = INT64_MAX;
		it_list *pos;

		it_list_unlink(&s->queue_link);
		s->queued = 0;
		for (pos = s->streams.next; pos != &s->streams; pos = pos->next) {
			struct hstream *st = it_container_of(pos, struct hstream, sess_link);
			if (!st->behind && st->cursor < min)
				min = st->cursor;
		}
		if (min == INT64_MAX) {
			sess_maybe_free(hub, s);
			continue;
		}
		/* Session ids are URL-safe base64: no quoting needed in an array literal. */
		it_buf_printf(&sids, "%s%s", hub->ninflight ? "," : "", s->id);
		it_buf_printf(&afters, "%s%lld", hub->ninflight ? "," : "", (long long)min);
		s->fetch_after = min;
		hub->inflight[hub->ninflight++] = s;
		s->inflight = 1;
	}
	it_buf_puts(&sids, "}");
	it_buf_puts(&afters, "}");
	if (hub->ninflight > 0) {
		snprintf(limit, sizeof(limit), "%d", FETCH_LIMIT);
		params[0] = sids.data;
		params[1] = afters.data;
		params[2] = limit;
		it_log_debug("hub: reading %d sessions from %s", hub->ninflight, afters.data);
		if (!PQsendQueryParams(hub->pg, it_event_read_many_sql, 3, NULL, params, NULL, NULL, 0)) {
			for (int i = 0; i < hub->ninflight; i++)
				hub->inflight[i]->again = 1;
			pg_lost(hub, PQerrorMessage(hub->pg));
		} else {
			hub->pg_busy = 1;
			if (PQflush(hub->pg) == 1)
				pg_register(hub, EPOLLIN | EPOLLOUT);
		}
	}
	it_buf_free(&sids);
	it_buf_free(&afters);
}

static void pg_io(it_hub *hub, uint32_t events)
{
	PGnotify *n;

	if (hub->pg_state == PG_CONNECTING) {
		pg_connect_poll(hub);
		return;
	}
	if (events & EPOLLOUT) {
		int f = PQflush(hub->pg);
		if (f < 0) {
			pg_lost(hub, PQerrorMessage(hub->pg));
			return;
		}
		if (f == 0)
			pg_register(hub, EPOLLIN);
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
		if (!PQconsumeInput(hub->pg)) {
			pg_lost(hub, PQerrorMessage(hub->pg));
			return;
		}
		pg_results(hub);
		while ((n = PQnotifies(hub->pg)) != NULL) {
			on_notify(hub, n->extra);
			PQfreemem(n);
		}
		if (PQstatus(hub->pg) != CONNECTION_OK)
			pg_lost(hub, "connection closed");
	}
}

/* ------------------------------------------------------------------ the loop */

static void adopt(it_hub *hub, struct hstream *st)
{
	struct epoll_event ev;
	struct hsess *s;
	int flags = fcntl(st->fd, F_GETFL);

	fcntl(st->fd, F_SETFL, flags | O_NONBLOCK);
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = &st->tag;
	stat_add(hub, st->kind == IT_STREAM_SSE ? &hub->stats.open_sse : &hub->stats.open_longpoll, 1);
	s = sess_get(hub, st->pending_sid);
	free(st->pending_sid);
	st->pending_sid = NULL;
	it_list_push(&hub->all, &st->all_link);
	if (s == NULL || epoll_ctl(hub->epfd, EPOLL_CTL_ADD, st->fd, &ev) < 0) {
		st->sess = NULL;
		stream_close(hub, st);
		if (s)
			sess_maybe_free(hub, s);
		return;
	}
	st->sess = s;
	s->nstreams++;
	it_list_push(&s->streams, &st->sess_link);
	if (s->nstreams > hub->cfg->max_streams_per_session) {
		/* Too many streams on one session in this process: this one ends
		 * at once, with a hint to come back later (SSE: the retry: sent
		 * in its head; long-poll: retry_after_ms). */
		static const char retry[] = "retry: 5000\n\n";
		st->refused = 1;
		if (st->kind == IT_STREAM_SSE)
			stream_put(st, retry, sizeof(retry) - 1);
		stream_end(hub, st);
		return;
	}
	if (stream_flush(hub, st) < 0)
		return;
	queue_fetch(hub, s);
}

static void drain_incoming(it_hub *hub)
{
	it_list batch, *pos, *tmp;
	uint64_t v;

	if (read(hub->evfd, &v, sizeof(v)) < 0) {
		/* Nothing pending; the list is checked anyway. */
	}
	it_list_init(&batch);
	pthread_mutex_lock(&hub->lock);
	if (!it_list_empty(&hub->incoming)) {
		batch.next = hub->incoming.next;
		batch.prev = hub->incoming.prev;
		batch.next->prev = &batch;
		batch.prev->next = &batch;
		it_list_init(&hub->incoming);
	}
	pthread_mutex_unlock(&hub->lock);
	it_list_foreach_safe(pos, tmp, &batch)
	{
		struct hstream *st = it_container_of(pos, struct hstream, all_link);
		it_list_unlink(pos);
		adopt(hub, st);
	}
}

static void stream_io(it_hub *hub, struct hstream *st, uint32_t events)
{
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		uint8_t buf[512];
		ssize_t r = read(st->fd, buf, sizeof(buf));
		if (r < 0 && errno != EAGAIN && errno != EINTR) {
			stat_add(hub, &hub->stats.released, 1);
			stream_close(hub, st);
			return;
		}
		if (r == 0 || (r > 0 && it_fcgi_scan_feed(&st->scan, st->rid, buf, (size_t)r))) {
			/* The web server half-closed the connection (lighttpd's
			 * tcp-fin-propagate) or aborted the request: the client is
			 * gone. The request still ends properly, so the web server
			 * sees a complete answer rather than a backend failure. */
			stat_add(hub, &hub->stats.released, 1);
			if (st->ending) {
				stream_close(hub, st);
				return;
			}
			it_buf_reset(&st->lp);
			stream_end(hub, st);
			return;
		}
	}
	if (events & EPOLLOUT)
		stream_flush(hub, st);
}

static void tick(it_hub *hub)
{
	int64_t now = now_ms();
	time_t wall = time(NULL);
	it_list *pos, *tmp;

	it_list_foreach_safe(pos, tmp, &hub->all)
	{
		struct hstream *st = it_container_of(pos, struct hstream, all_link);
		if (st->ending) {
			if (now >= st->deadline_ms)
				stream_close(hub, st);
			continue;
		}
		if (st->out.len > 0 && now - st->last_progress_ms > hub->cfg->stream_stall_timeout * 1000) {
			stat_add(hub, &hub->stats.dropped_slow, 1);
			stream_close(hub, st);
			continue;
		}
		if (wall >= st->expires_unix || (st->kind == IT_STREAM_LONGPOLL && now >= st->deadline_ms)) {
			stream_end(hub, st);
			continue;
		}
		if (now >= st->next_keepalive_ms) {
			static const char sse_ka[] = ": keepalive\n\n";
			st->next_keepalive_ms = now + hub->cfg->keepalive_interval * 1000;
			/* JSON allows leading whitespace: a waiting long-poll sends a
			 * space so proxies see traffic. */
			if (st->kind == IT_STREAM_SSE ? stream_put(st, sse_ka, sizeof(sse_ka) - 1) == 0
						      : stream_put(st, " ", 1) == 0)
				stream_flush(hub, st);
		}
	}
	if (hub->pg_state == PG_DOWN && now >= hub->pg_retry_ms)
		pg_connect_start(hub);
	else if (hub->pg_state == PG_CONNECTING && now >= hub->pg_deadline_ms)
		pg_lost(hub, "connection attempt timed out");
}

static void shutdown_streams(it_hub *hub)
{
	it_list *pos, *tmp;
	int64_t until = now_ms() + 1000;

	drain_incoming(hub);
	it_list_foreach_safe(pos, tmp, &hub->all)
	{
		stream_end(hub, it_container_of(pos, struct hstream, all_link));
	}
	/* Give the last bytes a moment, then close whatever is left. */
	while (!it_list_empty(&hub->all) && now_ms() < until) {
		struct epoll_event evs[64];
		int n = epoll_wait(hub->epfd, evs, 64, 50);
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			if (t->kind == TAG_STREAM)
				stream_io(hub, (struct hstream *)t, evs[i].events);
		}
	}
	it_list_foreach_safe(pos, tmp, &hub->all)
	{
		stream_close(hub, it_container_of(pos, struct hstream, all_link));
	}
}

static void *hub_main(void *arg)
{
	it_hub *hub = arg;
	int64_t next_tick = now_ms() + TICK_MS;

	pg_connect_start(hub);
	for (;;) {
		struct epoll_event evs[256];
		int64_t wait = next_tick - now_ms();
		int n;

		if (__atomic_load_n(&hub->stopping, __ATOMIC_ACQUIRE))
			break;
		n = epoll_wait(hub->epfd, evs, 256, wait < 0 ? 0 : (int)wait);
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			switch (t->kind) {
			case TAG_CMD: drain_incoming(hub); break;
			case TAG_PG:
				if (hub->pg)
					pg_io(hub, evs[i].events);
				break;
			case TAG_STREAM: stream_io(hub, (struct hstream *)t, evs[i].events); break;
			}
		}
		if (now_ms() >= next_tick) {
			tick(hub);
			next_tick = now_ms() + TICK_MS;
		}
		pg_send_next(hub);
	}
	shutdown_streams(hub);
	if (hub->pg)
		PQfinish(hub->pg);
	return NULL;
}

/* ------------------------------------------------------------------ public */

int it_hub_start(it_hub **out, const it_config *cfg)
{
	it_hub *hub = calloc(1, sizeof(*hub));
	struct epoll_event ev;
	int rc;

	if (hub == NULL)
		return -ENOMEM;
	hub->cfg = cfg;
	hub->cmd_tag.kind = TAG_CMD;
	hub->pg_tag.kind = TAG_PG;
	hub->pg_fd = -1;
	hub->backoff_ms = BACKOFF_MIN_MS;
	pthread_mutex_init(&hub->lock, NULL);
	it_list_init(&hub->incoming);
	it_list_init(&hub->all);
	it_list_init(&hub->fetch_queue);
	hub->epfd = epoll_create1(EPOLL_CLOEXEC);
	hub->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (hub->epfd < 0 || hub->evfd < 0 || grow_buckets(hub) < 0) {
		rc = -errno;
		goto fail;
	}
	ev.events = EPOLLIN;
	ev.data.ptr = &hub->cmd_tag;
	epoll_ctl(hub->epfd, EPOLL_CTL_ADD, hub->evfd, &ev);
	rc = pthread_create(&hub->thread, NULL, hub_main, hub);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	*out = hub;
	return 0;
fail:
	if (hub->epfd >= 0)
		close(hub->epfd);
	if (hub->evfd >= 0)
		close(hub->evfd);
	free(hub->buckets);
	free(hub);
	return rc ? rc : -EIO;
}

int it_hub_park(it_hub *hub, const it_park *p)
{
	struct hstream *st;
	uint64_t one = 1;
	int64_t now = now_ms();

	pthread_mutex_lock(&hub->lock);
	if (hub->nstreams >= hub->cfg->max_streams || hub->stopping) {
		pthread_mutex_unlock(&hub->lock);
		return -EBUSY;
	}
	hub->nstreams++;
	pthread_mutex_unlock(&hub->lock);

	st = calloc(1, sizeof(*st));
	if (st == NULL || (st->pending_sid = strdup(p->session)) == NULL)
		goto nomem;
	st->tag.kind = TAG_STREAM;
	it_list_init(&st->sess_link);
	it_list_init(&st->all_link);
	st->fd = p->fd;
	st->rid = p->request_id;
	st->kind = (uint8_t)p->kind;
	st->cursor = p->cursor;
	st->expires_unix = p->expires_unix;
	st->deadline_ms = now + p->timeout_ms;
	st->next_keepalive_ms = now + hub->cfg->keepalive_interval * 1000;
	st->last_progress_ms = now;
	/* Room for the configured backlog plus one record header per event. */
	it_buf_init(&st->out, (size_t)hub->cfg->stream_buffer);
	it_buf_init(&st->lp, (size_t)hub->cfg->stream_buffer);
	if (p->head_len && it_fcgi_stdout(&st->out, st->rid, p->head, p->head_len) < 0)
		goto nomem;

	pthread_mutex_lock(&hub->lock);
	it_list_push(&hub->incoming, &st->all_link);
	pthread_mutex_unlock(&hub->lock);
	if (write(hub->evfd, &one, sizeof(one)) < 0) {
		/* The counter is already non-zero: the hub is being woken anyway. */
	}
	return 0;
nomem:
	if (st) {
		free(st->pending_sid);
		it_buf_free(&st->out);
		free(st);
	}
	pthread_mutex_lock(&hub->lock);
	hub->nstreams--;
	pthread_mutex_unlock(&hub->lock);
	return -ENOMEM;
}

void it_hub_stats_get(it_hub *hub, it_hub_stats *out)
{
	out->open_sse = __atomic_load_n(&hub->stats.open_sse, __ATOMIC_RELAXED);
	out->open_longpoll = __atomic_load_n(&hub->stats.open_longpoll, __ATOMIC_RELAXED);
	out->events_sse = __atomic_load_n(&hub->stats.events_sse, __ATOMIC_RELAXED);
	out->events_longpoll = __atomic_load_n(&hub->stats.events_longpoll, __ATOMIC_RELAXED);
	out->resyncs = __atomic_load_n(&hub->stats.resyncs, __ATOMIC_RELAXED);
	out->dropped_slow = __atomic_load_n(&hub->stats.dropped_slow, __ATOMIC_RELAXED);
	out->released = __atomic_load_n(&hub->stats.released, __ATOMIC_RELAXED);
	out->reconnects = __atomic_load_n(&hub->stats.reconnects, __ATOMIC_RELAXED);
	out->fetches = __atomic_load_n(&hub->stats.fetches, __ATOMIC_RELAXED);
	out->db_up = __atomic_load_n(&hub->stats.db_up, __ATOMIC_RELAXED);
}

void it_hub_stop(it_hub *hub)
{
	uint64_t one = 1;

	if (hub == NULL)
		return;
	pthread_mutex_lock(&hub->lock);
	__atomic_store_n(&hub->stopping, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&hub->lock);
	if (write(hub->evfd, &one, sizeof(one)) < 0) {
		/* Already signalled. */
	}
	pthread_join(hub->thread, NULL);
	for (size_t i = 0; i < hub->nbuckets; i++) {
		struct hsess *s = hub->buckets[i], *next;
		for (; s; s = next) {
			next = s->hnext;
			free(s);
		}
	}
	free(hub->buckets);
	close(hub->epfd);
	close(hub->evfd);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}

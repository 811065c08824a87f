/* hub.c: the per-process event hub of imagetools.fcgi (docs/hub.md): parked FastCGI streams on the feed. */
#include "config.h"

#include "hub/hub.h"

#include "common/clock.h"
#include "common/list.h"
#include "common/log.h"
#include "feed/feed.h"
#include "feed/longpoll.h"
#include "feed/outq.h"
#include "feed/presence.h"
#include "feed/sse.h"
#include "hub/fcgi_record.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* How often timers (keepalives, long-poll deadlines, expiry) are looked at. */
#define TICK_MS 250
/* An ended stream gets this long to drain its last bytes. */
#define LINGER_MS 10000

enum tag_kind { TAG_STREAM, TAG_PG, TAG_CMD, TAG_PRESENCE };

struct tag {
	enum tag_kind kind;
};

/* ------------------------------------------------------------------ output queue
 *
 * A stream's output is an it_outq (src/feed/outq.h) of FastCGI records:
 * each segment is a record header of the stream's own (its prefix) and
 * content that is either a shared event (a reference: the bytes are the
 * event's own SSE form, the same for every stream of the session) or bytes
 * of this stream's own (the head, a keepalive, a connection.status). */

/* Queues content as FCGI_STDOUT records (65535 bytes at most each). With
 * ev, the content lies in ev and each record holds a reference; with heap,
 * the queue takes ownership (the last record frees it). Returns 0 or
 * -ENOMEM (nothing queued; heap freed). */
static int oq_stdout(it_outq *q, uint16_t rid, it_feed_event *ev, char *heap, const char *p, size_t n)
{
	unsigned mark = it_outq_mark(q);

	while (n > 0) {
		uint16_t len = n > 65535 ? 65535 : (uint16_t)n;
		uint8_t hdr[IT_FCGI_RECORD_HEADER_LEN];
		it_fcgi_record_header(hdr, IT_FCGI_RECORD_STDOUT, rid, len);
		if (it_outq_push(q, hdr, sizeof(hdr), ev, len == n ? heap : NULL, p, len) < 0) {
			it_outq_rollback(q, mark);
			free(heap);
			return -ENOMEM;
		}
		p += len;
		n -= len;
	}
	if (it_outq_mark(q) == mark)
		free(heap);
	return 0;
}

/* Queues the end of the response: an empty FCGI_STDOUT and FCGI_END_REQUEST. */
static int oq_end(it_outq *q, uint16_t rid)
{
	it_buf b;
	int rc;

	it_buf_init(&b, 64);
	rc = it_fcgi_record_end(&b, rid) < 0 ? -ENOMEM : it_outq_copy(q, NULL, 0, b.data, b.len, NULL, 0);
	it_buf_free(&b);
	return rc < 0 ? -ENOMEM : 0;
}

/* ------------------------------------------------------------------ streams */

struct hstream {
	it_feed_sub sub; /* the core's view of this stream */
	struct tag tag;
	struct it_hub *hub;
	it_list all_link;
	char *pending_sid; /* until the hub thread adopts the stream */
	int fd;
	uint16_t rid;
	uint8_t kind;
	uint8_t subscribed;	     /* in the feed */
	uint8_t ending;		     /* end records queued; close once written */
	uint8_t want_out;	     /* EPOLLOUT registered */
	uint8_t behind;		     /* told the core "no room": resumed once drained */
	uint8_t refused;	     /* over a limit: ended at once with a retry hint */
	uint8_t joined;		     /* admitted: presence_joined was called */
	uint8_t end_why;	     /* enum it_feed_end when the feed ended it, else 0 */
	it_ident *ident;	     /* NULL: anonymous */
	it_presence_entry *presence; /* its entry while joined (docs/presence.md) */
	int64_t expires_unix;
	int64_t deadline_ms; /* long-poll answer time, or linger limit once ending */
	int64_t next_keepalive_ms;
	int64_t last_progress_ms;
	size_t max; /* stream_buffer */
	it_fcgi_record_scan scan;
	it_outq out;
	it_longpoll lp; /* long-poll: the answer gathered so far */
};

struct it_hub {
	const it_config *cfg;
	pthread_t thread;
	int epfd, evfd;
	struct tag cmd_tag, pg_tag, presence_tag;

	pthread_mutex_t lock; /* guards incoming, nstreams, stopping */
	it_list incoming;     /* streams parked by request threads, not yet adopted */
	int64_t nstreams;     /* parked or adopted; bounded by cfg->max_streams */
	int stopping;
	it_hub_stats stats; /* atomics */

	/* Held by the hub thread whenever it runs (everything but
	 * epoll_wait), and by request threads for it_hub_lookup: the feed
	 * is single-threaded. */
	pthread_mutex_t feed_lock;
	it_feed *feed;
	it_presence *presence; /* the entries of this process's streams */
	it_list all;
	int64_t now;
};

static void stat_add(int64_t *field, int64_t d)
{
	__atomic_add_fetch(field, d, __ATOMIC_RELAXED);
}

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

/* ------------------------------------------------------------------ presence hooks
 *
 * presence_joined: the feed admitted the stream (its session holds, events
 * follow). presence_left: once, when an admitted stream leaves the feed for
 * any reason: "revoked" (its token was revoked), "expired" (its token or
 * session expired) or "closed" (the client went away, a long-poll answered,
 * the session was deleted, the process stops). st->ident says who the
 * client is (its session_id is set at admission); it is NULL for an
 * anonymous client, which presence does not show. Both run on the hub's
 * thread with the feed lock held: they must not block, nor end or free the
 * stream. */

static void presence_joined(it_hub *hub, struct hstream *st)
{
	if (st->ident == NULL)
		return;
	st->presence = it_presence_join(hub->presence, st->ident, st->kind == IT_STREAM_SSE ? "sse" : "longpoll");
}

static void presence_left(it_hub *hub, struct hstream *st, const char *reason)
{
	/* A revoked device's entries are gone with the revocation itself
	 * (sql/010); for the others the grace starts, and a long-poll's next
	 * poll comes right after this one. */
	(void)reason;
	it_presence_leave(hub->presence, st->presence,
			  st->kind == IT_STREAM_LONGPOLL ? IT_PRESENCE_LONGPOLL_HOLD * 1000 : 0);
	st->presence = NULL;
}

/* Takes the stream out of the feed (if it is in it) and out of presence. */
static void stream_detach(it_hub *hub, struct hstream *st)
{
	if (st->subscribed) {
		it_feed_unsubscribe(&st->sub);
		st->subscribed = 0;
	}
	if (st->joined) {
		st->joined = 0;
		presence_left(hub, st,
			      st->end_why == IT_FEED_END_REVOKED ? "revoked"
				      : st->end_why == IT_FEED_END_TOKEN_EXPIRED || st->end_why == IT_FEED_END_EXPIRED
				      ? "expired"
				      : "closed");
	}
}

static void stream_close(it_hub *hub, struct hstream *st)
{
	stream_detach(hub, st);
	epoll_ctl(hub->epfd, EPOLL_CTL_DEL, st->fd, NULL);
	close(st->fd);
	it_list_unlink(&st->all_link);
	it_outq_free(&st->out);
	it_longpoll_free(&st->lp);
	free(st->ident);
	pthread_mutex_lock(&hub->lock);
	hub->nstreams--;
	pthread_mutex_unlock(&hub->lock);
	stat_add(st->kind == IT_STREAM_SSE ? &hub->stats.open_sse : &hub->stats.open_longpoll, -1);
	free(st);
}

/* Writes what is queued. Returns -1 when the stream was closed. */
static int stream_flush(it_hub *hub, struct hstream *st)
{
	ssize_t w = it_outq_write(&st->out, st->fd);

	if (w < 0) {
		stat_add(&hub->stats.released, 1);
		stream_close(hub, st);
		return -1;
	}
	if (w > 0)
		st->last_progress_ms = hub->now;
	if (st->out.n == 0) {
		if (st->ending) {
			stream_close(hub, st);
			return -1;
		}
		set_out_interest(hub, st, 0);
		if (st->behind) {
			st->behind = 0;
			it_feed_resume(&st->sub);
		}
	} else {
		set_out_interest(hub, st, 1);
	}
	return 0;
}

/* Queues bytes of the stream's own. Returns -1 when out of memory. */
static int stream_put(struct hstream *st, const void *p, size_t n)
{
	char *c;

	if (n == 0)
		return 0;
	if ((c = malloc(n)) == NULL)
		return -1;
	memcpy(c, p, n);
	return oq_stdout(&st->out, st->rid, NULL, c, c, n) < 0 ? -1 : 0;
}

/* it_longpoll_put for a stream: STDOUT records, events by reference, the
 * rest copied. */
static int lp_put(void *ctx, it_feed_event *ev, const char *p, size_t n)
{
	struct hstream *st = ctx;

	if (ev != NULL)
		return oq_stdout(&st->out, st->rid, ev, NULL, p, n);
	return stream_put(st, p, n);
}

/* Completes the response and closes once the bytes are out. Returns -1
 * when the stream was closed already. */
static int stream_end(it_hub *hub, struct hstream *st)
{
	if (st->ending)
		return 0;
	stream_detach(hub, st);
	if (st->kind == IT_STREAM_LONGPOLL) {
		/* Only whitespace was sent while waiting; the answer goes now:
		 * the events' own JSON, shared, between bytes of its own. */
		if (it_longpoll_write(&st->lp, st->sub.cursor, st->refused, lp_put, st) < 0) {
			stream_close(hub, st);
			return -1;
		}
	}
	if (oq_end(&st->out, st->rid) < 0) {
		stream_close(hub, st);
		return -1;
	}
	st->ending = 1;
	st->deadline_ms = hub->now + LINGER_MS;
	return stream_flush(hub, st);
}

/* ------------------------------------------------------------------ the core's callbacks */

static int on_event(it_feed_sub *sub, it_feed_event *ev)
{
	struct hstream *st = (struct hstream *)sub;
	it_hub *hub = st->hub;

	if (st->kind == IT_STREAM_SSE) {
		struct iovec w;
		/* Backpressure: past half the buffer the core stops here and
		 * offers again from this cursor once the queue has drained. An
		 * event goes into an empty queue whatever its size. */
		if (st->out.n > 0 && st->out.bytes + ev->json_len > st->max / 2) {
			st->behind = 1;
			return 1;
		}
		if (it_feed_event_wire(ev, IT_FEED_FMT_SSE, &w) < 0 ||
		    oq_stdout(&st->out, st->rid, ev, NULL, w.iov_base, w.iov_len) < 0) {
			st->behind = 1;
			return 1;
		}
		stat_add(&hub->stats.events_sse, 1);
		return 0;
	}
	/* Long-poll: a full answer goes now; the next poll continues. */
	if (it_longpoll_full(&st->lp, ev, st->max) || it_longpoll_add(&st->lp, ev, NULL) < 0)
		return 1;
	stat_add(&hub->stats.events_longpoll, 1);
	return 0;
}

static int on_transient(it_feed_sub *sub, const it_feed_transient *t)
{
	struct hstream *st = (struct hstream *)sub;
	int resync = strcmp(t->type, "session.resync") == 0;
	char *json;

	if (resync)
		stat_add(&st->hub->stats.resyncs, 1);
	else if (st->kind == IT_STREAM_LONGPOLL && strcmp(t->type, "session.revoked") != 0)
		return 0; /* a long-poll's answer is about the session (and its credential) only */
	json = it_feed_transient_json(t, "sse");
	if (json == NULL)
		return 0;
	if (st->kind == IT_STREAM_SSE) {
		it_buf b;
		it_buf_init(&b, strlen(json) + 128);
		if (it_sse_transient(&b, t->type, json) == 0)
			oq_stdout(&st->out, st->rid, NULL, b.data, b.data, b.len);
		else
			it_buf_free(&b);
		free(json);
	} else if (it_longpoll_add(&st->lp, NULL, json) < 0) {
		free(json);
	}
	return 0;
}

static int on_batch_end(it_feed_sub *sub)
{
	struct hstream *st = (struct hstream *)sub;

	/* A long-poll answers with everything this hand-over gave it. */
	if (st->kind == IT_STREAM_LONGPOLL) {
		if (st->lp.n == 0)
			return 0;
		stream_end(st->hub, st);
		return -1;
	}
	return stream_flush(st->hub, st);
}

static void on_ended(it_feed_sub *sub, enum it_feed_end why)
{
	struct hstream *st = (struct hstream *)sub;

	/* The session was deleted or expired, or the stream's token was
	 * revoked or expired (session.revoked is queued already): it ends. A
	 * long-poll's head went out when it was parked, so it answers 200 with
	 * session.revoked among its events; its next poll is 401. */
	st->subscribed = 0;
	st->end_why = (uint8_t)why;
	stream_end(st->hub, st);
}

static void on_admitted(it_feed_sub *sub)
{
	struct hstream *st = (struct hstream *)sub;

	st->joined = 1;
	if (st->ident)
		snprintf(st->ident->session_id, sizeof(st->ident->session_id), "%s", it_feed_sub_session(sub));
	presence_joined(st->hub, st);
}

static const it_feed_sub_ops stream_ops = {on_event, on_transient, on_batch_end, on_ended, on_admitted};

/* ------------------------------------------------------------------ the loop */

static void adopt(it_hub *hub, struct hstream *st)
{
	struct epoll_event ev;
	int flags = fcntl(st->fd, F_GETFL);

	fcntl(st->fd, F_SETFL, flags | O_NONBLOCK);
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.ptr = &st->tag;
	stat_add(st->kind == IT_STREAM_SSE ? &hub->stats.open_sse : &hub->stats.open_longpoll, 1);
	it_list_push(&hub->all, &st->all_link);
	if (epoll_ctl(hub->epfd, EPOLL_CTL_ADD, st->fd, &ev) < 0 ||
	    it_feed_subscribe(hub->feed, &st->sub, st->pending_sid, st->sub.cursor, 0) < 0) {
		free(st->pending_sid);
		st->pending_sid = NULL;
		stream_close(hub, st);
		return;
	}
	free(st->pending_sid);
	st->pending_sid = NULL;
	st->subscribed = 1;
	if (it_feed_sub_count(&st->sub) > (unsigned)hub->cfg->max_streams_per_session) {
		/* Too many streams on one session in this process: this one ends
		 * at once, with a hint to come back later (SSE: a retry: line;
		 * long-poll: retry_after_ms). */
		static const char retry[] = "retry: 5000\n\n";
		st->refused = 1;
		if (st->kind == IT_STREAM_SSE)
			stream_put(st, retry, sizeof(retry) - 1);
		stream_end(hub, st);
		return;
	}
	stream_flush(hub, st);
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
	it_list_foreach_safe (pos, tmp, &batch) {
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
			stat_add(&hub->stats.released, 1);
			stream_close(hub, st);
			return;
		}
		if (r == 0 || (r > 0 && it_fcgi_record_scan_feed(&st->scan, st->rid, buf, (size_t)r))) {
			/* The web server half-closed the connection (lighttpd's
			 * tcp-fin-propagate) or aborted the request: the client is
			 * gone. The request still ends properly, so the web server
			 * sees a complete answer rather than a backend failure. */
			stat_add(&hub->stats.released, 1);
			if (st->ending) {
				stream_close(hub, st);
				return;
			}
			it_longpoll_clear(&st->lp);
			stream_end(hub, st);
			return;
		}
	}
	if (events & EPOLLOUT)
		stream_flush(hub, st);
}

static void tick(it_hub *hub)
{
	int64_t now = hub->now;
	time_t wall = time(NULL);
	it_list *pos, *tmp;

	it_list_foreach_safe (pos, tmp, &hub->all) {
		struct hstream *st = it_container_of(pos, struct hstream, all_link);
		if (st->ending) {
			if (now >= st->deadline_ms)
				stream_close(hub, st);
			continue;
		}
		if (st->out.n > 0 && now - st->last_progress_ms > hub->cfg->stream_stall_timeout * 1000) {
			stat_add(&hub->stats.dropped_slow, 1);
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
}

/* Copies the core's counters where request threads read them. */
static void publish_stats(it_hub *hub)
{
	it_feed_stats fs;

	it_feed_stats_get(hub->feed, &fs);
	__atomic_store_n(&hub->stats.fetches, (int64_t)fs.reads, __ATOMIC_RELAXED);
	__atomic_store_n(&hub->stats.checks, (int64_t)fs.checks, __ATOMIC_RELAXED);
	__atomic_store_n(&hub->stats.reconnects, (int64_t)fs.reconnects, __ATOMIC_RELAXED);
	__atomic_store_n(&hub->stats.db_up, fs.db_up, __ATOMIC_RELAXED);
}

static void shutdown_streams(it_hub *hub)
{
	it_list *pos, *tmp;
	int64_t until = it_clock_ms() + 1000;

	drain_incoming(hub);
	it_list_foreach_safe (pos, tmp, &hub->all) {
		stream_end(hub, it_container_of(pos, struct hstream, all_link));
	}
	/* Give the last bytes a moment, then close whatever is left. */
	while (!it_list_empty(&hub->all) && it_clock_ms() < until) {
		struct epoll_event evs[64];
		int n = epoll_wait(hub->epfd, evs, 64, 50);
		hub->now = it_clock_ms();
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			if (t->kind == TAG_STREAM)
				stream_io(hub, it_container_of(t, struct hstream, tag), evs[i].events);
		}
	}
	it_list_foreach_safe (pos, tmp, &hub->all) {
		stream_close(hub, it_container_of(pos, struct hstream, all_link));
	}
}

static void *hub_main(void *arg)
{
	it_hub *hub = arg;
	int64_t next_tick;

	pthread_mutex_lock(&hub->feed_lock);
	hub->now = it_clock_ms();
	next_tick = hub->now + TICK_MS;
	it_feed_tick(hub->feed, hub->now);
	it_presence_tick(hub->presence, hub->now);
	pthread_mutex_unlock(&hub->feed_lock);
	for (;;) {
		struct epoll_event evs[256];
		int64_t wait = next_tick - it_clock_ms();
		int n;

		if (__atomic_load_n(&hub->stopping, __ATOMIC_ACQUIRE))
			break;
		n = epoll_wait(hub->epfd, evs, 256, wait < 0 ? 0 : (int)wait);
		pthread_mutex_lock(&hub->feed_lock);
		hub->now = it_clock_ms();
		for (int i = 0; i < n; i++) {
			struct tag *t = evs[i].data.ptr;
			switch (t->kind) {
			case TAG_CMD: drain_incoming(hub); break;
			case TAG_PG: it_feed_handle_pg(hub->feed, evs[i].events); break;
			case TAG_PRESENCE: it_presence_handle_pg(hub->presence, evs[i].events); break;
			case TAG_STREAM: stream_io(hub, it_container_of(t, struct hstream, tag), evs[i].events); break;
			}
		}
		if (hub->now >= next_tick) {
			tick(hub);
			it_feed_tick(hub->feed, hub->now);
			it_presence_tick(hub->presence, hub->now);
			next_tick = hub->now + TICK_MS;
		}
		it_feed_run(hub->feed);
		publish_stats(hub);
		pthread_mutex_unlock(&hub->feed_lock);
	}
	pthread_mutex_lock(&hub->feed_lock);
	shutdown_streams(hub);
	pthread_mutex_unlock(&hub->feed_lock);
	return NULL;
}

/* ------------------------------------------------------------------ public */

int it_hub_start(it_hub **out, const it_config *cfg)
{
	it_hub *hub = calloc(1, sizeof(*hub));
	it_feed_opts fo;
	struct epoll_event ev;
	int rc = 0;

	if (hub == NULL)
		return -ENOMEM;
	hub->cfg = cfg;
	hub->cmd_tag.kind = TAG_CMD;
	hub->pg_tag.kind = TAG_PG;
	hub->presence_tag.kind = TAG_PRESENCE;
	hub->epfd = hub->evfd = -1;
	pthread_mutex_init(&hub->lock, NULL);
	pthread_mutex_init(&hub->feed_lock, NULL);
	it_list_init(&hub->incoming);
	it_list_init(&hub->all);
	hub->epfd = epoll_create1(EPOLL_CLOEXEC);
	hub->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (hub->epfd < 0 || hub->evfd < 0) {
		rc = -errno;
		goto fail;
	}
	memset(&fo, 0, sizeof(fo));
	fo.conninfo = cfg->database_url;
	fo.app_name = "imagetools.fcgi hub";
	fo.epfd = hub->epfd;
	fo.pg_tag = &hub->pg_tag;
	rc = it_feed_new(&hub->feed, &fo);
	if (rc < 0)
		goto fail;
	{
		it_presence_opts po = {.conninfo = cfg->database_url,
				       .app_name = "imagetools.fcgi presence",
				       .epfd = hub->epfd,
				       .pg_tag = &hub->presence_tag,
				       .ttl = cfg->presence_ttl};
		rc = it_presence_new(&hub->presence, &po);
		if (rc < 0)
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
	it_presence_free(hub->presence);
	it_feed_free(hub->feed);
	if (hub->epfd >= 0)
		close(hub->epfd);
	if (hub->evfd >= 0)
		close(hub->evfd);
	free(hub);
	return rc ? rc : -EIO;
}

int it_hub_park(it_hub *hub, const it_park *p)
{
	struct hstream *st;
	uint64_t one = 1;
	int64_t now = it_clock_ms();

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
	st->sub.ops = &stream_ops;
	st->sub.cursor = p->cursor;
	st->sub.until = p->until;
	snprintf(st->sub.device, sizeof(st->sub.device), "%s", p->device ? p->device : "");
	if (p->ident && it_ident_announces(p->ident)) {
		if ((st->ident = malloc(sizeof(*st->ident))) == NULL)
			goto nomem;
		*st->ident = *p->ident;
	}
	st->hub = hub;
	st->tag.kind = TAG_STREAM;
	it_list_init(&st->all_link);
	st->fd = p->fd;
	st->rid = p->request_id;
	st->kind = (uint8_t)p->kind;
	st->expires_unix = p->expires_unix;
	st->deadline_ms = now + p->timeout_ms;
	st->next_keepalive_ms = now + hub->cfg->keepalive_interval * 1000;
	st->last_progress_ms = now;
	st->max = (size_t)hub->cfg->stream_buffer;
	if (p->head_len && stream_put(st, p->head, p->head_len) < 0)
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
		free(st->ident);
		it_outq_free(&st->out);
		free(st);
	}
	pthread_mutex_lock(&hub->lock);
	hub->nstreams--;
	pthread_mutex_unlock(&hub->lock);
	return -ENOMEM;
}

int it_hub_lookup(it_hub *hub, const char *session, it_feed_info *out)
{
	int rc;

	pthread_mutex_lock(&hub->feed_lock);
	rc = it_feed_lookup(hub->feed, session, out);
	pthread_mutex_unlock(&hub->feed_lock);
	if (rc == 0)
		stat_add(&hub->stats.lookups, 1);
	return rc;
}

void it_hub_forget(it_hub *hub, const char *session)
{
	pthread_mutex_lock(&hub->feed_lock);
	it_feed_forget(hub->feed, session);
	pthread_mutex_unlock(&hub->feed_lock);
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
	out->checks = __atomic_load_n(&hub->stats.checks, __ATOMIC_RELAXED);
	out->lookups = __atomic_load_n(&hub->stats.lookups, __ATOMIC_RELAXED);
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
	it_presence_free(hub->presence);
	it_feed_free(hub->feed);
	close(hub->epfd);
	close(hub->evfd);
	pthread_mutex_destroy(&hub->lock);
	pthread_mutex_destroy(&hub->feed_lock);
	free(hub);
}

/* test_feed.c: the event-delivery core against an in-memory database and fake subscribers. */
#include "config.h"

#include "feed/feed.h"

#include "fakedb.h"
#include "guard.h"
#include "tap.h"

#include <errno.h>

/* ------------------------------------------------------------------ a fake subscriber */

struct fsub {
	it_feed_sub sub;
	int64_t ids[FAKE_EVENTS];
	int n;
	char transients[16][64]; /* "status:degraded", "resync:gap:7" */
	int nt;
	int batches;
	int ended;		 /* enum it_feed_end, 0 while subscribed */
	int room;		 /* events it takes before saying "no room"; -1: no limit */
	struct fsub *kill_other; /* unsubscribed by this one's first event */
	int free_self;		 /* unsubscribes and frees itself on its first event */
	it_feed_event *kept;	 /* the first event, referenced */
};

static int f_event(it_feed_sub *sub, it_feed_event *ev)
{
	struct fsub *s = (struct fsub *)sub;

	if (s->free_self) {
		it_feed_unsubscribe(sub);
		free(s);
		return -1;
	}
	if (s->room == 0)
		return 1;
	if (s->room > 0)
		s->room--;
	if (s->kill_other) {
		it_feed_unsubscribe(&s->kill_other->sub);
		s->kill_other = NULL;
	}
	if (s->kept == NULL)
		s->kept = it_feed_event_ref(ev);
	s->ids[s->n++] = ev->seq;
	return 0;
}

static int f_transient(it_feed_sub *sub, const it_feed_transient *t)
{
	struct fsub *s = (struct fsub *)sub;

	if (strcmp(t->type, "session.resync") == 0)
		snprintf(s->transients[s->nt++ % 16], 64, "resync:%s:%lld", t->reason, (long long)t->last_event_id);
	else if (strcmp(t->type, "session.revoked") == 0)
		snprintf(s->transients[s->nt++ % 16], 64, "revoked:%s:%s", t->reason, t->device_id);
	else
		snprintf(s->transients[s->nt++ % 16], 64, "status:%s", t->status);
	return 0;
}

static int f_batch(it_feed_sub *sub)
{
	((struct fsub *)sub)->batches++;
	return 0;
}

static void f_ended(it_feed_sub *sub, enum it_feed_end why)
{
	((struct fsub *)sub)->ended = (int)why;
}

static const it_feed_sub_ops fops = {f_event, f_transient, f_batch, f_ended, NULL};

/* Subscribers that count their admission, and what came before it. */
static int admitted_calls, admitted_before_transients;
static void f_admitted(it_feed_sub *sub)
{
	admitted_calls++;
	if (((struct fsub *)sub)->nt == 0 && ((struct fsub *)sub)->n == 0)
		admitted_before_transients++;
}

static const it_feed_sub_ops fops_adm = {f_event, f_transient, f_batch, f_ended, f_admitted};

static struct fsub *fsub_new(void)
{
	struct fsub *s = calloc(1, sizeof(*s));
	s->sub.ops = &fops;
	s->room = -1;
	return s;
}

static void fsub_free(struct fsub *s)
{
	it_feed_unsubscribe(&s->sub);
	it_feed_event_unref(s->kept);
	free(s);
}

/* The ids it got are exactly from..to, in order. */
static int got_run(const struct fsub *s, int64_t from, int64_t to)
{
	if (s->n != to - from + 1)
		return 0;
	for (int i = 0; i < s->n; i++)
		if (s->ids[i] != from + i)
			return 0;
	return 1;
}

static time_t fake_now = 1000000;
static time_t fake_wall(void)
{
	return fake_now;
}

static it_feed *setup(struct fake *fk, unsigned ring)
{
	it_feed_opts o = {.ring_events = ring, .linger_ms = 30000, .wall = fake_wall};
	it_feed *f;

	memset(fk, 0, sizeof(*fk));
	if (it_feed_new_db(&f, &o, &fake_ops, fk) != 0)
		abort();
	fk->feed = f;
	it_feed_tick(f, 1000);
	fake_up(fk);
	return f;
}

static void teardown(struct fake *fk)
{
	fake_clear(fk);
	it_feed_free(fk->feed);
}

/* ------------------------------------------------------------------ tests */

static void test_parse_notify(void)
{
	static const char good[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:12345";
	static const char kept[] = "kept:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:678";
	static const char *bad[] = {"",
				    ":",
				    "abc",
				    "abc:",
				    ":12",
				    "abc:1x",
				    "abc:-1",
				    "abc:1234567890123456789",
				    "a:b:c",
				    "kept:",
				    "kept::5",
				    "kept:abc:",
				    "kept:abc:0",
				    "kept:abc:x",
				    "kept:a:b:5",
				    "expires:",
				    "expires:abc",
				    "expires:abc:0",
				    "expires:abc:1y"};
	char id[72];
	int64_t seq = -1;
	enum it_feed_note kind = 0;
	int all_safe = 1, kept_safe = 1;

	/* Every prefix of a good payload, placed right before an unmapped
	 * page: no read past its end, and only the prefixes that end in a
	 * whole number parse. */
	for (size_t n = 0; n <= sizeof(good) - 1; n++) {
		size_t mapped;
		unsigned char *p = guard_copy(good, n, &mapped);
		int rc = it_feed_parse_notify((const char *)p, n, id, sizeof(id), &seq, &kind, NULL);
		int want_ok = n > 33;
		if ((rc == 0) != want_ok)
			all_safe = 0;
		guard_free(p, n, mapped);
	}
	ok(all_safe, "every prefix of a payload parses or is refused, with no read past its end");
	/* The same for the "kept:" form. Its shorter prefixes are not
	 * "kept:" payloads: "kept" and "kep" have no colon and are refused,
	 * and none of them may be taken for a first kept id. */
	for (size_t n = 0; n <= sizeof(kept) - 1; n++) {
		size_t mapped;
		unsigned char *p = guard_copy(kept, n, &mapped);
		int rc = it_feed_parse_notify((const char *)p, n, id, sizeof(id), &seq, &kind, NULL);
		int want_ok = n > 38;
		if ((rc == 0) != want_ok || (rc == 0 && (kind != IT_FEED_NOTE_KEPT || strlen(id) != 32)))
			kept_safe = 0;
		guard_free(p, n, mapped);
	}
	ok(kept_safe, "every prefix of a kept: payload parses as one or is refused, with no read past its end");
	ok(it_feed_parse_notify(good, strlen(good), id, sizeof(id), &seq, &kind, NULL) == 0 && seq == 12345 &&
		   strlen(id) == 32 && kind == IT_FEED_NOTE_EVENT,
	   "<session>:<seq> gives the id and the seq of an event");
	ok(it_feed_parse_notify("BBBBBBBBBBBBBBBBBBBBBBBBBB:0", 28, id, sizeof(id), &seq, &kind, NULL) == 0 &&
		   seq == 0 && kind == IT_FEED_NOTE_ENDED,
	   "seq 0 (the session ended) parses");
	ok(it_feed_parse_notify(kept, strlen(kept), id, sizeof(id), &seq, &kind, NULL) == 0 && seq == 678 &&
		   kind == IT_FEED_NOTE_KEPT && strcmp(id, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") == 0,
	   "kept:<session>:<seq> gives the id and the first kept id");
	ok(it_feed_parse_notify("expires:AAAA:1700000000", 23, id, sizeof(id), &seq, &kind, NULL) == 0 &&
		   seq == 1700000000 && kind == IT_FEED_NOTE_EXPIRES && strcmp(id, "AAAA") == 0,
	   "expires:<session>:<t> gives the id and the new expiry");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = it_feed_parse_notify(bad[i], strlen(bad[i]), id, sizeof(id), &seq, &kind, NULL);
		if (strcmp(bad[i], "a:b:c") == 0)
			ok(rc == -EINVAL, "a non-numeric seq after the last colon is refused");
		else
			ok(rc == -EINVAL, "malformed payload '%s' is refused", bad[i]);
	}
	ok(it_feed_parse_notify(good, strlen(good), id, 20, &seq, &kind, NULL) == -EINVAL,
	   "an id longer than the buffer is refused");
	ok(it_feed_parse_notify(kept, strlen(kept), id, 20, &seq, &kind, NULL) == -EINVAL,
	   "a kept: id longer than the buffer is refused");
}

static void test_parse_carried(void)
{
	static const char good[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:5:image.uploaded\n{\"id\":5,\"data\":{\"n\":1}}";
	static const char *bad[] = {"A:5:t\n",	"A:5:t\n{",    "A:5:\n{}", "A:0:t\n{}", "A:x:t\n{}",   "A::t\n{}",
				    ":5:t\n{}", "A:5:a:b\n{}", "A:5\n{}",  "A:5:t\n[]", "kept:A:5\n{}"};
	const size_t nl = strchr(good, '\n') - good;
	char id[72];
	int64_t seq;
	enum it_feed_note kind;
	it_feed_carried ev;
	int all_safe = 1;

	/* Every prefix, before an unmapped page: what parses is either the
	 * short form "<id>:5" or the event with exactly the JSON the prefix
	 * holds after the newline (a complete object's last byte). */
	for (size_t n = 0; n <= sizeof(good) - 1; n++) {
		size_t mapped;
		unsigned char *p = guard_copy(good, n, &mapped);
		int rc = it_feed_parse_notify((const char *)p, n, id, sizeof(id), &seq, &kind, &ev);
		int want_short = n == 34, want_carried = n > nl + 2 && good[n - 1] == '}';
		if ((rc == 0) != (want_short || want_carried))
			all_safe = 0;
		else if (rc == 0 && (kind != IT_FEED_NOTE_EVENT || seq != 5 || strlen(id) != 32))
			all_safe = 0;
		else if (rc == 0 && want_short && ev.json != NULL)
			all_safe = 0;
		else if (rc == 0 && want_carried &&
			 (ev.json != (const char *)p + nl + 1 || ev.json + ev.json_len != (const char *)p + n ||
			  ev.type_len != 14 || memcmp(ev.type, "image.uploaded", 14) != 0))
			all_safe = 0;
		guard_free(p, n, mapped);
	}
	ok(all_safe, "every prefix of a carried event parses as the short form, as the event, or not at all");
	ok(it_feed_parse_notify(good, strlen(good), id, sizeof(id), &seq, &kind, &ev) == 0 && ev.json &&
		   ev.json_len == strlen(good) - nl - 1 && seq == 5,
	   "<session>:<seq>:<type>\\n<json> gives the event");
	ok(it_feed_parse_notify(good, 34, id, sizeof(id), &seq, &kind, &ev) == 0 && ev.json == NULL,
	   "the short form carries nothing");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(it_feed_parse_notify(bad[i], strlen(bad[i]), id, sizeof(id), &seq, &kind, &ev) == -EINVAL,
		   "malformed carried payload %zu is refused", i);
}

static void test_event_formats(void)
{
	char big[70000];
	it_feed_event *ev = it_feed_event_new(42, "image.uploaded", "{\"id\":42}", 9);
	struct iovec a, b;

	ok(it_feed_event_wire(ev, IT_FEED_FMT_SSE, &a) == 0 && it_feed_event_wire(ev, IT_FEED_FMT_SSE, &b) == 0 &&
		   a.iov_base == b.iov_base,
	   "an event is formatted once per wire format, then shared");
	ok(a.iov_len == strlen("id: 42\nevent: image.uploaded\ndata: {\"id\":42}\n\n") &&
		   memcmp(a.iov_base, "id: 42\nevent: image.uploaded\ndata: {\"id\":42}\n\n", a.iov_len) == 0,
	   "SSE form: id, event, data lines");
	ok(it_feed_event_wire(ev, IT_FEED_FMT_WS, &a) == 0 && a.iov_len == 11 &&
		   ((unsigned char *)a.iov_base)[0] == 0x81 && ((unsigned char *)a.iov_base)[1] == 9,
	   "WebSocket form: a final text frame, 7-bit length");
	it_feed_event_unref(ev);
	memset(big, 'x', sizeof(big));
	ev = it_feed_event_new(1, "t", big, 200);
	ok(it_feed_event_wire(ev, IT_FEED_FMT_WS, &a) == 0 && a.iov_len == 204 &&
		   ((unsigned char *)a.iov_base)[1] == 126,
	   "WebSocket form: 16-bit length from 126 bytes");
	it_feed_event_unref(ev);
	ev = it_feed_event_new(1, "t", big, sizeof(big));
	ok(it_feed_event_wire(ev, IT_FEED_FMT_WS, &a) == 0 && a.iov_len == sizeof(big) + 10 &&
		   ((unsigned char *)a.iov_base)[1] == 127,
	   "WebSocket form: 64-bit length from 65536 bytes");
	it_feed_event_unref(ev);
}

static void test_basic_flow(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new();
	it_feed_stats st;

	fake_append(fs, 3);
	ok(it_feed_subscribe(f, &a->sub, "not a session id", 0, 0) == -EINVAL, "a malformed session id is refused");
	ok(it_feed_subscribe(f, &a->sub, fs->id, 0, IT_FEED_HELLO) == 0, "subscribe");
	ok(a->n == 0 && fk.busy == 0, "nothing is called back and nothing sent inside subscribe");
	it_feed_run(f);
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) == 0, "the session is checked first");
	fake_settle(&fk);
	ok(got_run(a, 1, 3), "then its log is read and handed over in order");
	is_str(a->transients[0], "status:connected", "IT_FEED_HELLO: connection.status connected on admission");
	is_int(fk.checks, 1, "one check");
	is_int(fk.reads, 1, "one read");

	/* A second subscriber and a live event: one read for both. */
	it_feed_subscribe(f, &b->sub, fs->id, 3, 0);
	it_feed_run(f);
	is_int(fk.busy, 0, "a subscriber up to date with a checked session costs no query");
	fake_append(fs, 1);
	fake_notify(&fk, fs, 4);
	fake_settle(&fk);
	ok(got_run(a, 1, 4) && got_run(b, 4, 4), "a NOTIFY brings the new event to both");
	is_int(fk.reads, 2, "with one read of the log for both");
	is_int(it_feed_sub_count(&a->sub), 2, "two subscribers on the session");

	/* Notifications for unknown sessions and old seqs cost nothing. */
	it_feed_db_notify(f, "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC:5");
	it_feed_db_notify(f, "garbage");
	fake_notify(&fk, fs, 2);
	is_int(fk.busy, 0, "NOTIFYs for unwatched sessions, malformed ones and old seqs send nothing");

	it_feed_stats_get(f, &st);
	ok(st.delivered == 5 && st.subs == 2 && st.sessions == 1 && st.db_up,
	   "stats: delivered, subscribers, sessions");
	fsub_free(a);
	fsub_free(b);
	teardown(&fk);
}

static void test_shared_events(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new();

	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	fake_append(fs, 1);
	fake_notify(&fk, fs, 1);
	fake_settle(&fk);
	ok(a->kept && a->kept == b->kept, "every subscriber of a session is handed the same event object");
	fsub_free(a);
	fsub_free(b);
	teardown(&fk);
}

static void test_ring_and_linger(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 8);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b, *c;
	it_feed_info info;
	int reads;

	fake_append(fs, 5);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 5), "first subscriber reads the log");
	reads = fk.reads;

	b = fsub_new();
	it_feed_subscribe(f, &b->sub, fs->id, 2, 0);
	it_feed_run(f);
	ok(got_run(b, 3, 5) && fk.busy == 0 && fk.reads == reads && fk.checks == 1,
	   "a resume inside the ring is served from it: no query at all");

	/* Everyone leaves; the session lingers with its check and ring. */
	fsub_free(a);
	fsub_free(b);
	it_feed_tick(f, 1000 + 29000);
	ok(it_feed_lookup(f, fs->id, &info) == 0 && info.last_seq == 5 && info.first_kept == 1,
	   "a session nobody watches lingers: lookup answers without a query");
	is_int(info.held_from, 1, "lookup says the ring holds the events from 1");
	fake_append(fs, 1);
	fake_notify(&fk, fs, 6);
	ok(fk.busy == 0 && it_feed_lookup(f, fs->id, &info) == 0 && info.last_seq == 6,
	   "a NOTIFY for a lingering session raises its last id without reading");
	c = fsub_new();
	it_feed_subscribe(f, &c->sub, fs->id, 5, 0);
	it_feed_run(f);
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) != 0, "a re-poll of a lingering session needs no check");
	fake_settle(&fk);
	ok(got_run(c, 6, 6), "and the event it missed comes from one read");
	fsub_free(c);
	it_feed_tick(f, 1000 + 29000 + 31000);
	ok(it_feed_lookup(f, fs->id, &info) == -ENOENT, "after the linger time the session is forgotten");
	ok(it_feed_lookup(f, "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD", &info) == -ENOENT, "lookup of an unknown session");
	teardown(&fk);
}

static void test_resync(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new(), *d = fsub_new();

	fake_append(fs, 10);
	fake_prune(fs, 4);
	it_feed_subscribe(f, &a->sub, fs->id, 1, 0);
	it_feed_run(f);
	fake_settle(&fk);
	is_str(a->transients[0], "resync:cursor-expired:10",
	       "a cursor older than the first kept event: cursor-expired");
	ok(a->n == 0 && a->sub.cursor == 10, "and it continues from the last id");
	fake_append(fs, 1);
	fake_notify(&fk, fs, 11);
	fake_settle(&fk);
	ok(got_run(a, 11, 11), "then gets new events only");

	it_feed_subscribe(f, &b->sub, fs->id, 4, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(b->nt == 0 && got_run(b, 5, 11), "a cursor right before the first kept event is served (no resync)");

	/* Ahead of what the feed knows: its NOTIFY may not have come yet, so
	 * the session is checked again before anything is said. */
	fake_append(fs, 1); /* 12 committed; its NOTIFY is late */
	it_feed_subscribe(f, &c->sub, fs->id, 12, 0);
	it_feed_run(f);
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) == 0, "a cursor ahead of the known last id is checked again");
	fake_settle(&fk);
	ok(c->nt == 0, "and not told to resync when the database has it");
	fake_notify(&fk, fs, 12);
	fake_settle(&fk);
	ok(c->n == 0 && got_run(a, 11, 12), "the late NOTIFY then serves the others, and it gets nothing twice");
	fake_append(fs, 1);
	fake_notify(&fk, fs, 13);
	fake_settle(&fk);
	ok(got_run(c, 13, 13), "and the next event reaches it");

	it_feed_subscribe(f, &d->sub, fs->id, 500, 0);
	it_feed_run(f);
	fake_settle(&fk);
	is_str(d->transients[0], "resync:cursor-ahead:13", "a cursor ahead of the database: cursor-ahead");
	ok(d->sub.cursor == 13, "and it continues from the last id");
	fsub_free(a);
	fsub_free(b);
	fsub_free(c);
	fsub_free(d);
	teardown(&fk);
}

static void test_fresh(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new();
	int checks;

	fake_append(fs, 10);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 10), "the ring holds 1..10");
	/* Pruned in the database, without a notification. */
	fake_prune(fs, 4);
	checks = fk.checks;
	it_feed_subscribe(f, &b->sub, fs->id, 1, IT_FEED_FRESH);
	it_feed_run(f);
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) == 0, "IT_FEED_FRESH: an older cursor waits for a new check");
	fake_settle(&fk);
	is_str(b->transients[0], "resync:cursor-expired:10", "IT_FEED_FRESH: cursor-expired as the log says");
	ok(b->n == 0 && fk.checks == checks + 1, "and no pruned event from the ring");
	checks = fk.checks;
	it_feed_subscribe(f, &c->sub, fs->id, 10, IT_FEED_FRESH);
	it_feed_run(f);
	ok(fk.busy == 0 && fk.checks == checks && c->nt == 0,
	   "IT_FEED_FRESH: a cursor at the newest id costs no query");
	fsub_free(a);
	fsub_free(b);
	fsub_free(c);
	teardown(&fk);
}

static void test_pause_and_gap(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 4);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new();

	fake_append(fs, 2);
	a->room = 1;
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 1) && got_run(b, 1, 2), "a subscriber with no room is paused after what it took");
	fake_append(fs, 3);
	fake_notify(&fk, fs, 5);
	fake_settle(&fk);
	ok(got_run(a, 1, 1) && got_run(b, 1, 5), "a paused subscriber is offered nothing; the others go on");
	a->room = -1;
	it_feed_resume(&a->sub);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 5), "resumed, it gets the rest from its cursor, exactly once");

	/* Paused long enough for the log to be pruned past its cursor. */
	a->room = 0;
	fake_append(fs, 1);
	fake_notify(&fk, fs, 6);
	fake_settle(&fk);
	fake_append(fs, 20);
	fake_prune(fs, 9);
	fake_notify(&fk, fs, 26);
	fake_settle(&fk);
	a->room = -1;
	it_feed_resume(&a->sub);
	it_feed_run(f);
	fake_settle(&fk);
	is_str(a->transients[0], "resync:gap:9", "a gap in the rows after its cursor: session.resync gap");
	ok(a->n == 5 + 17 && a->ids[5] == 10 && a->ids[a->n - 1] == 26, "then the events after the gap, in order");
	fsub_free(a);
	fsub_free(b);
	teardown(&fk);
}

static void test_unsubscribe_in_delivery(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new(), *d = fsub_new();

	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &d->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &c->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	a->kill_other = b; /* a unsubscribes b, the next one */
	d->free_self = 1;  /* d ends and frees itself */
	fake_append(fs, 2);
	fake_notify(&fk, fs, 2);
	fake_settle(&fk);
	ok(got_run(a, 1, 2) && b->n == 0 && got_run(c, 1, 2),
	   "a callback may unsubscribe the next subscriber, or end and free its own: the walk goes on");
	is_int(it_feed_sub_count(&a->sub), 2, "two left");
	it_feed_unsubscribe(&b->sub);
	ok(1, "unsubscribing twice is harmless");
	fsub_free(a);
	fsub_free(b);
	fsub_free(c);
	teardown(&fk);
}

static void test_session_end(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 10), *gone = fake_add(&fk, 'B', fake_now + 10);
	struct fsub *a = fsub_new(), *b = fsub_new(), *u = fsub_new(), *e = fsub_new();

	gone->exists = 0;
	it_feed_subscribe(f, &u->sub, gone->id, 0, 0);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	is_int(fk.last_batch, 2, "two sessions checked in one query");
	is_int(u->ended, IT_FEED_END_UNKNOWN, "an unknown session ends its subscriber");
	ok(a->ended == 0, "a live one does not");
	fake_notify(&fk, fs, 0);
	ok(a->ended == IT_FEED_END_DELETED && b->ended == IT_FEED_END_DELETED, "NOTIFY seq 0 ends every subscriber");
	is_int(it_feed_sub_count(&a->sub), 0, "and they are unsubscribed");

	/* Expiry: the clock passes it; the database confirms. */
	fs = fake_add(&fk, 'E', fake_now + 10);
	it_feed_subscribe(f, &e->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	fake_now += 11;
	fs->exists = 0;
	it_feed_tick(f, 5000);
	fake_settle(&fk);
	is_int(e->ended, IT_FEED_END_EXPIRED, "a session past its expiry ends its subscribers");
	fsub_free(a);
	fsub_free(b);
	fsub_free(u);
	fsub_free(e);
	teardown(&fk);
}

static void test_degraded(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600), *fs2 = fake_add(&fk, 'B', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new();
	it_feed_info info;

	fake_append(fs, 2);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 1, 0);
	it_feed_subscribe(f, &c->sub, fs2->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	fake_append(fs, 1);
	fk.up = 0;
	fake_notify(&fk, fs, 3); /* the read it asks for cannot be sent */
	fake_down(&fk);
	is_str(a->transients[0], "status:degraded", "the LISTEN connection lost: connection.status degraded");
	ok(it_feed_lookup(f, fs->id, &info) == -ENOENT, "and nothing cached is trusted");
	fake_append(fs, 2); /* committed while nobody listened */
	fake_append(fs2, 1);
	fake_up(&fk);
	is_str(a->transients[1], "status:connected", "back: connection.status connected");
	fake_settle(&fk);
	ok(got_run(a, 1, 5) && got_run(b, 2, 5) && got_run(c, 1, 1),
	   "every subscriber re-reads from its cursor: nothing lost, nothing twice");
	is_int(fk.last_batch, 2, "one read for both sessions");
	fsub_free(a);
	fsub_free(b);
	fsub_free(c);
	teardown(&fk);
}

static void test_many_events_and_pages(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 16);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new();

	fake_append(fs, 1100);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 1100), "a log longer than one read arrives in pages, in order");
	is_int(fk.reads, 3, "three reads of 500");
	it_feed_subscribe(f, &b->sub, fs->id, 1090, 0);
	it_feed_run(f);
	ok(got_run(b, 1091, 1100) && fk.busy == 0, "the ring keeps the newest events");
	fsub_free(a);
	fsub_free(b);
	teardown(&fk);
}

static void fake_kept(struct fake *fk, struct fake_sess *s, int64_t first_kept)
{
	char p[128];
	snprintf(p, sizeof(p), "kept:%s:%lld", s->id, (long long)first_kept);
	it_feed_db_notify(fk->feed, p);
	it_feed_run(fk->feed);
}

/* Pruning announces the new first kept id: the cached check stays
 * trustworthy, and a cursor pruned away gets cursor-expired without a query. */
static void test_kept_notify(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 8);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new(), *d = fsub_new();
	it_feed_info info;
	int checks, reads;

	fake_append(fs, 10);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(a, 1, 10), "the log is read");
	it_feed_unsubscribe(&a->sub); /* a long-poll answered: the session lingers */
	checks = fk.checks;
	reads = fk.reads;

	fake_prune(fs, 6);
	fake_kept(&fk, fs, 7);
	ok(fk.busy == 0 && it_feed_lookup(f, fs->id, &info) == 0 && info.first_kept == 7 && info.last_seq == 10,
	   "kept: raises the cached first kept id, without a query");
	it_feed_subscribe(f, &b->sub, fs->id, 2, 0);
	it_feed_run(f);
	is_str(b->transients[0], "resync:cursor-expired:10",
	       "a re-poll from a pruned cursor gets cursor-expired from the cache, not events from the ring");
	ok(b->n == 0 && b->sub.cursor == 10, "and continues from the last id");
	it_feed_subscribe(f, &c->sub, fs->id, 6, 0);
	it_feed_run(f);
	ok(got_run(c, 7, 10) && c->nt == 0, "a cursor at first kept - 1 is still served, from the ring");
	ok(fk.busy == 0 && fk.checks == checks && fk.reads == reads, "none of this cost a query");

	fake_kept(&fk, fs, 3);
	ok(it_feed_lookup(f, fs->id, &info) == 0 && info.first_kept == 7, "an older kept: never lowers it");
	it_feed_db_notify(f, "kept:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC:5");
	it_feed_db_notify(f, "kept:garbage");
	ok(fk.busy == 0, "kept: for an unwatched session or malformed costs nothing");

	/* A check whose snapshot predates the prune, answered after its
	 * notification, does not lower the first kept id either. */
	fs->first_kept = 5;
	it_feed_subscribe(f, &d->sub, fs->id, 11, 0); /* ahead: asks for a new check */
	it_feed_run(f);
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) == 0, "a cursor ahead of the cache asks the database");
	fake_settle(&fk);
	is_str(d->transients[0], "resync:cursor-ahead:10", "which calls it ahead");
	ok(it_feed_lookup(f, fs->id, &info) == 0 && info.first_kept == 7, "an older check answer keeps the higher id");

	/* The expiry changes: the cache follows, and past it the database decides. */
	{
		char p[128];
		snprintf(p, sizeof(p), "expires:%s:%lld", fs->id, (long long)fake_now + 60);
		it_feed_db_notify(f, p);
		ok(it_feed_lookup(f, fs->id, &info) == 0 && info.expires == fake_now + 60,
		   "expires: moves the cached expiry");
		snprintf(p, sizeof(p), "expires:%s:%lld", fs->id, (long long)fake_now);
		it_feed_db_notify(f, p);
		ok(it_feed_lookup(f, fs->id, &info) == -ENOENT && fk.busy == 0,
		   "an expiry moved to now: lookup no longer vouches for the session");
		snprintf(p, sizeof(p), "expires:%s:%lld", fs->id, (long long)fake_now + 3600);
		it_feed_db_notify(f, p);
	}

	/* The connection drops: the next check decides again. */
	fake_down(&fk);
	fake_up(&fk);
	fake_settle(&fk);
	ok(it_feed_lookup(f, fs->id, &info) == 0 && info.first_kept == 5, "after a reconnect the check is taken as is");
	fsub_free(a);
	fsub_free(b);
	fsub_free(c);
	fsub_free(d);
	teardown(&fk);
}

/* Long-poll clients answered and coming back (unsubscribe, subscribe again
 * from their cursor) cost no query: one read per event for all of them. */
static void test_repoll_no_query(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 16);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *subs[3];
	it_feed_info info;
	int checks, reads, all_ok = 1, no_query = 1, looked = 1;

	fake_append(fs, 2);
	for (int i = 0; i < 3; i++) {
		subs[i] = fsub_new();
		it_feed_subscribe(f, &subs[i]->sub, fs->id, 0, 0);
	}
	it_feed_run(f);
	fake_settle(&fk);
	checks = fk.checks;
	reads = fk.reads;
	for (int round = 0; round < 20; round++) {
		/* Each answered poll comes back from where it stopped. */
		for (int i = 0; i < 3; i++) {
			int64_t cur = subs[i]->sub.cursor;
			it_feed_unsubscribe(&subs[i]->sub);
			if (it_feed_lookup(f, fs->id, &info) < 0 || info.last_seq != cur)
				looked = 0;
			it_feed_subscribe(f, &subs[i]->sub, fs->id, cur, 0);
		}
		it_feed_run(f);
		if (fk.busy)
			no_query = 0;
		fake_append(fs, 1);
		fake_notify(&fk, fs, fs->last);
		fake_settle(&fk);
	}
	/* And one that lost an answer comes back from an older cursor
	 * inside the ring. */
	it_feed_unsubscribe(&subs[0]->sub);
	subs[0]->n = 0;
	it_feed_subscribe(f, &subs[0]->sub, fs->id, fs->last - 5, 0);
	it_feed_run(f);
	if (fk.busy || !got_run(subs[0], fs->last - 4, fs->last))
		no_query = 0;
	for (int i = 1; i < 3; i++)
		if (!got_run(subs[i], 1, 22))
			all_ok = 0;
	ok(looked, "between polls, lookup answers with the cursor the client holds");
	ok(no_query, "a re-poll inside the ring sends no query");
	is_int(fk.checks, checks, "no check after the first");
	is_int(fk.reads - reads, 20, "one read per event for every poll of the session");
	ok(all_ok, "every poll saw every event once, in order");
	for (int i = 0; i < 3; i++)
		fsub_free(subs[i]);
	ok(it_feed_lookup(f, fs->id, &info) == 0, "the session lingers");
	it_feed_forget(f, fs->id);
	ok(it_feed_lookup(f, fs->id, &info) == -ENOENT && fk.busy == 0,
	   "forget (this process deleted it): lookup no longer vouches for it");
	teardown(&fk);
}

/* Events carried by their NOTIFY reach up-to-date subscribers with no read;
 * anyone behind them is read for, exactly once and in order. */
static void test_carried(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 16);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *a = fsub_new(), *b = fsub_new(), *c = fsub_new();
	it_feed_stats st;
	int reads;

	fake_append(fs, 3);
	it_feed_subscribe(f, &a->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &b->sub, fs->id, 3, 0);
	it_feed_run(f);
	fake_settle(&fk);
	reads = fk.reads;
	fake_append(fs, 2);
	fake_carry(&fk, fs, 4);
	fake_carry(&fk, fs, 5);
	ok(fk.busy == 0 && fk.reads == reads, "carried events send no read");
	ok(got_run(a, 1, 5) && got_run(b, 4, 5), "and reach every up-to-date subscriber in order");
	ok(a->ids[3] == 4 && a->kept != NULL, "as events like any other");

	/* A notification that carried nothing (too large), then one that
	 * does: the ring starts again at the newer one, the missing one is
	 * read, nothing twice. */
	fake_append(fs, 2);
	it_feed_db_notify(f, "garbage"); /* nothing */
	fake_carry(&fk, fs, 7);		 /* 6 never announced to this feed */
	ok(fk.busy && strcmp(fk.sql, it_feed_check_sql) != 0, "a subscriber behind the carried event asks for a read");
	fake_settle(&fk);
	ok(got_run(a, 1, 7) && got_run(b, 4, 7), "which brings the missing one first, then the carried one once");

	/* A lingering session keeps taking carried events: a re-poll right
	 * after needs no query. */
	fsub_free(b);
	b = NULL;
	it_feed_unsubscribe(&a->sub);
	reads = fk.reads;
	fake_append(fs, 1);
	fake_carry(&fk, fs, 8);
	it_feed_subscribe(f, &c->sub, fs->id, 7, 0);
	it_feed_run(f);
	ok(fk.busy == 0 && fk.reads == reads && got_run(c, 8, 8), "a re-poll finds the carried event in the ring");

	/* A carried event while a read is in flight for an earlier one. */
	fake_append(fs, 1);
	fake_notify(&fk, fs, 9); /* short: a read is sent */
	ok(fk.busy, "a short notification asks for a read");
	fake_append(fs, 1);
	fake_carry(&fk, fs, 10);
	fake_settle(&fk);
	ok(got_run(c, 8, 10), "a carried event during a read: every event once, in order");
	it_feed_stats_get(f, &st);
	is_int((int)st.carried, 5, "carried events counted");
	fsub_free(a);
	fsub_free(c);
	teardown(&fk);
}

/* A slow subscriber far behind, taking a few events per resume, is served
 * from the rows of the last read instead of reading them again each time. */
static void test_slow_reader_reads(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 16);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *fast = fsub_new(), *slow = fsub_new();
	int rounds = 0, reads;

	fake_append(fs, 1100);
	it_feed_subscribe(f, &fast->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(fast, 1, 1100), "a reader at full speed gets the whole log");
	reads = fk.reads;
	slow->room = 4;
	it_feed_subscribe(f, &slow->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	while (slow->n < 1100 && rounds++ < 1000) {
		slow->room = 4;
		it_feed_resume(&slow->sub);
		it_feed_run(f);
		fake_settle(&fk);
	}
	ok(got_run(slow, 1, 1100), "a reader taking 4 events per resume gets every event once, in order");
	ok(fk.reads - reads <= 4, "with one read per 500 events, not one per resume (%d reads)", fk.reads - reads);
	slow->room = -1;
	it_feed_resume(&slow->sub);
	it_feed_tick(f, 2000);
	fake_append(fs, 1);
	fake_notify(&fk, fs, 1101);
	fake_settle(&fk);
	ok(got_run(fast, 1, 1101) && slow->ids[slow->n - 1] == 1101, "and both continue with new events");
	fsub_free(fast);
	fsub_free(slow);
	teardown(&fk);
}

/* ------------------------------------------------------------------ credentials: tokens */

static void test_parse_revoked(void)
{
	static const char good[] = "revoked:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:dev_abcdefghijklmnop";
	static const char *bad[] = {"revoked:",
				    "revoked::dev_a",
				    "revoked:AAAA:",
				    "revoked:AAAA",
				    "revoked:A:B:C",
				    "revoked:AA AA:dev_a",
				    "revoked:AAAA:dev_abcdefghijklmnopqrstuvwxyz",
				    "revoked:AAAA:dev.x"};
	char id[72];
	int64_t num = -1;
	enum it_feed_note kind = 0;
	it_feed_carried ce;
	int safe = 1;

	for (size_t n = 0; n <= sizeof(good) - 1; n++) {
		size_t mapped;
		unsigned char *p = guard_copy(good, n, &mapped);
		int rc = it_feed_parse_notify((const char *)p, n, id, sizeof(id), &num, &kind, &ce);
		/* "revoked:<32>:" is 42 bytes: a prefix with at least one
		 * character of the device id parses as a revocation. */
		int want_ok = n > 41;
		if ((rc == 0) != want_ok || (rc == 0 && (kind != IT_FEED_NOTE_REVOKED || strlen(id) != 32)))
			safe = 0;
		guard_free(p, n, mapped);
	}
	ok(safe, "every prefix of a revoked: payload parses as one or is refused, with no read past its end");
	ok(it_feed_parse_notify(good, strlen(good), id, sizeof(id), &num, &kind, &ce) == 0 &&
		   kind == IT_FEED_NOTE_REVOKED && strcmp(id, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") == 0 &&
		   ce.device_len == 20 && memcmp(ce.device, "dev_abcdefghijklmnop", 20) == 0 && ce.json == NULL,
	   "revoked:<session>:<device> gives the session and the device id");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ok(it_feed_parse_notify(bad[i], strlen(bad[i]), id, sizeof(id), &num, &kind, &ce) == -EINVAL,
		   "malformed revocation '%s' is refused", bad[i]);
	ok(it_feed_parse_notify(good, strlen(good), id, 20, &num, &kind, &ce) == -EINVAL,
	   "a revoked: session id longer than the buffer is refused");
}

static void revoke_notify(struct fake *fk, struct fake_sess *s, const char *device)
{
	char p[128];
	snprintf(p, sizeof(p), "revoked:%s:%s", s->id, device);
	it_feed_db_notify(fk->feed, p);
	it_feed_run(fk->feed);
}

static void test_revoke(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600), *other = fake_add(&fk, 'B', fake_now + 3600);
	struct fsub *tok = fsub_new(), *tok2 = fsub_new(), *sid = fsub_new(), *elsewhere = fsub_new(),
		    *late = fsub_new();
	int reads;

	admitted_calls = admitted_before_transients = 0;
	tok->sub.ops = &fops_adm;
	snprintf(tok->sub.device, sizeof(tok->sub.device), "dev_phone000000000000");
	snprintf(tok2->sub.device, sizeof(tok2->sub.device), "dev_phone000000000000");
	snprintf(elsewhere->sub.device, sizeof(elsewhere->sub.device), "dev_phone000000000000");
	tok->sub.until = tok2->sub.until = fake_now + 3600;
	fake_append(fs, 2);
	it_feed_subscribe(f, &tok->sub, fs->id, 0, IT_FEED_HELLO);
	it_feed_subscribe(f, &tok2->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &sid->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &elsewhere->sub, other->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	ok(got_run(tok, 1, 2) && got_run(sid, 1, 2), "token and session-id subscribers get the same events");
	is_int(admitted_calls, 1, "the admitted op is called once for the subscriber that has one");
	is_int(admitted_before_transients, 1, "before its connection.status and its events");
	reads = fk.reads + fk.checks;
	revoke_notify(&fk, fs, "dev_phone000000000000");
	is_str(tok->transients[tok->nt - 1], "revoked:revoked:dev_phone000000000000",
	       "a revoked device's subscriber is told session.revoked (reason, device id)");
	ok(tok->ended == IT_FEED_END_REVOKED && tok2->ended == IT_FEED_END_REVOKED,
	   "then ended with IT_FEED_END_REVOKED, every subscriber of that device");
	ok(sid->ended == 0 && sid->nt == 0, "a session-id subscriber of the same session is untouched");
	ok(elsewhere->ended == 0, "a subscriber of another session is untouched (the session is part of the name)");
	is_int(it_feed_sub_count(&sid->sub), 1, "one subscriber left on the session");
	is_str(it_feed_sub_session(&sid->sub), fs->id, "a subscriber's session id, for presence");
	ok(it_feed_sub_session(&tok->sub) == NULL, "none once it is no longer subscribed");
	is_int(fk.reads + fk.checks, reads, "a revocation costs no query");
	fake_append(fs, 1);
	fake_notify(&fk, fs, 3);
	fake_settle(&fk);
	ok(got_run(sid, 1, 3) && got_run(tok, 1, 2), "events go on for the others, not for the revoked");

	/* A subscriber with that device that comes after the revocation
	 * (its token checked a moment before it committed) is not admitted. */
	snprintf(late->sub.device, sizeof(late->sub.device), "dev_phone000000000000");
	it_feed_subscribe(f, &late->sub, fs->id, 0, IT_FEED_HELLO);
	it_feed_run(f);
	fake_settle(&fk);
	ok(late->ended == IT_FEED_END_REVOKED && late->n == 0 && late->nt == 0,
	   "a device revoked a moment ago is refused at admission, before any event");
	revoke_notify(&fk, fs, "dev_unknown");
	ok(sid->ended == 0, "revoking a device nobody here uses changes nothing");
	it_feed_db_notify(f, "revoked:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC:dev_x");
	ok(1, "a revocation for a session the feed does not watch is harmless");
	fsub_free(tok);
	fsub_free(tok2);
	fsub_free(sid);
	fsub_free(elsewhere);
	fsub_free(late);
	teardown(&fk);
}

static void test_token_until(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fsub *soon = fsub_new(), *later = fsub_new(), *sid = fsub_new(), *past = fsub_new();

	snprintf(soon->sub.device, sizeof(soon->sub.device), "dev_soon");
	snprintf(later->sub.device, sizeof(later->sub.device), "dev_later");
	soon->sub.until = fake_now + 5;
	later->sub.until = fake_now + 60;
	fake_append(fs, 1);
	it_feed_subscribe(f, &soon->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &later->sub, fs->id, 0, 0);
	it_feed_subscribe(f, &sid->sub, fs->id, 0, 0);
	it_feed_run(f);
	fake_settle(&fk);
	fake_now += 4;
	it_feed_tick(f, 2000);
	ok(soon->ended == 0, "a token subscriber lives until its until");
	fake_now += 1;
	it_feed_tick(f, 2250);
	is_str(soon->transients[soon->nt - 1], "revoked:expired:dev_soon",
	       "at its until it is told session.revoked, reason expired");
	is_int(soon->ended, IT_FEED_END_TOKEN_EXPIRED, "and ended with IT_FEED_END_TOKEN_EXPIRED");
	ok(later->ended == 0 && sid->ended == 0, "the others go on");
	fake_now += 56;
	it_feed_tick(f, 2500);
	is_int(later->ended, IT_FEED_END_TOKEN_EXPIRED, "the next until is kept track of");
	ok(sid->ended == 0, "a session-id subscriber has no until of its own");

	/* Subscribing with an until already past: ended at admission. */
	snprintf(past->sub.device, sizeof(past->sub.device), "dev_past");
	past->sub.until = fake_now - 1;
	it_feed_subscribe(f, &past->sub, fs->id, 0, IT_FEED_HELLO);
	it_feed_run(f);
	fake_settle(&fk);
	ok(past->ended == IT_FEED_END_TOKEN_EXPIRED && past->n == 0 && past->nt == 0,
	   "a token past its until is not admitted");
	fsub_free(soon);
	fsub_free(later);
	fsub_free(sid);
	fsub_free(past);
	teardown(&fk);
}

struct fcred {
	it_feed_credq q;
	int calls;
	it_feed_principal p;
};

static void fcred_done(it_feed_credq *q, const it_feed_principal *p)
{
	struct fcred *c = (struct fcred *)q;
	c->calls++;
	c->p = *p;
}

static void hash_of(int k, unsigned char h[32], char hex[65])
{
	for (int i = 0; i < 32; i++) {
		h[i] = (unsigned char)(k * 31 + i);
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	}
}

static void test_cred_checks(void)
{
	struct fake fk;
	it_feed *f = setup(&fk, 0);
	struct fake_sess *fs = fake_add(&fk, 'A', fake_now + 3600);
	struct fcred c[6];
	unsigned char h[6][32];

	memset(c, 0, sizeof(c));
	for (int i = 0; i < 6; i++) {
		c[i].q.done = fcred_done;
		hash_of(i, h[i], fk.tok[i].hex);
		snprintf(fk.tok[i].session, sizeof(fk.tok[i].session), "%s", fs->id);
		snprintf(fk.tok[i].device, sizeof(fk.tok[i].device), "dev_%d", i);
		fk.tok[i].status = 200;
		fk.tok[i].until = fake_now + 600;
	}
	fk.ntok = 6;
	fk.tok[1].status = 401;	  /* unknown, expired or revoked */
	fk.tok[2].status = 404;	  /* its session expired */
	fk.tok[3].wrong_hash = 1; /* the row found does not hold this hash */
	for (int i = 0; i < 5; i++)
		ok(it_feed_cred_check(f, &c[i].q, h[i]) == 0, "token check %d queued", i);
	ok(it_feed_cred_check(f, &c[0].q, h[0]) == -EBUSY, "a pending check cannot be queued twice");
	it_feed_cred_cancel(&c[4].q);
	ok(c[0].calls == 0, "nothing is called back inside it_feed_cred_check");
	it_feed_run(f);
	fake_settle(&fk);
	is_int(fk.creds, 1, "four checks, one query");
	is_int(fk.last_batch, 4, "with the four hashes (the cancelled one is not sent)");
	ok(c[0].calls == 1 && c[0].p.status == 200 && strcmp(c[0].p.session_id, fs->id) == 0 &&
		   strcmp(c[0].p.device_id, "dev_0") == 0 && strcmp(c[0].p.scope, "view") == 0 &&
		   strcmp(c[0].p.label, "Phone") == 0 && c[0].p.until == fake_now + 600,
	   "a valid token: 200, its session, device, scope, label and until");
	ok(c[1].calls == 1 && c[1].p.status == 401 && c[1].p.session_id[0] == '\0',
	   "an unknown token: 401, no session");
	ok(c[2].calls == 1 && c[2].p.status == 404, "a token of an expired session: 404");
	ok(c[3].calls == 1 && c[3].p.status == 401 && c[3].p.session_id[0] == '\0',
	   "a row whose stored hash differs: 401");
	is_int(c[4].calls, 0, "a cancelled check is never answered");

	/* The connection drops with a check in flight: it is sent again. */
	it_feed_cred_check(f, &c[0].q, h[0]);
	it_feed_run(f);
	ok(fk.busy, "a check in flight");
	fake_down(&fk);
	is_int(c[0].calls, 1, "not answered while the database is away");
	fake_up(&fk);
	fake_settle(&fk);
	ok(c[0].calls == 2 && c[0].p.status == 200, "answered once it is back");

	/* A device revoked after the query ran, before its answer came. */
	it_feed_cred_check(f, &c[5].q, h[5]);
	it_feed_run(f);
	revoke_notify(&fk, fs, "dev_5");
	fake_settle(&fk);
	ok(c[5].calls == 1 && c[5].p.status == 401, "a device revoked meanwhile is answered 401, not 200");

	/* A failing query answers 503 rather than leave clients waiting. */
	it_feed_cred_check(f, &c[0].q, h[0]);
	it_feed_run(f);
	{
		PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
		fake_clear(&fk);
		it_feed_db_result(f, res);
		PQclear(res);
	}
	ok(c[0].calls == 3 && c[0].p.status == 503, "a failed token check answers 503");
	ok(fk.s[0].exists, "session untouched");
	teardown(&fk);
}

int main(void)
{
	test_parse_notify();
	test_parse_carried();
	test_event_formats();
	test_basic_flow();
	test_shared_events();
	test_ring_and_linger();
	test_resync();
	test_fresh();
	test_pause_and_gap();
	test_unsubscribe_in_delivery();
	test_session_end();
	test_degraded();
	test_many_events_and_pages();
	test_kept_notify();
	test_repoll_no_query();
	test_carried();
	test_slow_reader_reads();
	test_parse_revoked();
	test_revoke();
	test_token_until();
	test_cred_checks();
	return tap_done();
}

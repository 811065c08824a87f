/* test_longpoll.c: a long-poll's answer: the body, its announced length, the size cap, references released. */
#include "config.h"

#include "feed/longpoll.h"

#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Collects what it_longpoll_write puts: the bytes, how many pieces came
 * with their event, and a failure after fail_after pieces (0: never). */
struct sink {
	char out[1024];
	size_t len;
	int shared, pieces, fail_after;
};

static int put(void *ctx, it_feed_event *ev, const char *p, size_t n)
{
	struct sink *s = ctx;

	if (s->fail_after && s->pieces == s->fail_after)
		return -ENOMEM;
	s->pieces++;
	s->shared += ev != NULL;
	if (s->len + n < sizeof(s->out)) {
		memcpy(s->out + s->len, p, n);
		s->len += n;
		s->out[s->len] = '\0';
	}
	return 0;
}

static it_feed_event *event(int64_t seq, const char *json)
{
	it_feed_event *ev = it_feed_event_new(seq, "image.uploaded", json, strlen(json));

	if (ev == NULL)
		abort();
	return ev;
}

int main(void)
{
	it_longpoll a;
	struct sink s;
	it_feed_event *e1 = event(7, "{\"id\":7}"), *e2 = event(8, "{\"id\":8}");
	size_t want;

	memset(&a, 0, sizeof(a));
	memset(&s, 0, sizeof(s));
	is_int(it_longpoll_size(&a, 3, 0), strlen("{\"events\":[],\"cursor\":3}\n"), "an empty answer's length");
	is_int(it_longpoll_write(&a, 3, 0, put, &s), 0, "an empty answer is written");
	is_str(s.out, "{\"events\":[],\"cursor\":3}\n", "as an empty array and the cursor");

	ok(!it_longpoll_full(&a, e1, 1), "an empty answer takes an event larger than the cap");
	is_int(it_longpoll_add(&a, e1, NULL), 0, "an event is added");
	is_int(e1->refs, 2, "and held by reference");
	ok(it_longpoll_full(&a, e2, a.bytes + e2->json_len - 1), "past the cap the answer is full");
	ok(!it_longpoll_full(&a, e2, a.bytes + e2->json_len), "up to the cap it is not");
	is_int(it_longpoll_add(&a, NULL, strdup("{\"type\":\"session.resync\"}")), 0, "a transient's JSON is added");
	is_int(it_longpoll_add(&a, e2, NULL), 0, "a second event is added");

	memset(&s, 0, sizeof(s));
	want = it_longpoll_size(&a, 8, 1);
	is_int(it_longpoll_write(&a, 8, 1, put, &s), 0, "the answer is written");
	is_str(s.out,
	       "{\"events\":[{\"id\":7},{\"type\":\"session.resync\"},{\"id\":8}],\"cursor\":8,\"retry_after_ms\":5000}"
	       "\n",
	       "events in order, commas between, the cursor and the retry hint");
	is_int(s.len, want, "the announced length is the written one");
	is_int(s.shared, 2, "the events' bytes come with their event, to be held rather than copied");
	ok(a.n == 0 && a.bytes == 0 && e1->refs == 1 && e2->refs == 1, "writing empties it and lets the events go");

	is_int(it_longpoll_add(&a, e1, NULL), 0, "added again");
	memset(&s, 0, sizeof(s));
	s.fail_after = 1;
	is_int(it_longpoll_write(&a, 9, 0, put, &s), -ENOMEM, "a failing writer's error is returned");
	ok(s.pieces == 1 && a.n == 0 && e1->refs == 1, "nothing more is written and the answer is emptied");

	is_int(it_longpoll_add(&a, e2, NULL), 0, "added once more");
	it_longpoll_free(&a);
	ok(a.v == NULL && a.n == 0 && e2->refs == 1, "free lets everything go");
	it_feed_event_unref(e1);
	it_feed_event_unref(e2);
	return tap_done();
}

/* longpoll.c: a long-poll's answer, gathered while it waits (longpoll.h). */
#include "config.h"

#include "feed/longpoll.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "{\"events\":["
#define RETRY ",\"retry_after_ms\":5000"

static size_t item_len(const it_longpoll_item *it)
{
	return it->ev ? it->ev->json_len : strlen(it->json);
}

int it_longpoll_add(it_longpoll *a, it_feed_event *ev, char *json)
{
	it_longpoll_item *it;

	if (a->n == a->cap) {
		unsigned cap = a->cap ? a->cap * 2 : 8;
		it_longpoll_item *v = realloc(a->v, cap * sizeof(*v));
		if (v == NULL)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	it = &a->v[a->n++];
	it->ev = ev ? it_feed_event_ref(ev) : NULL;
	it->json = json;
	a->bytes += item_len(it) + 1;
	return 0;
}

int it_longpoll_full(const it_longpoll *a, const it_feed_event *ev, size_t max)
{
	return a->n > 0 && a->bytes + ev->json_len > max;
}

/* The closing part: the cursor, the retry hint, the brace and a newline. */
static int tail(char *out, size_t cap, int64_t cursor, int retry)
{
	return snprintf(out, cap, "],\"cursor\":%lld%s}\n", (long long)cursor, retry ? RETRY : "");
}

size_t it_longpoll_size(const it_longpoll *a, int64_t cursor, int retry)
{
	char t[64 + sizeof(RETRY)];
	size_t total = sizeof(HEAD) - 1 + (size_t)tail(t, sizeof(t), cursor, retry);

	for (unsigned i = 0; i < a->n; i++)
		total += (i > 0) + item_len(&a->v[i]);
	return total;
}

int it_longpoll_write(it_longpoll *a, int64_t cursor, int retry, it_longpoll_put put, void *ctx)
{
	char t[64 + sizeof(RETRY)];
	int n = tail(t, sizeof(t), cursor, retry);
	int rc = put(ctx, NULL, HEAD, sizeof(HEAD) - 1);

	for (unsigned i = 0; rc == 0 && i < a->n; i++) {
		const it_longpoll_item *it = &a->v[i];
		if (i > 0)
			rc = put(ctx, NULL, ",", 1);
		if (rc == 0)
			rc = it->ev ? put(ctx, it->ev, it->ev->json, it->ev->json_len)
				    : put(ctx, NULL, it->json, strlen(it->json));
	}
	if (rc == 0)
		rc = put(ctx, NULL, t, (size_t)n);
	it_longpoll_clear(a);
	return rc;
}

void it_longpoll_clear(it_longpoll *a)
{
	for (unsigned i = 0; i < a->n; i++) {
		it_feed_event_unref(a->v[i].ev);
		free(a->v[i].json);
	}
	a->n = 0;
	a->bytes = 0;
}

void it_longpoll_free(it_longpoll *a)
{
	it_longpoll_clear(a);
	free(a->v);
	a->v = NULL;
	a->cap = 0;
}

/* longpoll.h: a long-poll's answer, gathered while it waits and written as {"events":[...],"cursor":N} (docs/api.md).
 */
#ifndef IT_FEED_LONGPOLL_H
#define IT_FEED_LONGPOLL_H

#include "feed/feed.h"

#include <stddef.h>
#include <stdint.h>

/* One item of the answer: a stored event (a reference is held) or, with ev
 * NULL, the JSON of a transient (session.resync, session.revoked) that the
 * answer owns. */
typedef struct it_longpoll_item {
	it_feed_event *ev;
	char *json;
} it_longpoll_item;

/* The answer so far. A zeroed it_longpoll is empty; the item array grows on
 * the first it_longpoll_add and is kept across it_longpoll_clear. One owner,
 * not thread-safe: the transport's loop thread. */
typedef struct it_longpoll {
	it_longpoll_item *v;
	unsigned n, cap;
	size_t bytes; /* the items' JSON, one separator each */
} it_longpoll;

/* Adds ev (a reference is taken) or, when ev is NULL, json (malloc'd and
 * NUL-terminated; the answer owns it from a successful call on). Returns 0,
 * or -ENOMEM with nothing added and json still the caller's. */
int it_longpoll_add(it_longpoll *a, it_feed_event *ev, char *json);

/* Predicate: 1 when adding ev would take a non-empty answer past max bytes
 * (the transport then answers with what it has and the next poll takes ev);
 * an empty answer takes any event. */
int it_longpoll_full(const it_longpoll *a, const it_feed_event *ev, size_t max);

/* Where it_longpoll_write sends the body, piece by piece, in order: n bytes
 * at p, which live in ev when ev is not NULL (the callee may hold ev instead
 * of copying them), else only for the call. Returns 0 or a negative errno. */
typedef int (*it_longpoll_put)(void *ctx, it_feed_event *ev, const char *p, size_t n);

/* The length of the body it_longpoll_write would write now. */
size_t it_longpoll_size(const it_longpoll *a, int64_t cursor, int retry);

/* Writes the body {"events":[...],"cursor":cursor} and a newline through
 * put, with ,"retry_after_ms":5000 before the closing brace when retry is
 * set (a refused poll), then empties the answer whether or not put failed.
 * Returns 0, or the first negative value put returned (nothing is written
 * after it). */
int it_longpoll_write(it_longpoll *a, int64_t cursor, int retry, it_longpoll_put put, void *ctx);

/* Drops every item (references and JSON); the array is kept for reuse. */
void it_longpoll_clear(it_longpoll *a);

/* Drops every item and frees the array: a is empty again. */
void it_longpoll_free(it_longpoll *a);

#endif

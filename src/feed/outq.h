/* outq.h: a connection's output queue: shared events by reference and bytes of its own, written with writev
 * (docs/feed.md). */
#ifndef IT_FEED_OUTQ_H
#define IT_FEED_OUTQ_H

#include "feed/feed.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes a segment may carry in front of its content: a FastCGI record
 * header (8 bytes), which differs per connection while the content it
 * frames is an event shared by every connection of the session. */
#define IT_OUTQ_PREFIX_MAX 8
/* Content up to this long is copied into the segment itself: commas,
 * keepalives and spaces then cost no allocation. */
#define IT_OUTQ_INLINE 14
/* Longest content of one segment. */
#define IT_OUTQ_SEG_MAX UINT32_MAX

/* One piece of output: a prefix of the queue's own, then content that lies
 * in a shared event (a reference is held), in a heap block the queue owns,
 * inline, or, for a piece of a larger block, in a block a later segment of
 * the same queue owns. Fields are the queue's; callers only read it_outq. */
typedef struct it_outq_seg {
	it_feed_event *ev; /* reference held, or NULL */
	char *heap;	   /* owned: freed once this segment is written or dropped; or NULL */
	const char *p;	   /* the content; NULL: inl */
	uint32_t len, off; /* content bytes, and how many are written */
	uint8_t pre[IT_OUTQ_PREFIX_MAX];
	uint8_t plen, poff; /* prefix bytes, and how many are written */
	uint8_t inl[IT_OUTQ_INLINE];
} it_outq_seg;

/* The queue: a ring of segments in the order they are to be written. A
 * zeroed it_outq is an empty queue; nothing is allocated until something is
 * queued, and the ring is given back when it empties (see it_outq_write),
 * so an idle connection holds at most a few slots. Not thread-safe: one
 * owner at a time. */
typedef struct it_outq {
	it_outq_seg *v;
	unsigned head, n, cap; /* n: segments queued */
	size_t bytes;	       /* queued and not yet written, prefixes included */
} it_outq;

/* Queues n bytes at p, behind plen bytes of pre (copied; plen at most
 * IT_OUTQ_PREFIX_MAX; pre may be NULL when plen is 0). p is not copied: it
 * must live until the segment is written, held by ev (may be NULL; a
 * reference is taken), by heap (may be NULL; the queue owns it from a
 * successful call on and frees it once this segment is written or
 * dropped), or by a later segment of this queue that owns it. Returns 0,
 * -EINVAL (plen or n too large), or -ENOMEM; on failure nothing is queued
 * and heap still belongs to the caller. */
int it_outq_push(it_outq *q, const void *pre, size_t plen, it_feed_event *ev, char *heap, const char *p, size_t n);

/* Queues a copy of na bytes at a followed by nb bytes at b (either may be
 * empty, and then NULL), behind plen bytes of pre as for it_outq_push.
 * Returns 0, -EINVAL or -ENOMEM (nothing queued). */
int it_outq_copy(it_outq *q, const void *pre, size_t plen, const void *a, size_t na, const void *b, size_t nb);

/* The number of segments queued, for it_outq_rollback. */
unsigned it_outq_mark(const it_outq *q);

/* Drops the segments queued after mark (it_outq_mark), newest first,
 * releasing what they hold, so that a message queued in several pieces goes
 * in whole or not at all. Only for segments that it_outq_write has not
 * touched: call it before writing again. */
void it_outq_rollback(it_outq *q, unsigned mark);

/* Writes what the non-blocking socket fd takes, with writev, in order.
 * Segments are released as they are written; once the queue is empty its
 * ring is freed unless it is the smallest one. Returns bytes written (0 when
 * the socket is full), or the negative errno of writev when the connection
 * is broken (errno is then set too). */
ssize_t it_outq_write(it_outq *q, int fd);

/* Drops everything and frees the ring: the queue is empty (and usable). */
void it_outq_free(it_outq *q);

#endif

/* outq.c: a connection's output queue: shared events by reference and bytes of its own, written with writev. */
#include "config.h"

#include "feed/outq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* iovecs per writev: well under IOV_MAX, and enough for a burst of events. */
#define IOV_BATCH 64
/* Slots of a new ring. A ring of this size is kept while the queue is
 * empty; a larger one, grown by a burst, is given back. */
#define RING_MIN 4

static it_outq_seg *seg_at(const it_outq *q, unsigned i)
{
	return &q->v[(q->head + i) % q->cap];
}

static void seg_release(it_outq_seg *s)
{
	it_feed_event_unref(s->ev);
	free(s->heap);
	s->ev = NULL;
	s->heap = NULL;
}

/* A new slot at the tail, zeroed. Returns NULL when out of memory. */
static it_outq_seg *add(it_outq *q)
{
	it_outq_seg *s;

	if (q->n == q->cap) {
		unsigned cap = q->cap ? q->cap * 2 : RING_MIN;
		it_outq_seg *v;
		if (cap < q->cap)
			return NULL;
		if ((v = malloc(cap * sizeof(*v))) == NULL)
			return NULL;
		/* Unrolled into the new ring from its start: every pointer a
		 * segment holds points outside the ring, so a copy is a move. */
		for (unsigned i = 0; i < q->n; i++)
			v[i] = *seg_at(q, i);
		free(q->v);
		q->v = v;
		q->head = 0;
		q->cap = cap;
	}
	s = &q->v[(q->head + q->n++) % q->cap];
	memset(s, 0, sizeof(*s));
	return s;
}

int it_outq_push(it_outq *q, const void *pre, size_t plen, it_feed_event *ev, char *heap, const char *p, size_t n)
{
	it_outq_seg *s;

	if (plen > IT_OUTQ_PREFIX_MAX || n > IT_OUTQ_SEG_MAX || (n > 0 && p == NULL))
		return -EINVAL;
	if ((s = add(q)) == NULL)
		return -ENOMEM;
	if (plen)
		memcpy(s->pre, pre, plen);
	s->plen = (uint8_t)plen;
	s->ev = ev ? it_feed_event_ref(ev) : NULL;
	s->heap = heap;
	/* Empty content still needs a non-NULL pointer: NULL means inline. */
	s->p = n ? p : "";
	s->len = (uint32_t)n;
	q->bytes += plen + n;
	return 0;
}

int it_outq_copy(it_outq *q, const void *pre, size_t plen, const void *a, size_t na, const void *b, size_t nb)
{
	size_t n = na + nb;
	char *heap = NULL;
	it_outq_seg *s;
	int rc;

	if (plen > IT_OUTQ_PREFIX_MAX || n < na || n > IT_OUTQ_SEG_MAX)
		return -EINVAL;
	if (n <= IT_OUTQ_INLINE) {
		if ((rc = it_outq_push(q, pre, plen, NULL, NULL, NULL, 0)) < 0)
			return rc;
		s = seg_at(q, q->n - 1);
		if (na)
			memcpy(s->inl, a, na);
		if (nb)
			memcpy(s->inl + na, b, nb);
		s->p = NULL;
		s->len = (uint32_t)n;
		q->bytes += n;
		return 0;
	}
	if ((heap = malloc(n)) == NULL)
		return -ENOMEM;
	memcpy(heap, a, na);
	if (nb)
		memcpy(heap + na, b, nb);
	if ((rc = it_outq_push(q, pre, plen, NULL, heap, heap, n)) < 0)
		free(heap);
	return rc;
}

unsigned it_outq_mark(const it_outq *q)
{
	return q->n;
}

void it_outq_rollback(it_outq *q, unsigned mark)
{
	while (q->n > mark) {
		it_outq_seg *s = seg_at(q, q->n - 1);
		q->bytes -= (size_t)(s->plen - s->poff) + (s->len - s->off);
		seg_release(s);
		q->n--;
	}
}

static void shrink(it_outq *q)
{
	if (q->n == 0 && q->cap > RING_MIN) {
		free(q->v);
		q->v = NULL;
		q->cap = q->head = 0;
	}
}

ssize_t it_outq_write(it_outq *q, int fd)
{
	struct iovec iov[IOV_BATCH];
	ssize_t total = 0;

	while (q->n > 0) {
		size_t want = 0;
		int k = 0;
		ssize_t w;

		for (unsigned i = 0; i < q->n && k + 2 <= IOV_BATCH; i++) {
			it_outq_seg *s = seg_at(q, i);
			if (s->poff < s->plen) {
				iov[k].iov_base = s->pre + s->poff;
				iov[k].iov_len = (size_t)(s->plen - s->poff);
				want += iov[k++].iov_len;
			}
			if (s->off < s->len) {
				iov[k].iov_base = (char *)(s->p ? s->p : (const char *)s->inl) + s->off;
				iov[k].iov_len = s->len - s->off;
				want += iov[k++].iov_len;
			}
		}
		if (k == 0) {
			/* Only empty segments are left (an empty piece of
			 * content with no prefix): nothing to send for them. */
			while (q->n > 0) {
				seg_release(seg_at(q, 0));
				q->head = (q->head + 1) % q->cap;
				q->n--;
			}
			break;
		}
		do
			w = writev(fd, iov, k);
		while (w < 0 && errno == EINTR);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		total += w;
		q->bytes -= (size_t)w;
		if ((size_t)w < want)
			want = 0; /* the kernel took part: the socket is full */
		/* Retire what was written, and the empty segments among it. */
		while (q->n > 0) {
			it_outq_seg *s = seg_at(q, 0);
			size_t c = (size_t)(s->plen - s->poff);
			c = (size_t)w < c ? (size_t)w : c;
			s->poff = (uint8_t)(s->poff + c);
			w -= (ssize_t)c;
			c = s->len - s->off;
			c = (size_t)w < c ? (size_t)w : c;
			s->off += (uint32_t)c;
			w -= (ssize_t)c;
			if (s->poff < s->plen || s->off < s->len)
				break;
			seg_release(s);
			q->head = (q->head + 1) % q->cap;
			q->n--;
		}
		if (want == 0)
			break;
	}
	shrink(q);
	return total;
}

void it_outq_free(it_outq *q)
{
	for (unsigned i = 0; i < q->n; i++)
		seg_release(seg_at(q, i));
	free(q->v);
	memset(q, 0, sizeof(*q));
}

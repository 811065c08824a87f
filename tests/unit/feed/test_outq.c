/* test_outq.c: the output queue: order, prefixes, shared events held until written, partial writes, rollback. */
#include "config.h"

#include "feed/outq.h"

#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

/* Reads everything available from fd into out (at most cap bytes); returns
 * how many. */
static size_t drain(int fd, char *out, size_t cap)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = read(fd, out + got, cap - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

/* A non-blocking connected pair: [0] is written, [1] read. With small set,
 * a pipe of one page, so that writes stop part way; else a socket pair. */
static void pair(int sv[2], int small)
{
	if (small) {
		if (pipe2(sv, O_NONBLOCK) < 0 || fcntl(sv[0], F_SETPIPE_SZ, 4096) < 0)
			abort();
		/* pipe2 gives [0] the read end. */
		int t = sv[0];
		sv[0] = sv[1];
		sv[1] = t;
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
}

static void basics(void)
{
	it_outq q = {0};
	int sv[2];
	char got[256];
	it_feed_event *ev = it_feed_event_new(7, "image.uploaded", "{\"id\":7}", 8);
	char *heap = strdup("-owned-bytes-of-its-own-");
	size_t n;

	pair(sv, 0);
	ok(ev != NULL && heap != NULL, "an event and a heap block");
	is_int(it_outq_copy(&q, "P1", 2, "ab", 2, "cd", 2), 0, "a short copy goes inline");
	is_int(it_outq_push(&q, "H", 1, ev, NULL, ev->json, ev->json_len), 0, "an event by reference");
	is_int(ev->refs, 2, "the queue holds a reference");
	is_int(it_outq_push(&q, NULL, 0, NULL, heap, heap, strlen(heap)), 0, "a heap block the queue owns");
	is_int(it_outq_copy(&q, NULL, 0, "0123456789abcdefghij", 20, NULL, 0), 0, "a longer copy goes to the heap");
	is_int(it_outq_push(&q, NULL, 0, NULL, NULL, NULL, 0), 0, "an empty segment");
	is_int(q.n, 5, "five segments queued");
	is_int(q.bytes, 2 + 4 + 1 + 8 + 24 + 20, "bytes counts prefixes and content");
	is_int(it_outq_write(&q, sv[0]), 59, "everything written at once");
	is_int(q.n, 0, "the queue is empty");
	is_int(q.bytes, 0, "nothing left to write");
	is_int(ev->refs, 1, "the reference was dropped once written");
	n = drain(sv[1], got, sizeof(got));
	got[n] = '\0';
	is_str(got, "P1abcdH{\"id\":7}-owned-bytes-of-its-own-0123456789abcdefghij", "the bytes, in order");
	is_int(it_outq_push(&q, "123456789", 9, NULL, NULL, "x", 1), -EINVAL, "a prefix over 8 bytes is refused");
	is_int(q.n, 0, "and nothing is queued");
	it_outq_free(&q);
	it_feed_event_unref(ev);
	close(sv[0]);
	close(sv[1]);
}

/* Many segments through a small socket buffer: writes stop part way through
 * prefixes and contents, the ring grows and wraps, and the reader still gets
 * every byte once, in order. */
static void partial(void)
{
	enum { EVENTS = 300 };
	it_outq q = {0};
	it_feed_event *ev[EVENTS];
	char want[EVENTS * 256], *got = malloc(sizeof(want));
	size_t wl = 0, gl = 0;
	int sv[2], stalls = 0, refs_ok = 1;

	pair(sv, 1);
	for (int i = 0; i < EVENTS; i++) {
		char json[240], pre[8];
		int jl = snprintf(json, sizeof(json), "{\"id\":%d,\"data\":\"%0*d\"}", i, 1 + i % 200, i);
		memset(pre, 'a' + i % 26, sizeof(pre));
		ev[i] = it_feed_event_new(i + 1, "t", json, (size_t)jl);
		if (it_outq_push(&q, pre, sizeof(pre), ev[i], NULL, ev[i]->json, ev[i]->json_len) < 0 ||
		    it_outq_copy(&q, NULL, 0, ",", 1, NULL, 0) < 0)
			abort();
		memcpy(want + wl, pre, sizeof(pre));
		wl += sizeof(pre);
		memcpy(want + wl, json, (size_t)jl);
		wl += (size_t)jl;
		want[wl++] = ',';
		/* Write as a connection would, now and then, mid-queue, to a
		 * reader that takes less than comes. */
		if (i % 7 == 0) {
			if (it_outq_write(&q, sv[0]) < 0)
				abort();
			if (q.n > 0)
				stalls++;
			gl += drain(sv[1], got + gl, 300);
		}
	}
	ok(q.cap >= 8, "the ring grew past its first size (%u)", q.cap);
	while (q.n > 0) {
		ssize_t w = it_outq_write(&q, sv[0]);
		if (w < 0)
			break;
		if (q.n > 0)
			stalls++;
		/* A slow reader: a little at a time. */
		gl += drain(sv[1], got + gl, sizeof(want) - gl < 700 ? sizeof(want) - gl : 700);
	}
	gl += drain(sv[1], got + gl, sizeof(want) - gl);
	ok(stalls > 0, "the socket filled up part way (%d times)", stalls);
	is_int(gl, wl, "every byte arrived");
	ok(gl == wl && memcmp(got, want, wl) == 0, "in order, once");
	is_int(q.bytes, 0, "bytes is back to 0");
	ok(q.v == NULL && q.cap == 0, "the grown ring was given back once empty");
	for (int i = 0; i < EVENTS; i++) {
		refs_ok &= ev[i]->refs == 1;
		it_feed_event_unref(ev[i]);
	}
	ok(refs_ok, "every event's reference was dropped");
	free(got);
	close(sv[0]);
	close(sv[1]);
}

static void rollback(void)
{
	it_outq q = {0};
	it_feed_event *ev = it_feed_event_new(1, "t", "{}", 2);
	char *heap = malloc(100);
	unsigned mark;
	int sv[2];
	char got[64];
	size_t n;

	pair(sv, 0);
	memset(heap, 'h', 100);
	it_outq_copy(&q, NULL, 0, "keep", 4, NULL, 0);
	mark = it_outq_mark(&q);
	it_outq_push(&q, "XX", 2, ev, NULL, ev->json, ev->json_len);
	it_outq_push(&q, NULL, 0, NULL, NULL, heap, 50);
	it_outq_push(&q, NULL, 0, NULL, heap, heap + 50, 50);
	is_int(ev->refs, 2, "queued pieces hold the event");
	it_outq_rollback(&q, mark);
	is_int(q.n, 1, "rollback leaves what came before the mark");
	is_int(q.bytes, 4, "and its bytes");
	is_int(ev->refs, 1, "the dropped pieces released the event (the heap block too: see valgrind/ASan)");
	it_outq_write(&q, sv[0]);
	n = drain(sv[1], got, sizeof(got) - 1);
	got[n] = '\0';
	is_str(got, "keep", "only the kept bytes are written");
	it_outq_copy(&q, NULL, 0, "left", 4, NULL, 0);
	it_outq_push(&q, NULL, 0, ev, NULL, ev->json, ev->json_len);
	it_outq_free(&q);
	is_int(ev->refs, 1, "it_outq_free releases what is still queued");
	ok(q.n == 0 && q.v == NULL && q.bytes == 0, "and leaves an empty queue");
	it_feed_event_unref(ev);
	close(sv[0]);
	close(sv[1]);
}

static void broken(void)
{
	it_outq q = {0};
	int sv[2];

	pair(sv, 0);
	close(sv[1]);
	it_outq_copy(&q, NULL, 0, "hello", 5, NULL, 0);
	signal(SIGPIPE, SIG_IGN);
	is_int(it_outq_write(&q, sv[0]), -EPIPE, "a closed peer is a broken connection, -EPIPE");
	ok(errno == EPIPE, "with errno EPIPE");
	it_outq_free(&q);
	close(sv[0]);
}

int main(void)
{
	basics();
	partial();
	rollback();
	broken();
	return tap_done();
}

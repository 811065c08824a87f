/* test_pgl.c: the LISTEN connection's connect deadline and backoff, against a server that never answers. */
#include "config.h"

#include "db/pgl.h"

#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int lost_calls;
static void on_lost(void *arg)
{
	(void)arg;
	lost_calls++;
}

/* A loopback listener that never accepts: the kernel completes the TCP
 * handshake, and the start-up packet then waits for ever. */
static int silent_server(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) < 0)
		abort();
	*port = ntohs(a.sin_port);
	return fd;
}

/* Lets the connection make what progress it can for about ms. */
static void spin(it_pgl *p, int epfd, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		struct epoll_event ev;
		if (epoll_wait(epfd, &ev, 1, 10) == 1)
			it_pgl_handle(p, ev.events);
	}
}

int main(void)
{
	it_pgl_hooks hooks = {NULL, on_lost, NULL, NULL};
	char conninfo[128];
	int port, srv = silent_server(&port), epfd = epoll_create1(0), tag;
	it_pgl p;
	double d = 0, prev;
	int doubling = 1;

	/* The one backoff policy. */
	d = it_pgl_backoff_next(0);
	ok(d == IT_PGL_BACKOFF_MIN, "the first retry comes after %.2f s", d);
	for (int i = 0; i < 20; i++) {
		prev = d;
		d = it_pgl_backoff_next(d);
		if (d != (prev * 2 > IT_PGL_BACKOFF_MAX ? IT_PGL_BACKOFF_MAX : prev * 2))
			doubling = 0;
	}
	ok(doubling && d == IT_PGL_BACKOFF_MAX, "it doubles up to %.0f s and stays there", IT_PGL_BACKOFF_MAX);

	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable", port);
	it_pgl_init(&p, epfd, &tag, conninfo, "imagetools_events", &hooks, NULL);
	it_pgl_tick(&p, 100.0);
	is_int(p.state, IT_PGL_CONNECTING, "the first tick starts connecting");
	spin(&p, epfd, 200);
	is_int(p.state, IT_PGL_CONNECTING, "a server that accepts but never answers keeps the attempt open");
	it_pgl_tick(&p, 100.0 + IT_PGL_CONNECT_TIMEOUT - 0.5);
	is_int(p.state, IT_PGL_CONNECTING, "before the deadline it waits");
	it_pgl_tick(&p, 100.0 + IT_PGL_CONNECT_TIMEOUT + 0.1);
	is_int(p.state, IT_PGL_DOWN, "past the connect deadline the attempt is abandoned");
	ok(p.conn == NULL, "and its connection closed");
	is_int(lost_calls, 0, "an attempt that never came up is not reported as lost");
	ok(p.retry_at >= 100.0 + IT_PGL_CONNECT_TIMEOUT + 0.1 + IT_PGL_BACKOFF_MIN * 0.75 &&
		   p.retry_at <= 100.0 + IT_PGL_CONNECT_TIMEOUT + 0.1 + IT_PGL_BACKOFF_MIN * 1.25,
	   "the next attempt is scheduled after the first backoff, with jitter");
	it_pgl_tick(&p, p.retry_at);
	is_int(p.state, IT_PGL_CONNECTING, "and made when it is due");
	it_pgl_free(&p);

	/* Nothing listens on the port any more: failures come quickly. */
	close(srv);
	it_pgl_init(&p, epfd, &tag, conninfo, "imagetools_events", &hooks, NULL);
	it_pgl_tick(&p, 200.0);
	spin(&p, epfd, 300);
	is_int(p.state, IT_PGL_DOWN, "a refused connection fails at once");
	ok(p.backoff == it_pgl_backoff_next(IT_PGL_BACKOFF_MIN), "and the backoff grows");
	ok(!it_pgl_idle(&p) && it_pgl_send(&p, "SELECT 1", 0, NULL) == -ENOTCONN, "nothing can be sent while down");
	it_pgl_free(&p);
	close(epfd);
	return tap_done();
}

/* test_acceptor.c: unit tests for fcgi/acceptor: it drains a small listen backlog with nobody serving, hands
 * connections over in arrival order, bounds its queue, honours FCGI_WEB_SERVER_ADDRS and stops cleanly. */
#include "config.h"

#include "fcgi/acceptor.h"
#include "tap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

static char sock_path[108];

static void on_wake(int sig)
{
	(void)sig;
}

/* A listening Unix socket with the given backlog, at a fresh path. */
static int unix_listener(int backlog)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sock_path, sizeof(sock_path), "/tmp/it-acceptor-%d.sock", (int)getpid());
	unlink(sock_path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		perror("listener");
		exit(1);
	}
	return fd;
}

/* Connects to sock_path; nonblocking: fails with EAGAIN instead of waiting
 * when the backlog is full. Returns the socket or -1 (errno set). */
static int unix_connect(int nonblocking)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}

/* Whether the peer of fd has closed it (read gives end of file within 5 s). */
static int peer_closed(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	return poll(&p, 1, 5000) == 1 && read(fd, &c, 1) == 0;
}

#define STORM 600

static void test_storm_and_order(void)
{
	int lfd = unix_listener(4), clients[STORM], n = 0, in_order = 1;
	it_acceptor *a = it_acceptor_start(lfd, 1024);

	ok(a != NULL, "the acceptor starts");
	/* With a backlog of 4 and nobody taking, blocking connects would hang
	 * (the alarm ends the test) unless the acceptor drains the backlog. */
	alarm(30);
	for (int i = 0; i < STORM; i++) {
		clients[i] = unix_connect(0);
		if (clients[i] >= 0 && write(clients[i], &i, sizeof(i)) == (ssize_t)sizeof(i))
			n++;
	}
	alarm(0);
	is_int(n, STORM, "%d connections into a backlog of 4 with nobody serving them", STORM);
	for (int i = 0; i < STORM; i++) {
		int fd = it_acceptor_take(a), got = -1;
		if (fd < 0 || read(fd, &got, sizeof(got)) != (ssize_t)sizeof(got) || got != i)
			in_order = 0;
		if (fd >= 0) {
			int flags = fcntl(fd, F_GETFD);
			if (!(flags & FD_CLOEXEC))
				in_order = 0;
			close(fd);
		}
	}
	ok(in_order, "they are taken in arrival order, close-on-exec");
	is_int(it_acceptor_accepted(a), STORM, "and counted");
	for (int i = 0; i < STORM; i++)
		close(clients[i]);
	it_acceptor_stop(a);
	it_acceptor_free(a);
	close(lfd);
	unlink(sock_path);
}

static void test_bounded_queue(void)
{
	int lfd = unix_listener(2), fds[64], n = 0, refused = 0, after = -1;
	it_acceptor *a = it_acceptor_start(lfd, 8);

	/* 8 queued, a few more in the backlog, then the kernel refuses. */
	for (int i = 0; i < 64; i++) {
		fds[i] = unix_connect(1);
		if (fds[i] >= 0)
			n++;
		else if (errno == EAGAIN)
			refused++;
		usleep(2000);
	}
	ok(n >= 8 && n <= 8 + 4 && refused == 64 - n, "a full queue accepts no more (%d connected, %d refused)", n,
	   refused);
	for (int i = 0; i < 4; i++)
		close(it_acceptor_take(a));
	for (int i = 0; i < 100 && after < 0; i++) {
		usleep(10000);
		after = unix_connect(1);
	}
	ok(after >= 0, "taking connections makes room again");
	for (int i = 0; i < 64; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (after >= 0)
		close(after);
	it_acceptor_stop(a);
	it_acceptor_free(a);
	close(lfd);
	unlink(sock_path);
}

struct take_arg {
	int fd;
	it_acceptor *a;
};

static void *take_one(void *arg)
{
	struct take_arg *t = arg;

	t->fd = it_acceptor_take(t->a);
	return NULL;
}

static void test_stop(void)
{
	int lfd = unix_listener(16), queued, idle_fd;
	it_acceptor *a = it_acceptor_start(lfd, 16);
	struct take_arg t = {-2, a};
	pthread_t th;

	queued = unix_connect(0);
	idle_fd = it_acceptor_take(a);
	ok(idle_fd >= 0, "a first connection is taken");
	close(idle_fd);
	pthread_create(&th, NULL, take_one, &t);
	usleep(100000);
	it_acceptor_stop(a);
	pthread_join(th, NULL);
	is_int(t.fd, -1, "a thread waiting for a connection gets -1 when the acceptor stops");
	is_int(it_acceptor_take(a), -1, "and so does every later take");
	close(queued);
	queued = unix_connect(0);
	/* Accepted by nobody: the listening socket itself stays open. */
	ok(queued >= 0, "the listening socket is left open");
	it_acceptor_free(a);
	close(queued);
	close(lfd);
	unlink(sock_path);
}

static void test_stop_closes_queued(void)
{
	int lfd = unix_listener(16), c1, c2;
	it_acceptor *a = it_acceptor_start(lfd, 16);

	c1 = unix_connect(0);
	c2 = unix_connect(0);
	for (int i = 0; i < 200 && it_acceptor_accepted(a) < 2; i++)
		usleep(10000);
	it_acceptor_stop(a);
	ok(peer_closed(c1) && peer_closed(c2), "connections still queued are closed when it stops");
	it_acceptor_free(a);
	close(c1);
	close(c2);
	close(lfd);
	unlink(sock_path);
}

/* A TCP listener on 127.0.0.1; *port gets its port. */
static int tcp_listener(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("tcp listener");
		exit(1);
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static int tcp_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void test_web_server_addrs(void)
{
	int port, lfd = tcp_listener(&port), c, fd;
	it_acceptor *a;

	setenv("FCGI_WEB_SERVER_ADDRS", "10.9.8.7, ::1,bogus", 1);
	a = it_acceptor_start(lfd, 16);
	c = tcp_connect(port);
	ok(c >= 0 && peer_closed(c), "a TCP peer not in FCGI_WEB_SERVER_ADDRS is closed at once");
	is_int(it_acceptor_accepted(a), 0, "and never queued");
	close(c);
	it_acceptor_stop(a);
	it_acceptor_free(a);

	setenv("FCGI_WEB_SERVER_ADDRS", "10.9.8.7 , 127.0.0.1", 1);
	a = it_acceptor_start(lfd, 16);
	c = tcp_connect(port);
	fd = it_acceptor_take(a);
	ok(fd >= 0, "a listed TCP peer is taken");
	close(fd);
	close(c);
	it_acceptor_stop(a);
	it_acceptor_free(a);

	unsetenv("FCGI_WEB_SERVER_ADDRS");
	a = it_acceptor_start(lfd, 16);
	c = tcp_connect(port);
	fd = it_acceptor_take(a);
	ok(fd >= 0, "without the variable any TCP peer is taken");
	close(fd);
	close(c);
	it_acceptor_stop(a);
	it_acceptor_free(a);
	close(lfd);
}

int main(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake; /* no SA_RESTART, as in imagetools.fcgi */
	sigaction(SIGUSR2, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	test_storm_and_order();
	test_bounded_queue();
	test_stop();
	test_stop_closes_queued();
	test_web_server_addrs();
	return tap_done();
}

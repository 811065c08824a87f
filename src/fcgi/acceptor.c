/* acceptor.c: the thread of imagetools.fcgi that takes FastCGI connections off the listening socket as fast as they
 * arrive, and the queue the request threads serve them from. */
#include "config.h"

#include "fcgi/acceptor.h"

#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Entries of FCGI_WEB_SERVER_ADDRS kept; more are ignored (with a warning). */
#define ALLOW_MAX 64
/* Pause after accept() failed for want of descriptors or memory, in ms. */
#define STARVED_PAUSE_MS 100
/* At most one warning about it in this many seconds. */
#define STARVED_WARN_S 10

struct allowed {
	int family;
	unsigned char addr[16];
};

struct it_acceptor {
	pthread_mutex_t lock;
	pthread_cond_t ready; /* a connection waits, or stopping */
	pthread_cond_t room;  /* the queue has room, or stopping */
	int *ring;	      /* cap slots, count of them used from head */
	unsigned cap, head, count;
	int stopping;
	int listen_fd;
	unsigned long long accepted;
	struct allowed allow[ALLOW_MAX];
	int nallow, restricted; /* restricted: FCGI_WEB_SERVER_ADDRS was set */
	pthread_t tid;
	int running; /* the thread was started and has not been joined */
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL); /* a stop signal may cut it short */
}

/* Reads FCGI_WEB_SERVER_ADDRS, the list libfcgi checks TCP peers against. */
static void allow_parse(it_acceptor *a)
{
	const char *env = getenv("FCGI_WEB_SERVER_ADDRS");
	char item[INET6_ADDRSTRLEN + 8];

	if (env == NULL || *env == '\0')
		return;
	a->restricted = 1;
	while (*env) {
		size_t n = strcspn(env, ",");
		const char *p = env;
		size_t len = n;

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > 0 && len < sizeof(item)) {
			struct allowed *e = &a->allow[a->nallow];
			memcpy(item, p, len);
			item[len] = '\0';
			if (a->nallow == ALLOW_MAX)
				it_log_warn("FCGI_WEB_SERVER_ADDRS: more than %d addresses, %s and the rest ignored",
					    ALLOW_MAX, item);
			else if (inet_pton(AF_INET, item, e->addr) == 1)
				e->family = AF_INET, a->nallow++;
			else if (inet_pton(AF_INET6, item, e->addr) == 1)
				e->family = AF_INET6, a->nallow++;
			else
				it_log_warn("FCGI_WEB_SERVER_ADDRS: %s is not an address, ignored", item);
		}
		env += n;
		if (*env == ',')
			env++;
		if (a->nallow == ALLOW_MAX && *env)
			break;
	}
}

/* Whether a peer may talk to us: Unix peers always, TCP peers when no list
 * is set or their address is on it. */
static int peer_allowed(const it_acceptor *a, const struct sockaddr_storage *ss)
{
	const void *addr;
	size_t len;

	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
		return 1;
	if (!a->restricted)
		return 1;
	if (ss->ss_family == AF_INET) {
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
		len = 4;
	} else {
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		len = 16;
	}
	for (int i = 0; i < a->nallow; i++)
		if (a->allow[i].family == ss->ss_family && memcmp(a->allow[i].addr, addr, len) == 0)
			return 1;
	return 0;
}

/* Whether accept() failed for a reason that passes: the connection died in
 * the queue, a network error was pending on it, or a signal came. */
static int transient(int err)
{
	switch (err) {
	case EINTR:
	case EAGAIN:
	case ECONNABORTED:
	case ECONNRESET:
	case EPROTO:
	case EPERM:
	case ETIMEDOUT:
	case ENETDOWN:
	case ENETUNREACH:
	case EHOSTDOWN:
	case EHOSTUNREACH:
	case ENONET:
	case ENOPROTOOPT: return 1;
	default: return 0;
	}
}

static void *accept_loop(void *arg)
{
	it_acceptor *a = arg;
	time_t warned = 0;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd, stop;

		pthread_mutex_lock(&a->lock);
		while (!a->stopping && a->count == a->cap)
			pthread_cond_wait(&a->room, &a->lock);
		stop = a->stopping;
		pthread_mutex_unlock(&a->lock);
		if (stop)
			break;

		memset(&ss, 0, sizeof(ss));
		fd = accept4(a->listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;
			if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
				/* The connections wait in the backlog meanwhile;
				 * parked streams that end give descriptors back. */
				time_t now = time(NULL);
				if (now - warned >= STARVED_WARN_S) {
					it_log_warn("accept on the FastCGI socket: %s; pausing (descriptor limit, "
						    "max_streams)",
						    strerror(err));
					warned = now;
				}
				sleep_ms(STARVED_PAUSE_MS);
			} else if (err == EAGAIN) {
				/* A non-blocking listening socket: wait a little
				 * rather than spin. */
				sleep_ms(10);
			} else if (!transient(err)) {
				it_log_error("accept on the FastCGI socket failed: %s; ending", strerror(err));
				pthread_mutex_lock(&a->lock);
				a->stopping = 1;
				pthread_cond_broadcast(&a->ready);
				pthread_mutex_unlock(&a->lock);
				kill(getpid(), SIGTERM);
				break;
			}
			continue;
		}
		if (!peer_allowed(a, &ss)) {
			close(fd);
			continue;
		}
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
			/* Answers are written in pieces: no Nagle delay. */
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		pthread_mutex_lock(&a->lock);
		if (a->stopping) {
			pthread_mutex_unlock(&a->lock);
			close(fd);
			break;
		}
		a->ring[(a->head + a->count) % a->cap] = fd;
		a->count++;
		a->accepted++;
		pthread_cond_signal(&a->ready);
		pthread_mutex_unlock(&a->lock);
	}
	return NULL;
}

it_acceptor *it_acceptor_start(int listen_fd, unsigned queue_max)
{
	it_acceptor *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->cap = queue_max ? queue_max : 1;
	a->ring = calloc(a->cap, sizeof(*a->ring));
	if (a->ring == NULL) {
		free(a);
		return NULL;
	}
	a->listen_fd = listen_fd;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->ready, NULL);
	pthread_cond_init(&a->room, NULL);
	allow_parse(a);
	if (pthread_create(&a->tid, NULL, accept_loop, a) != 0) {
		it_acceptor_free(a);
		return NULL;
	}
	a->running = 1;
	return a;
}

int it_acceptor_take(it_acceptor *a)
{
	int fd = -1;

	pthread_mutex_lock(&a->lock);
	while (!a->stopping && a->count == 0)
		pthread_cond_wait(&a->ready, &a->lock);
	if (!a->stopping) {
		fd = a->ring[a->head];
		a->head = (a->head + 1) % a->cap;
		if (a->count-- == a->cap)
			pthread_cond_signal(&a->room);
	}
	pthread_mutex_unlock(&a->lock);
	return fd;
}

unsigned long long it_acceptor_accepted(it_acceptor *a)
{
	unsigned long long n;

	pthread_mutex_lock(&a->lock);
	n = a->accepted;
	pthread_mutex_unlock(&a->lock);
	return n;
}

void it_acceptor_stop(it_acceptor *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = 1;
	pthread_cond_broadcast(&a->ready);
	pthread_cond_broadcast(&a->room);
	pthread_mutex_unlock(&a->lock);
	/* The thread may be inside accept(), or about to enter it: every
	 * round wakes it again until it has ended. */
	for (int round = 0; a->running && round < 100; round++) {
		if (pthread_tryjoin_np(a->tid, NULL) == 0) {
			a->running = 0;
			break;
		}
		pthread_kill(a->tid, SIGUSR2);
		sleep_ms(50);
	}
	if (a->running)
		it_log_warn("the accepting thread did not end");
	pthread_mutex_lock(&a->lock);
	for (; a->count > 0; a->count--) {
		close(a->ring[a->head]);
		a->head = (a->head + 1) % a->cap;
	}
	pthread_mutex_unlock(&a->lock);
}

void it_acceptor_free(it_acceptor *a)
{
	if (a == NULL || a->running)
		return; /* a thread still inside goes with the process */
	pthread_cond_destroy(&a->room);
	pthread_cond_destroy(&a->ready);
	pthread_mutex_destroy(&a->lock);
	free(a->ring);
	free(a);
}

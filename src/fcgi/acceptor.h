/* acceptor.h: the thread of imagetools.fcgi that takes FastCGI connections off the listening socket as fast as they
 * arrive, and the queue the request threads serve them from. */
#ifndef IT_FCGI_ACCEPTOR_H
#define IT_FCGI_ACCEPTOR_H

/*
 * Why a thread of its own: the kernel keeps at most a listen backlog of
 * connections that nobody has accepted yet (lighttpd asks for 1024 on the
 * socket it creates, and the kernel caps any request at net.core.somaxconn,
 * 128 before Linux 5.4). When request threads accept only between two
 * requests, a storm of long-poll re-polls (every waiting client answered by
 * one event comes back at once) fills it, and a web server's non-blocking
 * connect() then fails with EAGAIN. lighttpd 1.4 takes that EAGAIN on a
 * Unix socket for a connection in progress, writes to the unconnected
 * socket, gets ENOTCONN, and answers the client 500/503 ("connection was
 * dropped after accept()"). This thread does nothing but accept, so the
 * backlog stays nearly empty; connections wait their turn in this queue
 * instead, in arrival order, each holding one descriptor.
 */

typedef struct it_acceptor it_acceptor;

/* Starts the accepting thread on listen_fd (a listening stream socket, Unix
 * or TCP, blocking; it is not closed here). At most queue_max accepted
 * connections wait (at least 1); while the queue is full the thread accepts
 * nothing and new connections wait in the kernel's backlog. When
 * FCGI_WEB_SERVER_ADDRS is set and not empty (a comma-separated list of IPv4
 * or IPv6 addresses, as libfcgi reads it) a TCP peer not in it is closed at
 * once; Unix peers are always taken. The thread is woken out of accept() by
 * SIGUSR2, for which the process must have a handler without SA_RESTART.
 * Running out of descriptors makes it pause and try again; an error that
 * cannot pass (the socket is not a listening socket any more) is logged,
 * every taker gets -1, and the process is sent SIGTERM so that it ends and
 * the web server starts a new one. Returns the acceptor, or NULL when memory is short or the thread cannot
 * be started. */
it_acceptor *it_acceptor_start(int listen_fd, unsigned queue_max);

/* Waits for the oldest accepted connection and returns its descriptor (the
 * caller owns it, blocking mode, close-on-exec), or -1 once the acceptor
 * stops (at once, even with connections still queued) or has failed for
 * good. Safe from any number of threads. */
int it_acceptor_take(it_acceptor *a);

/* Connections accepted so far (for the logs and the tests). */
unsigned long long it_acceptor_accepted(it_acceptor *a);

/* Stops the acceptor: every it_acceptor_take returns -1 from now on, the
 * thread ends (woken with SIGUSR2, for at most about five seconds) and the
 * connections still queued are closed, so the web server sees them end
 * before a request was read and tries again. NULL is allowed. */
void it_acceptor_stop(it_acceptor *a);

/* Frees a stopped acceptor, unless its thread would not end. No thread may
 * still be inside it_acceptor_take. NULL is allowed. */
void it_acceptor_free(it_acceptor *a);

#endif

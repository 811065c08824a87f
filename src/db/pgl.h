/* pgl.h: one PostgreSQL connection that LISTENs and runs queries, all asynchronous on the owner's epoll loop.
 *
 * Used by the event-delivery core (src/feed/) in every process that delivers
 * events. Single-threaded: every function must be called from the thread
 * that owns the epoll loop. Time is the owner's monotonic clock in seconds,
 * passed to it_pgl_tick; the connection keeps no clock of its own, so a test
 * can drive deadlines and backoff without waiting. */
#ifndef IT_DB_PGL_H
#define IT_DB_PGL_H

#include <libpq-fe.h>

/* A connection attempt (TCP, TLS, start-up, LISTEN) that takes longer than
 * this is abandoned. libpq honours connect_timeout only in its blocking
 * calls, not under PQconnectPoll, so the deadline is enforced by
 * it_pgl_tick. */
#define IT_PGL_CONNECT_TIMEOUT 10.0
/* Reconnection delays: the first retry after this, doubling on each failure
 * up to IT_PGL_BACKOFF_MAX, each with +-25 % jitter so that many processes
 * do not reconnect in lockstep. A successful LISTEN resets it. */
#define IT_PGL_BACKOFF_MIN 0.25
#define IT_PGL_BACKOFF_MAX 5.0

/* What the owner of the connection is told. Each callback runs inside
 * it_pgl_handle or it_pgl_tick; only ready and result may call it_pgl_send
 * (after checking it_pgl_idle). */
typedef struct it_pgl_hooks {
	/* The connection is up and LISTENing: no notification can be missed
	 * from here on, so re-read whatever may have been missed before. */
	void (*ready)(void *arg);
	/* The connection was lost; the query in flight, if any, is abandoned
	 * (its result callback is not called). Reconnection is automatic. */
	void (*lost)(void *arg);
	/* One NOTIFY on the channel; payload belongs to the caller for the
	 * duration of the call. */
	void (*notify)(void *arg, const char *payload);
	/* The result of the query sent with it_pgl_send (not owned: it is
	 * cleared after the call). res may be an error result. The next query
	 * may be sent once it_pgl_idle says so. */
	void (*result)(void *arg, PGresult *res);
} it_pgl_hooks;

enum it_pgl_state { IT_PGL_DOWN, IT_PGL_CONNECTING, IT_PGL_LISTENING, IT_PGL_READY, IT_PGL_BUSY };

typedef struct it_pgl {
	PGconn *conn;
	int epfd;	   /* the loop the socket is registered with */
	void *tag;	   /* epoll data.ptr of the socket */
	int reg_fd;	   /* socket currently registered, or -1 */
	unsigned reg_ev;   /* events it is registered for */
	int state;	   /* enum it_pgl_state */
	int flushing;	   /* a query is still being written */
	int recycle;	   /* an answer said the session is no good: reconnect once the statement is done */
	double now;	   /* the owner's clock at the last it_pgl_tick */
	double retry_at;   /* when to try connecting again */
	double deadline;   /* a connection attempt in progress is abandoned then */
	double backoff;	   /* the next reconnect delay, seconds */
	unsigned failures; /* attempts failed since the last success (logged sparingly) */
	char *channel;
	char *conninfo;
	const char *app; /* application_name, a static string */
	it_pgl_hooks hooks;
	void *arg;
} it_pgl;

/* Prepares the connection object; connecting starts at the first
 * it_pgl_tick. conninfo (a libpq conninfo string or URI; NULL or "" for the
 * PG* environment) and channel (not NULL) are copied. The socket will be
 * registered with epfd with data.ptr = tag. hooks is copied; arg is passed
 * to every hook. application_name defaults to "imagetools"; see it_pgl_set_app. */
void it_pgl_init(it_pgl *p, int epfd, void *tag, const char *conninfo, const char *channel, const it_pgl_hooks *hooks,
		 void *arg);

/* Sets application_name for the next connection attempts. app must be a
 * string that outlives p (a literal). */
void it_pgl_set_app(it_pgl *p, const char *app);

/* Closes the connection and frees what it_pgl_init allocated. No hook is
 * called. Safe on a zeroed struct. */
void it_pgl_free(it_pgl *p);

/* Returns 1 when a query may be sent (connected, listening, none in flight). */
int it_pgl_idle(const it_pgl *p);

/* Sends one parameterised statement (text parameters and results). Only when
 * it_pgl_idle. Returns 0; -EIO when the connection broke (lost has then
 * been called); -EBUSY when a statement is in flight; -ENOTCONN when the
 * connection is not up. */
int it_pgl_send(it_pgl *p, const char *sql, int nparams, const char *const *params);

/* Handles readiness of the socket (epoll events). */
void it_pgl_handle(it_pgl *p, unsigned events);

/* Drives reconnection and the connect deadline; call it every few hundred
 * milliseconds with the monotonic time in seconds. */
void it_pgl_tick(it_pgl *p, double now);

/* The delay to wait after a failure when the previous delay was prev: the
 * one backoff policy (IT_PGL_BACKOFF_MIN doubling to IT_PGL_BACKOFF_MAX),
 * without jitter. prev <= 0 gives the first delay. */
double it_pgl_backoff_next(double prev);

#endif

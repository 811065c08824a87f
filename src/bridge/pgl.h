/* pgl.h: the bridge's one PostgreSQL connection: LISTEN plus queries, all asynchronous on the caller's epoll loop. */
#ifndef IT_PGL_H
#define IT_PGL_H

#include <libpq-fe.h>

/* What the owner of the connection is told. Each callback runs inside
 * it_pgl_handle or it_pgl_tick; only ready may call it_pgl_send. */
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
	 * may be sent once it_pgl_idle says so, after it_pgl_handle returns. */
	void (*result)(void *arg, PGresult *res);
} it_pgl_hooks;

typedef struct it_pgl {
	PGconn *conn;
	int epfd;	  /* the loop the socket is registered with */
	void *tag;	  /* epoll data.ptr of the socket */
	int reg_fd;	  /* socket currently registered, or -1 */
	unsigned reg_ev;  /* events it is registered for */
	int state;	  /* internal: down, connecting, listening, ready, busy */
	int flushing;	  /* a query is still being written */
	int recycle;	  /* an answer said the session is no good: reconnect once the statement is done */
	double retry_at;  /* when to try connecting again (monotonic seconds) */
	double backoff;	  /* current reconnect delay, seconds */
	char *channel;
	char *conninfo;
	it_pgl_hooks hooks;
	void *arg;
} it_pgl;

/* Prepares the connection object; connecting starts at the first
 * it_pgl_tick. conninfo (a libpq conninfo string or URI; NULL or "" for the
 * PG* environment) and channel are copied. The socket will be registered with epfd
 * with data.ptr = tag. */
void it_pgl_init(it_pgl *p, int epfd, void *tag, const char *conninfo, const char *channel, const it_pgl_hooks *hooks, void *arg);

/* Closes the connection and frees what it_pgl_init allocated. */
void it_pgl_free(it_pgl *p);

/* Returns 1 when a query may be sent (connected, listening, none in flight). */
int it_pgl_idle(const it_pgl *p);

/* Sends one parameterised statement (text parameters and results). Only when
 * it_pgl_idle. Returns 0, or -1 when the connection broke (then lost has
 * been called). */
int it_pgl_send(it_pgl *p, const char *sql, int nparams, const char *const *params);

/* Handles readiness of the socket (epoll events). */
void it_pgl_handle(it_pgl *p, unsigned events);

/* Drives reconnection; call it now and then with the monotonic time. */
void it_pgl_tick(it_pgl *p, double now);

#endif

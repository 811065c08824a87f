/* pgl.c: one PostgreSQL connection that LISTENs and runs queries, all asynchronous on the owner's epoll loop. */
#include "config.h"

#include "db/pgl.h"

#include "common/log.h"
#include "db/db.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

enum {
	ST_DOWN = IT_PGL_DOWN,
	ST_CONNECTING = IT_PGL_CONNECTING,
	ST_LISTENING = IT_PGL_LISTENING,
	ST_READY = IT_PGL_READY,
	ST_BUSY = IT_PGL_BUSY
};

double it_pgl_backoff_next(double prev)
{
	if (prev <= 0)
		return IT_PGL_BACKOFF_MIN;
	prev *= 2;
	return prev > IT_PGL_BACKOFF_MAX ? IT_PGL_BACKOFF_MAX : prev;
}

/* Keeps the epoll registration in step with libpq's socket, which changes
 * on every (re)connection attempt. */
static void watch(it_pgl *p, unsigned ev)
{
	int fd = p->conn ? PQsocket(p->conn) : -1;
	struct epoll_event e;

	if (fd != p->reg_fd) {
		if (p->reg_fd >= 0)
			epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->reg_fd, NULL);
		p->reg_fd = -1;
		if (fd < 0)
			return;
		e.events = ev;
		e.data.ptr = p->tag;
		if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &e) == 0) {
			p->reg_fd = fd;
			p->reg_ev = ev;
		} else {
			it_log_error("epoll_ctl(database socket): %s", strerror(errno));
		}
		return;
	}
	if (fd >= 0 && ev != p->reg_ev) {
		e.events = ev;
		e.data.ptr = p->tag;
		epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &e);
		p->reg_ev = ev;
	}
}

static void unwatch(it_pgl *p)
{
	if (p->reg_fd >= 0)
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, p->reg_fd, NULL);
	p->reg_fd = -1;
}

void it_pgl_init(it_pgl *p, int epfd, void *tag, const char *conninfo, const char *channel, const it_pgl_hooks *hooks,
		 void *arg)
{
	memset(p, 0, sizeof(*p));
	p->epfd = epfd;
	p->tag = tag;
	p->reg_fd = -1;
	p->state = ST_DOWN;
	p->backoff = IT_PGL_BACKOFF_MIN;
	p->app = "imagetools";
	p->channel = strdup(channel);
	p->conninfo = strdup(conninfo ? conninfo : "");
	p->hooks = *hooks;
	p->arg = arg;
}

void it_pgl_set_app(it_pgl *p, const char *app)
{
	p->app = app;
}

void it_pgl_free(it_pgl *p)
{
	unwatch(p);
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
	free(p->channel);
	free(p->conninfo);
	p->channel = p->conninfo = NULL;
}

int it_pgl_idle(const it_pgl *p)
{
	return p->state == ST_READY;
}

/* Drops the connection and schedules the next attempt with exponential
 * backoff and jitter, so many bridges do not reconnect in lockstep. */
static void lose(it_pgl *p, const char *why)
{
	int was_up = p->state >= ST_READY;

	if (p->conn) {
		if (was_up)
			it_log_warn("database connection lost (%s): %s", why, PQerrorMessage(p->conn));
		unwatch(p);
		PQfinish(p->conn);
		p->conn = NULL;
	}
	p->state = ST_DOWN;
	p->flushing = 0;
	p->recycle = 0;
	p->retry_at = p->now + p->backoff * (0.75 + 0.5 * (rand() / (double)RAND_MAX));
	p->backoff = it_pgl_backoff_next(p->backoff);
	if (was_up && p->hooks.lost)
		p->hooks.lost(p->arg);
}

static void quiet_notices(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

static void start_connect(it_pgl *p)
{
	const char *keys[4], *vals[4];
	int n = 0;

	/* expand_dbname lets dbname carry a whole conninfo string or URI. */
	if (*p->conninfo) {
		keys[n] = "dbname";
		vals[n++] = p->conninfo;
	}
	keys[n] = "application_name";
	vals[n++] = p->app;
	keys[n] = NULL;
	vals[n] = NULL;
	p->conn = PQconnectStartParams(keys, vals, 1);
	if (p->conn == NULL || PQstatus(p->conn) == CONNECTION_BAD) {
		lose(p, "connect");
		return;
	}
	PQsetNoticeReceiver(p->conn, quiet_notices, NULL);
	p->state = ST_CONNECTING;
	p->deadline = p->now + IT_PGL_CONNECT_TIMEOUT;
	watch(p, EPOLLOUT);
}

static void flush(it_pgl *p)
{
	int rc = PQflush(p->conn);

	if (rc < 0) {
		lose(p, "write");
		return;
	}
	p->flushing = rc == 1;
	watch(p, EPOLLIN | (p->flushing ? EPOLLOUT : 0));
}

static int send_listen(it_pgl *p)
{
	char *ident = PQescapeIdentifier(p->conn, p->channel, strlen(p->channel));
	char sql[256];
	int ok;

	if (ident == NULL)
		return -1;
	snprintf(sql, sizeof(sql), "LISTEN %s", ident);
	PQfreemem(ident);
	ok = PQsendQuery(p->conn, sql);
	return ok ? 0 : -1;
}

static void poll_connect(it_pgl *p)
{
	switch (PQconnectPoll(p->conn)) {
	case PGRES_POLLING_READING: watch(p, EPOLLIN); return;
	case PGRES_POLLING_WRITING: watch(p, EPOLLOUT); return;
	case PGRES_POLLING_OK: break;
	default:
		/* One line per failed attempt would flood the log while the
		 * server is down; the first and every tenth will do. */
		if (p->failures++ % 10 == 0)
			it_log_warn("database connection failed: %s", PQerrorMessage(p->conn));
		lose(p, "connect");
		return;
	}
	PQsetnonblocking(p->conn, 1);
	if (send_listen(p) < 0) {
		lose(p, "LISTEN");
		return;
	}
	p->state = ST_LISTENING;
	flush(p);
}

int it_pgl_send(it_pgl *p, const char *sql, int nparams, const char *const *params)
{
	if (p->state != ST_READY)
		return p->state == ST_BUSY || p->state == ST_LISTENING ? -EBUSY : -ENOTCONN;
	if (!PQsendQueryParams(p->conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		lose(p, "send");
		return -EIO;
	}
	p->state = ST_BUSY;
	flush(p);
	return p->state == ST_DOWN ? -EIO : 0;
}

/* Collects finished results; called whenever input was consumed. */
static void collect(it_pgl *p)
{
	PGnotify *n;

	while (p->conn && (p->state == ST_LISTENING || p->state == ST_BUSY) && !PQisBusy(p->conn)) {
		PGresult *res = PQgetResult(p->conn);
		if (res == NULL) {
			/* The statement is complete. */
			if (p->state == ST_LISTENING) {
				it_log_info("database connection up, listening on %s", p->channel);
				p->backoff = IT_PGL_BACKOFF_MIN;
				p->failures = 0;
				p->state = ST_READY;
				if (p->hooks.ready)
					p->hooks.ready(p->arg);
			} else {
				p->state = ST_READY;
				/* Reconnecting is the only way out of a session
				 * the server has turned against us (read-only
				 * after a failover, shutting down); the clients
				 * are resynchronised once it LISTENs again. */
				if (p->recycle) {
					lose(p, "the session cannot be trusted");
					return;
				}
			}
			continue;
		}
		if (p->state == ST_LISTENING) {
			if (PQresultStatus(res) != PGRES_COMMAND_OK) {
				it_log_error("LISTEN failed: %s", PQresultErrorMessage(res));
				PQclear(res);
				lose(p, "LISTEN");
				return;
			}
		} else {
			if (it_db_conn_error(res))
				p->recycle = 1;
			if (p->hooks.result)
				p->hooks.result(p->arg, res);
		}
		PQclear(res);
	}
	while (p->conn && (n = PQnotifies(p->conn)) != NULL) {
		if (p->hooks.notify && strcmp(n->relname, p->channel) == 0)
			p->hooks.notify(p->arg, n->extra);
		PQfreemem(n);
	}
	if (p->conn && PQstatus(p->conn) == CONNECTION_BAD)
		lose(p, "status");
}

void it_pgl_handle(it_pgl *p, unsigned events)
{
	if (p->conn == NULL)
		return;
	if (p->state == ST_CONNECTING) {
		poll_connect(p);
		return;
	}
	if (events & EPOLLOUT && p->flushing) {
		flush(p);
		if (p->state == ST_DOWN)
			return;
	}
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
		if (!PQconsumeInput(p->conn)) {
			lose(p, "read");
			return;
		}
		collect(p);
	}
}

void it_pgl_tick(it_pgl *p, double now)
{
	p->now = now;
	if (p->state == ST_DOWN && now >= p->retry_at) {
		start_connect(p);
	} else if ((p->state == ST_CONNECTING || p->state == ST_LISTENING) && now >= p->deadline) {
		/* A server that accepted the TCP connection but never answers
		 * (a stopped VM, a full backlog behind a proxy) would otherwise
		 * hold the attempt for ever: libpq has no timeout of its own
		 * under PQconnectPoll. */
		if (p->failures++ % 10 == 0)
			it_log_warn("database connection attempt timed out after %.0f s", IT_PGL_CONNECT_TIMEOUT);
		lose(p, "connection attempt timed out");
	}
}

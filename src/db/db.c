/* db.c: PostgreSQL connections for request threads, with reconnection and recycling. */
#include "config.h"

#include "db/db.h"

#include "common/log.h"

#include <errno.h>
#include <libpq-events.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *conninfo;
static __thread PGconn *thread_conn;
static __thread time_t thread_last_complaint;

/* The instance data of watch() on a connection: NULL while it is good,
 * SUSPECT once an answer said its session cannot be trusted. */
static char suspect_mark;
#define SUSPECT ((void *)&suspect_mark)

void it_db_configure(const char *ci)
{
	free(conninfo);
	conninfo = (ci && *ci) ? strdup(ci) : NULL;
}

/* 1 when the n bytes at w may be repeated in a message: the name of a
 * libpq connection option, or punctuation such as the "=" libpq misses. */
static int is_keyword(const PQconninfoOption *opts, const char *w, size_t n)
{
	if (n == 1 && (*w == '=' || *w == '&' || *w == '?' || *w == '/' || *w == ':' || *w == '@'))
		return 1;
	for (; opts && opts->keyword; opts++)
		if (strlen(opts->keyword) == n && strncmp(opts->keyword, w, n) == 0)
			return 1;
	return 0;
}

int it_db_check_conninfo(const char *ci, char *err, size_t errlen)
{
	PQconninfoOption *parsed, *defs = NULL;
	char *msg = NULL, *nl;
	size_t o = 0;
	int rc = 0;

	if (ci == NULL || *ci == '\0')
		return 0;
	parsed = PQconninfoParse(ci, &msg);
	if (parsed != NULL) {
		PQconninfoFree(parsed);
		goto out;
	}
	rc = -EINVAL;
	o = (size_t)snprintf(err, errlen,
			     "database_url is malformed (expected key=value pairs such as "
			     "\"host=/run/postgresql dbname=imagetools user=imagetools\", or a URI "
			     "such as \"postgresql://imagetools@localhost/imagetools\")");
	if (msg == NULL || o >= errlen)
		goto out;
	defs = PQconndefaults();
	if ((nl = strchr(msg, '\n')) != NULL)
		*nl = '\0';
	o += (size_t)snprintf(err + o, errlen - o, ": ");
	/* libpq quotes the words it complains about, and those may be part of
	 * the value (a password after a stray space): only option names stay. */
	for (const char *p = msg; *p && o + 1 < errlen;) {
		const char *q = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (q != NULL) {
			size_t n = (size_t)(q - p - 1);
			if (is_keyword(defs, p + 1, n))
				o += (size_t)snprintf(err + o, errlen - o, "\"%.*s\"", (int)n, p + 1);
			else
				o += (size_t)snprintf(err + o, errlen - o, "\"...\"");
			p = q + 1;
		} else {
			err[o++] = *p++;
			err[o] = '\0';
		}
	}
out:
	if (defs)
		PQconninfoFree(defs);
	PQfreemem(msg);
	return rc;
}

int it_db_startup(const char *prog, const char *path, const char *database, it_config *cfg, char *err, size_t errlen)
{
	int level;

	if (it_config_load(cfg, path, err, (unsigned)errlen) < 0 ||
	    it_db_check_conninfo(database ? database : cfg->database_url, err, errlen) < 0) {
		it_config_free(cfg);
		return -EINVAL;
	}
	level = it_log_level_parse(cfg->log_level);
	it_log_init(prog, level < 0 ? IT_LOG_INFO : (enum it_log_level)level);
	it_db_configure(database ? database : cfg->database_url);
	return 0;
}

static void quiet_notices(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
}

int it_db_conn_error(const PGresult *res)
{
	const char *s;

	if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR)
		return 0;
	s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (s == NULL || strlen(s) != 5)
		return 0;
	/* 25006: the session is read-only. Either the database or role was
	 * set to default_transaction_read_only when the session began (the
	 * setting is read once, at connection time), or the server is a
	 * standby now (a failover left us on the old primary). Only a new
	 * session can tell whether writes work again. */
	if (strcmp(s, "25006") == 0)
		return 1;
	/* Class 08: connection exceptions. */
	if (strncmp(s, "08", 2) == 0)
		return 1;
	/* 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
	 * 57P04 database_dropped, 57P05 idle_session_timeout: the server ended
	 * or is ending the session. */
	if (strncmp(s, "57P0", 4) == 0 && s[4] >= '1' && s[4] <= '5')
		return 1;
	/* 25P03: idle_in_transaction_session_timeout ended the session. */
	return strcmp(s, "25P03") == 0;
}

/* Sees every result created on a connection made by it_db_connect, whoever
 * ran the statement (the helpers here, or PQexec directly as the worker
 * does), and marks the connection when the answer says its session is no
 * good. A successful PQreset clears the mark. */
static int watch(PGEventId id, void *info, void *pass)
{
	(void)pass;
	if (id == PGEVT_RESULTCREATE) {
		PGEventResultCreate *e = info;
		if (it_db_conn_error(e->result))
			PQsetInstanceData(e->conn, watch, SUSPECT);
	} else if (id == PGEVT_CONNRESET) {
		PGEventConnReset *e = info;
		PQsetInstanceData(e->conn, watch, NULL);
	}
	return 1;
}

static void complain(PGconn *c)
{
	time_t now = time(NULL);

	if (now != thread_last_complaint) {
		thread_last_complaint = now;
		/* PQerrorMessage names host and port, never the password. */
		it_log_warn("database connection failed: %s", PQerrorMessage(c));
	}
}

PGconn *it_db_connect(void)
{
	/* connect_timeout keeps a request from hanging long on a dead server. */
	const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
	const char *vals[] = {conninfo ? conninfo : "", "5", "imagetools", NULL};
	PGconn *c;

	/* expand_dbname lets dbname carry a full conninfo string or URI; an
	 * empty one leaves everything to the PG* environment. */
	if (conninfo == NULL) {
		keys[0] = "connect_timeout";
		vals[0] = "5";
		keys[1] = "application_name";
		vals[1] = "imagetools";
		keys[2] = NULL;
	}
	c = PQconnectdbParams(keys, vals, 1);
	if (c == NULL)
		return NULL;
	if (PQstatus(c) != CONNECTION_OK) {
		complain(c);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeReceiver(c, quiet_notices, NULL);
	if (!PQregisterEventProc(c, watch, "imagetools", NULL))
		it_log_warn("database: cannot watch the connection's answers; it will not be recycled on errors");
	return c;
}

int it_db_broken(PGconn *conn)
{
	return conn == NULL || PQstatus(conn) != CONNECTION_OK || PQinstanceData(conn, watch) == SUSPECT;
}

/* Whether a transaction may be open on conn: one is, or the connection
 * broke and nobody can tell. */
static int maybe_in_transaction(PGconn *conn)
{
	return PQtransactionStatus(conn) != PQTRANS_IDLE;
}

/* Replaces the session of conn with a new one, in place: the PGconn stays
 * the same object, so every copy of the pointer a caller holds stays valid.
 * Returns 0, or -1 when the server cannot be reached (conn is then left
 * broken, to be renewed at its next use). */
static int renew(PGconn *conn)
{
	PQreset(conn);
	if (PQstatus(conn) != CONNECTION_OK) {
		complain(conn);
		return -1;
	}
	return 0;
}

PGconn *it_db_thread_conn(void)
{
	/* A broken connection is renewed between transactions, never inside
	 * one: the caller must see its transaction fail and roll back. */
	if (thread_conn && it_db_broken(thread_conn)) {
		if (PQstatus(thread_conn) == CONNECTION_OK && maybe_in_transaction(thread_conn))
			return thread_conn;
		if (renew(thread_conn) < 0)
			return NULL;
	}
	if (thread_conn == NULL)
		thread_conn = it_db_connect();
	return thread_conn;
}

void it_db_thread_close(void)
{
	if (thread_conn)
		PQfinish(thread_conn);
	thread_conn = NULL;
}

PGresult *it_db_exec(PGconn **connp, int retry, const char *sql, int nparams, const char *const *params)
{
	PGconn *conn = *connp;
	PGresult *res;
	int renewed = 0;

	if (conn == NULL)
		return NULL;
	/* A connection marked suspect by an earlier answer, with no transaction
	 * open, gets a new session before it is used again. */
	if (PQstatus(conn) == CONNECTION_OK && it_db_broken(conn) && !maybe_in_transaction(conn)) {
		if (renew(conn) < 0)
			return NULL;
		renewed = 1;
	}
	if (maybe_in_transaction(conn)) {
		/* Inside a transaction nothing is repeated: on a new session the
		 * transaction's earlier statements would be gone. The caller
		 * fails, rolls back, and the connection is renewed at its next
		 * use. */
		return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	}
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (renewed || !it_db_broken(conn))
		return res;
	/* Once more on a new session: for statements the caller says are safe
	 * to repeat, and for any statement the server refused because of the
	 * session's state (an error answer outside a transaction means nothing
	 * was done, so repeating it is safe). A connection that broke without
	 * an answer may or may not have run the statement. */
	if (!retry && !it_db_conn_error(res))
		return res;
	PQclear(res);
	if (renew(conn) < 0)
		return NULL;
	return PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
}

PGresult *it_db_exec_row(PGconn **connp, int retry, const char *what, const char *sql, int nparams,
			 const char *const *params)
{
	PGresult *res = it_db_exec(connp, retry, sql, nparams, params);

	if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1)
		return res;
	if (res)
		it_log_warn("%s failed: %s", what, PQresultErrorMessage(res));
	PQclear(res);
	return NULL;
}

PGresult *it_db_exec_bin(PGconn *conn, const char *sql, int nparams, const char *const *values, const int *lengths,
			 const int *formats, int result_binary)
{
	if (conn == NULL)
		return NULL;
	return PQexecParams(conn, sql, nparams, NULL, values, lengths, formats, result_binary);
}

int it_db_ok(const PGresult *res, ExecStatusType want)
{
	return res != NULL && PQresultStatus(res) == want;
}

const char *it_db_sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	return s ? s : "";
}

int it_db_begin(PGconn **connp)
{
	PGresult *res;
	int ok;

	if (*connp == NULL)
		return -ENOTCONN;
	/* A new transaction starts here, so a broken connection may be
	 * renewed even when its old transaction's fate is unknown. */
	if (it_db_broken(*connp) && (PQstatus(*connp) != CONNECTION_OK || !maybe_in_transaction(*connp)) &&
	    renew(*connp) < 0)
		return -ENOTCONN;
	res = it_db_exec(connp, 1, "BEGIN", 0, NULL);
	ok = it_db_ok(res, PGRES_COMMAND_OK);
	if (!ok)
		it_log_warn("BEGIN failed: %s", PQerrorMessage(*connp));
	PQclear(res);
	return ok ? 0 : -EIO;
}

int it_db_commit(PGconn *conn)
{
	PGresult *res = PQexec(conn, "COMMIT");
	/* COMMIT of a transaction that already failed answers ROLLBACK, with
	 * a success status: only the tag tells. */
	int ok = it_db_ok(res, PGRES_COMMAND_OK) && strcmp(PQcmdStatus(res), "COMMIT") == 0;

	if (!ok)
		it_log_warn("COMMIT failed: %s",
			    res && PQresultStatus(res) == PGRES_COMMAND_OK
				    ? "the transaction had failed and was rolled back"
				    : PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -EIO;
}

void it_db_rollback(PGconn *conn)
{
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return;
	PQclear(PQexec(conn, "ROLLBACK"));
}

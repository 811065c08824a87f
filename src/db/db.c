/* db.c: PostgreSQL connections for request threads, with reconnection. */
#include "config.h"

#include "db/db.h"

#include "common/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *conninfo;
static __thread PGconn *thread_conn;
static __thread time_t thread_last_complaint;

void it_db_configure(const char *ci)
{
	free(conninfo);
	conninfo = (ci && *ci) ? strdup(ci) : NULL;
}

static void quiet_notices(void *arg, const PGresult *res)
{
	(void)arg;
	(void)res;
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
		time_t now = time(NULL);
		if (now != thread_last_complaint) {
			thread_last_complaint = now;
			/* PQerrorMessage names host and port, never the password. */
			it_log_warn("database connection failed: %s", PQerrorMessage(c));
		}
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeReceiver(c, quiet_notices, NULL);
	return c;
}

int it_db_broken(PGconn *conn)
{
	return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}

PGconn *it_db_thread_conn(void)
{
	if (thread_conn && PQstatus(thread_conn) != CONNECTION_OK) {
		PQfinish(thread_conn);
		thread_conn = NULL;
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
	PGresult *res;

	if (*connp == NULL)
		return NULL;
	res = PQexecParams(*connp, sql, nparams, NULL, params, NULL, NULL, 0);
	if (retry && PQstatus(*connp) != CONNECTION_OK) {
		PQclear(res);
		/* Only the thread's own connection is replaced behind its back. */
		if (*connp == thread_conn) {
			PQfinish(thread_conn);
			thread_conn = it_db_connect();
			*connp = thread_conn;
		} else {
			PQreset(*connp);
			if (PQstatus(*connp) != CONNECTION_OK)
				return NULL;
		}
		if (*connp == NULL)
			return NULL;
		res = PQexecParams(*connp, sql, nparams, NULL, params, NULL, NULL, 0);
	}
	return res;
}

PGresult *it_db_exec_bin(PGconn *conn, const char *sql, int nparams, const char *const *values,
			 const int *lengths, const int *formats, int result_binary)
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
	PGresult *res = it_db_exec(connp, 1, "BEGIN", 0, NULL);
	int ok = it_db_ok(res, PGRES_COMMAND_OK);

	if (!ok && *connp)
		it_log_warn("BEGIN failed: %s", PQerrorMessage(*connp));
	PQclear(res);
	return ok ? 0 : -1;
}

int it_db_commit(PGconn *conn)
{
	PGresult *res = PQexec(conn, "COMMIT");
	int ok = it_db_ok(res, PGRES_COMMAND_OK);

	if (!ok)
		it_log_warn("COMMIT failed: %s", PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -1;
}

void it_db_rollback(PGconn *conn)
{
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return;
	PQclear(PQexec(conn, "ROLLBACK"));
}

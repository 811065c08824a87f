/* db.h: PostgreSQL connections for request threads, with reconnection. */
#ifndef IT_DB_H
#define IT_DB_H

#include <libpq-fe.h>
#include <stdint.h>

/* Sets the conninfo every later connection uses (copied). NULL or "" lets
 * libpq take PGHOST, PGPORT, PGDATABASE... from the environment. */
void it_db_configure(const char *conninfo);

/* Returns the calling thread's connection, connecting or reconnecting as
 * needed, or NULL when the database cannot be reached (logged, rate-limited).
 * The connection belongs to the thread: never pass it to another one. */
PGconn *it_db_thread_conn(void);

/* Closes the calling thread's connection, if any. */
void it_db_thread_close(void);

/* Opens a new connection the caller owns (PQfinish it). NULL on failure. */
PGconn *it_db_connect(void);

/* Runs a parameterised statement (text parameters, text results). When the
 * connection turns out to be broken and retry is set, reconnects once and
 * runs it again: only for statements that are safe to repeat (reads, BEGIN).
 * Returns the result (PQclear it) or NULL when there is no connection;
 * *connp is updated after a reconnect. */
PGresult *it_db_exec(PGconn **connp, int retry, const char *sql, int nparams, const char *const *params);

/* Like it_db_exec but with explicit lengths and formats (1 = binary) for
 * parameters, and binary results when result_binary is set. Never retries. */
PGresult *it_db_exec_bin(PGconn *conn, const char *sql, int nparams, const char *const *values,
			 const int *lengths, const int *formats, int result_binary);

/* Returns 1 when res succeeded with the expected status. */
int it_db_ok(const PGresult *res, ExecStatusType want);

/* Returns 1 when the connection is unusable (the server went away). */
int it_db_broken(PGconn *conn);

/* Runs BEGIN (retrying once on a dead connection), COMMIT or ROLLBACK.
 * Return 0 on success, -1 on failure (logged). */
int it_db_begin(PGconn **connp);
int it_db_commit(PGconn *conn);
void it_db_rollback(PGconn *conn);

/* Returns the SQLSTATE of a failed result, or "" when there is none. */
const char *it_db_sqlstate(const PGresult *res);

#endif

/* db.h: PostgreSQL connections for request threads, with reconnection and recycling.
 *
 * Return convention of the database layer (src/db/, docs/layout.md): a
 * function that runs statements on behalf of a request returns 0 or the
 * HTTP status the caller answers with (400, 401, 404, 409, 410, 416, 423,
 * 429, 503; after 503 inside a transaction the caller rolls back). One that
 * returns a count or a length returns it, or minus such a status
 * (it_event_read, it_images_list, it_presence_db_sweep: -503;
 * it_blob_reader_next: -404 or -503). it_ratelimit_take and _peek return 0,
 * 429 or 503 like the rest. Connection plumbing (db.c, pgl.c, metrics.c,
 * migrate.c) and pure helpers that ask no database (it_images_url,
 * it_op_type_parse, it_op_params_parse) follow the common layer's rule:
 * 0 or a negative errno. Constructors of results return a pointer or NULL,
 * and it_db_ok, it_db_broken and it_db_conn_error are predicates. */
#ifndef IT_DB_DB_H
#define IT_DB_DB_H

#include "common/config.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Sets the conninfo every later connection uses (copied). NULL or "" lets
 * libpq take PGHOST, PGPORT, PGDATABASE... from the environment. */
void it_db_configure(const char *conninfo);

/* Checks that conninfo (the database_url setting; NULL or "" is fine: the
 * PG* environment) is a connection string libpq can parse, key=value pairs
 * or a postgresql:// URI, before anything tries to connect with it (a
 * malformed one would otherwise only show up as a failing connection,
 * retried for ever). Returns 0, or -EINVAL with a sentence in err (errlen bytes)
 * that names database_url and libpq's reason, in which every quoted word
 * that is not a libpq keyword is replaced by "...": nothing of the value,
 * a password least of all, is repeated. */
int it_db_check_conninfo(const char *conninfo, char *err, size_t errlen);

/* The start of every program that uses the database: loads the
 * configuration file at path into cfg, checks the connection string
 * database, or the file's database_url when database is NULL
 * (it_db_check_conninfo), sets the log level the file names for the
 * program called prog, and configures the database connections with that
 * string. Returns 0, or -EINVAL with the reason in err (errlen bytes) and
 * cfg freed. */
int it_db_startup(const char *prog, const char *path, const char *database, it_config *cfg, char *err, size_t errlen);

/* Returns the calling thread's connection, connecting or reconnecting as
 * needed, or NULL when the database cannot be reached (logged, rate-limited).
 * The connection belongs to the thread: never pass it to another one. A
 * broken connection (it_db_broken) is given a new session in place (the
 * pointer stays the same, so copies held by callers stay valid), but never
 * while a transaction is open on it. */
PGconn *it_db_thread_conn(void);

/* Closes the calling thread's connection, if any. */
void it_db_thread_close(void);

/* Opens a new connection the caller owns (PQfinish it). NULL on failure.
 * Every connection made here (and so the thread's) is watched: any answer
 * it_db_conn_error recognises, whoever ran the statement, marks it broken. */
PGconn *it_db_connect(void);

/* Runs a parameterised statement (text parameters, text results). A broken
 * connection with no transaction open is given a new session first. When no
 * transaction is open and the connection turns out to be broken by this
 * statement, it gets a new session and the statement runs once more: when
 * retry is set (statements safe to repeat: reads, BEGIN, inserts of fresh
 * ids), or when the server refused the statement for the session's state
 * (it_db_conn_error: nothing was done). Inside a transaction nothing is
 * repeated: the result is the failure, the caller rolls back, and the
 * connection is renewed at its next use. Returns the result (PQclear it) or
 * NULL when there is no connection. *connp stays the same object. */
PGresult *it_db_exec(PGconn **connp, int retry, const char *sql, int nparams, const char *const *params);

/* it_db_exec for a statement that answers exactly one row. Returns the
 * result (PQclear it), or NULL when there is no connection, the statement
 * failed or it answered another number of rows; when there was an answer,
 * "<what> failed: <the server's message>" is logged as a warning. */
PGresult *it_db_exec_row(PGconn **connp, int retry, const char *what, const char *sql, int nparams,
			 const char *const *params);

/* Like it_db_exec but with explicit lengths and formats (1 = binary) for
 * parameters, and binary results when result_binary is set. Never retries. */
PGresult *it_db_exec_bin(PGconn *conn, const char *sql, int nparams, const char *const *values, const int *lengths,
			 const int *formats, int result_binary);

/* Returns 1 when res succeeded with the expected status. */
int it_db_ok(const PGresult *res, ExecStatusType want);

/* Returns 1 when the connection is unusable: NULL, the server went away, or
 * an answer on it said its session cannot be trusted (it_db_conn_error).
 * Owners of their own connections replace such a one (PQfinish and connect,
 * or PQreset) once no transaction is open on it. */
int it_db_broken(PGconn *conn);

/* Returns 1 when res (NULL allowed) is an error whose SQLSTATE means the
 * session, not the statement, is at fault, so that only a new session can
 * succeed: 25006 read_only_sql_transaction (a database set read-only, or a
 * standby after a failover), class 08 (connection exceptions), 57P01-57P05
 * (the server shut down, crashed, is starting, dropped the database, or
 * timed the session out) and 25P03 (idle in transaction too long). */
int it_db_conn_error(const PGresult *res);

/* Runs BEGIN (renewing a broken connection first, retrying once on a dead
 * one), COMMIT or ROLLBACK. Return 0 on success; on failure (logged)
 * -ENOTCONN when there is no connection to begin on, else -EIO;
 * COMMIT fails too when the transaction had already failed (the server then
 * answers ROLLBACK). */
int it_db_begin(PGconn **connp);
int it_db_commit(PGconn *conn);
void it_db_rollback(PGconn *conn);

/* Returns the SQLSTATE of a failed result, or "" when there is none. */
const char *it_db_sqlstate(const PGresult *res);

#endif

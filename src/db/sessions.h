/* sessions.h: the sessions table: create, look up, end. */
#ifndef IT_DB_SESSIONS_H
#define IT_DB_SESSIONS_H

#include "common/id.h"

#include <libpq-fe.h>
#include <stdint.h>

typedef struct it_session {
	char id[IT_SESSION_ID_LEN + 33];
	char created_at[40];
	char expires_at[40];
	int64_t expires_unix; /* seconds since the epoch */
	int64_t last_event_seq;
	int64_t first_kept_seq;
} it_session;

/* Outcomes shared by the functions below: 0 found/done, or an HTTP status the
 * caller passes on (400 malformed id, 404 unknown or expired, 503 database). */

/* Creates a session that lives ttl seconds; fills out. */
int it_sessions_create(PGconn **connp, int64_t ttl, it_session *out);

/* Looks up a live session. out may be NULL when only validity matters. */
int it_sessions_get(PGconn **connp, const char *id, it_session *out);

/* Inside the caller's transaction, locks the row of live session id in the
 * mode an event append's UPDATE takes anyway (FOR NO KEY UPDATE): the session
 * cannot be deleted until the transaction ends, and two writers on one session
 * queue up here instead of deadlocking while both try to upgrade a shared
 * lock. id is not checked for form: it comes from a credential or a row.
 * Returns 0, 404 (unknown or expired) or 503. */
int it_sessions_lock(PGconn *conn, const char *id);

/* Ends a session: its images, events and operations go with it, and every
 * open stream of it is closed (listeners are told through NOTIFY). */
int it_sessions_delete(PGconn **connp, const char *id);

#endif

/* presence.h: presence entries for request threads: list, HTTP heartbeat, leave, sweep (docs/presence.md).
 *
 * The synchronous side of presence, on the calling thread's connection
 * (db/db.h): what GET, POST and DELETE /api/v1/presence do, and what a CGI
 * process that waits for events registers. The event loops' side, which
 * holds and renews the entries of open connections, is src/feed/presence.h.
 * Every function returns 0, 404 (the session does not exist or has
 * expired) or 503 (the database cannot be reached or failed), as
 * db/sessions.h does. */
#ifndef IT_DB_PRESENCE_H
#define IT_DB_PRESENCE_H

#include "feed/ident.h"
#include "feed/presence.h"

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdint.h>

/* Joins (or renews) the entry of id (its client_id, or its device when it
 * gave none) in session with transport ("http" for the
 * HTTP heartbeat, or a stream's), state ("idle", "uploading", or NULL:
 * keep), holder ("http", or NULL for a CGI process: nobody renews it) and
 * ttl seconds to live. A refused join (the device was revoked) is 404. */
int it_presence_db_join(PGconn **connp, const char *session, const it_ident *id, const char *transport,
			const char *state, const char *holder, int64_t ttl);

/* Sets *out to a new JSON array of session's live entries (the caller puts
 * it) and *last_id to the session's last event id, read in one snapshot:
 * the presence events after last_id describe every change since. */
int it_presence_db_list(PGconn **connp, const char *session, json_object **out, int64_t *last_id);

/* client_id's entry in session leaves now (presence.left "closed"); with
 * device_id (not NULL), only when it is that device's. Leaving an entry
 * that does not exist is not an error; an unknown session is 404. */
int it_presence_db_leave(PGconn **connp, const char *session, const char *client_id, const char *device_id);

/* Deletes the entries nobody renewed in time (at most a few hundred
 * sessions' worth), appending their presence.left, and counts them in
 * imagetools_presence_leaves_total. Returns how many, or -503 on a
 * database error. */
int it_presence_db_sweep(PGconn **connp);

/* The presence metrics (docs/metrics.md). Each joined or left entry is
 * counted once, by the process whose statement appended its event; the
 * entries gauge is what the event loops hold (src/feed/presence.c). */
#define IT_PRESENCE_M_ENTRIES "imagetools_presence_entries"
#define IT_PRESENCE_M_JOINS "imagetools_presence_joins_total"
#define IT_PRESENCE_M_LEAVES "imagetools_presence_leaves_total"
#define IT_PRESENCE_M_RENEW_FAILURES "imagetools_presence_renew_failures_total"

/* Counts n entries that left for reason ("closed", "expired",
 * "revoked"; anything else is counted as "other", so a label never comes
 * from outside a fixed set). */
void it_presence_db_count_left(const char *reason, int64_t n);

/* Counts what one sweep answered (it_presence_sweep_reasons: a JSON object
 * of counts by reason, such as {"closed": 2}). Returns the entries it names
 * in total, or -1 when counts is not such an object (nothing counted). */
int64_t it_presence_db_count_swept(const char *counts);

#endif

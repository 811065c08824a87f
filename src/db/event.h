/* event.h: the session event log of docs/event-log.md — the one way a change becomes an event. */
#ifndef IT_DB_EVENT_H
#define IT_DB_EVENT_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdint.h>

/* The NOTIFY channel every event is announced on. Payloads (sql/008):
 * "<session>:<seq>" or, when the event fits, "<session>:<seq>:<type>\n<json>";
 * "<session>:0" when the session ended; "kept:" and "expires:" forms when
 * its first kept id or its expiry changed (docs/feed.md). */
#define IT_EVENT_CHANNEL "imagetools_events"

/* Appends an event of type with data (not owned; NULL means {}) to the log of
 * session, inside the caller's open transaction, and queues its NOTIFY for
 * commit. Call it last in the transaction: it holds the session's row lock
 * until commit. Returns 0 and sets *seq (when not NULL), 404 when the session
 * is unknown or expired, or 503 on a database error; after an error the
 * caller must roll back. */
int it_event_append(PGconn *conn, const char *session, const char *type, json_object *data, int64_t *seq);

/* One event as read back, in wire form (docs/api.md, "Events"). */
typedef struct it_event {
	int64_t seq;
	const char *type;
	const char *json; /* {"id":..,"type":..,"timestamp":..,"data":{..}} */
	size_t json_len;
} it_event;

/* Calls fn for each event of session with seq > after, in seq order, at most
 * limit of them. The strings live until fn returns. Stops early when fn
 * returns non-zero. Returns the number of events passed to fn, or -503 on a
 * database error. */
int it_event_read(PGconn **connp, const char *session, int64_t after, int limit,
		  int (*fn)(const it_event *ev, void *arg), void *arg);

/* The SQL that reads events of many sessions in one round trip: $1 a text[]
 * of session ids, $2 a bigint[] of their cursors, $3 the limit per session;
 * columns session id, seq, type, wire JSON, grouped by session in the order
 * given and by seq within one. */
extern const char it_event_read_many_sql[];

/* Builds the wire JSON of an event that is not stored (connection.status,
 * session.resync): no "id" member. Returns a heap string (free it). */
char *it_event_transient(const char *type, json_object *data);

#endif

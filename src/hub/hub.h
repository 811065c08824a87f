/* hub.h: the per-process event hub of imagetools.fcgi (docs/hub.md).
 *
 * Return convention of the hub layer (src/hub/, docs/layout.md): 0 or a
 * negative errno, as in the feed it sits on. it_fcgi_record_scan_feed is a
 * predicate (1 once the web server aborted the request).
 *
 * One thread owns an epoll loop, the event-delivery core (src/feed/: the
 * LISTEN connection, the session registry, reads, resync, the ring of recent
 * events) and every parked stream: long-polls waiting for an event and open
 * Server-Sent Events streams, which are the core's subscribers. A request
 * thread answers the request's headers, then hands the raw FastCGI
 * connection to the hub, which writes FastCGI records itself; a parked
 * stream costs a few hundred bytes, not a thread and a database connection.
 *
 * Every function here is thread-safe: it_hub_park, it_hub_lookup,
 * it_hub_forget and it_hub_stats_get are called from request threads.
 *
 * Presence: hub.c has one place where a parked stream starts counting as a
 * connected client of its session (presence_joined, when the feed admits
 * it) and one where it stops (presence_left, once, with the reason
 * "closed", "revoked" or "expired"); streams that announce themselves (a
 * client_id, or a token) carry an it_ident (feed/ident.h). */
#ifndef IT_HUB_HUB_H
#define IT_HUB_HUB_H

#include "common/config.h"
#include "feed/feed.h"
#include "feed/ident.h"

#include <stddef.h>
#include <stdint.h>

typedef struct it_hub it_hub;

enum it_stream_kind { IT_STREAM_SSE = 1, IT_STREAM_LONGPOLL = 2 };

typedef struct it_park {
	int fd;		     /* the FastCGI connection; the hub owns it after a successful park */
	uint16_t request_id; /* FastCGI request id on that connection */
	enum it_stream_kind kind;
	const char *session;   /* copied */
	int64_t cursor;	       /* deliver events with seq > cursor */
	int64_t expires_unix;  /* the session's expiry: the stream ends then */
	int64_t until;	       /* a token's: the stream ends with session.revoked then; 0: none */
	const char *device;    /* the token's device ("" or NULL for a session id; copied): NOTIFY
				  revoked:<session>:<device> ends the stream likewise */
	const it_ident *ident; /* who the client says it is (copied when it announces itself); may be NULL */
	int64_t timeout_ms;    /* long-poll: answer with no events after this */
	const void *head;      /* bytes to send first (CGI-style headers and any body start), copied */
	size_t head_len;
} it_park;

/* Counters, read by /metrics. Updated atomically by the hub thread. */
typedef struct it_hub_stats {
	int64_t open_sse, open_longpoll;
	int64_t events_sse, events_longpoll; /* events written to clients */
	int64_t resyncs;
	int64_t dropped_slow; /* streams closed because their output stood still */
	int64_t released;     /* streams ended by the client going away */
	int64_t reconnects;   /* LISTEN connection re-established */
	int64_t fetches;      /* event reads from the database (one query, many sessions) */
	int64_t checks;	      /* session checks from the database (one query, many sessions) */
	int64_t lookups;      /* request threads answered from the hub's registry (no query) */
	int db_up;
} it_hub_stats;

/* Starts the hub thread. cfg must outlive the hub. Returns 0 or a negative
 * errno; *out is set on success. */
int it_hub_start(it_hub **out, const it_config *cfg);

/* Hands a stream to the hub. On success (0) the hub owns p->fd and will write
 * p->head, then events, then end the FastCGI request and close the fd. On
 * failure (-EBUSY when max_streams are open, -ENOMEM) nothing was taken and the
 * caller still owns the fd and must answer the request itself. Thread-safe. */
int it_hub_park(it_hub *hub, const it_park *p);

/* Asks the hub what it knows about session without a query (the core's
 * registry: checked while listening, last id raised by every NOTIFY since,
 * not expired). Returns 0 with *out filled, or -ENOENT when the caller must
 * ask the database. Thread-safe; holds the hub's lock for a hash look-up. */
int it_hub_lookup(it_hub *hub, const char *session, it_feed_info *out);

/* Makes the hub stop vouching for session (it_feed_forget), after this
 * process deleted it. Thread-safe. */
void it_hub_forget(it_hub *hub, const char *session);

/* Copies the counters. Thread-safe. */
void it_hub_stats_get(it_hub *hub, it_hub_stats *out);

/* Ends every stream (each response is completed, so clients reconnect
 * elsewhere), stops the thread and frees the hub. */
void it_hub_stop(it_hub *hub);

#endif

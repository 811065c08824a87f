/* presence.h: the presence entries of one event loop's connections, kept in the database (docs/presence.md).
 *
 * A connection that announces itself (a client_id, or a device's token)
 * joins the session's presence when it is admitted and leaves when it ends.
 * One it_presence per event loop (the FastCGI hub, the bridge) keeps what
 * its connections announced, on its own asynchronous PostgreSQL connection
 * (src/db/pgl.h, on the owner's epoll set), and does for them:
 *
 * - one join statement when a client first connects here, none when the same
 *   client connects again while its entry is held (several tabs' streams,
 *   a reconnect before the leave was sent);
 * - one heartbeat statement every presence_ttl / 3 seconds renewing every
 *   entry it holds (and joining again any the database lost);
 * - one leave statement when a client's last connection here ends, which
 *   keeps the entry for IT_PRESENCE_GRACE seconds more: a tab that
 *   reconnects in that time, here or on another node, keeps its entry;
 * - a sweep of everybody's entries not renewed in time, every few seconds
 *   and right after a grace ends, so that each appends its presence.left
 *   once, whichever process dies.
 *
 * Who a connection is (client_id, label, source, device) is the
 * transport's it_ident (src/feed/ident.h).
 *
 * Threading: none; every function is called from the owner's loop thread.
 * Return convention: 0 or a negative errno; pointers NULL on failure. */
#ifndef IT_FEED_PRESENCE_H
#define IT_FEED_PRESENCE_H

#include "feed/ident.h"

#include <stdint.h>

/* Seconds an entry stays after its last connection ended cleanly. */
#define IT_PRESENCE_GRACE 5
/* Seconds a long-poll's entry is held here after one poll is answered: the
 * next poll comes within it. */
#define IT_PRESENCE_LONGPOLL_HOLD 5

typedef struct it_presence it_presence;
typedef struct it_presence_entry it_presence_entry;
struct it_feed_db_ops; /* feed/feed.h: a stand-in database, for it_presence_new_db */
struct it_pgl_hooks;   /* db/pgl.h */

typedef struct it_presence_opts {
	const char *conninfo; /* libpq conninfo or URI; NULL or "" for PG* (copied) */
	const char *app_name; /* application_name and the holder's prefix, a literal */
	int epfd;	      /* the owner's epoll set */
	void *pg_tag;	      /* epoll data.ptr of the database socket: the owner passes its
				 events to it_presence_handle_pg */
	int64_t ttl;	      /* presence_ttl, seconds (at least 3) */
} it_presence_opts;

/* Counters, for tests. The same facts go to the process's metrics as they
 * happen (docs/metrics.md): imagetools_presence_entries (held),
 * _joins_total (joined), _leaves_total{reason} (swept, by reason) and
 * _renew_failures_total (beat_failures). */
typedef struct it_presence_stats {
	uint64_t joins, leaves, beats, sweeps; /* statements sent */
	uint64_t joined;		       /* entries a join statement added (presence.joined) */
	uint64_t swept;			       /* entries the sweeps deleted */
	uint64_t beat_failures;		       /* heartbeat statements that failed or got no answer */
	uint64_t entries;		       /* entries known here now */
	uint64_t held;			       /* of those, held in the database: the ones renewed */
} it_presence_stats;

/* Makes the presence of one loop. Connecting starts at the first tick.
 * Returns 0 with *out set, or -ENOMEM. */
int it_presence_new(it_presence **out, const it_presence_opts *o);

/* Makes the presence of one loop over a stand-in database (tests), as
 * it_feed_new_db does for a feed: ops and impl must outlive p, and
 * ops->destroy(impl), if set, is called by it_presence_free. The stand-in
 * reports back by calling the hooks *hooks is set to, with p as their
 * argument, as it_pgl would (then it_presence_handle_pg, for the next
 * statement to go out). Returns 0 or -ENOMEM. */
int it_presence_new_db(it_presence **out, const it_presence_opts *o, const struct it_feed_db_ops *ops, void *impl,
		       struct it_pgl_hooks *hooks);

/* Lets every entry held here go (their grace starts now) with one blocking
 * statement when the connection is up, then frees everything. Entries still
 * referenced by connections must not be used afterwards. NULL is allowed. */
void it_presence_free(it_presence *p);

/* The owner's loop: database socket readiness (for pg_tag) and a tick every
 * 100-500 ms with the monotonic clock in milliseconds. Statements go out
 * from both and from it_presence_join/leave. */
void it_presence_handle_pg(it_presence *p, unsigned events);
void it_presence_tick(it_presence *p, int64_t now_ms);

/* A connection announced itself as id (its session_id set: the transport
 * sets it at admission) over transport ("websocket", "sse" or
 * "longpoll"). The client is id->client_id, or its token's device when it
 * gave none. Returns the entry it holds (pass it to it_presence_leave when
 * the connection ends), or NULL when p or id is NULL, id announces nothing
 * or is malformed, or memory ran out: such a connection is just not in
 * presence. */
it_presence_entry *it_presence_join(it_presence *p, const it_ident *id, const char *transport);

/* The connection holding e ended. The entry is held here hold_ms more (a
 * long-poll between two polls), then let go when no other connection of the
 * client holds it. p or e NULL: nothing. */
void it_presence_leave(it_presence *p, it_presence_entry *e, int64_t hold_ms);

/* This instance's holder id ("<app>/<pid>/<random>"). */
const char *it_presence_holder(const it_presence *p);

void it_presence_stats_get(const it_presence *p, it_presence_stats *out);

#endif

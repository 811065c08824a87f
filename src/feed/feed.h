/* feed.h: the event-delivery core shared by every transport (docs/feed.md).
 *
 * One it_feed per event loop owns the LISTEN connection (it_pgl), the
 * registry of watched sessions, the session checks, the batched reads of the
 * event log, a bounded ring of recent events per session, and the rules that
 * turn what it learns into calls on subscribers: events in order and exactly
 * once, session.resync when the log cannot serve a cursor, connection.status
 * when the database connection drops and returns, and the end of a session.
 *
 * Transports (the FastCGI hub's parked SSE and long-poll streams, the
 * bridge's WebSockets, ...) embed an it_feed_sub in their connection and
 * give an ops table. They write events, which are shared reference-counted
 * objects formatted once per wire format, with writev.
 *
 * Threading: none. Every function must be called from the thread that runs
 * the owner's loop, and the subscriber callbacks run only inside
 * it_feed_handle_pg, it_feed_tick and it_feed_run (never inside subscribe,
 * unsubscribe or resume, which only record what is to be done).
 *
 * Return convention of the feed layer (src/feed/, docs/layout.md): 0 or a
 * negative errno. Constructors of shared objects return a pointer or NULL
 * (it_feed_event_new, it_presence_join); the it_feed_new and it_presence_new
 * constructors return 0 or a negative errno with *out set. it_outq_write
 * returns the bytes written or the negative errno of writev; it_outq_mark
 * and it_feed_sub_count return counts, it_longpoll_size a length; the
 * it_ident_*_valid checks, it_ident_announces and it_longpoll_full are
 * predicates. Subscriber callbacks (it_feed_sub_ops)
 * return 0, 1 for "no room now" (event only) or a negative value when the
 * subscriber is gone; the database stand-in's send returns 0 or a negative
 * errno like it_pgl_send. */
#ifndef IT_FEED_FEED_H
#define IT_FEED_FEED_H

#include "common/list.h"
#include "common/scope.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

typedef struct it_feed it_feed;
typedef struct it_feed_sub it_feed_sub;

/* ------------------------------------------------------------------ events */

/* Wire formats an event can be asked for. The plain JSON (long-poll array
 * element) is ev->json itself and needs no formatting. */
enum it_feed_fmt {
	IT_FEED_FMT_SSE, /* "id: <seq>\nevent: <type>\ndata: <json>\n\n" */
	IT_FEED_FMT_WS,	 /* an unmasked WebSocket text frame: header + json */
	IT_FEED_NFMT
};

/* One stored event, shared by every subscriber of its session and by the
 * session's ring. Read-only for transports, which keep it alive with
 * it_feed_event_ref while it sits in an output queue. */
typedef struct it_feed_event {
	int64_t seq;
	unsigned refs;
	const char *type; /* NUL-terminated; lives as long as the event */
	const char *json; /* the wire JSON (docs/api.md), NUL-terminated */
	size_t json_len;
	char *wire[IT_FEED_NFMT]; /* formatted on first use, then shared */
	size_t wire_len[IT_FEED_NFMT];
} it_feed_event;

/* Sets *out to the event in format fmt, formatting it on the first call for
 * that format; the bytes live as long as the event. Returns 0 or -ENOMEM
 * (out untouched). */
int it_feed_event_wire(it_feed_event *ev, enum it_feed_fmt fmt, struct iovec *out);

/* Takes a reference (returns ev) / drops one (frees at zero). ev may be
 * NULL for unref. */
it_feed_event *it_feed_event_ref(it_feed_event *ev);
void it_feed_event_unref(it_feed_event *ev);

/* Makes an event (refs 1) from a stored row: copies type and json. Returns
 * NULL when out of memory. Exposed for transports' tests. */
it_feed_event *it_feed_event_new(int64_t seq, const char *type, const char *json, size_t json_len);

/* ------------------------------------------------------------------ subscribers */

/* Why a subscription ended. */
enum it_feed_end {
	IT_FEED_END_UNKNOWN = 1,   /* the session does not exist (or expired before it was checked) */
	IT_FEED_END_DELETED,	   /* the session was ended (NOTIFY with seq 0, or gone at a re-check) */
	IT_FEED_END_EXPIRED,	   /* its expiry was reached */
	IT_FEED_END_REVOKED,	   /* its device was revoked (NOTIFY "revoked:<session>:<device>") */
	IT_FEED_END_TOKEN_EXPIRED, /* its credential's until passed (a token's expiry) */
};

/* A message about the connection, not stored, without an id. */
typedef struct it_feed_transient {
	const char *type;      /* "connection.status", "session.resync" or "session.revoked" */
	const char *status;    /* connection.status: "degraded" or "connected" */
	const char *reason;    /* session.resync: "cursor-expired", "cursor-ahead" or "gap";
				  session.revoked: "revoked" or "expired" */
	int64_t last_event_id; /* session.resync: continue after this id */
	const char *device_id; /* session.revoked: the subscriber's device */
} it_feed_transient;

/* Builds the wire JSON of a transient message, "transport" (for
 * connection.status, may be NULL) naming the transport. Returns a heap
 * string (free it) or NULL when out of memory. */
char *it_feed_transient_json(const it_feed_transient *t, const char *transport);

/* What a transport does with what the core hands it. Every callback may
 * unsubscribe any subscriber; one that ends (and perhaps frees) its own
 * subscriber must return a negative value, after which the core does not
 * touch sub again. */
typedef struct it_feed_sub_ops {
	/* One stored event, ev->seq == sub->cursor + 1 (or after a
	 * session.resync). Return 0 when taken (the core then advances
	 * sub->cursor), 1 for "no room now": the subscriber is paused and is
	 * offered nothing more until it_feed_resume(sub), which re-offers from
	 * its cursor. ev is borrowed: take a reference to keep it. */
	int (*event)(it_feed_sub *sub, it_feed_event *ev);
	/* A message that is not stored (connection.status, session.resync).
	 * Return 0 or negative (gone). */
	int (*transient)(it_feed_sub *sub, const it_feed_transient *t);
	/* The end of one hand-over: a long-poll answers now, a stream writes
	 * what it gathered. Called after event/transient calls, once. May be
	 * NULL. Return 0 or negative (gone). */
	int (*batch_end)(it_feed_sub *sub);
	/* The session is gone or expired, or the subscriber's own credential
	 * is (IT_FEED_END_REVOKED, IT_FEED_END_TOKEN_EXPIRED: a live
	 * subscriber got a session.revoked transient just before). The
	 * subscriber has already been unsubscribed; the callback may free it. */
	void (*ended)(it_feed_sub *sub, enum it_feed_end why);
	/* The session check let the subscriber in: events follow. Called
	 * once, before any other callback for it (IT_FEED_HELLO's
	 * connection.status comes right after). It must not unsubscribe sub.
	 * May be NULL. Transports announce the connection here (presence). */
	void (*admitted)(it_feed_sub *sub);
} it_feed_sub_ops;

/* Flags for it_feed_subscribe. */
#define IT_FEED_HELLO 1u /* send connection.status "connected" on admission */
/* Weigh the cursor against a check sent after subscribing (cursor-expired
 * exactly as the log says), unless it is the newest id the feed knows: a
 * client that is up to date costs no query. */
#define IT_FEED_FRESH 2u

/* Embedded by a transport in its connection. The transport sets ops (and,
 * for a token, until and device) before it_feed_subscribe and reads cursor;
 * everything else belongs to the core. */
struct it_feed_sub {
	const it_feed_sub_ops *ops;
	int64_t cursor; /* the last id handed over (or the one to resume after) */
	/* The credential the subscriber came with. A session id leaves both
	 * zero: the session's own expiry and end apply. A token sets until
	 * (epoch seconds: the subscriber ends then, IT_FEED_END_TOKEN_EXPIRED)
	 * and device (NOTIFY "revoked:<session>:<device>" ends it,
	 * IT_FEED_END_REVOKED). */
	int64_t until;
	char device[24];
	/* core-private */
	struct it_feed_sess *sess;
	it_list link;
	it_list work;  /* in feed->ready while it has something to be done */
	uint64_t gen;  /* feed->gen when subscribed: later checks are fresh for it */
	uint8_t state; /* pending, live */
	uint8_t paused;
	uint8_t flags;
};

/* ------------------------------------------------------------------ the feed */

/* The database behind the feed, as a table so that a test can stand in for
 * PostgreSQL. The real one (it_pgl on the owner's epoll set) is made by
 * it_feed_new. A stand-in reports back through it_feed_db_ready/lost/notify/
 * result below. impl is the first argument of every op. */
typedef struct it_feed_db_ops {
	int (*idle)(void *impl); /* 1: a query may be sent */
	/* Sends one statement; 0, or a negative errno when it could not be
	 * sent (-EIO when the connection broke: the stand-in then calls
	 * it_feed_db_lost itself, as it_pgl does). */
	int (*send)(void *impl, const char *sql, int nparams, const char *const *params);
	void (*handle)(void *impl, unsigned events); /* may be NULL */
	void (*tick)(void *impl, double now_s);	     /* may be NULL */
	void (*destroy)(void *impl);		     /* may be NULL */
} it_feed_db_ops;

typedef struct it_feed_opts {
	const char *conninfo; /* libpq conninfo or URI; NULL or "" for PG* (copied) */
	const char *app_name; /* application_name, a literal; NULL: "imagetools" */
	int epfd;	      /* the owner's epoll set (it_feed_new only) */
	void *pg_tag;	      /* epoll data.ptr for the database socket: the owner passes
				 its events to it_feed_handle_pg */
	unsigned ring_events; /* recent events kept per session; 0: 256 */
	size_t ring_bytes;    /* and at most this many bytes of JSON; 0: 1 MiB */
	unsigned linger_ms;   /* a session nobody watches is kept this long; 0: 30000 */
	time_t (*wall)(void); /* wall clock for expiry (tests); NULL: time() */
} it_feed_opts;

/* Counters, for metrics. Plain integers: read them on the owner's thread. */
typedef struct it_feed_stats {
	uint64_t reads;	      /* reads of the event log (one query, many sessions) */
	uint64_t checks;      /* session checks (one query, many sessions) */
	uint64_t rows;	      /* rows those reads returned */
	uint64_t delivered;   /* events taken by subscribers */
	uint64_t ring_served; /* of those, served from a ring without a read for them */
	uint64_t carried;     /* events taken from their NOTIFY into a ring, with no read */
	uint64_t resyncs;     /* session.resync sent */
	uint64_t reconnects;  /* times the LISTEN connection became ready */
	uint64_t sessions;    /* sessions in the registry now */
	uint64_t subs;	      /* subscribers now */
	uint64_t creds;	      /* token checks (one query, many tokens) */
	uint64_t revoked;     /* subscribers ended by a revocation or their token's expiry */
	int db_up;	      /* the LISTEN connection is ready */
} it_feed_stats;

/* Makes a feed over PostgreSQL. Connecting starts at the first
 * it_feed_tick. Returns 0 and sets *out, or -ENOMEM. */
int it_feed_new(it_feed **out, const it_feed_opts *o);

/* Makes a feed over a stand-in database (tests). ops and impl must outlive
 * the feed; ops->destroy(impl), if set, is called by it_feed_free. */
int it_feed_new_db(it_feed **out, const it_feed_opts *o, const it_feed_db_ops *ops, void *impl);

/* Frees the feed. Subscribers still subscribed are detached without any
 * callback (the owner ends its connections first). NULL is allowed. */
void it_feed_free(it_feed *f);

/* The owner's loop: database socket readiness (for pg_tag), a tick every
 * 100-500 ms with the monotonic clock in milliseconds, and it_feed_run after
 * each batch of epoll events (it delivers what subscribe/resume recorded
 * and sends the next query). */
void it_feed_handle_pg(it_feed *f, unsigned events);
void it_feed_tick(it_feed *f, int64_t now_ms);
void it_feed_run(it_feed *f);

/* Subscribes sub (its ops set) to session from cursor (deliver events with
 * seq > cursor). Nothing is called back before the next it_feed_run: the
 * session is checked (or its recent check reused), the cursor weighed
 * against the log (session.resync when it cannot be served), then events
 * flow from the ring or from a read. flags: IT_FEED_HELLO. Returns 0,
 * -EINVAL for a malformed session id, -ENOMEM. */
int it_feed_subscribe(it_feed *f, it_feed_sub *sub, const char *session, int64_t cursor, unsigned flags);

/* Detaches sub; O(1), no callback, safe inside any callback. Harmless on a
 * subscriber that is not subscribed (after ended, or twice). */
void it_feed_unsubscribe(it_feed_sub *sub);

/* A paused subscriber has room again: events are re-offered from its cursor
 * at the next it_feed_run. Harmless when it is not paused. */
void it_feed_resume(it_feed_sub *sub);

/* Subscribers of sub's session (0 when sub is not subscribed). */
unsigned it_feed_sub_count(const it_feed_sub *sub);

/* The id of sub's session (NUL-terminated, owned by the feed, valid while
 * sub is subscribed), or NULL when it is not subscribed. */
const char *it_feed_sub_session(const it_feed_sub *sub);

/* What the feed knows about a session it has checked while its LISTEN
 * connection stayed up: valid, not expired, its last id (raised by every
 * NOTIFY since) and first kept id (raised by every "kept:" NOTIFY since).
 * Everything that changes a session in the database is announced, so this
 * is what a query would say, as of the last notification handled; a cursor
 * above last_seq may only mean that its notification has not arrived yet,
 * and only the database can call it ahead. */
typedef struct it_feed_info {
	int64_t last_seq;
	int64_t first_kept;
	int64_t expires;   /* wall-clock seconds */
	int64_t held_from; /* the oldest id of the ring, whose events run on from
			    * there; last_seq + 1 when it holds none */
} it_feed_info;

/* Fills *out from the registry without any query. Returns 0, or -ENOENT
 * when the feed has no trustworthy answer (never checked, connection lost
 * since, expired or within a second of expiring) and the caller must ask
 * the database. Counts as a use of the session for its linger time. */
int it_feed_lookup(it_feed *f, const char *session, it_feed_info *out);

/* Stops vouching for session: the next lookup says -ENOENT and its
 * subscribers wait for a new check. For the process that just deleted the
 * session, so that its own next request does not wait for the "<session>:0"
 * notification to learn it. Harmless for a session the feed does not know. */
void it_feed_forget(it_feed *f, const char *session);

/* ------------------------------------------------------------------ credential checks */

/* What the database says of a token (it_credential_check, sql/009). */
typedef struct it_feed_principal {
	int status;	     /* 200 valid; 401 unknown, expired or revoked; 404 its session has
				expired; 503 the database could not answer */
	char session_id[72]; /* the rest only with 200 */
	char device_id[IT_DEVICE_ID_SIZE];
	char scope[8]; /* "upload", "view" or "full" */
	char label[IT_DEVICE_LABEL_SIZE];
	char source[IT_DEVICE_SOURCE_SIZE];
	int64_t until; /* epoch s: the token's expiry or its session's, whichever is first */
} it_feed_principal;

/* A pending token check, embedded by a transport in its connection. The
 * transport sets done; everything else belongs to the core. */
typedef struct it_feed_credq {
	/* The answer, called once inside it_feed_handle_pg, it_feed_tick or
	 * it_feed_run. p is borrowed. The callback may free the connection
	 * that embeds q (the core does not touch q afterwards). */
	void (*done)(struct it_feed_credq *q, const it_feed_principal *p);
	/* core-private */
	struct it_feed *feed;
	it_list link;
	int slot; /* index in the query in flight, or -1 */
	unsigned char hash[32];
} it_feed_credq;

/* Asks the database about a token by the SHA-256 of its whole string (hash,
 * 32 bytes, copied). Checks are batched, up to 128 in one query on the
 * feed's connection, and go before reads of the log (a client waits on
 * them). The stored hash the row returns is compared with hash in constant
 * time (a mismatch answers 401), and a device revoked within the last minute
 * answers 401 even when the query ran before the revocation committed. While
 * the connection is down the check waits. Returns 0, or -EBUSY when q is
 * pending already. */
int it_feed_cred_check(it_feed *f, it_feed_credq *q, const unsigned char hash[32]);

/* Withdraws a pending check: done is not called. O(1); harmless when q is
 * not pending. */
void it_feed_cred_cancel(it_feed_credq *q);

/* Copies the counters. */
void it_feed_stats_get(const it_feed *f, it_feed_stats *out);

/* ------------------------------------------------------------------ stand-in database */

/* What a stand-in database reports; it_pgl's hooks call the same. */
void it_feed_db_ready(it_feed *f);
void it_feed_db_lost(it_feed *f);
void it_feed_db_notify(it_feed *f, const char *payload);
void it_feed_db_result(it_feed *f, PGresult *res);

/* ------------------------------------------------------------------ pieces, exposed for tests */

/* What a NOTIFY on the events channel says about a session. */
enum it_feed_note {
	IT_FEED_NOTE_EVENT = 1, /* "<session>:<seq>": event seq was committed */
	IT_FEED_NOTE_ENDED,	/* "<session>:0": the session was deleted or expired */
	IT_FEED_NOTE_KEPT,	/* "kept:<session>:<seq>": pruning raised its first kept id to seq */
	IT_FEED_NOTE_EXPIRES,	/* "expires:<session>:<t>": its expiry is now t (epoch seconds, rounded up) */
	IT_FEED_NOTE_REVOKED,	/* "revoked:<session>:<device>": the device's token was revoked */
};

/* What a NOTIFY carries besides the session id: an event carried whole,
 * "<session>:<seq>:<type>\n<json>" (it_append_event sends that form when it
 * fits in 8000 bytes), or a revoked device's id. Pointers into the payload,
 * not NUL-terminated. */
typedef struct it_feed_carried {
	const char *type;
	size_t type_len;
	const char *json; /* NULL: the payload carried no event */
	size_t json_len;
	const char *device; /* IT_FEED_NOTE_REVOKED: the device id (1-23 of [A-Za-z0-9_-]) */
	size_t device_len;
} it_feed_carried;

/* Parses a NOTIFY payload. Copies the session id (NUL-terminated) into id
 * (idlen bytes) and sets *num (the event's seq, 0, the first kept id or the
 * expiry; 0 for a revocation) and *kind; for an event or a revocation, sets
 * *ev (when not NULL) to what the payload carries. Returns 0, or -EINVAL
 * when the payload is malformed or the id does not fit. Reads at most len
 * bytes of p. */
int it_feed_parse_notify(const char *p, size_t len, char *id, size_t idlen, int64_t *num, enum it_feed_note *kind,
			 it_feed_carried *ev);

/* The statements the feed sends (for stand-ins): session checks ($1 a
 * text[] of ids; columns id, last_event_seq, first_kept_seq, expiry in
 * whole seconds rounded up; only live sessions) and reads
 * (it_event_read_many_sql). */
extern const char it_feed_check_sql[];

/* The batched token check ($1 a text[] of hex SHA-256 hashes; columns: the
 * 1-based position, status, session_id, scope, device_id, label, source,
 * until_epoch, the stored hash in hex). */
extern const char it_feed_cred_sql[];

#endif

/* config.h: settings from a key=value file and IMAGETOOLS_* environment variables. */
#ifndef IT_COMMON_CONFIG_H
#define IT_COMMON_CONFIG_H

#include <stdint.h>

/* Every setting of every program. Each has a default, a range, and a line in
 * docs/configuration.md; strings are owned by the struct. */
typedef struct it_config {
	char *database_url;	/* libpq conninfo or URI; empty: libpq's PG* env */
	char *listen;		/* FastCGI socket path; empty: inherited fd 0 */
	char *url_prefix;	/* path before /api/v1 on this site */
	char *log_level;	/* error, warn, info, debug */
	char *allowed_origins;	/* space-separated; empty: same origin only */
	char *server_names;	/* space-separated Host values; empty: any */
	char *bridge_listen;	/* host:port of the WebSocket bridge */
	char *metrics_token;	/* bearer token for /metrics; empty: open */
	char *url_signing_key;	/* HMAC key of signed image URLs (hex/base64); empty: one made in the database */
	char *public_url;	/* address of the page as other devices reach it; empty: where it was opened */
	int64_t threads;	/* FastCGI accept threads per process */
	int64_t upload_threads; /* FastCGI threads that serve uploads only */
	int64_t upload_queue;	/* uploads waiting for an upload thread */
	int64_t max_uploads_per_address;     /* uploads in flight per client address; 0: no limit */
	int64_t upload_body_timeout;	     /* seconds a request body may take before upload_min_rate counts */
	int64_t upload_min_rate;	     /* bytes per second a request body must keep up; 0: no limit */
	int64_t upload_body_max_time;	     /* seconds any request body may take at most; 0: no cap */
	int64_t session_ttl;		     /* seconds a new session lives */
	int64_t event_retention;	     /* seconds events are kept (at least) */
	int64_t max_upload_bytes;	     /* per file */
	int64_t max_request_bytes;	     /* per upload request, all parts */
	int64_t max_files;		     /* file parts per request */
	int64_t max_session_bytes;	     /* bytes a session's images may hold; 0: no limit */
	int64_t max_staged_bytes;	     /* file bytes held before the session is known */
	int64_t resumable_upload_ttl;	     /* seconds an unfinished tus upload lives after its last byte */
	int64_t upload_progress_interval_ms; /* least time between two upload.progress events of one upload */
	int64_t longpoll_timeout;	     /* cap on ?timeout= of long-polls, seconds */
	int64_t keepalive_interval;	     /* SSE comment / long-poll whitespace, seconds */
	int64_t sse_retry_ms;		     /* retry: hint sent to EventSource */
	int64_t stream_buffer;		     /* bytes queued for one slow stream before it is dropped */
	int64_t stream_stall_timeout;	     /* seconds a stream's output may stand still */
	int64_t max_streams;		     /* parked streams per FastCGI process */
	int64_t cgi_max_waiters;	     /* concurrent waiting long-polls/streams in CGI mode */
	int64_t cgi_stream_lifetime;	     /* seconds a CGI-mode SSE stream stays open */
	int64_t thumbnail_size;		     /* longest edge of thumbnails, pixels */
	int64_t max_pixels;		     /* refuse images larger than this many pixels */
	int64_t max_dimension;		     /* refuse images wider or higher than this */
	int64_t max_decode_bytes;	     /* refuse images a decoder must hold whole in more bytes */
	int64_t expiry_warning;		     /* seconds before expiry that session.expiring is sent */
	int64_t rate_uploads;		     /* uploads per minute per session and per address */
	int64_t rate_sessions;		     /* sessions created per minute per address */
	int64_t rate_streams;		     /* stream connects per minute per address */
	int64_t rate_operations;	     /* operations started per minute per session and per address */
	int64_t max_streams_per_session;     /* concurrent streams on one session */
	int64_t presence_ttl;	    /* seconds a connection's presence entry lives unless its process renews it */
	int64_t presence_http_ttl;  /* seconds a POST /presence heartbeat keeps an entry */
	int64_t ws_max_message;	    /* largest WebSocket message accepted, bytes */
	int64_t ws_rate;	    /* WebSocket messages per 10 s per connection */
	int64_t ws_ping_interval;   /* seconds between server pings */
	int64_t ws_pong_timeout;    /* seconds a client has to answer a ping */
	int64_t worker_lease;	    /* seconds a worker's claim on a job lasts */
	int64_t signed_url_ttl;	    /* seconds a signed file/thumbnail URL lives (at least) */
	int64_t pairing_ttl;	    /* seconds a pairing code can be exchanged */
	int64_t token_ttl;	    /* default lifetime of a new token, seconds; 0: the session's */
	int64_t rate_auth_failures; /* refused tokens and pairing codes per minute per address */
	int64_t rate_pairing;	    /* pairing code exchanges per minute per address */
} it_config;

/* Fills cfg with the defaults. Strings are heap copies. */
void it_config_defaults(it_config *cfg);

/* Applies the key=value file at path (# comments, blank lines allowed).
 * Returns 0, or a negative errno (as it_kvfile_read) with a message naming
 * the file, line and problem in err. */
int it_config_load_file(it_config *cfg, const char *path, char *err, unsigned errlen);

/* Applies IMAGETOOLS_<KEY> variables from the environment (after the file, so
 * the environment wins). envp may be NULL for the process environment.
 * Returns 0, or -EINVAL (-ENOMEM) with err set. */
int it_config_load_env(it_config *cfg, char *const *envp, char *err, unsigned errlen);

/* Sets one key from its text form. Returns 0, or -EINVAL with err set when
 * the key is unknown or the value is out of range (-ENOMEM when a copy
 * cannot be made). */
int it_config_set(it_config *cfg, const char *key, const char *value, char *err, unsigned errlen);

/* Loads defaults, then the file named by IMAGETOOLS_CONFIG or else path
 * (NULL: none), then the environment. Returns 0, or a negative errno with
 * err set. Only
 * path equal to the built-in default (IT_CONFIG_PATH, sysconfdir) may be
 * absent; any other file that is missing, or that exists but cannot be read,
 * is an error naming it and the reason ("/etc/imagetools.conf: Permission
 * denied"). */
int it_config_load(it_config *cfg, const char *path, char *err, unsigned errlen);

/* Frees the strings. */
void it_config_free(it_config *cfg);

#endif

/* tusclient.h: a resumable (tus 1.0) upload of one file with libcurl, whose upload URL is kept in a state file so that
 * a killed client resumes. */
#ifndef IT_CLI_TUSCLIENT_H
#define IT_CLI_TUSCLIENT_H

#include <curl/curl.h>
#include <signal.h>
#include <stddef.h>

/* What the upload needs; every pointer is borrowed for the call. */
typedef struct it_tusclient_opts {
	const char *server;	     /* the site, e.g. http://host:8080/prefix */
	const char *session;	     /* the session credential (sent as Authorization: Bearer) */
	const char *source;	     /* "cli", ... */
	const char *state_dir;	     /* where upload URLs are kept; created when missing */
	unsigned retries;	     /* attempts after a failure before giving up */
	long retry_delay_ms;	     /* first backoff delay, doubled each retry */
	long max_wait_ms;	     /* ceiling on one wait */
	volatile sig_atomic_t *stop; /* set by a signal: give up at once */
	int verbose;		     /* say on stderr when an upload resumes */
} it_tusclient_opts;

/* Outcomes of it_tusclient_upload. */
enum {
	IT_TUSCLIENT_STORED = 0,      /* complete; the state file is removed */
	IT_TUSCLIENT_REJECTED = 1,    /* a final refusal (4xx); the state file is removed */
	IT_TUSCLIENT_GAVE_UP = 2,     /* the server stayed unreachable; the state file stays for next time */
	IT_TUSCLIENT_BAD_SESSION = 3, /* 404 at creation: the session is unknown or expired */
	IT_TUSCLIENT_INTERRUPTED = 4, /* *stop was set; the state file stays */
	IT_TUSCLIENT_LOCAL_ERROR = 5, /* the file or the state directory cannot be used */
	IT_TUSCLIENT_BAD_TOKEN = 6,   /* 401: the token is unknown, expired or revoked; the state file is removed */
	IT_TUSCLIENT_SCOPE = 7,	      /* 403: the token may not upload; the state file is removed */
	IT_TUSCLIENT_UNTRUSTED = 8,   /* the server's certificate cannot be verified; the state file stays */
};

/* Uploads path (size bytes, a regular file) with tus through h. When the
 * state directory holds an upload URL for the same server, session, file
 * path, size and modification time, the server is asked (HEAD) where that
 * upload stands and only the rest is sent; otherwise a new upload is
 * created and its URL written to the state directory before any byte is
 * sent, so a client killed at any point finds it on its next run. A
 * connection error, 5xx, 409, 423 or 429 is retried from the server's
 * offset with backoff. On return, msg (msglen bytes) holds a sentence for
 * the user and url (urllen bytes, may be NULL) the upload URL. Returns an
 * IT_TUSCLIENT_* outcome. */
int it_tusclient_upload(CURL *h, const it_tusclient_opts *o, const char *path, char *url, size_t urllen, char *msg,
			size_t msglen);

/* The default state directory: $XDG_STATE_HOME/imagetools-upload, else
 * $HOME/.local/state/imagetools-upload. Returns 0, or -1 when neither is
 * set or out (outlen bytes) is too small. */
int it_tusclient_default_state_dir(char *out, size_t outlen);

#endif

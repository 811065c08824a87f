/* announce.h: a command-line client's presence in its session (POST and DELETE /api/v1/presence), best effort. */
#ifndef IT_CLI_ANNOUNCE_H
#define IT_CLI_ANNOUNCE_H

#include <curl/curl.h>
#include <pthread.h>

/* The server keeps an entry presence_http_ttl (45 s) after each POST, so a
 * client that is still there says so again every IT_ANNOUNCE_RENEW_S
 * seconds. */
#define IT_ANNOUNCE_RENEW_S 20

/* One client's presence entry, renewed by a thread of its own while it is
 * on, so that an upload of any length keeps it alive without the transfer
 * having to stop for it. */
typedef struct it_announce {
	CURL *h;	    /* a handle of its own, used by one thread at a time */
	char *url;	    /* <server>/api/v1/presence; NULL when the server URL is unusable */
	const char *cred;   /* borrowed: the session credential, sent as Authorization: Bearer */
	const char *label;  /* borrowed: label, e.g. "imagetools-upload" */
	const char *source; /* borrowed: source, e.g. "cli" */
	const char *state;  /* borrowed: "idle" or "uploading" */
	char client_id[17]; /* random, stable for the run */
	int off;	    /* the server has no presence endpoints (404, 405): not asked again */
	int joined;	    /* a POST was accepted: a DELETE is owed at the end */
	int running;	    /* the renewing thread was started */
	int stopping;	    /* under lock: the thread ends */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
} it_announce;

/* Prepares a; server, cred, label and source are borrowed and must outlive
 * it. Never fails: a client whose presence cannot be announced works as
 * before, only unseen. */
void it_announce_init(it_announce *a, const char *server, const char *cred, const char *label, const char *source);

/* Says the client is there in state ("idle" or "uploading", a literal): one
 * POST now, waiting at most a few seconds, then a thread that posts again
 * every IT_ANNOUNCE_RENEW_S seconds until it_announce_done. Every failure is
 * ignored; a 404 or 405 (a server without presence) turns announcing off for
 * the run. Called once. */
void it_announce_start(it_announce *a, const char *state);

/* Stops the renewing thread, leaves now (DELETE ?client_id=) when a POST
 * was accepted, and frees what a holds. */
void it_announce_done(it_announce *a);

#endif

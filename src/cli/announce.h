/* announce.h: a command-line client's presence in its session (POST and DELETE /api/v1/presence), best effort. */
#ifndef IT_CLI_ANNOUNCE_H
#define IT_CLI_ANNOUNCE_H

#include <curl/curl.h>

/* One client's presence entry. The server keeps an entry presence_http_ttl
 * (45 s) after each POST, so a client that is still there says so again
 * every IT_ANNOUNCE_RENEW_S seconds. */
#define IT_ANNOUNCE_RENEW_S 20

typedef struct it_announce {
	CURL *h;	    /* a handle of its own, so that it never disturbs a transfer */
	char *url;	    /* <server>/api/v1/presence; NULL when the server URL is unusable */
	const char *cred;   /* borrowed: the session credential, sent as Authorization: Bearer */
	const char *label;  /* borrowed: client_label, e.g. "imagetools-upload" */
	const char *source; /* borrowed: client_source, e.g. "cli" */
	char client_id[17]; /* random, stable for the run */
	double last;	    /* monotonic time of the last POST that was answered 204 */
	int off;	    /* the server has no presence endpoints (404, 405): not asked again */
	int joined;	    /* a POST was accepted: a DELETE is owed at the end */
} it_announce;

/* Prepares a; server, cred, label and source are borrowed and must outlive
 * it. Never fails: a client whose presence cannot be announced works as
 * before, only unseen. */
void it_announce_init(it_announce *a, const char *server, const char *cred, const char *label, const char *source);

/* Says the client is there in state ("idle" or "uploading"): a POST when
 * force is set or when the last one is IT_ANNOUNCE_RENEW_S seconds old.
 * Waits at most a few seconds; every failure is ignored, and a 404 or 405
 * (a server without presence) turns announcing off for the run. */
void it_announce_state(it_announce *a, const char *state, int force);

/* Leaves now (DELETE ?client_id=) when a POST was accepted, and frees what a
 * holds. */
void it_announce_done(it_announce *a);

#endif

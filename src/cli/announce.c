/* announce.c: a command-line client's presence in its session (POST and DELETE /api/v1/presence), best effort. */
#include "config.h"

#include "cli/announce.h"

#include "cli/cliutil.h"
#include "common/buf.h"
#include "common/clock.h"

#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Presence is a courtesy: it must not hold up an upload for long. */
#define ANNOUNCE_TIMEOUT_S 5L

/* The answers are empty (204) or a short problem: nothing is kept. */
static size_t discard(char *data, size_t size, size_t n, void *p)
{
	(void)data;
	(void)p;
	return size * n;
}

void it_announce_init(it_announce *a, const char *server, const char *cred, const char *label, const char *source)
{
	it_buf url;
	pthread_condattr_t ca;

	memset(a, 0, sizeof(*a));
	a->cred = cred;
	a->label = label;
	a->source = source;
	a->state = "idle";
	pthread_mutex_init(&a->lock, NULL);
	/* Renewals follow elapsed time, not the wall clock a user may set. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	it_cli_random_name(a->client_id);
	it_buf_init(&url, 8192);
	if (it_cli_url(&url, server, "/api/v1/presence") == 0 && (a->h = curl_easy_init()) != NULL) {
		a->url = url.data; /* taken over from the buffer */
		return;
	}
	it_buf_free(&url);
	a->off = 1;
}

/* One request; returns the HTTP status or 0 when there was no answer. */
static long send_one(it_announce *a, const char *method, const char *url, const char *body)
{
	struct curl_slist *hdr = NULL;
	long status = 0;

	curl_easy_reset(a->h);
	hdr = it_cli_bearer(hdr, a->cred);
	if (body && hdr)
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
	if (hdr == NULL)
		return 0;
	curl_easy_setopt(a->h, CURLOPT_URL, url);
	it_cli_curl_defaults(a->h, "imagetools-cli", ANNOUNCE_TIMEOUT_S);
	curl_easy_setopt(a->h, CURLOPT_TIMEOUT, ANNOUNCE_TIMEOUT_S);
	curl_easy_setopt(a->h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(a->h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(a->h, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(a->h, CURLOPT_POSTFIELDS, body);
	if (curl_easy_perform(a->h) == CURLE_OK)
		curl_easy_getinfo(a->h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(a->h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdr);
	return status;
}

static void post(it_announce *a)
{
	json_object *o = json_object_new_object();
	long status;

	if (o == NULL)
		return;
	json_object_object_add(o, "client_id", json_object_new_string(a->client_id));
	json_object_object_add(o, "state", json_object_new_string(a->state));
	json_object_object_add(o, "label", json_object_new_string(a->label));
	json_object_object_add(o, "source", json_object_new_string(a->source));
	status = send_one(a, "POST", a->url, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	if (status == 404 || status == 405)
		a->off = 1; /* a server from before presence: the client goes on unseen */
	else if (status >= 200 && status < 300)
		a->joined = 1;
}

/* Renews the entry every IT_ANNOUNCE_RENEW_S seconds until told to stop. A
 * failed renewal is tried again at the next one: the entry outlives two of
 * them. */
static void *renew(void *p)
{
	it_announce *a = p;
	struct timespec t;
	int stop;

	pthread_mutex_lock(&a->lock);
	for (;;) {
		t = it_clock_deadline(IT_ANNOUNCE_RENEW_S * 1000);
		while (!a->stopping && pthread_cond_timedwait(&a->cond, &a->lock, &t) != ETIMEDOUT)
			;
		stop = a->stopping;
		pthread_mutex_unlock(&a->lock);
		if (stop || a->off)
			return NULL;
		post(a);
		pthread_mutex_lock(&a->lock);
	}
}

void it_announce_start(it_announce *a, const char *state)
{
	sigset_t all, old;

	if (a->off || a->running)
		return;
	a->state = state;
	post(a);
	if (a->off)
		return;
	/* The program's signals (SIGINT, SIGTERM) stay with its main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	a->running = pthread_create(&a->thread, NULL, renew, a) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void it_announce_done(it_announce *a)
{
	it_buf url;

	if (a->running) {
		pthread_mutex_lock(&a->lock);
		a->stopping = 1;
		pthread_cond_signal(&a->cond);
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->thread, NULL);
	}
	if (a->joined && !a->off && a->h) {
		it_buf_init(&url, 8192);
		if (it_buf_printf(&url, "%s?client_id=%s", a->url, a->client_id) == 0)
			send_one(a, "DELETE", url.data, NULL);
		it_buf_free(&url);
	}
	if (a->h)
		curl_easy_cleanup(a->h);
	free(a->url);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	memset(a, 0, sizeof(*a));
}

/* announce.c: a command-line client's presence in its session (POST and DELETE /api/v1/presence), best effort. */
#include "config.h"

#include "cli/announce.h"

#include "cli/cliutil.h"
#include "common/buf.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Presence is a courtesy: it must not hold up an upload for long. */
#define ANNOUNCE_TIMEOUT_S 5L

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

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

	memset(a, 0, sizeof(*a));
	a->cred = cred;
	a->label = label;
	a->source = source;
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
	curl_easy_setopt(a->h, CURLOPT_USERAGENT, "imagetools-cli/" PACKAGE_VERSION);
	curl_easy_setopt(a->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(a->h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(a->h, CURLOPT_CONNECTTIMEOUT, ANNOUNCE_TIMEOUT_S);
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

void it_announce_state(it_announce *a, const char *state, int force)
{
	json_object *o;
	double now = mono_s();
	long status;

	if (a->off || (!force && a->joined && now - a->last < IT_ANNOUNCE_RENEW_S))
		return;
	o = json_object_new_object();
	if (o == NULL)
		return;
	json_object_object_add(o, "client_id", json_object_new_string(a->client_id));
	json_object_object_add(o, "state", json_object_new_string(state));
	json_object_object_add(o, "label", json_object_new_string(a->label));
	json_object_object_add(o, "source", json_object_new_string(a->source));
	status = send_one(a, "POST", a->url, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	if (status == 404 || status == 405) {
		/* A server from before presence: the upload goes on unseen. */
		a->off = 1;
	} else if (status >= 200 && status < 300) {
		a->joined = 1;
		a->last = now;
	}
}

void it_announce_done(it_announce *a)
{
	it_buf url;

	if (a->joined && !a->off && a->h) {
		it_buf_init(&url, 8192);
		if (it_buf_printf(&url, "%s?client_id=%s", a->url, a->client_id) == 0)
			send_one(a, "DELETE", url.data, NULL);
		it_buf_free(&url);
	}
	if (a->h)
		curl_easy_cleanup(a->h);
	free(a->url);
	memset(a, 0, sizeof(*a));
}

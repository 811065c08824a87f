/* tusclient.c: a resumable (tus 1.0) upload of one file with libcurl, whose upload URL is kept in a state file so that
 * a killed client resumes. */
#include "config.h"

#include "cli/tusclient.h"

#include "cli/cliutil.h"
#include "common/base64.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* An answer to a tus request is a small problem document at most. */
#define MAX_ANSWER (64 * 1024)
#define URL_MAX 2048

/* Headers of one answer. */
struct answer {
	it_cli_headers hdr;
	char location[URL_MAX];
	char offset[32];
	it_buf body;
};

static size_t on_header(char *data, size_t size, size_t n, void *p)
{
	struct answer *a = p;
	size_t len = size * n;

	if (len > 5 && strncmp(data, "HTTP/", 5) == 0) {
		a->location[0] = '\0';
		a->offset[0] = '\0';
	}
	it_cli_header_value(data, len, "Location", a->location, sizeof(a->location));
	it_cli_header_value(data, len, "Upload-Offset", a->offset, sizeof(a->offset));
	return it_cli_on_header(data, size, n, &a->hdr);
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct answer *a = p;

	/* Past the ceiling the rest is dropped: only the problem's start matters. */
	it_buf_append(&a->body, data, size * n);
	return size * n;
}

/* Reads the file from its offset for a PATCH body. */
static size_t on_read(char *buf, size_t size, size_t n, void *p)
{
	FILE *f = p;
	size_t r = fread(buf, 1, size * n, f);

	if (r == 0 && ferror(f))
		return CURL_READFUNC_ABORT;
	return r;
}

int it_tusc_default_state_dir(char *out, size_t outlen)
{
	const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	int w;

	if (x && *x)
		w = snprintf(out, outlen, "%s/imagetools-upload", x);
	else if (home && *home)
		w = snprintf(out, outlen, "%s/.local/state/imagetools-upload", home);
	else
		return -1;
	return w > 0 && (size_t)w < outlen ? 0 : -1;
}

/* The state file of one upload: named by a hash of what identifies it (the
 * server, the session, the file's path, size and modification time), and
 * holding that key on its first line, so that a collision is noticed. */
static void state_key(const it_tusc_opts *o, const char *path, const struct stat *st, it_buf *key)
{
	char real[PATH_MAX];
	char line[128];

	it_buf_reset(key);
	it_buf_puts(key, o->server);
	it_buf_puts(key, " ");
	it_buf_puts(key, o->session);
	it_buf_puts(key, " ");
	it_buf_puts(key, realpath(path, real) ? real : path);
	snprintf(line, sizeof(line), " %lld %lld.%09ld", (long long)st->st_size, (long long)st->st_mtim.tv_sec,
		 st->st_mtim.tv_nsec);
	it_buf_puts(key, line);
	/* One line: a path with a newline must not split it. */
	for (size_t i = 0; i < key->len; i++)
		if (key->data[i] == '\n' || key->data[i] == '\r')
			key->data[i] = '?';
}

static void state_path(const it_tusc_opts *o, const it_buf *key, char *out, size_t outlen)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (size_t i = 0; i < key->len; i++) {
		h ^= (unsigned char)key->data[i];
		h *= 1099511628211ULL;
	}
	snprintf(out, outlen, "%s/%016" PRIx64, o->state_dir, h);
}

/* Reads the URL kept for key; "" when there is none. */
static void state_read(const char *file, const it_buf *key, char *url, size_t urllen)
{
	FILE *f = fopen(file, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	url[0] = '\0';
	if (f == NULL)
		return;
	n = getline(&line, &cap, f);
	if (n > 0 && (size_t)n == key->len + 1 && memcmp(line, key->data, key->len) == 0 &&
	    (n = getline(&line, &cap, f)) > 1 && (size_t)n < urllen) {
		line[n - 1] = '\0';
		memcpy(url, line, (size_t)n);
	}
	free(line);
	fclose(f);
}

/* Writes the state file whole or not at all (a temporary file renamed over
 * it), and on disk before any byte of the upload is sent. */
static int state_write(const char *file, const it_buf *key, const char *url)
{
	char tmp[PATH_MAX + 64];
	FILE *f;
	int ok;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	if ((f = fopen(tmp, "w")) == NULL)
		return -1;
	ok = fprintf(f, "%.*s\n%s\n", (int)key->len, key->data, url) > 0;
	ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, file) != 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* One request; returns the HTTP status, or 0 with curl's error in msg. */
static long perform(CURL *h, const it_tusc_opts *o, const char *method, const char *url, struct curl_slist *extra,
		    FILE *body, curl_off_t body_len, struct answer *a, char *msg, size_t msglen)
{
	struct curl_slist *hl = NULL;
	char auth[300], errbuf[CURL_ERROR_SIZE];
	long status = 0;
	CURLcode rc;

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->session);
	hl = curl_slist_append(hl, "Tus-Resumable: 1.0.0");
	hl = curl_slist_append(hl, auth);
	hl = curl_slist_append(hl, "Expect:");
	for (struct curl_slist *e = extra; e; e = e->next)
		hl = curl_slist_append(hl, e->data);
	memset(&a->hdr, 0, sizeof(a->hdr));
	a->location[0] = a->offset[0] = '\0';
	it_buf_reset(&a->body);
	errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(h, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
	if (body != NULL) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, body);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, body_len);
	} else {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 0L);
		if (strcmp(method, "POST") == 0) {
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
		} else {
			curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
		}
	}
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "HEAD") == 0 ? NULL : method);
	rc = curl_easy_perform(h);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 0L);
	curl_slist_free_all(hl);
	if (rc != CURLE_OK) {
		snprintf(msg, msglen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return 0;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* Resolves the Location of a creation against the endpoint (it is usually
 * an absolute path). */
static int resolve(const char *base, const char *loc, char *out, size_t outlen)
{
	CURLU *u = curl_url();
	char *s = NULL;
	int rc = -1;

	if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
	    curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK &&
	    strlen(s) < outlen) {
		memcpy(out, s, strlen(s) + 1);
		rc = 0;
	}
	curl_free(s);
	curl_url_cleanup(u);
	return rc;
}

int it_tusc_upload(CURL *h, const it_tusc_opts *o, const char *path, char *url_out, size_t urllen, char *msg,
		   size_t msglen)
{
	char url[URL_MAX], file[PATH_MAX + 32], why[600], line[URL_MAX + 64], *copy = NULL;
	char *meta = NULL;
	struct answer a;
	struct stat st;
	struct curl_slist *extra = NULL;
	it_buf key, endpoint;
	FILE *f = NULL;
	int64_t offset = -1;
	unsigned attempt = 0;
	int result = IT_TUSC_GAVE_UP;
	long status;

	msg[0] = '\0';
	url[0] = '\0';
	memset(&a, 0, sizeof(a));
	it_buf_init(&a.body, MAX_ANSWER);
	it_buf_init(&key, 2 * PATH_MAX);
	it_buf_init(&endpoint, URL_MAX);
	if (stat(path, &st) < 0 || (f = fopen(path, "rb")) == NULL) {
		snprintf(msg, msglen, "%s", strerror(errno));
		result = IT_TUSC_LOCAL_ERROR;
		goto out;
	}
	if (it_cli_make_dirs(o->state_dir) < 0) {
		snprintf(msg, msglen, "the state directory %s cannot be made: %s", o->state_dir, strerror(errno));
		result = IT_TUSC_LOCAL_ERROR;
		goto out;
	}
	if (it_cli_url(&endpoint, o->server, "/api/v1/uploads/tus") < 0) {
		snprintf(msg, msglen, "the server must be an http:// or https:// URL");
		result = IT_TUSC_LOCAL_ERROR;
		goto out;
	}
	state_key(o, path, &st, &key);
	state_path(o, &key, file, sizeof(file));
	state_read(file, &key, url, sizeof(url));
	if (url[0] && o->verbose)
		fprintf(stderr, "imagetools-upload: %s: resuming %s\n", path, url);

	for (;;) {
		long wait_ms = -1, ra;

		if (o->stop && *o->stop) {
			result = IT_TUSC_INTERRUPTED;
			break;
		}
		why[0] = '\0';
		if (url[0] == '\0') {
			/* A new upload: its URL is on disk before its first byte leaves. */
			size_t flen;
			copy = strdup(path);
			flen = strlen(copy ? basename(copy) : path);
			free(meta);
			meta = malloc(64 + 4 * ((flen + 2) / 3) + 4 * ((strlen(o->source) + 2) / 3));
			if (meta == NULL) {
				result = IT_TUSC_LOCAL_ERROR;
				snprintf(msg, msglen, "out of memory");
				break;
			}
			strcpy(meta, "Upload-Metadata: filename ");
			it_base64_encode((const unsigned char *)(copy ? basename(copy) : path), flen,
					 meta + strlen(meta));
			strcat(meta, ",source ");
			it_base64_encode((const unsigned char *)o->source, strlen(o->source), meta + strlen(meta));
			free(copy);
			copy = NULL;
			snprintf(line, sizeof(line), "Upload-Length: %lld", (long long)st.st_size);
			extra = curl_slist_append(NULL, line);
			extra = curl_slist_append(extra, meta);
			status = perform(h, o, "POST", endpoint.data, extra, NULL, 0, &a, why, sizeof(why));
			curl_slist_free_all(extra);
			extra = NULL;
			if (status == 201 && a.location[0] &&
			    resolve(endpoint.data, a.location, url, sizeof(url)) == 0) {
				if (state_write(file, &key, url) < 0) {
					snprintf(msg, msglen, "the upload URL cannot be kept in %s: %s", file,
						 strerror(errno));
					result = IT_TUSC_LOCAL_ERROR;
					break;
				}
				offset = 0;
				continue;
			}
		} else if (offset < 0) {
			/* Where the server stands. */
			status = perform(h, o, "HEAD", url, NULL, NULL, 0, &a, why, sizeof(why));
			if (status == 200 && a.offset[0]) {
				offset = strtoll(a.offset, NULL, 10);
				if (offset == (int64_t)st.st_size) {
					result = IT_TUSC_STORED;
					break;
				}
				continue;
			}
			if (status == 404 || status == 410) {
				/* Expired or terminated: start over. */
				unlink(file);
				url[0] = '\0';
				continue;
			}
		} else {
			if (fseeko(f, (off_t)offset, SEEK_SET) != 0) {
				snprintf(msg, msglen, "%s", strerror(errno));
				result = IT_TUSC_LOCAL_ERROR;
				break;
			}
			snprintf(line, sizeof(line), "Upload-Offset: %lld", (long long)offset);
			extra = curl_slist_append(NULL, line);
			extra = curl_slist_append(extra, "Content-Type: application/offset+octet-stream");
			status = perform(h, o, "PATCH", url, extra, f, (curl_off_t)(st.st_size - offset), &a, why,
					 sizeof(why));
			curl_slist_free_all(extra);
			extra = NULL;
			if (status == 204 && a.offset[0] && strtoll(a.offset, NULL, 10) == (int64_t)st.st_size) {
				result = IT_TUSC_STORED;
				break;
			}
			/* Whatever happened, the server says next where to go on. */
			offset = -1;
		}
		if (o->stop && *o->stop) {
			result = IT_TUSC_INTERRUPTED;
			break;
		}
		if (status == 204 || (status == 200 && url[0] != '\0'))
			continue; /* a PATCH that ended short, or a HEAD: ask where to go on */
		if (status == 0 || status >= 500 || status == 409 || status == 423 || status == 429 || status == 408) {
			if (status != 0 && why[0] == '\0')
				it_cli_problem_message(a.body.data, a.body.len, status, why, sizeof(why));
			if (attempt >= o->retries) {
				snprintf(msg, msglen, "%s (giving up after %u retries; run again to resume)", why,
					 o->retries);
				result = IT_TUSC_GAVE_UP;
				break;
			}
			ra = it_cli_retry_after(a.hdr.retry_after, time(NULL));
			if (ra >= 0)
				wait_ms = ra > o->max_wait_ms / 1000 ? o->max_wait_ms : ra * 1000;
			if (wait_ms < 0)
				wait_ms =
					it_cli_backoff_ms(attempt, o->retry_delay_ms, o->max_wait_ms, it_cli_random());
			attempt++;
			if (o->verbose)
				fprintf(stderr, "imagetools-upload: %s: %s; resuming in %.1f s (%u of %u)\n", path,
					why[0] ? why : "interrupted", wait_ms / 1000.0, attempt, o->retries);
			if (it_cli_sleep_ms(wait_ms, o->stop) < 0) {
				result = IT_TUSC_INTERRUPTED;
				break;
			}
			continue;
		}
		/* A final answer: the same request would fail again. */
		it_cli_problem_message(a.body.data, a.body.len, status, msg, msglen);
		switch (it_cli_auth_problem(status, a.body.data, a.body.len)) {
		case IT_CLI_AUTH_TOKEN: result = IT_TUSC_BAD_TOKEN; break;
		case IT_CLI_AUTH_SCOPE: result = IT_TUSC_SCOPE; break;
		default: result = status == 404 && url[0] == '\0' ? IT_TUSC_BAD_SESSION : IT_TUSC_REJECTED;
		}
		break;
	}
	/* A final answer ends the upload for good: a revoked or too narrow token
	 * will not resume it either. */
	if (result == IT_TUSC_STORED || result == IT_TUSC_REJECTED || result == IT_TUSC_BAD_TOKEN ||
	    result == IT_TUSC_SCOPE)
		unlink(file);
out:
	if (url_out)
		snprintf(url_out, urllen, "%s", url);
	if (f)
		fclose(f);
	free(meta);
	free(copy);
	it_buf_free(&a.body);
	it_buf_free(&key);
	it_buf_free(&endpoint);
	return result;
}

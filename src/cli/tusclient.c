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
	int untrusted; /* the last request failed on the server's certificate */
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

int it_tusclient_default_state_dir(char *out, size_t outlen)
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
static void state_key(const it_tusclient_opts *o, const char *path, const struct stat *st, it_buf *key)
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

/* The file name is 64-bit FNV-1a of the key, written out here rather than
 * taken from it_htab_hash: that one is a size_t, 32 bits on some machines,
 * and serves tables in memory that may change it, whereas these names are on
 * users' disks and must stay the same for every build, or a resumable
 * upload would no longer find its state. */
static void state_path(const it_tusclient_opts *o, const it_buf *key, char *out, size_t outlen)
{
	uint64_t h = 1469598103934665603ULL; /* the FNV-1a offset basis */

	for (size_t i = 0; i < key->len; i++) {
		h ^= (unsigned char)key->data[i];
		h *= 1099511628211ULL; /* the FNV prime */
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
static long perform(CURL *h, const it_tusclient_opts *o, const char *method, const char *url, struct curl_slist *extra,
		    FILE *body, curl_off_t body_len, struct answer *a, char *msg, size_t msglen)
{
	struct curl_slist *hl = NULL;
	char errbuf[CURL_ERROR_SIZE];
	long status = 0;
	CURLcode rc;

	hl = curl_slist_append(hl, "Tus-Resumable: 1.0.0");
	hl = it_cli_bearer(hl, o->session);
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
	a->untrusted = it_cli_tls_failure(rc);
	if (a->untrusted) {
		it_cli_tls_message(msg, msglen, rc, errbuf);
		return 0;
	}
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

/* One upload in progress. */
struct upload {
	const it_tusclient_opts *o;
	const char *path;
	struct stat st;
	FILE *f;		  /* the file, read from the offset for a PATCH */
	it_buf key;		  /* what identifies the upload (state_key) */
	it_buf endpoint;	  /* the creation URL */
	char file[PATH_MAX + 32]; /* the state file */
	char url[URL_MAX];	  /* the upload's URL; "" until it is created */
	int64_t offset;		  /* where the server stands; -1 when it must be asked */
	unsigned attempt;	  /* retries so far */
	long status;		  /* of the last request; 0 when libcurl failed */
	char why[600];		  /* why the last request failed */
	struct answer a;
	char *msg; /* the caller's sentence for the user */
	size_t msglen;
};

/* What a step of the upload returns besides an IT_TUSCLIENT_* outcome: go on
 * (round the loop again), or decide from the last request's status. */
enum { GO_ON = -1, JUDGE = -2 };

/* Opens the file and the state directory and reads the upload URL kept for
 * this file, if any. Returns GO_ON or IT_TUSCLIENT_LOCAL_ERROR with u->msg set. */
static int upload_open(struct upload *u)
{
	const it_tusclient_opts *o = u->o;

	if (stat(u->path, &u->st) < 0 || (u->f = fopen(u->path, "rb")) == NULL) {
		snprintf(u->msg, u->msglen, "%s", strerror(errno));
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	if (it_cli_make_dirs(o->state_dir) < 0) {
		snprintf(u->msg, u->msglen, "the state directory %s cannot be made: %s", o->state_dir, strerror(errno));
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	if (it_cli_url(&u->endpoint, o->server, "/api/v1/uploads/tus") < 0) {
		snprintf(u->msg, u->msglen, "the server must be an http:// or https:// URL");
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	state_key(o, u->path, &u->st, &u->key);
	state_path(o, &u->key, u->file, sizeof(u->file));
	state_read(u->file, &u->key, u->url, sizeof(u->url));
	if (u->url[0] && o->verbose)
		fprintf(stderr, "imagetools-upload: %s: resuming %s\n", u->path, u->url);
	return GO_ON;
}

/* Creates the upload (POST with its length and metadata) and keeps its URL
 * on disk before its first byte leaves. Returns GO_ON when created, JUDGE
 * when the server did not create it, or IT_TUSCLIENT_LOCAL_ERROR. */
static int create_upload(CURL *h, struct upload *u)
{
	const it_tusclient_opts *o = u->o;
	char line[64], *copy = strdup(u->path), *meta;
	const char *name = copy ? basename(copy) : u->path;
	size_t flen = strlen(name);
	struct curl_slist *extra;

	meta = malloc(64 + 4 * ((flen + 2) / 3) + 4 * ((strlen(o->source) + 2) / 3));
	if (meta == NULL) {
		free(copy);
		snprintf(u->msg, u->msglen, "out of memory");
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	strcpy(meta, "Upload-Metadata: filename ");
	it_base64_encode((const unsigned char *)name, flen, meta + strlen(meta));
	strcat(meta, ",source ");
	it_base64_encode((const unsigned char *)o->source, strlen(o->source), meta + strlen(meta));
	free(copy);
	snprintf(line, sizeof(line), "Upload-Length: %lld", (long long)u->st.st_size);
	extra = curl_slist_append(NULL, line);
	extra = curl_slist_append(extra, meta);
	u->status = perform(h, o, "POST", u->endpoint.data, extra, NULL, 0, &u->a, u->why, sizeof(u->why));
	curl_slist_free_all(extra);
	free(meta);
	if (u->status != 201 || u->a.location[0] == '\0' ||
	    resolve(u->endpoint.data, u->a.location, u->url, sizeof(u->url)) < 0)
		return JUDGE;
	if (state_write(u->file, &u->key, u->url) < 0) {
		snprintf(u->msg, u->msglen, "the upload URL cannot be kept in %s: %s", u->file, strerror(errno));
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	u->offset = 0;
	return GO_ON;
}

/* Asks the server where the upload stands (HEAD). Returns IT_TUSCLIENT_STORED
 * when it has every byte, GO_ON when the offset is known or the upload is
 * gone (expired or terminated: it starts over), else JUDGE. */
static int ask_offset(CURL *h, struct upload *u)
{
	u->status = perform(h, u->o, "HEAD", u->url, NULL, NULL, 0, &u->a, u->why, sizeof(u->why));
	if (u->status == 200 && u->a.offset[0]) {
		u->offset = strtoll(u->a.offset, NULL, 10);
		return u->offset == (int64_t)u->st.st_size ? IT_TUSCLIENT_STORED : GO_ON;
	}
	if (u->status == 404 || u->status == 410) {
		unlink(u->file);
		u->url[0] = '\0';
		return GO_ON;
	}
	return JUDGE;
}

/* Sends the rest of the file from the offset (PATCH). Returns
 * IT_TUSCLIENT_STORED when the server then has every byte, IT_TUSCLIENT_LOCAL_ERROR
 * when the file cannot be read, else JUDGE, with the offset to be asked
 * again. */
static int send_rest(CURL *h, struct upload *u)
{
	struct curl_slist *extra;
	char line[64];

	if (fseeko(u->f, (off_t)u->offset, SEEK_SET) != 0) {
		snprintf(u->msg, u->msglen, "%s", strerror(errno));
		return IT_TUSCLIENT_LOCAL_ERROR;
	}
	snprintf(line, sizeof(line), "Upload-Offset: %lld", (long long)u->offset);
	extra = curl_slist_append(NULL, line);
	extra = curl_slist_append(extra, "Content-Type: application/offset+octet-stream");
	u->status = perform(h, u->o, "PATCH", u->url, extra, u->f, (curl_off_t)(u->st.st_size - u->offset), &u->a,
			    u->why, sizeof(u->why));
	curl_slist_free_all(extra);
	if (u->status == 204 && u->a.offset[0] && strtoll(u->a.offset, NULL, 10) == (int64_t)u->st.st_size)
		return IT_TUSCLIENT_STORED;
	/* Whatever happened, the server says next where to go on. */
	u->offset = -1;
	return JUDGE;
}

/* Waits before another try after a failure worth retrying, unless the
 * retries are used up (IT_TUSCLIENT_GAVE_UP) or a signal cuts the wait short
 * (IT_TUSCLIENT_INTERRUPTED). Returns GO_ON or that outcome. */
static int retry_later(struct upload *u)
{
	const it_tusclient_opts *o = u->o;
	long wait_ms;

	if (u->status != 0 && u->why[0] == '\0')
		it_cli_problem_message(u->a.body.data, u->a.body.len, u->status, u->why, sizeof(u->why));
	if (u->attempt >= o->retries) {
		snprintf(u->msg, u->msglen, "%s (giving up after %u retries; run again to resume)", u->why, o->retries);
		return IT_TUSCLIENT_GAVE_UP;
	}
	wait_ms = it_cli_retry_wait_ms(u->a.hdr.retry_after, u->attempt, o->retry_delay_ms, o->max_wait_ms);
	u->attempt++;
	if (o->verbose)
		fprintf(stderr, "imagetools-upload: %s: %s; resuming in %.1f s (%u of %u)\n", u->path,
			u->why[0] ? u->why : "interrupted", wait_ms / 1000.0, u->attempt, o->retries);
	if (it_cli_sleep_ms(wait_ms, o->stop) < 0)
		return IT_TUSCLIENT_INTERRUPTED;
	return GO_ON;
}

/* Decides from the last request's status: go on, retry later, or a final
 * answer (the same request would fail again). Returns GO_ON or an
 * outcome. */
static int judge(struct upload *u)
{
	long status = u->status;

	if (u->o->stop && *u->o->stop)
		return IT_TUSCLIENT_INTERRUPTED;
	if (status == 204 || (status == 200 && u->url[0] != '\0'))
		return GO_ON; /* a PATCH that ended short, or a HEAD: ask where to go on */
	if (status == 0 && u->a.untrusted) {
		/* Another try would meet the same certificate. */
		snprintf(u->msg, u->msglen, "%s", u->why);
		return IT_TUSCLIENT_UNTRUSTED;
	}
	if (status == 0 || status >= 500 || status == 409 || status == 423 || status == 429 || status == 408)
		return retry_later(u);
	it_cli_problem_message(u->a.body.data, u->a.body.len, status, u->msg, u->msglen);
	switch (it_cli_auth_problem(status, u->a.body.data, u->a.body.len)) {
	case IT_CLI_AUTH_TOKEN: return IT_TUSCLIENT_BAD_TOKEN;
	case IT_CLI_AUTH_SCOPE: return IT_TUSCLIENT_SCOPE;
	default: return status == 404 && u->url[0] == '\0' ? IT_TUSCLIENT_BAD_SESSION : IT_TUSCLIENT_REJECTED;
	}
}

/* The upload's loop: creates it, asks where it stands, sends the rest, and
 * retries with backoff until it has an outcome. */
static int upload_loop(CURL *h, struct upload *u)
{
	int rc;

	for (;;) {
		if (u->o->stop && *u->o->stop)
			return IT_TUSCLIENT_INTERRUPTED;
		u->why[0] = '\0';
		if (u->url[0] == '\0')
			rc = create_upload(h, u);
		else if (u->offset < 0)
			rc = ask_offset(h, u);
		else
			rc = send_rest(h, u);
		if (rc == JUDGE)
			rc = judge(u);
		if (rc != GO_ON)
			return rc;
	}
}

int it_tusclient_upload(CURL *h, const it_tusclient_opts *o, const char *path, char *url_out, size_t urllen, char *msg,
			size_t msglen)
{
	struct upload u;
	int result;

	memset(&u, 0, sizeof(u));
	u.o = o;
	u.path = path;
	u.offset = -1;
	u.msg = msg;
	u.msglen = msglen;
	msg[0] = '\0';
	it_buf_init(&u.a.body, MAX_ANSWER);
	it_buf_init(&u.key, 2 * PATH_MAX);
	it_buf_init(&u.endpoint, URL_MAX);
	result = upload_open(&u);
	if (result == GO_ON) {
		result = upload_loop(h, &u);
		/* A final answer ends the upload for good: a revoked or too
		 * narrow token will not resume it either. */
		if (result == IT_TUSCLIENT_STORED || result == IT_TUSCLIENT_REJECTED ||
		    result == IT_TUSCLIENT_BAD_TOKEN || result == IT_TUSCLIENT_SCOPE)
			unlink(u.file);
	}
	if (url_out)
		snprintf(url_out, urllen, "%s", u.url);
	if (u.f)
		fclose(u.f);
	it_buf_free(&u.a.body);
	it_buf_free(&u.key);
	it_buf_free(&u.endpoint);
	return result;
}

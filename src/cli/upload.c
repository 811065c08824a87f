/* upload.c: imagetools-upload, which sends image files into a session: the reference external source. */
#include "config.h"

#include "cli/announce.h"
#include "cli/cliutil.h"
#include "cli/pairing.h"
#include "cli/tusclient.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/cmdline.h"
#include "common/log.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "imagetools-upload"

/* The answer to one upload is a small JSON document; anything larger is not
 * from an ImageTools server and is refused rather than buffered. */
#define MAX_ANSWER (1u << 20)

/* What happened to one file; the exit code is derived from the worst. */
enum outcome {
	STORED,
	REJECTED,
	LOCAL_ERROR,
	GAVE_UP,
	BAD_SESSION,
	NOT_SERVER,
	INTERRUPTED,
	BAD_TOKEN,
	SCOPE,
	UNTRUSTED
};

struct opts {
	/* The server, the credential, --quiet, and the delays: max_wait_ms is
	 * the ceiling on any single wait, Retry-After included. */
	it_cli_opts cli;
	int json, progress, recursive;
	const char *files_from; /* file with one path per line, "-" for standard input */
	unsigned retries;
	long timeout_s;	      /* a transfer making no progress this long is retried */
	const char *url;      /* the upload URL, for messages */
	int resume;	      /* tus: resumable, surviving a kill of this program */
	char state_dir[4096]; /* where --resume keeps upload URLs */
	long limit_rate;      /* bytes per second sent at most; 0: no limit */
	const char *pair;     /* --pair: a pairing code or link to exchange for a token first */
	int token;	      /* the credential is a token: it goes in Authorization: Bearer */
	it_announce presence; /* this run's presence entry while it uploads */
};

/* Per-transfer state shared with libcurl's callbacks. */
struct xfer {
	it_buf body;
	it_cli_headers hdr;
	const char *label; /* "[2/5] photo.jpg" for the progress bar */
	int show;
	double start, last_draw;
	int drawn;
	/* What the last attempt got, and why it is tried again. */
	const char *path;
	CURLcode rc;
	long status;
	char errbuf[CURL_ERROR_SIZE];
	char why[700];
	int server_busy; /* a 429 or 5xx: the server's Retry-After sets the wait */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS] FILE...\n"
		"Uploads each FILE into an ImageTools session (one request per file).\n"
		"\n"
		"  -s, --server URL       the site, e.g. http://host:8080 or host:8080 (IMAGETOOLS_SERVER)\n"
		"  -S, --session ID       the session to upload into (IMAGETOOLS_SESSION)\n"
		"      --token TOKEN      a device token (itk....) instead of the session id\n"
		"                         (IMAGETOOLS_TOKEN)\n"
		"      --pair CODE|LINK   exchange a pairing code, or the pairing link the\n"
		"                         ImageTools page shows, for an upload token of this\n"
		"                         computer and keep it (with the server) in the config file\n"
		"      --source NAME      android_app, browser_addon, cli (default), web, api\n"
		"  -r, --recursive        upload the files in directories given, and below\n"
		"                         (names starting with a dot are left out)\n"
		"      --files-from FILE  also upload the files named in FILE, one per line\n"
		"                         (- for standard input: find ... | " PROG " --files-from -)\n"
		"  -j, --json             print the server's answer per file, one JSON object a line\n"
		"  -q, --quiet            no progress bar and no per-file lines, only errors\n"
		"      --retries N        retries after connection errors, 5xx and 429 (default 5)\n"
		"      --retry-delay MS   first backoff delay, doubled each retry (default 1000)\n"
		"      --max-wait SEC     longest single wait, Retry-After included (default 300)\n"
		"      --timeout SEC      give up a transfer stalled this long, then retry (default 60)\n"
		"      --resume           resumable uploads (tus): an interrupted upload, even of a\n"
		"                         killed " PROG ", goes on from where the server stands\n"
		"      --state-dir DIR    where --resume keeps upload URLs\n"
		"                         (default $XDG_STATE_HOME/imagetools-upload)\n"
		"      --limit-rate BYTES send at most this many bytes per second\n"
		"      --cacert FILE      trust the CA certificates in FILE (PEM), e.g. a\n"
		"                         self-signed server's own certificate\n"
		"  -h, --help             this text\n"
		"  -V, --version          the version\n"
		"\n"
		"Server and credential may also come from the user's config file\n"
		"($XDG_CONFIG_HOME/imagetools/cli.conf or ~/.config/imagetools/cli.conf,\n"
		"lines of key = value with keys server, session, token, source).\n"
		"Exit status: 0 all stored, 1 some files failed, 2 usage or configuration error,\n"
		"3 unknown, expired or malformed session, 4 server unreachable or failing after\n"
		"retries, 5 the URL is not an ImageTools server, 6 the token or pairing code is\n"
		"unknown, used, expired or revoked, 7 the token may not upload.\n");
}

static void human_bytes(char *out, size_t n, double v)
{
	static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void draw_progress(struct xfer *x, double done, double total, int final)
{
	double t = it_clock_s(), el = t - x->start, rate = el > 0 ? done / el : 0;
	char d[32], tot[32], r[32], eta[32] = "";
	char bar[21];
	int pct = total > 0 ? (int)(done * 100 / total) : 0, fill = pct / 5;

	if (!final && t - x->last_draw < 0.1)
		return;
	x->last_draw = t;
	memset(bar, ' ', 20);
	memset(bar, '#', (size_t)(fill > 20 ? 20 : fill));
	bar[20] = '\0';
	human_bytes(d, sizeof(d), done);
	human_bytes(tot, sizeof(tot), total);
	human_bytes(r, sizeof(r), rate);
	if (rate > 0 && total > done) {
		long s = (long)((total - done) / rate);
		snprintf(eta, sizeof(eta), " ETA %ld:%02ld", s / 60, s % 60);
	}
	fprintf(stderr, "\r\033[K%-28.28s %3d%% [%s] %s / %s %s/s%s", x->label, pct, bar, d, tot, r, eta);
	if (final)
		fputc('\n', stderr);
	x->drawn = 1;
}

static int on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = p;

	(void)dltotal;
	(void)dlnow;
	if (it_cli_stop)
		return 1;
	if (x->show && ultotal > 0)
		draw_progress(x, (double)ulnow, (double)ultotal, 0);
	return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct xfer *x = p;

	if (it_buf_append(&x->body, data, size * n) < 0)
		return 0; /* too large: libcurl ends the transfer with a write error */
	return size * n;
}

/* Connection-level failures worth another try: the server may be restarting. */
static int curl_retryable(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR: return 1;
	default: return 0;
	}
}

/* Prints one JSON line for --json: the server's answer with "file" added, or
 * an object describing a failure that produced no JSON answer. */
static void print_json(const char *path, long status, const it_buf *body, const char *error)
{
	json_object *o = body ? it_cli_json_object(body->data, body->len) : NULL;

	if (o == NULL) {
		o = json_object_new_object();
		json_object_object_add(o, "status", json_object_new_int64(status));
		json_object_object_add(o, "error", json_object_new_string(error ? error : "unreadable answer"));
	}
	json_object_object_add(o, "file", json_object_new_string(path));
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
	json_object_put(o);
}

/* Says what was stored, from the 201 answer: {"images": [image, ...]}. */
static void print_stored(const char *path, const it_buf *body)
{
	json_object *o = json_tokener_parse(body->data), *imgs, *img, *v;
	const char *id = "?", *ct = "?";
	char safe_id[80], safe_ct[80];
	long long size = -1;

	if (o && json_object_object_get_ex(o, "images", &imgs) && json_object_is_type(imgs, json_type_array) &&
	    json_object_array_length(imgs) > 0) {
		img = json_object_array_get_idx(imgs, 0);
		if (json_object_object_get_ex(img, "id", &v))
			id = json_object_get_string(v);
		if (json_object_object_get_ex(img, "content_type", &v))
			ct = json_object_get_string(v);
		if (json_object_object_get_ex(img, "size", &v))
			size = json_object_get_int64(v);
	}
	/* What the server said is printed to the user's terminal: no control characters. */
	it_cli_sanitize(safe_id, sizeof(safe_id), id ? id : "?");
	it_cli_sanitize(safe_ct, sizeof(safe_ct), ct ? ct : "?");
	printf("%s: stored as %s (%lld bytes, %s)\n", path, safe_id, size, safe_ct);
	fflush(stdout);
	json_object_put(o);
}

/* Whether an answer came from an ImageTools server: every refusal of one is
 * problem+json with a type in its namespace. A web server's own 404 page, a
 * proxy's error or another application's answer is not, and means the URL
 * is wrong rather than the session or the file. */
static int imagetools_problem(const it_buf *body, const char *want)
{
	char type[128];

	it_cli_problem_type(body->data, body->len, type, sizeof(type));
	if (strncmp(type, "urn:imagetools:problem:", 23) != 0)
		return 0;
	return want == NULL || strcmp(type + 23, want) == 0;
}

/* A 2xx answer of an ImageTools server to an upload: {"images": [...]}. */
static int stored_answer(const it_buf *body)
{
	json_object *o = body->len ? json_tokener_parse(body->data) : NULL, *imgs;
	int yes = o && json_object_object_get_ex(o, "images", &imgs) && json_object_is_type(imgs, json_type_array);

	json_object_put(o);
	return yes;
}

static void report_not_server(const char *url, long status)
{
	char safe[300];

	it_cli_sanitize(safe, sizeof(safe), url);
	if (status >= 200 && status < 300)
		fprintf(stderr,
			PROG ": %s answered %ld, but not as an ImageTools server: check --server "
			     "(the address of the ImageTools page, e.g. http://host:8080)\n",
			safe, status);
	else
		fprintf(stderr,
			PROG ": %s is not an ImageTools server (HTTP %ld without an ImageTools "
			     "error): check --server (the address of the ImageTools page, e.g. http://host:8080)\n",
			safe, status);
}

/* Explains a refusal of the token itself (kind IT_CLI_AUTH_TOKEN or
 * IT_CLI_AUTH_SCOPE) with the server's words in msg; only the token's prefix
 * is shown. */
static void report_token(int kind, const char *token, const char *msg)
{
	char red[16];

	if (kind == IT_CLI_AUTH_TOKEN)
		fprintf(stderr,
			PROG ": the token %s is unknown, expired or revoked; pair again with " PROG
			     " --pair and a new code from the ImageTools page (%s)\n",
			it_log_redact(token, red, sizeof(red)), msg);
	else
		fprintf(stderr,
			PROG ": the token %s may not upload into this session; pair with an upload or "
			     "full-access code (%s)\n",
			it_log_redact(token, red, sizeof(red)), msg);
}

/* Explains a 4xx answer the way a user can act on it. */
static void report_rejection(const char *path, long status, const it_buf *body, const char *session)
{
	char msg[600], red[16];
	int kind = it_cli_auth_problem(status, body->data, body->len);

	it_cli_problem_message(body->data, body->len, status, msg, sizeof(msg));
	if (kind != IT_CLI_AUTH_OTHER) {
		report_token(kind, session, msg);
		return;
	}
	switch (status) {
	case 404:
		fprintf(stderr, PROG ": %s %s is unknown or has expired; start a new one in ImageTools (%s)\n",
			strncmp(session, "itk.", 4) == 0 ? "the session of token" : "session",
			it_log_redact(session, red, sizeof(red)), msg);
		break;
	case 413: fprintf(stderr, PROG ": %s: too large for this server (%s)\n", path, msg); break;
	case 415: fprintf(stderr, PROG ": %s: not an image the server accepts (%s)\n", path, msg); break;
	default: fprintf(stderr, PROG ": %s: refused (%s)\n", path, msg); break;
	}
}

/* Fills *st and says (on stderr, and in --json) why path cannot be uploaded
 * at all, if so. Returns 0 when the file can be sent, else -1. */
static int check_file(const struct opts *o, const char *path, struct stat *st)
{
	const char *unusable = NULL;

	if (stat(path, st) < 0 || access(path, R_OK) < 0)
		unusable = strerror(errno);
	else if (!S_ISREG(st->st_mode))
		unusable = "not a regular file";
	if (unusable == NULL)
		return 0;
	fprintf(stderr, PROG ": %s: %s\n", path, unusable);
	if (o->json)
		print_json(path, 0, NULL, unusable);
	return -1;
}

/* The progress bar's label: the file's name, numbered when there are several
 * ("[2/5] photo.jpg") or when the total is not known yet (count 0, files
 * read from --files-from). */
static void file_label(char *label, size_t len, const char *path, int idx, int count)
{
	char *copy = strdup(path);
	const char *name = copy ? basename(copy) : path;

	if (count > 1)
		snprintf(label, len, "[%d/%d] %s", idx, count, name);
	else if (count == 0)
		snprintf(label, len, "[%d] %s", idx, name);
	else
		snprintf(label, len, "%s", name);
	free(copy);
}

/* The form of one attempt; NULL after a message when the file cannot be
 * attached. The caller frees it with curl_mime_free. */
static curl_mime *build_form(CURL *h, const struct opts *o, const char *path)
{
	curl_mime *mime = curl_mime_init(h);
	curl_mimepart *part;

	/* A session id goes first in the form, where every server since the
	 * first takes it; a token goes in the Authorization header (set by
	 * run), which servers that know tokens read. */
	if (!o->token) {
		part = curl_mime_addpart(mime);
		curl_mime_name(part, "session_id");
		curl_mime_data(part, o->cli.conf.session, CURL_ZERO_TERMINATED);
	}
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "source");
	curl_mime_data(part, o->cli.conf.source, CURL_ZERO_TERMINATED);
	/* The file is read from disk while it is sent: memory stays small
	 * whatever the file's size. */
	part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	if (curl_mime_filedata(part, path) != CURLE_OK) {
		curl_mime_free(mime);
		fprintf(stderr, PROG ": %s: cannot be read\n", path);
		return NULL;
	}
	return mime;
}

/* Sends one attempt's form (size bytes of file, for the progress bar), frees
 * it, and fills x->rc, x->status and x->body with what came back. */
static void send_form(CURL *h, struct xfer *x, curl_mime *mime, curl_off_t size)
{
	curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
	it_buf_reset(&x->body);
	x->start = x->last_draw = it_clock_s();
	x->drawn = 0;
	x->errbuf[0] = '\0';
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, it_cli_on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x->hdr);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
	x->rc = curl_easy_perform(h);
	curl_mime_free(mime);
	x->status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
	/* The last state is drawn even for a transfer too quick for the
	 * callback's throttle, so a terminal always shows how it ended. */
	if (x->show && (x->rc == CURLE_OK || x->drawn))
		draw_progress(x, (double)size, (double)size, 1);
}

/* Decides about an attempt that libcurl could not complete: a file that
 * could not be read, an error not worth retrying or the last retry is final
 * (returns 1 with *result set after a message); else returns 0 to retry. */
static int transfer_failed(const struct opts *o, struct xfer *x, unsigned attempt, enum outcome *result)
{
	snprintf(x->why, sizeof(x->why), "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->rc));
	if (x->rc == CURLE_READ_ERROR) {
		fprintf(stderr, PROG ": %s: reading the file failed: %s\n", x->path, x->why);
		if (o->json)
			print_json(x->path, 0, NULL, x->why);
		*result = LOCAL_ERROR;
		return 1;
	}
	if (it_cli_tls_failure(x->rc)) {
		char msg[sizeof(x->why) + 300];

		it_cli_tls_message(msg, sizeof(msg), x->rc, x->why);
		fprintf(stderr, PROG ": %s\n", msg);
		if (o->json)
			print_json(x->path, 0, NULL, msg);
		*result = UNTRUSTED;
		return 1;
	}
	if (!curl_retryable(x->rc) || attempt >= o->retries) {
		fprintf(stderr, PROG ": %s: %s%s\n", x->path, x->why,
			curl_retryable(x->rc) ? " (giving up after retries)" : "");
		if (o->json)
			print_json(x->path, 0, NULL, x->why);
		*result = GAVE_UP;
		return 1;
	}
	return 0;
}

/* Reports an answer that is not from an ImageTools server (a wrong URL) and
 * returns NOT_SERVER. */
static enum outcome not_server(const struct opts *o, const struct xfer *x)
{
	report_not_server(o->url, x->status);
	if (o->json)
		print_json(x->path, x->status, NULL, "not an ImageTools server");
	return NOT_SERVER;
}

/* Reports a final refusal of the server and returns what it means for the
 * rest of the batch. */
static enum outcome refused(const struct opts *o, const struct xfer *x)
{
	report_rejection(x->path, x->status, &x->body, o->cli.conf.session);
	if (o->json)
		print_json(x->path, x->status, &x->body, NULL);
	switch (it_cli_auth_problem(x->status, x->body.data, x->body.len)) {
	case IT_CLI_AUTH_TOKEN: return BAD_TOKEN;
	case IT_CLI_AUTH_SCOPE: return SCOPE;
	default: return x->status == 404 || imagetools_problem(&x->body, "invalid-session-id") ? BAD_SESSION : REJECTED;
	}
}

/* Decides what an attempt came to: returns 1 with *result set when it is
 * final, after saying so, or 0 when the upload is tried again (x->why says
 * why). */
static int final_answer(const struct opts *o, struct xfer *x, unsigned attempt, enum outcome *result)
{
	long status = x->status;

	x->server_busy = 0;
	if (x->rc == CURLE_ABORTED_BY_CALLBACK || it_cli_stop) {
		*result = INTERRUPTED;
		return 1;
	}
	if (x->rc != CURLE_OK)
		return transfer_failed(o, x, attempt, result);
	if ((status == 200 || status == 201) && !stored_answer(&x->body)) {
		*result = not_server(o, x);
	} else if (status == 200 || status == 201) {
		if (o->json)
			print_json(x->path, status, &x->body, NULL);
		else if (!o->cli.quiet)
			print_stored(x->path, &x->body);
		*result = STORED;
	} else if (status == 429 || status >= 500) {
		it_cli_problem_message(x->body.data, x->body.len, status, x->why, sizeof(x->why));
		if (attempt < o->retries) {
			x->server_busy = 1;
			return 0;
		}
		fprintf(stderr, PROG ": %s: %s (giving up after %u retries)\n", x->path, x->why, o->retries);
		if (o->json)
			print_json(x->path, status, &x->body, x->why);
		*result = GAVE_UP;
	} else if ((status >= 300 && status < 400) || status == 405 ||
		   (status == 404 && !imagetools_problem(&x->body, "unknown-session"))) {
		/* A 404 that is not about the session comes from a path
		 * that is not the API, a redirect or a refused POST from
		 * a server of static files: the URL is wrong. (Other
		 * refusals, such as a proxy's 413, are about the file.) */
		*result = not_server(o, x);
	} else {
		/* Any other answer is final: the same request would fail again. */
		*result = refused(o, x);
	}
	return 1;
}

/* Waits before attempt + 1, saying so unless --quiet: as long as the server
 * asked for with Retry-After, else the backoff. Returns 0, or -1 when a
 * signal cut the wait short. */
static int wait_to_retry(const struct opts *o, const struct xfer *x, unsigned attempt)
{
	long wait_ms = it_cli_retry_wait_ms(x->server_busy ? x->hdr.retry_after : NULL, attempt, o->cli.retry_delay_ms,
					    o->cli.max_wait_ms);

	if (!o->cli.quiet)
		fprintf(stderr, PROG ": %s: %s; retrying in %.1f s (%u of %u)\n", x->path, x->why, wait_ms / 1000.0,
			attempt + 1, o->retries);
	return it_cli_sleep_ms(wait_ms, &it_cli_stop);
}

/* Uploads one file (number idx of count, count 0 when the total is not
 * known yet) in one multipart request, tried again with backoff after
 * connection errors, 429 and 5xx. Returns its outcome, after saying what
 * happened. */
static enum outcome upload_one(CURL *h, const struct opts *o, const char *path, int idx, int count)
{
	struct xfer x;
	struct stat st;
	char label[64];
	enum outcome result = GAVE_UP;
	curl_mime *mime;

	if (check_file(o, path, &st) < 0)
		return LOCAL_ERROR;
	file_label(label, sizeof(label), path, idx, count);
	memset(&x, 0, sizeof(x));
	it_buf_init(&x.body, MAX_ANSWER);
	x.label = label;
	x.show = o->progress;
	x.path = path;
	for (unsigned attempt = 0;; attempt++) {
		if ((mime = build_form(h, o, path)) == NULL) {
			result = LOCAL_ERROR;
			break;
		}
		send_form(h, &x, mime, st.st_size);
		if (final_answer(o, &x, attempt, &result))
			break;
		if (wait_to_retry(o, &x, attempt) < 0) {
			result = INTERRUPTED;
			break;
		}
	}
	it_buf_free(&x.body);
	return result;
}

/* --resume: one file through tus (tusclient.h), reported like upload_one. */
static enum outcome resume_one(CURL *h, const struct opts *o, const char *path)
{
	it_tusclient_opts t = {o->cli.conf.server,    o->cli.conf.session, o->cli.conf.source, o->state_dir, o->retries,
			       o->cli.retry_delay_ms, o->cli.max_wait_ms,  &it_cli_stop,       !o->cli.quiet};
	char url[2048], msg[700];
	int rc;

	/* The tus requests install no progress callback: with progress on (for
	 * the multipart path's meter), libcurl would print its own on stderr. */
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 1L);
	rc = it_tusclient_upload(h, &t, path, url, sizeof(url), msg, sizeof(msg));
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);

	if (o->json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "file", json_object_new_string(path));
		json_object_object_add(j, "upload_url", json_object_new_string(url));
		json_object_object_add(j, "stored", json_object_new_boolean(rc == IT_TUSCLIENT_STORED));
		if (rc != IT_TUSCLIENT_STORED)
			json_object_object_add(j, "error", json_object_new_string(msg));
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(j);
	} else if (rc == IT_TUSCLIENT_STORED && !o->cli.quiet) {
		printf("%s: stored\n", path);
	}
	if (rc == IT_TUSCLIENT_BAD_TOKEN || rc == IT_TUSCLIENT_SCOPE)
		report_token(rc == IT_TUSCLIENT_BAD_TOKEN ? IT_CLI_AUTH_TOKEN : IT_CLI_AUTH_SCOPE, o->cli.conf.session,
			     msg);
	else if (rc == IT_TUSCLIENT_UNTRUSTED)
		fprintf(stderr, PROG ": %s\n", msg);
	else if (rc != IT_TUSCLIENT_STORED && rc != IT_TUSCLIENT_INTERRUPTED)
		fprintf(stderr, PROG ": %s: %s\n", path, msg);
	switch (rc) {
	case IT_TUSCLIENT_STORED: return STORED;
	case IT_TUSCLIENT_REJECTED: return REJECTED;
	case IT_TUSCLIENT_BAD_SESSION: return BAD_SESSION;
	case IT_TUSCLIENT_BAD_TOKEN: return BAD_TOKEN;
	case IT_TUSCLIENT_SCOPE: return SCOPE;
	case IT_TUSCLIENT_INTERRUPTED: return INTERRUPTED;
	case IT_TUSCLIENT_LOCAL_ERROR: return LOCAL_ERROR;
	case IT_TUSCLIENT_UNTRUSTED: return UNTRUSTED;
	default: return GAVE_UP;
	}
}

/* How the files went, for the summary and the exit code. */
struct totals {
	int stored, rejected, gave_up, bad_session, not_server, interrupted, bad_token, scope, untrusted;
};

/* Whether the batch stops: every later file would fail the same way. */
static int batch_over(const struct totals *t)
{
	return t->bad_session || t->not_server || t->interrupted || t->bad_token || t->scope || t->untrusted;
}

static void tally(struct totals *t, enum outcome r)
{
	switch (r) {
	case STORED: t->stored++; break;
	case REJECTED:
	case LOCAL_ERROR: t->rejected++; break;
	case GAVE_UP: t->gave_up++; break;
	case BAD_SESSION: t->bad_session = 1; break;
	case NOT_SERVER: t->not_server = 1; break;
	case INTERRUPTED: t->interrupted = 1; break;
	case BAD_TOKEN: t->bad_token = 1; break;
	case SCOPE: t->scope = 1; break;
	case UNTRUSTED: t->untrusted = 1; break;
	}
}

/* The files to upload, in order: the arguments, with directories expanded
 * under --recursive. Owned strings. */
struct pathlist {
	char **v;
	size_t n, cap;
};

static int pathlist_add(struct pathlist *l, const char *path)
{
	char *copy;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	if ((copy = strdup(path)) == NULL)
		return -1;
	l->v[l->n++] = copy;
	return 0;
}

static void pathlist_free(struct pathlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* Directories nested deeper than this are not entered: a loop made of bind
 * mounts must not make the walk endless. */
#define MAX_DEPTH 32

static int skip_hidden(const struct dirent *e)
{
	return e->d_name[0] != '.';
}

/* Adds the regular files under dir (sorted by name, so repeated runs upload
 * in the same order; names starting with a dot left out; symbolic links to
 * directories not followed). Returns 0, or -1 after a message. */
static int collect_dir(struct pathlist *l, const char *dir, int depth)
{
	struct dirent **names = NULL;
	int n, rc = 0;

	if (depth > MAX_DEPTH) {
		fprintf(stderr, PROG ": %s: nested too deep, left out\n", dir);
		return 0;
	}
	n = scandir(dir, &names, skip_hidden, alphasort);
	if (n < 0) {
		fprintf(stderr, PROG ": %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		size_t len = strlen(dir);
		char *child = malloc(len + strlen(names[i]->d_name) + 2);
		struct stat st;

		if (child && rc == 0) {
			sprintf(child, "%s%s%s", dir, len && dir[len - 1] == '/' ? "" : "/", names[i]->d_name);
			if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
				rc = collect_dir(l, child, depth + 1) < 0 ? -1 : 0;
			else if (stat(child, &st) == 0 && S_ISREG(st.st_mode))
				rc = pathlist_add(l, child);
		} else if (child == NULL) {
			rc = -1;
		}
		free(child);
		free(names[i]);
	}
	free(names);
	return rc;
}

/* --pair: exchanges the code for a token, keeps it with the server in the
 * user's config file and makes it this run's credential. The server comes
 * from the link, else from --server, the environment or the config file.
 * Returns IT_EXIT_OK or the exit code after a message. */
static int pair(struct opts *o)
{
	static const char *const env_creds[] = {"IMAGETOOLS_TOKEN", "IMAGETOOLS_SESSION"};
	char server[2048], code[64], path[4096], label[72], msg[900], err[600];
	it_cli_conf c = {0};
	it_pairing_result r;
	CURL *h;
	int rc;

	if (it_pairing_parse(o->pair, server, sizeof(server), code, sizeof(code)) < 0) {
		fprintf(stderr,
			PROG ": --pair takes a pairing code (itp....) or the pairing link the ImageTools "
			     "page shows (.../#pair=itp....)\n");
		return IT_EXIT_USAGE;
	}
	/* The server comes from the link, else as the other settings give it;
	 * the CA file as they give it in any case, since the exchange is a
	 * transfer like any other. */
	c.server = server[0] ? strdup(server) : o->cli.conf.server ? strdup(o->cli.conf.server) : NULL;
	c.session = strdup("-"); /* the credential is about to be replaced: not looked up */
	c.cacert = o->cli.conf.cacert ? strdup(o->cli.conf.cacert) : NULL;
	if (it_cli_conf_resolve(&c, err, sizeof(err)) < 0 || it_cli_cacert_use(c.cacert, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		it_cli_conf_free(&c);
		return IT_EXIT_USAGE;
	}
	if (server[0] == '\0') {
		if (c.server == NULL) {
			fprintf(stderr,
				PROG ": --pair with a bare code needs the server: use --server, "
				     "IMAGETOOLS_SERVER, or the pairing link instead of the code\n");
			it_cli_conf_free(&c);
			return IT_EXIT_USAGE;
		}
		snprintf(server, sizeof(server), "%s", c.server);
	}
	it_cli_conf_free(&c);
	if (it_cli_conf_path(path, sizeof(path)) < 0) {
		fprintf(stderr,
			PROG ": --pair keeps the token in the config file, which needs XDG_CONFIG_HOME or "
			     "HOME\n");
		return IT_EXIT_USAGE;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (h = curl_easy_init()) == NULL) {
		fprintf(stderr, PROG ": cannot initialise libcurl\n");
		return IT_EXIT_FAILED;
	}
	it_pairing_label(PROG, label, sizeof(label));
	rc = it_pairing_exchange(h, server, code, label, "cli", &r, msg, sizeof(msg));
	curl_easy_cleanup(h);
	curl_global_cleanup();
	if (rc != IT_EXIT_OK) {
		fprintf(stderr, PROG ": %s\n", msg);
		return rc;
	}
	if (it_pairing_save(path, server, r.token, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": paired, but %s; the token is lost, pair again with a new code\n", err);
		explicit_bzero(&r, sizeof(r));
		return IT_EXIT_FAILED;
	}
	/* The new token is this run's credential and server, whatever else the
	 * options said. */
	free(o->cli.conf.server);
	free(o->cli.conf.session);
	o->cli.conf.server = strdup(server);
	o->cli.conf.session = strdup(r.token);
	if (!o->cli.quiet)
		fprintf(stderr, PROG ": paired as %s (\"%s\", scope %s%s%s); the token is kept in %s\n", r.device_id,
			r.label, r.scope, r.expires_at[0] ? ", until " : "", r.expires_at, path);
	/* Later runs would take the environment's credential instead: say so
	 * now rather than leave the user wondering which one is used. */
	for (size_t i = 0; i < sizeof(env_creds) / sizeof(env_creds[0]); i++) {
		const char *v = getenv(env_creds[i]);

		if (v && *v)
			fprintf(stderr, PROG ": note: %s is set, and later runs use it rather than the new token\n",
				env_creds[i]);
	}
	explicit_bzero(&r, sizeof(r));
	return o->cli.conf.server && o->cli.conf.session ? IT_EXIT_OK : IT_EXIT_FAILED;
}

/* What a step of run returns when the program goes on; any other value is
 * the exit code. */
#define GO_ON (-1)

/* Sets the defaults and reads the command line into o. Returns GO_ON, or
 * the exit code after --help, --version or a message. */
static int parse_options(struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		IT_CLI_OPTIONS,
		{"source", required_argument, NULL, 'o'},
		{"json", no_argument, NULL, 'j'},
		{"retries", required_argument, NULL, 'n'},
		{"recursive", no_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{"files-from", required_argument, NULL, 'F'},
		{"resume", no_argument, NULL, 'R'},
		{"state-dir", required_argument, NULL, 'D'},
		{"limit-rate", required_argument, NULL, 'L'},
		{"pair", required_argument, NULL, 'P'},
		{NULL, 0, NULL, 0},
	};
	it_cmdline cl = IT_CLI_CMDLINE(PROG, usage, "jr", longopts);
	long v;
	int c;

	o->retries = 5;
	o->cli.retry_delay_ms = 1000;
	o->cli.max_wait_ms = 300000;
	o->timeout_s = 60;
	while ((c = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (c) {
		case 'P': o->pair = optarg; break;
		case 'o': it_cli_conf_set(&o->cli.conf.source, optarg); break;
		case 'j': o->json = 1; break;
		case 'F': o->files_from = optarg; break;
		case 'r': o->recursive = 1; break;
		case 'R': o->resume = 1; break;
		case 'D': snprintf(o->state_dir, sizeof(o->state_dir), "%s", optarg); break;
		case 'L':
			if (it_cmdline_long(optarg, 1, 1L << 40, &o->limit_rate) < 0)
				goto bad_number;
			break;
		case 'n':
			if (it_cmdline_long(optarg, 0, 100, &v) < 0)
				goto bad_number;
			o->retries = (unsigned)v;
			break;
		case 't':
			if (it_cmdline_long(optarg, 1, 86400, &o->timeout_s) < 0)
				goto bad_number;
			break;
		default:
			if (it_cli_option(&o->cli, c, optarg) < 0)
				goto bad_number;
			break;
		}
	}
	if (c == IT_CMDLINE_EXIT)
		return cl.status;
	if (optind >= argc && o->files_from == NULL && o->pair == NULL) {
		fprintf(stderr, PROG ": no files given (try --help)\n");
		return IT_EXIT_USAGE;
	}
	return GO_ON;

bad_number:
	return it_cli_bad_number(PROG, optarg);
}

/* Pairs when --pair asks to, completes the settings from the environment
 * and the config file, and checks them: the server's URL (into url) and the
 * credential's form, which would otherwise be refused for every file alike.
 * have_files says whether files were named. Returns GO_ON, or the exit code
 * (IT_EXIT_OK after a --pair without files) after a message. */
static int check_settings(struct opts *o, it_buf *url, int have_files)
{
	char err[600];
	int rc;

	if (o->pair && (rc = pair(o)) != IT_EXIT_OK)
		return rc;
	if (it_cli_conf_resolve(&o->cli.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return IT_EXIT_USAGE;
	}
	if (o->pair && !have_files)
		return IT_EXIT_OK;
	if (it_cli_conf_complete(&o->cli.conf, PROG) < 0)
		return IT_EXIT_USAGE;
	if (o->cli.conf.source == NULL)
		o->cli.conf.source = strdup("cli");
	if (o->resume && o->state_dir[0] == '\0' &&
	    it_tusclient_default_state_dir(o->state_dir, sizeof(o->state_dir)) < 0) {
		fprintf(stderr, PROG ": --resume needs --state-dir, XDG_STATE_HOME or HOME\n");
		return IT_EXIT_USAGE;
	}
	if (it_cli_url(url, o->cli.conf.server, "/api/v1/images") < 0) {
		fprintf(stderr, PROG ": the server must be an http:// or https:// URL, or host:port\n");
		return IT_EXIT_USAGE;
	}
	o->url = url->data;
	/* A session id and a token each have one form; anything else would be
	 * refused for every file alike, so it is said once, before anything is
	 * sent. */
	switch (it_cli_cred_kind(o->cli.conf.session)) {
	case IT_CLI_CRED_TOKEN: o->token = 1; break;
	case IT_CLI_CRED_SESSION: break;
	default: {
		char safe[80];

		it_cli_sanitize(safe, sizeof(safe), o->cli.conf.session);
		fprintf(stderr,
			PROG ": '%s' is not a session id (22 to 64 letters, digits, '-' and '_') or a token "
			     "(itk. and 32 of them); copy it from the ImageTools page, or pair with --pair\n",
			strlen(o->cli.conf.session) > 12 ? "..." : safe);
		return IT_EXIT_SESSION;
	}
	}
	return GO_ON;
}

/* Adds the files named on the command line to files, a directory's under
 * --recursive; a directory without it, or one that cannot be read, counts
 * as a rejected file in t. Returns GO_ON or the exit code. */
static int collect_args(const struct opts *o, int argc, char **argv, struct pathlist *files, struct totals *t)
{
	for (int i = optind; i < argc; i++) {
		struct stat st;

		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (!o->recursive) {
				fprintf(stderr, PROG ": %s: is a directory (use -r to upload what it holds)\n",
					argv[i]);
				t->rejected++;
				continue;
			}
			if (collect_dir(files, argv[i], 0) < 0)
				t->rejected++;
		} else if (pathlist_add(files, argv[i]) < 0) {
			fprintf(stderr, PROG ": out of memory\n");
			return IT_EXIT_FAILED;
		}
	}
	return GO_ON;
}

/* Makes the libcurl handle that every upload of the run shares, with the
 * Authorization header of a token in *auth (the caller frees it and the
 * handle, and calls curl_global_cleanup). Returns NULL after a message. */
static CURL *open_handle(const struct opts *o, const char *url, struct curl_slist **auth)
{
	CURL *h;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (h = curl_easy_init()) == NULL) {
		fprintf(stderr, PROG ": cannot initialise libcurl\n");
		return NULL;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	it_cli_curl_defaults(h, PROG, 15L);
	/* A transfer that moves nothing for timeout_s is treated as a connection
	 * failure and retried; a slow but moving upload is left alone. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->timeout_s);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	if (o->limit_rate > 0)
		curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)o->limit_rate);
	if (o->token && (*auth = it_cli_bearer(NULL, o->cli.conf.session)) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		curl_easy_cleanup(h);
		curl_global_cleanup();
		return NULL;
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *auth);
	return h;
}

/* Uploads one file the way the options say: through tus with --resume,
 * else in one request. */
static enum outcome upload_file(CURL *h, const struct opts *o, const char *path, int idx, int count)
{
	return o->resume ? resume_one(h, o, path) : upload_one(h, o, path, idx, count);
}

/* Uploads the files named in --files-from, numbered after the total so far
 * (*total), until the batch is over. */
static void upload_listed(CURL *h, const struct opts *o, struct totals *t, int *total)
{
	FILE *f = strcmp(o->files_from, "-") == 0 ? stdin : fopen(o->files_from, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL) {
		fprintf(stderr, PROG ": %s: %s\n", o->files_from, strerror(errno));
		t->rejected++;
	}
	while (f && !batch_over(t) && (n = getline(&line, &cap, f)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		(*total)++;
		tally(t, upload_file(h, o, line, *total, 0));
	}
	free(line);
	if (f && f != stdin)
		fclose(f);
}

/* The run loop: uploads the files, then those of --files-from, while this
 * run is announced in the session's presence. Returns how many were tried. */
static int upload_all(CURL *h, struct opts *o, const struct pathlist *files, struct totals *t)
{
	int total = 0;

	/* The session's other devices see this one while it uploads. */
	it_announce_init(&o->presence, o->cli.conf.server, o->cli.conf.session, PROG, "cli");
	if (files->n > 0 || o->files_from)
		it_announce_start(&o->presence, "uploading");
	for (size_t i = 0; i < files->n && !batch_over(t); i++) {
		tally(t, upload_file(h, o, files->v[i], (int)i + 1, (int)files->n));
		total++;
	}
	if (o->files_from && !batch_over(t))
		upload_listed(h, o, t, &total);
	it_announce_done(&o->presence);
	return total;
}

/* Says how the batch went and returns its exit code: the gravest outcome
 * wins. */
static int summary(const struct opts *o, const struct totals *t, int total)
{
	if (!o->cli.quiet && !o->json && total > 1)
		fprintf(stderr, PROG ": %d of %d files stored\n", t->stored, total);
	if (t->interrupted) {
		fprintf(stderr, PROG ": interrupted\n");
		return IT_EXIT_FAILED;
	}
	if (t->bad_session)
		return IT_EXIT_SESSION;
	if (t->bad_token)
		return IT_EXIT_TOKEN;
	if (t->scope)
		return IT_EXIT_SCOPE;
	if (t->not_server)
		return IT_EXIT_NOT_SERVER;
	if (t->gave_up || t->untrusted)
		return IT_EXIT_UNREACHABLE;
	return t->rejected ? IT_EXIT_FAILED : IT_EXIT_OK;
}

/* Everything main does, as its steps; returns the exit code. main frees
 * o->cli.conf, url and files whichever way this returns. */
static int run(int argc, char **argv, struct opts *o, it_buf *url, struct pathlist *files)
{
	struct curl_slist *auth = NULL;
	struct totals t = {0};
	CURL *h;
	int rc, total;

	rc = parse_options(o, argc, argv);
	if (rc == GO_ON)
		rc = check_settings(o, url, optind < argc || o->files_from != NULL);
	if (rc == GO_ON)
		rc = collect_args(o, argc, argv, files, &t);
	if (rc != GO_ON)
		return rc;
	o->progress = !o->cli.quiet && isatty(STDERR_FILENO);
	it_cli_catch_stop();
	if ((h = open_handle(o, url->data, &auth)) == NULL)
		return IT_EXIT_FAILED;
	total = upload_all(h, o, files, &t);
	curl_easy_cleanup(h);
	curl_slist_free_all(auth);
	curl_global_cleanup();
	return summary(o, &t, total);
}

int main(int argc, char **argv)
{
	struct opts o;
	it_buf url;
	struct pathlist files = {0};
	int rc;

	memset(&o, 0, sizeof(o));
	it_buf_init(&url, 8192);
	rc = run(argc, argv, &o, &url, &files);
	pathlist_free(&files);
	it_buf_free(&url);
	it_cli_conf_free(&o.cli.conf);
	return rc;
}

/* watch.c: imagetools-watch, which follows a session's events over SSE or long-poll and prints them as JSON lines. */
#include "config.h"

#include "cli/cliutil.h"
#include "cli/sseparse.h"
#include "common/clock.h"
#include "common/buf.h"
#include "common/cmdline.h"
#include "common/log.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PROG "imagetools-watch"

/* One SSE event's data is one JSON event; 1 MiB is far above any the server
 * sends, and the ceiling keeps a misbehaving server from growing us. */
#define MAX_EVENT (1u << 20)
/* A long-poll answer holds at most 500 events. */
#define MAX_POLL_ANSWER (64u << 20)
/* Error answers are short problem+json documents. */
#define MAX_ERROR_ANSWER (64u << 10)
#define MAX_TYPES 32

enum transport { T_SSE, T_LONGPOLL };

/* Why a connection ended, deciding what happens next. */
enum ending { E_RETRY, E_DONE, E_STOPPED, E_BAD_SESSION, E_FATAL, E_TOKEN, E_SCOPE, E_UNTRUSTED };

/* A cursor beyond any session's log: a long-poll from it is answered at once
 * with session.resync naming the session's last event id. */
#define CURSOR_AHEAD "4611686018427387903"

struct watch {
	it_cli_opts cli; /* the server, the credential, --quiet, the reconnect delays */
	enum transport transport;
	const char *state_path;
	const char *types[MAX_TYPES];
	int ntypes;
	int once;
	long poll_timeout_s, idle_timeout_s;
	long long cursor;

	CURL *h;
	it_buf url, body;
	long status;
	int checked;   /* the status of the current answer has been looked at */
	int streaming; /* the current answer is a 200 event stream */
	it_cli_headers hdr;
	int done;	  /* --once: the first matching event was printed */
	int fatal;	  /* a local error (state file) ends the program */
	int delivered;	  /* this connection delivered events: reset the backoff */
	int state_fd;	  /* the state file, open for in-place updates (-1 before the first save) */
	double last_sync; /* when the state file was last flushed to disk */
	int unsynced;	  /* the state file was renamed since then without a flush */
	it_sseparse_parser sse;
	char *sse_data;
	int token;		      /* the credential is a token (else a session id) */
	char cred_shown[16];	      /* its log-safe prefix, for messages and the state file */
	char client_id[17];	      /* this run's presence name, stable across reconnects */
	int anonymous;		      /* --no-presence: no client identity on the streams */
	struct curl_slist *auth;      /* Authorization: Bearer, on every request */
	char revoked[16];	      /* session.revoked arrived: its reason ("revoked", "expired") */
	char errbuf[CURL_ERROR_SIZE]; /* libcurl's detail of the last failed request */
};

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS]\n"
		"Follows an ImageTools session's events and prints each as one JSON object\n"
		"per line, forever: it reconnects with backoff and resumes after the last\n"
		"event it printed.\n"
		"\n"
		"  -s, --server URL        the site, e.g. http://host:8080 (IMAGETOOLS_SERVER)\n"
		"  -S, --session ID        the session to follow (IMAGETOOLS_SESSION)\n"
		"      --token TOKEN       a device token (itk....) with view or full access\n"
		"                          instead of the session id (IMAGETOOLS_TOKEN)\n"
		"  -t, --transport T       sse (default) or longpoll\n"
		"      --since N|now       start after event N (default 0: the whole log) or\n"
		"                          after the session's current last event\n"
		"      --state FILE        remember the last event id in FILE across restarts;\n"
		"                          when FILE exists it wins over --since\n"
		"  -T, --type TYPE         print only events of TYPE (repeatable)\n"
		"  -1, --once              exit after the first printed event\n"
		"  -q, --quiet             no messages about reconnects\n"
		"      --no-presence       do not announce this follower in the session's\n"
		"                          presence list (a token's device is announced anyway)\n"
		"      --poll-timeout SEC  long-poll wait per request (default 25)\n"
		"      --idle-timeout SEC  reconnect an SSE stream silent this long (default 45)\n"
		"      --retry-delay MS    first reconnect delay, doubled each time (default 1000)\n"
		"      --max-wait SEC      longest reconnect delay (default 60)\n"
		"      --cacert FILE       trust the CA certificates in FILE (PEM), e.g. a\n"
		"                          self-signed server's own certificate\n"
		"  -h, --help              this text\n"
		"  -V, --version           the version\n"
		"\n"
		"Server and credential may also come from the user's config file\n"
		"($XDG_CONFIG_HOME/imagetools/cli.conf or ~/.config/imagetools/cli.conf).\n"
		"Exit status: 0 stopped by --once or a signal, 1 local error (state file),\n"
		"2 usage or configuration error, 3 unknown or expired session, 6 the token\n"
		"is unknown, expired or revoked, 7 the token may not read events.\n");
}

/* ------------------------------------------------------------ state file */

/* Reads the cursor from the state file. Returns 1 when read, 0 when the file
 * does not exist, -1 on error (message printed). */
static int state_load(struct watch *w)
{
	char buf[4096];
	json_object *o, *v;
	ssize_t n;
	int fd = open(w->state_path, O_RDONLY | O_CLOEXEC), rc = -1;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		fprintf(stderr, PROG ": %s: %s\n", w->state_path, strerror(errno));
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		fprintf(stderr, PROG ": %s: %s\n", w->state_path, strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	o = json_tokener_parse(buf);
	if (o == NULL || !json_object_object_get_ex(o, "last_event_id", &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) < 0) {
		fprintf(stderr, PROG ": %s: not a state file written by " PROG "\n", w->state_path);
		goto out;
	}
	w->cursor = json_object_get_int64(v);
	if (!json_object_object_get_ex(o, w->token ? "token" : "session_id", &v) ||
	    strcmp(json_object_get_string(v), w->token ? w->cred_shown : w->cli.conf.session) != 0) {
		fprintf(stderr, PROG ": %s belongs to another session; use another --state file\n", w->state_path);
		goto out;
	}
	rc = 1;
out:
	json_object_put(o);
	return rc;
}

/* The state file's text for the current cursor. The id is padded to a fixed
 * width so that every update has the same length and can overwrite the
 * previous one in place. */
static int state_text(const struct watch *w, char *text, size_t len)
{
	/* A token is kept in the config file only: the state file names it by
	 * its prefix, which is enough to tell one credential's file from
	 * another's. */
	if (w->token)
		return snprintf(text, len, "{\"token\":\"%s\",\"last_event_id\":%-20lld}\n", w->cred_shown, w->cursor);
	return snprintf(text, len, "{\"session_id\":\"%s\",\"last_event_id\":%-20lld}\n", w->cli.conf.session,
			w->cursor);
}

/* Keeps the cursor in the state file. The first call writes a temporary file,
 * flushes it and renames it over the state file, so the file is never torn,
 * and keeps it open. Later calls overwrite it in place with one pwrite of the
 * same length: a process killed at any moment leaves the old or the new
 * cursor, and an event costs one system call instead of a file creation,
 * flush and rename (which held a backlog to under a hundred events a second).
 * The data is flushed to disk at most once a second and when the program
 * ends (durable), so a power cut costs at most a second of progress: events
 * printed again, never lost. Mode 0600: the file names the session, which is
 * a capability. Returns 0 or -1 with a message printed. */
static int state_save(struct watch *w, int durable)
{
	char tmp[4200], text[256];
	int fd, n, ok;
	double now = it_clock_s();

	if (w->state_path == NULL)
		return 0;
	if (now - w->last_sync >= 1.0)
		durable = 1;
	n = state_text(w, text, sizeof(text));
	if (w->state_fd >= 0) {
		ok = pwrite(w->state_fd, text, (size_t)n, 0) == n && (!durable || fdatasync(w->state_fd) == 0);
		if (!ok)
			goto fail;
		goto done;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", w->state_path, (long)getpid()) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
	if (!ok || rename(tmp, w->state_path) < 0) {
		close(fd);
		unlink(tmp);
		goto fail;
	}
	w->state_fd = fd;
	durable = 1;
done:
	if (durable)
		w->last_sync = now;
	w->unsynced = !durable;
	return 0;
fail:
	fprintf(stderr, PROG ": cannot write the state file %s: %s\n", w->state_path, strerror(errno));
	return -1;
}

/* ------------------------------------------------------------ events */

static int wanted(const struct watch *w, const char *type)
{
	if (w->ntypes == 0)
		return 1;
	for (int i = 0; i < w->ntypes; i++)
		if (strcmp(w->types[i], type) == 0)
			return 1;
	return 0;
}

/* Handles one event object: skips what was already printed, prints it when
 * it matches the filter, and moves the cursor. Returns 0, or -1 when the
 * program must stop (state file unwritable). */
static int handle_event(struct watch *w, json_object *ev, const char *fallback_type)
{
	json_object *v, *data;
	const char *type = fallback_type;
	long long id = -1;

	if (!json_object_is_type(ev, json_type_object))
		return 0;
	if (json_object_object_get_ex(ev, "type", &v) && json_object_is_type(v, json_type_string))
		type = json_object_get_string(v);
	if (json_object_object_get_ex(ev, "id", &v) && json_object_is_type(v, json_type_int))
		id = json_object_get_int64(v);
	/* After a reconnect the server starts after our cursor; an older id can
	 * only be a repeat, and printing it twice would mislead a consumer. */
	if (id >= 0 && id <= w->cursor)
		return 0;
	/* The token was revoked or ran out while the stream was open: the
	 * server closes it next, and every reconnect would be refused. */
	if (id < 0 && type && strcmp(type, "session.revoked") == 0) {
		const char *reason = "revoked";

		if (json_object_object_get_ex(ev, "data", &data) && json_object_object_get_ex(data, "reason", &v) &&
		    json_object_is_type(v, json_type_string))
			reason = json_object_get_string(v);
		else if (json_object_object_get_ex(ev, "reason", &v) && json_object_is_type(v, json_type_string))
			reason = json_object_get_string(v);
		it_cli_sanitize(w->revoked, sizeof(w->revoked), reason);
	}
	if (type && wanted(w, type)) {
		if (printf("%s\n",
			   json_object_to_json_string_ext(
				   ev, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0 ||
		    fflush(stdout) != 0) {
			w->fatal = 1;
			return -1;
		}
		if (w->once)
			w->done = 1;
	}
	if (w->revoked[0])
		return -1;
	if (id >= 0) {
		w->cursor = id;
		w->delivered = 1;
	} else if (type && strcmp(type, "session.resync") == 0 && json_object_object_get_ex(ev, "data", &data) &&
		   json_object_object_get_ex(data, "last_event_id", &v) && json_object_is_type(v, json_type_int)) {
		/* The server could not give us what we missed: the consumer has
		 * seen the resync line and reloads; we go on from where it says. */
		w->cursor = json_object_get_int64(v);
		w->delivered = 1;
	} else {
		return 0;
	}
	if (state_save(w, 0) < 0) {
		w->fatal = 1;
		return -1;
	}
	return 0;
}

static int handle_event_text(struct watch *w, const char *text, size_t len, const char *type)
{
	json_tokener *tok = json_tokener_new();
	json_object *ev;
	int rc = 0;

	if (tok == NULL)
		return -1;
	ev = json_tokener_parse_ex(tok, text, (int)len);
	if (ev == NULL || json_tokener_get_parse_end(tok) != len) {
		if (!w->cli.quiet)
			fprintf(stderr, PROG ": skipping an event whose data is not JSON (type %.40s)\n", type);
	} else {
		rc = handle_event(w, ev, type);
	}
	json_object_put(ev);
	json_tokener_free(tok);
	return rc;
}

/* ------------------------------------------------------------ HTTP */

static int on_progress(void *p, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct watch *w = p;

	(void)a;
	(void)b;
	(void)c;
	(void)d;
	return it_cli_stop || w->done || w->fatal || w->revoked[0];
}

/* Collects an answer body (long-poll answers and errors). */
static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	struct watch *w = p;

	return it_buf_append(&w->body, data, size * n) < 0 ? 0 : size * n;
}

/* Feeds an event stream to the SSE parser as it arrives; anything but a 200
 * text/event-stream answer is collected as an error body instead. */
static size_t on_stream(char *data, size_t size, size_t n, void *p)
{
	struct watch *w = p;
	size_t len = size * n, off = 0, used;
	it_sseparse_event ev;
	int rc;

	if (!w->checked) {
		w->checked = 1;
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
		w->streaming = w->status == 200 && strncasecmp(w->hdr.content_type, "text/event-stream", 17) == 0;
	}
	if (!w->streaming)
		return on_body(data, size, n, p);
	while (off < len) {
		rc = it_sseparse_feed(&w->sse, data + off, len - off, &used, &ev);
		off += used;
		if (rc < 0) {
			if (!w->cli.quiet)
				fprintf(stderr, PROG ": the event stream broke the protocol (%s); reconnecting\n",
					strerror(-rc));
			return 0;
		}
		if (rc == IT_SSEPARSE_EVENT && handle_event_text(w, ev.data, ev.data_len, ev.type) < 0)
			return 0;
		if (w->done || w->revoked[0])
			return 0;
	}
	return len;
}

/* Readies the handle for a request to w->url and empties the body buffer,
 * which holds at most max bytes of this answer. */
static void prepare(struct watch *w, size_t max)
{
	curl_easy_reset(w->h);
	curl_easy_setopt(w->h, CURLOPT_URL, w->url.data);
	it_cli_curl_defaults(w->h, PROG, 15L);
	curl_easy_setopt(w->h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(w->h, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(w->h, CURLOPT_XFERINFODATA, w);
	curl_easy_setopt(w->h, CURLOPT_HEADERFUNCTION, it_cli_on_header);
	curl_easy_setopt(w->h, CURLOPT_HEADERDATA, &w->hdr);
	curl_easy_setopt(w->h, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(w->h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(w->h, CURLOPT_HTTPHEADER, w->auth);
	curl_easy_setopt(w->h, CURLOPT_ERRORBUFFER, w->errbuf);
	w->errbuf[0] = '\0';
	w->status = 0;
	w->checked = 0;
	w->streaming = 0;
	w->hdr.retry_after[0] = w->hdr.content_type[0] = '\0';
	it_buf_reset(&w->body);
	w->body.max = max;
}

/* The URL of an event request: the credential is not in it (it goes in the
 * Authorization header), the presence identity is: a random client_id kept
 * for the whole run, so that reconnects keep one presence entry, and the
 * program's name (a token's own device label wins on the server), unless
 * --no-presence asked for none. */
static int build_url(struct watch *w, const char *path, int with_cursor)
{
	char num[32];

	if (it_cli_url(&w->url, w->cli.conf.server, path) < 0)
		return -1;
	if (!w->anonymous &&
	    it_buf_printf(&w->url, "?client_id=%s&client_label=" PROG "&client_source=cli", w->client_id) < 0)
		return -1;
	if (with_cursor) {
		snprintf(num, sizeof(num), "%lld", w->cursor);
		if (it_buf_printf(&w->url, "%ccursor=%s&timeout=%ld", w->anonymous ? '?' : '&', num,
				  w->poll_timeout_s) < 0)
			return -1;
	}
	return 0;
}

/* What check_session learned. */
enum {
	CHECK_RETRY = -1,
	CHECK_GONE = 0,
	CHECK_OK = 1,
	CHECK_TOKEN = 2,
	CHECK_SCOPE = 3,
	CHECK_REFUSED = 4,
	CHECK_UNTRUSTED = 5
};

/* Asks whether the credential still opens the session, with a long-poll that
 * does not wait (GET /events?cursor=...&timeout=0): it takes a session id and
 * a token alike, in the header, and needs only what following needs (view
 * access), so the answer is the one the stream would get. Without last it
 * starts at the cursor: a follower that is up to date gets an empty answer,
 * one that is behind gets what the stream sends it next anyway (and drops it
 * here). With last (for --since now) the cursor is beyond any log, and the
 * session.resync answer names the session's last event id, stored into
 * *last. Returns CHECK_OK, CHECK_GONE (unknown, expired or
 * malformed: 404 or 400), CHECK_TOKEN (401 invalid-token), CHECK_SCOPE (403
 * insufficient-scope), CHECK_REFUSED (another 4xx), or CHECK_RETRY when the
 * server could not say (try again later). */
static int check_session(struct watch *w, long long *last)
{
	json_object *o, *v;
	CURLcode rc;
	char num[32];
	int ok;

	snprintf(num, sizeof(num), "%lld", w->cursor);
	it_buf_reset(&w->url);
	if (it_cli_url(&w->url, w->cli.conf.server, "/api/v1/events") < 0 ||
	    it_buf_printf(&w->url, "?cursor=%s&timeout=0", last ? CURSOR_AHEAD : num) < 0)
		return CHECK_RETRY;
	prepare(w, MAX_POLL_ANSWER);
	curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(w->h, CURLOPT_TIMEOUT, 30L);
	rc = curl_easy_perform(w->h);
	curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (it_cli_tls_failure(rc))
		return CHECK_UNTRUSTED;
	if (rc != CURLE_OK)
		return CHECK_RETRY;
	switch (it_cli_auth_problem(w->status, w->body.data, w->body.len)) {
	case IT_CLI_AUTH_TOKEN: return CHECK_TOKEN;
	case IT_CLI_AUTH_SCOPE: return CHECK_SCOPE;
	}
	if (w->status == 404 || w->status == 400)
		return CHECK_GONE;
	if (w->status >= 400 && w->status < 500 && w->status != 408 && w->status != 429)
		return CHECK_REFUSED;
	if (w->status != 200)
		return CHECK_RETRY;
	ok = CHECK_OK;
	if (last) {
		o = json_tokener_parse(w->body.data);
		if (o && json_object_object_get_ex(o, "cursor", &v) && json_object_is_type(v, json_type_int))
			*last = json_object_get_int64(v);
		else
			ok = CHECK_RETRY;
		json_object_put(o);
	}
	return ok;
}

static void explain_bad_session(struct watch *w)
{
	char red[16], msg[600];

	it_cli_problem_message(w->body.data, w->body.len, w->status, msg, sizeof(msg));
	fprintf(stderr, PROG ": %s %s is unknown or has expired (%s)\n", w->token ? "the session of token" : "session",
		it_log_redact(w->cli.conf.session, red, sizeof(red)), msg);
}

/* Says why the token no longer opens the session: revoked or expired (from
 * the stream's session.revoked), or refused by a request (401). */
static void explain_token(struct watch *w)
{
	char msg[600];

	if (w->revoked[0]) {
		fprintf(stderr, PROG ": the token %s was %s; ask the session's owner for a new pairing code\n",
			w->cred_shown, strcmp(w->revoked, "expired") == 0 ? "expired" : "revoked");
		return;
	}
	it_cli_problem_message(w->body.data, w->body.len, w->status, msg, sizeof(msg));
	fprintf(stderr,
		PROG ": the token %s is unknown, expired or revoked; ask the session's owner for a new "
		     "pairing code (%s)\n",
		w->cred_shown, msg);
}

static void explain_scope(struct watch *w)
{
	char msg[600];

	it_cli_problem_message(w->body.data, w->body.len, w->status, msg, sizeof(msg));
	fprintf(stderr,
		PROG ": the token %s may not read this session's events (an upload-only token?); "
		     "follow with a token of view or full access (%s)\n",
		w->cred_shown, msg);
}

/* A certificate the CA file (or the system's store) does not vouch for
 * fails the same way on every reconnect: it is said once and ends the
 * program, like a server that stays unreachable ends imagetools-upload. */
static void explain_untrusted(struct watch *w)
{
	char msg[CURL_ERROR_SIZE + 300];

	it_cli_tls_message(msg, sizeof(msg), CURLE_PEER_FAILED_VERIFICATION, w->errbuf);
	fprintf(stderr, PROG ": %s\n", msg);
}

/* Explains a final answer of check_session and returns the exit code. */
static int checked_exit(struct watch *w, int check)
{
	char why[700];

	switch (check) {
	case CHECK_GONE: explain_bad_session(w); return IT_EXIT_SESSION;
	case CHECK_TOKEN: explain_token(w); return IT_EXIT_TOKEN;
	case CHECK_SCOPE: explain_scope(w); return IT_EXIT_SCOPE;
	case CHECK_UNTRUSTED: explain_untrusted(w); return IT_EXIT_UNREACHABLE;
	default:
		it_cli_problem_message(w->body.data, w->body.len, w->status, why, sizeof(why));
		fprintf(stderr, PROG ": the server refused: %s\n", why);
		return IT_EXIT_FAILED;
	}
}

/* Classifies a finished request that was not a success. */
static enum ending failure(struct watch *w, CURLcode rc, char *why, size_t whylen)
{
	if (it_cli_stop)
		return E_STOPPED;
	if (w->fatal)
		return E_FATAL;
	if (w->revoked[0])
		return E_TOKEN;
	if (w->done)
		return E_DONE;
	if (it_cli_tls_failure(rc))
		return E_UNTRUSTED;
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && w->streaming)) {
		snprintf(why, whylen, "%s", curl_easy_strerror(rc));
		return E_RETRY;
	}
	if (w->status == 404) {
		explain_bad_session(w);
		return E_BAD_SESSION;
	}
	switch (it_cli_auth_problem(w->status, w->body.data, w->body.len)) {
	case IT_CLI_AUTH_TOKEN: return E_TOKEN;
	case IT_CLI_AUTH_SCOPE: return E_SCOPE;
	}
	if (w->status >= 400 && w->status < 500 && w->status != 429 && w->status != 408) {
		it_cli_problem_message(w->body.data, w->body.len, w->status, why, whylen);
		fprintf(stderr, PROG ": the server refused: %s\n", why);
		return E_FATAL;
	}
	if (w->status == 200)
		snprintf(why, whylen, "the server ended the stream");
	else
		it_cli_problem_message(w->body.data, w->body.len, w->status, why, whylen);
	return E_RETRY;
}

static enum ending run_sse(struct watch *w, char *why, size_t whylen)
{
	struct curl_slist *hdr = NULL;
	char line[64];
	CURLcode rc;

	if (build_url(w, "/api/v1/events/stream", 0) < 0)
		return E_FATAL;
	prepare(w, MAX_ERROR_ANSWER);
	it_sseparse_init(&w->sse, w->sse_data, MAX_EVENT);
	/* Resuming is the whole point: the server sends what came after this id. */
	snprintf(line, sizeof(line), "Last-Event-ID: %lld", w->cursor);
	hdr = curl_slist_append(hdr, line);
	hdr = curl_slist_append(hdr, "Accept: text/event-stream");
	hdr = curl_slist_append(hdr, "Cache-Control: no-cache");
	hdr = it_cli_bearer(hdr, w->cli.conf.session);
	if (hdr == NULL)
		return E_FATAL;
	curl_easy_setopt(w->h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_stream);
	/* The server sends a comment every keepalive_interval; a stream silent for
	 * much longer is dead even if TCP has not noticed. */
	curl_easy_setopt(w->h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(w->h, CURLOPT_LOW_SPEED_TIME, w->idle_timeout_s);
	rc = curl_easy_perform(w->h);
	curl_slist_free_all(hdr);
	if (!w->checked)
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
	if (w->status == 200 && !w->streaming && w->checked && rc == CURLE_OK) {
		snprintf(why, whylen, "the answer was not an event stream (%s)", w->hdr.content_type);
		return E_RETRY;
	}
	return failure(w, rc, why, whylen);
}

static enum ending run_longpoll(struct watch *w, char *why, size_t whylen)
{
	json_object *o = NULL, *events, *cur;
	enum ending end = E_RETRY;
	CURLcode rc;
	size_t i, n;

	for (;;) {
		if (build_url(w, "/api/v1/events", 1) < 0)
			return E_FATAL;
		prepare(w, MAX_POLL_ANSWER);
		curl_easy_setopt(w->h, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(w->h, CURLOPT_TIMEOUT, w->poll_timeout_s + 30);
		rc = curl_easy_perform(w->h);
		curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &w->status);
		if (rc != CURLE_OK || w->status != 200)
			return failure(w, rc, why, whylen);
		/* The body may start with the spaces a waiting long-poll sends to
		 * keep proxies from timing out; the JSON parser skips them. */
		o = json_tokener_parse(w->body.data);
		if (o == NULL || !json_object_object_get_ex(o, "events", &events) ||
		    !json_object_is_type(events, json_type_array)) {
			snprintf(why, whylen, "the long-poll answer is not {\"events\": [...]}");
			json_object_put(o);
			return E_RETRY;
		}
		n = json_object_array_length(events);
		for (i = 0; i < n && !w->done && !w->fatal && !w->revoked[0]; i++)
			handle_event(w, json_object_array_get_idx(events, i), NULL);
		if (w->revoked[0]) {
			json_object_put(o);
			return E_TOKEN;
		}
		if (!w->done && !w->fatal && json_object_object_get_ex(o, "cursor", &cur) &&
		    json_object_is_type(cur, json_type_int) && json_object_get_int64(cur) > w->cursor) {
			/* Every event up to the answer's cursor was handled (printed or
			 * filtered out): the next request starts after it. */
			w->cursor = json_object_get_int64(cur);
			if (state_save(w, 0) < 0)
				w->fatal = 1;
		}
		json_object_put(o);
		if (w->fatal)
			return E_FATAL;
		if (w->done)
			return E_DONE;
		if (it_cli_stop)
			return E_STOPPED;
	}
	return end;
}

/* What a step of main returns when the program goes on; any other value is
 * the exit code. */
#define GO_ON (-1)

/* Sets the defaults that the options may change. */
static void watch_init(struct watch *w)
{
	memset(w, 0, sizeof(*w));
	w->state_fd = -1;
	it_buf_init(&w->url, 8192);
	it_buf_init(&w->body, MAX_ERROR_ANSWER);
	w->transport = T_SSE;
	w->poll_timeout_s = 25;
	w->idle_timeout_s = 45;
	w->cli.retry_delay_ms = 1000;
	w->cli.max_wait_ms = 60000;
}

/* Reads the command line into w, and --since into *since. Returns GO_ON, or
 * the exit code after --help, --version or a message. */
static int parse_options(struct watch *w, int argc, char **argv, const char **since)
{
	static const struct option longopts[] = {
		IT_CLI_OPTIONS,
		{"transport", required_argument, NULL, 't'},
		{"since", required_argument, NULL, 'n'},
		{"state", required_argument, NULL, 'f'},
		{"type", required_argument, NULL, 'T'},
		{"once", no_argument, NULL, '1'},
		{"poll-timeout", required_argument, NULL, 'P'},
		{"idle-timeout", required_argument, NULL, 'I'},
		{"no-presence", no_argument, NULL, 'A'},
		{NULL, 0, NULL, 0},
	};
	/* An argument after the options gets a message of its own, below. */
	it_cmdline cl = IT_CLI_CMDLINE(PROG, usage, "t:T:1", longopts);
	int c;

	while ((c = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (c) {
		case 't':
			if (strcmp(optarg, "sse") == 0)
				w->transport = T_SSE;
			else if (strcmp(optarg, "longpoll") == 0)
				w->transport = T_LONGPOLL;
			else {
				fprintf(stderr, PROG ": --transport is sse or longpoll, not '%s'\n", optarg);
				return IT_EXIT_USAGE;
			}
			break;
		case 'n': *since = optarg; break;
		case 'f': w->state_path = optarg; break;
		case 'T':
			if (w->ntypes == MAX_TYPES) {
				fprintf(stderr, PROG ": at most %d --type options\n", MAX_TYPES);
				return IT_EXIT_USAGE;
			}
			w->types[w->ntypes++] = optarg;
			break;
		case '1': w->once = 1; break;
		case 'A': w->anonymous = 1; break;
		case 'P':
			if (it_cmdline_long(optarg, 1, 3600, &w->poll_timeout_s) < 0)
				goto bad_number;
			break;
		case 'I':
			if (it_cmdline_long(optarg, 1, 86400, &w->idle_timeout_s) < 0)
				goto bad_number;
			break;
		default:
			if (it_cli_option(&w->cli, c, optarg) < 0)
				goto bad_number;
			break;
		}
	}
	if (c == IT_CMDLINE_EXIT)
		return cl.status;
	if (optind != argc) {
		fprintf(stderr, PROG ": unexpected argument '%s' (try --help)\n", argv[optind]);
		return IT_EXIT_USAGE;
	}
	return GO_ON;

bad_number:
	return it_cli_bad_number(PROG, optarg);
}

/* Completes the server and the credential from the environment and the
 * config file, checks their form and prepares the Authorization header.
 * Returns GO_ON or the exit code after a message. */
static int check_settings(struct watch *w)
{
	char err[600];

	if (it_cli_conf_resolve(&w->cli.conf, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return IT_EXIT_USAGE;
	}
	if (it_cli_conf_complete(&w->cli.conf, PROG) < 0)
		return IT_EXIT_USAGE;
	if (it_cli_url(&w->url, w->cli.conf.server, "/") < 0) {
		fprintf(stderr, PROG ": the server must be an http:// or https:// URL\n");
		return IT_EXIT_USAGE;
	}
	switch (it_cli_cred_kind(w->cli.conf.session)) {
	case IT_CLI_CRED_TOKEN: w->token = 1; break;
	case IT_CLI_CRED_SESSION: break;
	default:
		fprintf(stderr,
			PROG ": this is not a session id (22 to 64 letters, digits, '-' and '_') or a "
			     "token (itk. and 32 of them); copy it from the ImageTools page\n");
		return IT_EXIT_SESSION;
	}
	it_log_redact(w->cli.conf.session, w->cred_shown, sizeof(w->cred_shown));
	it_cli_random_name(w->client_id);
	if ((w->auth = it_cli_bearer(NULL, w->cli.conf.session)) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return IT_EXIT_FAILED;
	}
	return GO_ON;
}

/* Sets the cursor from --since (an event id; "now" is resolved later, by the
 * server) and then from the state file, which wins; *loaded says whether the
 * state file gave it. Returns GO_ON or the exit code after a message. */
static int starting_cursor(struct watch *w, const char *since, int *loaded)
{
	int rc;

	if (since && strcmp(since, "now") != 0) {
		char *end;
		errno = 0;
		w->cursor = strtoll(since, &end, 10);
		if (errno || end == since || *end || w->cursor < 0) {
			fprintf(stderr, PROG ": --since is an event id or 'now', not '%s'\n", since);
			return IT_EXIT_USAGE;
		}
	}
	rc = w->state_path ? state_load(w) : 0;
	if (rc < 0)
		return IT_EXIT_USAGE;
	*loaded = rc;
	return GO_ON;
}

/* Allocates the event buffer and the libcurl handle. Returns GO_ON or the
 * exit code after a message. */
static int open_client(struct watch *w)
{
	w->sse_data = malloc(MAX_EVENT);
	if (w->sse_data == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (w->h = curl_easy_init()) == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return IT_EXIT_FAILED;
	}
	return GO_ON;
}

/* Checks the session before following it, so that a typo is reported at
 * once instead of as a stream of reconnects, and retries with backoff while
 * the server does not answer; want_now (--since now) moves the cursor to the
 * session's last event. Returns GO_ON, or the exit code (IT_EXIT_OK when a
 * signal stopped the wait). */
static int wait_for_session(struct watch *w, int want_now)
{
	unsigned attempt = 0;
	long delay;
	int rc;

	for (;;) {
		long long last = 0;

		rc = check_session(w, want_now ? &last : NULL);
		if (rc == CHECK_OK) {
			if (last > w->cursor)
				w->cursor = last;
			return GO_ON;
		}
		if (rc != CHECK_RETRY)
			return checked_exit(w, rc);
		delay = it_cli_backoff_ms(attempt++, w->cli.retry_delay_ms, w->cli.max_wait_ms, it_cli_random());
		if (!w->cli.quiet)
			fprintf(stderr, PROG ": the server is not answering; trying again in %.1f s\n", delay / 1000.0);
		if (it_cli_sleep_ms(delay, &it_cli_stop) < 0)
			return IT_EXIT_OK;
	}
}

/* The exit code for a connection that ended in end, after the message it
 * calls for; GO_ON when the program reconnects. */
static int ending_exit(struct watch *w, enum ending end)
{
	switch (end) {
	case E_DONE:
	case E_STOPPED: return IT_EXIT_OK;
	case E_BAD_SESSION: return IT_EXIT_SESSION;
	case E_FATAL: return IT_EXIT_FAILED;
	case E_TOKEN: explain_token(w); return IT_EXIT_TOKEN;
	case E_SCOPE: explain_scope(w); return IT_EXIT_SCOPE;
	case E_UNTRUSTED: explain_untrusted(w); return IT_EXIT_UNREACHABLE;
	default: return GO_ON;
	}
}

/* The delay before the next connection: a Retry-After of the last answer,
 * else backoff from the server's retry: hint when it gave one and the user
 * did not choose a delay. */
static long reconnect_delay(struct watch *w, unsigned attempt)
{
	long base = it_sseparse_retry(&w->sse) > 0 && !w->cli.retry_delay_given ? it_sseparse_retry(&w->sse)
										: w->cli.retry_delay_ms;

	return it_cli_retry_wait_ms(w->hdr.retry_after, attempt, base, w->cli.max_wait_ms);
}

/* The run loop: follows the session over the chosen transport, reconnecting
 * with backoff, until --once is satisfied, a signal arrives or the session
 * or credential is refused. Returns the exit code. */
static int follow(struct watch *w)
{
	char why[700];
	unsigned attempt = 0;
	int rc;

	/* Writing the starting point now reports an unwritable state file at
	 * once, not after the first event has been printed. */
	if (state_save(w, 1) < 0)
		return IT_EXIT_FAILED;
	for (;;) {
		enum ending end;
		long delay;

		w->delivered = 0;
		why[0] = '\0';
		end = w->transport == T_SSE ? run_sse(w, why, sizeof(why)) : run_longpoll(w, why, sizeof(why));
		if ((rc = ending_exit(w, end)) != GO_ON)
			return rc;
		if (w->delivered)
			attempt = 0;
		delay = reconnect_delay(w, attempt++);
		if (!w->cli.quiet)
			fprintf(stderr, PROG ": %s; reconnecting in %.1f s after event %lld\n", why, delay / 1000.0,
				w->cursor);
		if (it_cli_sleep_ms(delay, &it_cli_stop) < 0)
			return IT_EXIT_OK;
		/* A stream that ended may mean the session ended: ask, so that the
		 * program stops with a clear message instead of retrying forever. */
		rc = check_session(w, NULL);
		if (rc != CHECK_OK && rc != CHECK_RETRY)
			return checked_exit(w, rc);
	}
}

/* Flushes the last cursor to disk and frees what w holds; returns the exit
 * code, made IT_EXIT_FAILED when a clean exit could not flush. */
static int finish(struct watch *w, int exit_code)
{
	if (w->unsynced && state_save(w, 1) < 0 && exit_code == IT_EXIT_OK)
		exit_code = IT_EXIT_FAILED;
	if (w->state_fd >= 0)
		close(w->state_fd);
	if (w->h) {
		curl_easy_cleanup(w->h);
		curl_global_cleanup();
	}
	curl_slist_free_all(w->auth);
	free(w->sse_data);
	it_buf_free(&w->url);
	it_buf_free(&w->body);
	it_cli_conf_free(&w->cli.conf);
	return exit_code;
}

/* Reads as the program's steps, the way curl's tool splits option parsing,
 * settings and the run loop. */
int main(int argc, char **argv)
{
	struct watch w;
	const char *since = NULL;
	int loaded = 0, rc;

	watch_init(&w);
	rc = parse_options(&w, argc, argv, &since);
	if (rc == GO_ON)
		rc = check_settings(&w);
	if (rc == GO_ON)
		rc = starting_cursor(&w, since, &loaded);
	if (rc == GO_ON)
		rc = open_client(&w);
	if (rc == GO_ON) {
		it_cli_catch_stop();
		/* --since now needs the session's last event id, unless the state
		 * file already said where to go on. */
		rc = wait_for_session(&w, since && !loaded && strcmp(since, "now") == 0);
	}
	if (rc == GO_ON)
		rc = follow(&w);
	/* The last cursor reaches the disk before the program ends. */
	return finish(&w, rc);
}

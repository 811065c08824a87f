/* cliutil.h: what imagetools-upload and imagetools-watch share: settings, URLs, errors, backoff.
 *
 * Return convention of the command-line layer (src/cli/, docs/layout.md): 0
 * or -1, with a sentence in err when the call takes one. Parsers and whole
 * operations return named outcomes: it_sseparse_feed (IT_SSEPARSE_* or a negative
 * errno), it_tusclient_upload and it_pairing_exchange (IT_TUSCLIENT_*, IT_EXIT_*,
 * which main() maps to exit codes). A value that may be absent is returned
 * as a number >= 0, or -1 when absent (it_cli_retry_after). */
#ifndef IT_CLI_CLIUTIL_H
#define IT_CLI_CLIUTIL_H

#include <signal.h>
#include <stddef.h>
#include <time.h>

#include "common/buf.h"

struct json_object;

#include <curl/curl.h>
#include <getopt.h>

/* Exit codes shared by both programs (documented in docs/cli.md and the man pages). */
enum {
	IT_EXIT_OK = 0,
	IT_EXIT_FAILED = 1,	 /* upload: some files were not stored; watch: a fatal local error */
	IT_EXIT_USAGE = 2,	 /* bad arguments or configuration */
	IT_EXIT_SESSION = 3,	 /* the session is unknown or expired (404) */
	IT_EXIT_UNREACHABLE = 4, /* upload: the server stayed unreachable or kept failing */
	IT_EXIT_NOT_SERVER = 5,	 /* the URL answers, but not as an ImageTools server (a wrong URL) */
	IT_EXIT_TOKEN = 6,	 /* the token or pairing code is unknown, used, expired or revoked (401, 410) */
	IT_EXIT_SCOPE = 7,	 /* the token is valid but not for this (403 insufficient-scope) */
};

/* The kinds of credential a string can be (docs/cli.md): a session id (22 to
 * 64 URL-safe base64 characters, full access) or a scoped token ("itk." and
 * 32 such characters). */
enum { IT_CLI_CRED_MALFORMED = 0, IT_CLI_CRED_SESSION = 1, IT_CLI_CRED_TOKEN = 2 };

/* Which kind of credential s (not NULL) has the form of; says nothing about
 * whether the server knows it. */
int it_cli_cred_kind(const char *s);

/* Whether s (not NULL) has the form of a pairing code: "itp." and 22 URL-safe
 * base64 characters. */
int it_cli_pairing_code_valid(const char *s);

/* What a refusal says about the credential, from its status and problem
 * type: IT_CLI_AUTH_TOKEN for 401 invalid-token (unknown, expired or revoked)
 * and 401/410 of a pairing code, IT_CLI_AUTH_SCOPE for 403
 * insufficient-scope, else IT_CLI_AUTH_OTHER. body may be NULL. */
enum { IT_CLI_AUTH_OTHER = 0, IT_CLI_AUTH_TOKEN = 1, IT_CLI_AUTH_SCOPE = 2 };
int it_cli_auth_problem(long status, const char *body, size_t len);

/* The settings a user gives once: where the server is and which credential. */
typedef struct it_cli_conf {
	char *server;  /* base URL of the site, e.g. http://host:8080 or https://host/imagetools */
	char *session; /* the credential: a session id or a token (it_cli_cred_kind) */
	char *source;  /* upload source (imagetools-upload only) */
	char *token;   /* the config file's token key while it is read; moved into session */
	char *cacert;  /* a PEM file of the CA certificates to trust instead of the system's (--cacert) */
} it_cli_conf;

/* Writes the user's config file path into out: $XDG_CONFIG_HOME/imagetools/cli.conf,
 * else $HOME/.config/imagetools/cli.conf. Returns 0, or -1 when neither
 * variable is set or the path does not fit. */
int it_cli_conf_path(char *out, size_t outlen);

/* Fills the unset (NULL) members of c from a key = value file (keys server,
 * session, token, source, cacert; # comments; values optionally in double quotes); a
 * token key goes to c->token, which it_cli_conf_resolve prefers to the
 * file's session. A missing file is not an error. Returns 0, or -1 with a message naming the
 * file and line in err (unknown key, malformed line, unreadable file).
 * Strings set here are heap copies owned by c. */
int it_cli_conf_load_file(it_cli_conf *c, const char *path, char *err, size_t errlen);

/* Resolves c: members already set (from the command line, heap copies) win,
 * then IMAGETOOLS_SERVER / IMAGETOOLS_TOKEN or else IMAGETOOLS_SESSION /
 * IMAGETOOLS_SOURCE, then the user's config file (its token key before its
 * session key). Returns 0 or -1 with err set. */
int it_cli_conf_resolve(it_cli_conf *c, char *err, size_t errlen);

/* Whether c names both a server and a credential, and its CA file (if any)
 * can be used (it_cli_cacert_use, which then takes it for every transfer);
 * when not, says on stderr, after program's name, what is missing or wrong
 * and where it can be given. Returns 0 or -1. */
int it_cli_conf_complete(const it_cli_conf *c, const char *program);

/* Replaces the string *slot (heap or NULL, freed here) by a heap copy of
 * value; *slot is NULL when out of memory, as a setting not given. */
void it_cli_conf_set(char **slot, const char *value);

void it_cli_conf_free(it_cli_conf *c);

/* The options both programs take, in the form of getopt_long's table: a
 * program puts IT_CLI_OPTIONS first in its own table and
 * IT_CLI_SHORTOPTS in its optstring, and hands them to it_cli_option. 'h'
 * and 'V' are --help and --version (common/cmdline.h). */
/* clang-format off */
#define IT_CLI_OPTIONS \
	{"server", required_argument, NULL, 's'}, \
	{"session", required_argument, NULL, 'S'}, \
	{"token", required_argument, NULL, 'K'}, \
	{"quiet", no_argument, NULL, 'q'}, \
	{"retry-delay", required_argument, NULL, 'd'}, \
	{"max-wait", required_argument, NULL, 'w'}, \
	{"cacert", required_argument, NULL, 'C'}, \
	{"help", no_argument, NULL, 'h'}, \
	{"version", no_argument, NULL, 'V'}
/* clang-format on */
#define IT_CLI_SHORTOPTS "s:S:qhV"

/* The it_cmdline (common/cmdline.h) of a program that takes files or other
 * arguments after its options: its name, usage function, the short options
 * it adds to IT_CLI_SHORTOPTS (a string literal) and its getopt_long table. */
#define IT_CLI_CMDLINE(name_, usage_, more_shortopts_, longopts_)                                     \
	{                                                                                             \
		.prog = (name_), .version = PACKAGE_VERSION, .usage = (usage_),                       \
		.shortopts = IT_CLI_SHORTOPTS more_shortopts_, .longopts = (longopts_), .operands = 1 \
	}

/* Says on stderr, after program's name, that arg is not a number in the
 * allowed range. Returns IT_EXIT_USAGE, for the caller to exit with. */
int it_cli_bad_number(const char *program, const char *arg);

/* What the options both programs take set; a program sets the defaults of
 * the two delays. */
typedef struct it_cli_opts {
	it_cli_conf conf;      /* --server; --session and --token, the credential */
	int quiet;	       /* --quiet */
	long retry_delay_ms;   /* --retry-delay: the first backoff delay */
	int retry_delay_given; /* --retry-delay was given */
	long max_wait_ms;      /* --max-wait, in seconds on the command line */
} it_cli_opts;

/* Takes option c (getopt_long's value) and its argument arg into o when it
 * is one of IT_CLI_OPTIONS but 'h' and 'V'; any other c is left alone.
 * Returns 0, or -1 when arg is not a number in the option's range (the
 * caller says so). */
int it_cli_option(it_cli_opts *o, int c, const char *arg);

/* Sets out to server + path (path starts with "/api/v1"), dropping trailing
 * slashes of server; a server without a scheme ("host:8080") is taken as
 * http://. Returns 0, or -1 when server names another scheme or no host. */
int it_cli_url(it_buf *out, const char *server, const char *path);

/* Appends s to out percent-encoded for a query value. Returns 0, or -1 when
 * out would grow past its ceiling or memory runs out. */
int it_cli_urlencode(it_buf *out, const char *s);

/* Parses a Retry-After value (delta-seconds or an HTTP-date, relative to
 * now). Returns the seconds to wait (0 for a date in the past), or -1 when
 * value is NULL or malformed. */
long it_cli_retry_after(const char *value, time_t now);

/* The delay before retry number attempt (0-based): base_ms doubled per
 * attempt up to cap_ms, then a random part of up to half of it taken off so
 * that many clients do not retry in step. r is a random value in [0, 1). */
long it_cli_backoff_ms(unsigned attempt, long base_ms, long cap_ms, double r);

/* The wait before retry number attempt (0-based) of a request: the
 * server's Retry-After (retry_after, a header value or NULL) when it gave
 * one, capped at max_ms, else it_cli_backoff_ms from base_ms with jitter. */
long it_cli_retry_wait_ms(const char *retry_after, unsigned attempt, long base_ms, long max_ms);

/* Writes a one-line description of an error answer into out: the
 * problem+json title and detail when body is one, else the status alone.
 * Control characters from the server are replaced, so a hostile server
 * cannot rewrite the user's terminal. */
void it_cli_problem_message(const char *body, size_t len, long status, char *out, size_t outlen);

/* Copies s into out (outlen >= 1), truncated, with control characters
 * replaced by '?': for printing text that came from a server. */
void it_cli_sanitize(char *out, size_t outlen, const char *s);

/* Parses body (len bytes, may be NULL) as one JSON object. Returns it (the
 * caller puts it), or NULL when body is empty, not JSON or not an object. */
struct json_object *it_cli_json_object(const char *body, size_t len);

/* Reads the "type" member of a problem+json body into out ("" when absent). */
void it_cli_problem_type(const char *body, size_t len, char *out, size_t outlen);

/* Copies the value of the header line h (len bytes, as libcurl's header
 * callback passes it) into out (NUL-terminated, truncated to outlen) when the
 * line's name is name, compared without regard to case; otherwise leaves out
 * alone. */
void it_cli_header_value(const char *h, size_t len, const char *name, char *out, size_t outlen);

/* The response headers the clients act on. */
typedef struct it_cli_headers {
	char retry_after[64];
	char content_type[128];
} it_cli_headers;

/* A CURLOPT_HEADERFUNCTION that fills the it_cli_headers given as
 * CURLOPT_HEADERDATA; each status line (a 100 Continue, a redirect) starts
 * the set afresh. */
size_t it_cli_on_header(char *data, size_t size, size_t n, void *headers);

/* Creates dir and every missing directory above it with mode 0700 (they
 * hold credentials and upload URLs, which are capabilities), like mkdir -p.
 * Returns 0, or -1 when dir is empty or too long or a mkdir failed (errno
 * says why). */
int it_cli_make_dirs(const char *dir);

/* Sleeps ms milliseconds, waking early when *stop becomes non-zero.
 * Returns 0, or -1 when it was stopped. */
int it_cli_sleep_ms(long ms, volatile sig_atomic_t *stop);

/* Set by SIGINT or SIGTERM once it_cli_catch_stop has run: the program
 * stops what it does as soon as it can and exits. */
extern volatile sig_atomic_t it_cli_stop;

/* Makes SIGINT and SIGTERM set it_cli_stop instead of ending the process, so
 * that state files are flushed and the exit code says what happened. */
void it_cli_catch_stop(void);

/* Sets the options every request of the programs shares on h: the user
 * agent program/version, no signals, http and https only, a connect
 * timeout of connect_s seconds, and the CA file of it_cli_cacert_use when
 * one was given. Certificate verification is never turned off. */
void it_cli_curl_defaults(CURL *h, const char *program, long connect_s);

/* Makes path (a PEM bundle of CA certificates, or NULL for the system's
 * store) what every later handle trusts (CURLOPT_CAINFO, set by
 * it_cli_curl_defaults), after checking that it can be read and holds a
 * certificate, so that a wrong path is a usage error before any transfer
 * rather than a certificate failure after one. Returns 0, or -1 with a
 * sentence naming the file in err. */
int it_cli_cacert_use(const char *path, char *err, size_t errlen);

/* Whether rc says the server's certificate could not be verified (an
 * unknown or private CA, a self-signed certificate, a name that does not
 * match the host): a failure that another try cannot mend. */
int it_cli_tls_failure(CURLcode rc);

/* Writes into out the sentence a certificate failure is reported with:
 * libcurl's detail (detail, may be NULL or empty, else rc's text) and how
 * to trust a private CA, or, when a CA file is in use, which file the
 * certificate was checked against. */
void it_cli_tls_message(char *out, size_t outlen, CURLcode rc, const char *detail);

/* A random number in [0, 1) for jitter (not for secrets). */
double it_cli_random(void);

/* Fills out (at least 17 bytes) with 16 random URL-safe base64 characters:
 * a name for this run of a program, such as its presence client_id. */
void it_cli_random_name(char *out);

/* Adds "Authorization: Bearer <cred>" to list and returns the new list (NULL
 * when out of memory; list is then freed). The credential travels only in
 * this header, never in a URL, where web servers and proxies log it. */
struct curl_slist *it_cli_bearer(struct curl_slist *list, const char *cred);

#endif

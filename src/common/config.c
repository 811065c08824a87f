/* config.c: settings from a key=value file and IMAGETOOLS_* environment variables. */
#include "config.h"

#include "common/config.h"
#include "common/kvfile.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

enum kind { K_STR, K_INT };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	const char *def;
	int64_t min, max;
	/* For strings with a form: returns 0 when value has it, else -1
	 * with a sentence in why. NULL: any string. */
	int (*check)(const char *value, char *why, size_t whylen);
};

static int check_signing_key(const char *value, char *why, size_t whylen);
static int check_public_url(const char *value, char *why, size_t whylen);

#define S(field, def)                                                      \
	{                                                                  \
#field, K_STR, offsetof(it_config, field), def, 0, 0, NULL \
	}
#define SC(field, def, check)                                               \
	{                                                                   \
#field, K_STR, offsetof(it_config, field), def, 0, 0, check \
	}
#define I(field, def, lo, hi)                                                 \
	{                                                                     \
#field, K_INT, offsetof(it_config, field), #def, lo, hi, NULL \
	}

static const struct key keys[] = {
	S(database_url, ""),
	S(listen, ""),
	S(url_prefix, ""),
	S(log_level, "info"),
	S(allowed_origins, ""),
	S(server_names, ""),
	S(bridge_listen, "127.0.0.1:8081"),
	S(metrics_token, ""),
	SC(url_signing_key, "", check_signing_key),
	SC(public_url, "", check_public_url),
	I(threads, 8, 1, 256),
	I(upload_threads, 16, 1, 256),
	I(upload_queue, 16, 0, 10000),
	I(max_uploads_per_address, 8, 0, 10000),
	I(upload_body_timeout, 20, 1, 3600),
	I(upload_min_rate, 500, 0, 1073741824),
	I(upload_body_max_time, 3600, 0, 604800),
	I(session_ttl, 86400, 60, 31536000),
	I(event_retention, 86400, 60, 31536000),
	I(max_upload_bytes, 52428800, 1024, 4294967296),
	I(max_request_bytes, 209715200, 1024, 17179869184),
	I(max_files, 20, 1, 1000),
	I(max_session_bytes, 1073741824, 0, 1125899906842624),
	I(max_staged_bytes, 1048576, 0, 67108864),
	I(resumable_upload_ttl, 86400, 60, 2592000),
	I(upload_progress_interval_ms, 500, 100, 60000),
	I(longpoll_timeout, 30, 1, 300),
	I(keepalive_interval, 15, 1, 300),
	I(sse_retry_ms, 3000, 100, 600000),
	I(stream_buffer, 262144, 4096, 67108864),
	I(stream_stall_timeout, 60, 1, 3600),
	I(max_streams, 10000, 1, 1000000),
	I(cgi_max_waiters, 32, 0, 100000),
	I(cgi_stream_lifetime, 60, 5, 3600),
	I(thumbnail_size, 256, 16, 2048),
	I(max_pixels, 100000000, 1, 4294967296),
	I(max_dimension, 16384, 1, 4294967295),
	I(max_decode_bytes, 134217728, 1048576, 17179869184),
	I(expiry_warning, 300, 1, 86400),
	I(rate_uploads, 120, 0, 1000000),
	I(rate_sessions, 30, 0, 1000000),
	I(rate_streams, 120, 0, 1000000),
	I(rate_operations, 30, 0, 1000000),
	I(max_streams_per_session, 64, 1, 100000),
	I(presence_ttl, 15, 3, 3600),
	I(presence_http_ttl, 45, 5, 3600),
	I(ws_max_message, 65536, 126, 16777216),
	I(ws_rate, 100, 1, 1000000),
	I(ws_ping_interval, 30, 1, 3600),
	I(ws_pong_timeout, 10, 1, 3600),
	I(worker_lease, 60, 5, 3600),
	I(signed_url_ttl, 604800, 300, 31536000),
	I(pairing_ttl, 600, 10, 86400),
	I(token_ttl, 0, 0, 31536000),
	I(rate_auth_failures, 30, 0, 1000000),
	I(rate_pairing, 10, 0, 1000000),
};

#undef S
#undef SC
#undef I

/* public_url goes into pairing links and QR codes that a phone opens: an
 * http(s) URL with a host, nothing the page would have to strip (query,
 * fragment) and nothing that could break out of a JSON string or a link
 * (spaces, quotes, control characters). */
static int check_public_url(const char *value, char *why, size_t whylen)
{
	const char *host;

	if (*value == '\0')
		return 0;
	if (strncmp(value, "http://", 7) == 0)
		host = value + 7;
	else if (strncmp(value, "https://", 8) == 0)
		host = value + 8;
	else {
		snprintf(why, whylen, "must start with http:// or https://");
		return -1;
	}
	if (*host == '\0' || *host == '/' || *host == ':') {
		snprintf(why, whylen, "names no host");
		return -1;
	}
	if (strlen(value) > 1024) {
		snprintf(why, whylen, "is longer than 1024 characters");
		return -1;
	}
	for (const char *p = value; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\\' || c == '?' ||
		    c == '#') {
			snprintf(why, whylen, "must be a plain URL without spaces, quotes, query or fragment");
			return -1;
		}
	}
	return 0;
}

/* The form it_urlsign_key_parse (common/urlsign.c) accepts, checked here so
 * that a wrong key stops a program at start-up; tests/unit/test_urlsign.c
 * holds the two to the same rule. The key is 32 to 64 bytes written as an
 * even number of hex digits (at least 64), or else in base64 or base64url
 * with optional padding. */
static int check_signing_key(const char *value, char *why, size_t whylen)
{
	size_t n = strlen(value), i;
	int hex = n >= 64 && n % 2 == 0;

	if (n == 0)
		return 0;
	for (i = 0; hex && i < n; i++)
		if (!isxdigit((unsigned char)value[i]))
			hex = 0;
	if (hex) {
		if (n <= 128)
			return 0;
	} else {
		while (n > 0 && value[n - 1] == '=')
			n--;
		for (i = 0; i < n; i++)
			if (!isalnum((unsigned char)value[i]) && !strchr("+/-_", value[i]))
				break;
		if (i == n && n % 4 != 1 && n * 3 / 4 >= 32 && n * 3 / 4 <= 64)
			return 0;
	}
	snprintf(why, whylen,
		 "must be 32 to 64 random bytes in hex (64 to 128 digits) or base64, e.g. the output of"
		 " `openssl rand -hex 32`");
	return -1;
}

static const struct key *find_key(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strlen(keys[i].name) == n && strncmp(keys[i].name, name, n) == 0)
			return &keys[i];
	return NULL;
}

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int64_t mult = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno)
		return -1;
	/* Sizes may carry a binary suffix: 50M, 4K, 1G. */
	if (*end == 'K' || *end == 'k')
		mult = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mult = 1024 * 1024, end++;
	else if (*end == 'G' || *end == 'g')
		mult = 1024 * 1024 * 1024, end++;
	if (*end != '\0')
		return -1;
	if (v > INT64_MAX / mult || v < INT64_MIN / mult)
		return -1;
	*out = (int64_t)v * mult;
	return 0;
}

static int set_key(it_config *cfg, const struct key *k, const char *value, char *err, unsigned errlen)
{
	char *base = (char *)cfg;

	if (k->kind == K_STR) {
		char **slot = (char **)(base + k->off);
		char *copy, why[160];

		if (k->check && k->check(value, why, sizeof(why)) < 0) {
			/* The value itself is not echoed: it may be a secret. */
			snprintf(err, errlen, "%s %s", k->name, why);
			return -EINVAL;
		}
		copy = strdup(value);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		free(*slot);
		*slot = copy;
		return 0;
	}
	int64_t v;
	if (parse_int(value, &v) < 0) {
		snprintf(err, errlen, "%s: '%s' is not a whole number", k->name, value);
		return -EINVAL;
	}
	if (v < k->min || v > k->max) {
		snprintf(err, errlen, "%s: %lld is outside %lld..%lld", k->name, (long long)v, (long long)k->min,
			 (long long)k->max);
		return -EINVAL;
	}
	*(int64_t *)(base + k->off) = v;
	return 0;
}

int it_config_set(it_config *cfg, const char *key, const char *value, char *err, unsigned errlen)
{
	const struct key *k = find_key(key, strlen(key));

	if (k == NULL) {
		snprintf(err, errlen, "unknown setting '%s'", key);
		return -EINVAL;
	}
	return set_key(cfg, k, value, err, errlen);
}

void it_config_defaults(it_config *cfg)
{
	char err[128];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (set_key(cfg, &keys[i], keys[i].def, err, sizeof(err)) < 0)
			abort(); /* a default outside its own range is a bug */
}

static int set_cb(void *ud, const char *key, const char *val, char *why, size_t whylen)
{
	return it_config_set(ud, key, val, why, (unsigned)whylen);
}

int it_config_load_file(it_config *cfg, const char *path, char *err, unsigned errlen)
{
	return it_kvfile_read(path, 0, set_cb, cfg, err, errlen);
}

int it_config_load_env(it_config *cfg, char *const *envp, char *err, unsigned errlen)
{
	static const char prefix[] = "IMAGETOOLS_";

	if (envp == NULL)
		envp = environ;
	for (; *envp; envp++) {
		const char *e = *envp, *eq;
		char name[64];
		size_t n;

		if (strncmp(e, prefix, sizeof(prefix) - 1) != 0)
			continue;
		e += sizeof(prefix) - 1;
		eq = strchr(e, '=');
		if (eq == NULL || (n = (size_t)(eq - e)) >= sizeof(name))
			continue;
		for (size_t i = 0; i < n; i++)
			name[i] = (char)tolower((unsigned char)e[i]);
		name[n] = '\0';
		/* IMAGETOOLS_CONFIG names the file; it is not a setting. */
		if (strcmp(name, "config") == 0)
			continue;
		const struct key *k = find_key(name, n);
		if (k == NULL) {
			snprintf(err, errlen, "unknown setting in environment: IMAGETOOLS_%.*s", (int)n, e);
			return -EINVAL;
		}
		int rc = set_key(cfg, k, eq + 1, err, errlen);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int it_config_load(it_config *cfg, const char *path, char *err, unsigned errlen)
{
	const char *env = getenv("IMAGETOOLS_CONFIG");
	int rc;

	it_config_defaults(cfg);
	if (env && *env) {
		if ((rc = it_config_load_file(cfg, env, err, errlen)) < 0)
			return rc;
	} else if (path) {
		/* Only the built-in default file may be absent (every setting has
		 * a default); a file named with --config must be there. One that
		 * is there but cannot be read, say after chmod 600 for another
		 * user, is an error naming the file and the reason: skipping it
		 * would run on the defaults, connecting to another database
		 * without a word. */
		if ((rc = it_kvfile_read(path, strcmp(path, IT_CONFIG_PATH) == 0, set_cb, cfg, err, errlen)) < 0)
			return rc;
	}
	return it_config_load_env(cfg, NULL, err, errlen);
}

void it_config_free(it_config *cfg)
{
	char *base = (char *)cfg;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (keys[i].kind == K_STR) {
			char **slot = (char **)(base + keys[i].off);
			free(*slot);
			*slot = NULL;
		}
}

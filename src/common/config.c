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
};

#define S(field, def) {#field, K_STR, offsetof(it_config, field), def, 0, 0}
#define I(field, def, lo, hi) {#field, K_INT, offsetof(it_config, field), #def, lo, hi}

static const struct key keys[] = {
	S(database_url, ""),
	S(listen, ""),
	S(url_prefix, ""),
	S(log_level, "info"),
	S(allowed_origins, ""),
	S(server_names, ""),
	S(bridge_listen, "127.0.0.1:8081"),
	S(metrics_token, ""),
	I(threads, 8, 1, 256),
	I(session_ttl, 86400, 60, 31536000),
	I(event_retention, 86400, 60, 31536000),
	I(max_upload_bytes, 52428800, 1024, 4294967296),
	I(max_request_bytes, 209715200, 1024, 17179869184),
	I(max_files, 20, 1, 1000),
	I(max_session_bytes, 1073741824, 0, 1125899906842624),
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
	I(expiry_warning, 300, 1, 86400),
	I(rate_uploads, 120, 0, 1000000),
	I(rate_sessions, 30, 0, 1000000),
	I(rate_streams, 120, 0, 1000000),
	I(rate_operations, 30, 0, 1000000),
	I(max_streams_per_session, 64, 1, 100000),
	I(ws_max_message, 65536, 126, 16777216),
	I(ws_rate, 100, 1, 1000000),
	I(ws_ping_interval, 30, 1, 3600),
	I(ws_pong_timeout, 10, 1, 3600),
	I(worker_lease, 60, 5, 3600),
};

#undef S
#undef I

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
		char *copy = strdup(value);
		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*slot);
		*slot = copy;
		return 0;
	}
	int64_t v;
	if (parse_int(value, &v) < 0) {
		snprintf(err, errlen, "%s: '%s' is not a whole number", k->name, value);
		return -1;
	}
	if (v < k->min || v > k->max) {
		snprintf(err, errlen, "%s: %lld is outside %lld..%lld", k->name, (long long)v, (long long)k->min,
			 (long long)k->max);
		return -1;
	}
	*(int64_t *)(base + k->off) = v;
	return 0;
}

int it_config_set(it_config *cfg, const char *key, const char *value, char *err, unsigned errlen)
{
	const struct key *k = find_key(key, strlen(key));

	if (k == NULL) {
		snprintf(err, errlen, "unknown setting '%s'", key);
		return -1;
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
	return it_kv_read_file(path, 0, set_cb, cfg, err, errlen);
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
			return -1;
		}
		if (set_key(cfg, k, eq + 1, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int it_config_load(it_config *cfg, const char *path, char *err, unsigned errlen)
{
	const char *env = getenv("IMAGETOOLS_CONFIG");

	it_config_defaults(cfg);
	if (env && *env) {
		if (it_config_load_file(cfg, env, err, errlen) < 0)
			return -1;
	} else if (path && access(path, R_OK) == 0) {
		if (it_config_load_file(cfg, path, err, errlen) < 0)
			return -1;
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

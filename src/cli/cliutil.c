/* cliutil.c: what imagetools-upload and imagetools-watch share: settings, URLs, errors, backoff. */
#include "config.h"

#include "cli/cliutil.h"
#include "common/cmdline.h"
#include "common/kvfile.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>

int it_cli_conf_path(char *out, size_t outlen)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	int n;

	/* The XDG base directory spec says a relative XDG_CONFIG_HOME is invalid
	 * and must be ignored. */
	if (xdg && xdg[0] == '/')
		n = snprintf(out, outlen, "%s/imagetools/cli.conf", xdg);
	else if (home && home[0])
		n = snprintf(out, outlen, "%s/.config/imagetools/cli.conf", home);
	else
		return -1;
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int conf_cb(void *ud, const char *key, const char *val, char *why, size_t whylen)
{
	it_cli_conf *c = ud;
	char **slot;

	if (strcmp(key, "server") == 0)
		slot = &c->server;
	else if (strcmp(key, "session") == 0)
		slot = &c->session;
	else if (strcmp(key, "token") == 0)
		slot = &c->token;
	else if (strcmp(key, "source") == 0)
		slot = &c->source;
	else if (strcmp(key, "cacert") == 0)
		slot = &c->cacert;
	else {
		snprintf(why, whylen, "unknown key '%.40s' (known: server, session, token, source, cacert)", key);
		return -EINVAL;
	}
	/* Values already given on the command line or in the environment win. */
	if (*slot == NULL && *val && (*slot = strdup(val)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int it_cli_conf_load_file(it_cli_conf *c, const char *path, char *err, size_t errlen)
{
	return it_kvfile_read(path, 1, conf_cb, c, err, errlen) < 0 ? -1 : 0;
}

static int from_env(char **slot, const char *name)
{
	const char *v = getenv(name);

	if (*slot || v == NULL || *v == '\0')
		return 0;
	*slot = strdup(v);
	return *slot ? 0 : -1;
}

int it_cli_conf_resolve(it_cli_conf *c, char *err, size_t errlen)
{
	char path[4096];
	int had_credential, rc = 0;

	if (from_env(&c->server, "IMAGETOOLS_SERVER") < 0 || from_env(&c->session, "IMAGETOOLS_TOKEN") < 0 ||
	    from_env(&c->session, "IMAGETOOLS_SESSION") < 0 || from_env(&c->source, "IMAGETOOLS_SOURCE") < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	had_credential = c->session != NULL;
	if ((c->server == NULL || c->session == NULL || c->source == NULL || c->cacert == NULL) &&
	    it_cli_conf_path(path, sizeof(path)) == 0)
		rc = it_cli_conf_load_file(c, path, err, errlen);
	/* The file's token (what --pair saved) wins over its session id; a
	 * credential given on the command line or in the environment wins over
	 * both. */
	if (c->token && !had_credential) {
		free(c->session);
		c->session = c->token;
		c->token = NULL;
	}
	free(c->token);
	c->token = NULL;
	return rc;
}

int it_cli_conf_complete(const it_cli_conf *c, const char *program)
{
	char err[600];

	if (c->server == NULL || c->session == NULL) {
		fprintf(stderr, "%s: %s is not set: use --%s, %s or the config file (see --help)\n", program,
			c->server ? "the session" : "the server", c->server ? "session" : "server",
			c->server ? "IMAGETOOLS_SESSION" : "IMAGETOOLS_SERVER");
		return -1;
	}
	if (it_cli_cacert_use(c->cacert, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s: %s\n", program, err);
		return -1;
	}
	return 0;
}

int it_cli_bad_number(const char *program, const char *arg)
{
	fprintf(stderr, "%s: '%s' is not a number in the allowed range (see --help)\n", program, arg);
	return IT_EXIT_USAGE;
}

void it_cli_conf_set(char **slot, const char *value)
{
	free(*slot);
	*slot = strdup(value);
}

void it_cli_conf_free(it_cli_conf *c)
{
	free(c->server);
	free(c->session);
	free(c->source);
	free(c->token);
	free(c->cacert);
	c->server = c->session = c->source = c->token = c->cacert = NULL;
}

static int url_safe_run(const char *s, size_t want_min, size_t want_max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!(isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_'))
			return 0;
	return n >= want_min && n <= want_max;
}

int it_cli_cred_kind(const char *s)
{
	if (strncmp(s, "itk.", 4) == 0)
		return url_safe_run(s + 4, 32, 32) ? IT_CLI_CRED_TOKEN : IT_CLI_CRED_MALFORMED;
	return url_safe_run(s, 22, 64) ? IT_CLI_CRED_SESSION : IT_CLI_CRED_MALFORMED;
}

int it_cli_pairing_code_valid(const char *s)
{
	return strncmp(s, "itp.", 4) == 0 && url_safe_run(s + 4, 22, 22);
}

int it_cli_option(it_cli_opts *o, int c, const char *arg)
{
	long v;

	switch (c) {
	case 's': it_cli_conf_set(&o->conf.server, arg); break;
	case 'S':
	case 'K': it_cli_conf_set(&o->conf.session, arg); break;
	case 'C': it_cli_conf_set(&o->conf.cacert, arg); break;
	case 'q': o->quiet = 1; break;
	case 'd':
		if (it_cmdline_long(arg, 1, 3600000, &o->retry_delay_ms) < 0)
			return -1;
		o->retry_delay_given = 1;
		break;
	case 'w':
		if (it_cmdline_long(arg, 1, 86400, &v) < 0)
			return -1;
		o->max_wait_ms = v * 1000;
		break;
	}
	return 0;
}

int it_cli_url(it_buf *out, const char *server, const char *path)
{
	size_t n = strlen(server);
	const char *scheme = "";

	/* "host:8080" and "192.168.1.20:8080/imagetools" are what people
	 * type and what the page shows in its address bar without the
	 * scheme: they mean plain http. Any other scheme is refused. */
	if (strstr(server, "://") == NULL) {
		if (n == 0 || server[0] == '/' || server[0] == ':')
			return -1;
		scheme = "http://";
	} else if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0) {
		return -1;
	}
	while (n > 0 && server[n - 1] == '/')
		n--;
	it_buf_reset(out);
	if (it_buf_puts(out, scheme) < 0 || it_buf_append(out, server, n) < 0 || it_buf_puts(out, path) < 0)
		return -1;
	return 0;
}

int it_cli_urlencode(it_buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s && rc == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
			rc = it_buf_append(out, s, 1);
		} else {
			char e[3] = {'%', hex[c >> 4], hex[c & 15]};
			rc = it_buf_append(out, e, 3);
		}
	}
	return rc < 0 ? -1 : 0;
}

long it_cli_retry_after(const char *value, time_t now)
{
	const char *p;
	time_t t;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value == '\0')
		return -1;
	for (p = value; *p >= '0' && *p <= '9'; p++)
		;
	if (p > value && (*p == '\0' || *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
		if (p - value > 9)
			return 999999999; /* absurd, but a number: the caller caps it */
		return strtol(value, NULL, 10);
	}
	t = curl_getdate(value, NULL);
	if (t == (time_t)-1)
		return -1;
	return t > now ? (long)(t - now) : 0;
}

long it_cli_backoff_ms(unsigned attempt, long base_ms, long cap_ms, double r)
{
	long d = base_ms;

	for (unsigned i = 0; i < attempt && d < cap_ms; i++)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	return d - (long)(r * (double)(d / 2));
}

long it_cli_retry_wait_ms(const char *retry_after, unsigned attempt, long base_ms, long max_ms)
{
	long ra = it_cli_retry_after(retry_after, time(NULL));

	/* The server knows best when it can take the request again. */
	if (ra >= 0)
		return ra > max_ms / 1000 ? max_ms : ra * 1000;
	return it_cli_backoff_ms(attempt, base_ms, max_ms, it_cli_random());
}

void it_cli_sanitize(char *out, size_t outlen, const char *s)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < outlen; i++)
		out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	out[i] = '\0';
}

json_object *it_cli_json_object(const char *body, size_t len)
{
	json_tokener *tok;
	json_object *o;

	if (body == NULL || len == 0 || len > INT32_MAX)
		return NULL;
	tok = json_tokener_new();
	if (tok == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, body, (int)len);
	json_tokener_free(tok);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static const char *member(json_object *o, const char *key)
{
	json_object *v;

	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

void it_cli_problem_message(const char *body, size_t len, long status, char *out, size_t outlen)
{
	json_object *o = it_cli_json_object(body, len);
	const char *title = member(o, "title"), *detail = member(o, "detail");
	char raw[512];

	if (detail && title)
		snprintf(raw, sizeof(raw), "%s (HTTP %ld): %s", title, status, detail);
	else if (detail || title)
		snprintf(raw, sizeof(raw), "HTTP %ld: %s", status, detail ? detail : title);
	else
		snprintf(raw, sizeof(raw), "HTTP %ld", status);
	it_cli_sanitize(out, outlen, raw);
	json_object_put(o);
}

void it_cli_problem_type(const char *body, size_t len, char *out, size_t outlen)
{
	json_object *o = it_cli_json_object(body, len);
	const char *t = member(o, "type");

	it_cli_sanitize(out, outlen, t ? t : "");
	json_object_put(o);
}

int it_cli_auth_problem(long status, const char *body, size_t len)
{
	char type[128];
	const char *slug;

	if (status != 401 && status != 403 && status != 410)
		return IT_CLI_AUTH_OTHER;
	it_cli_problem_type(body, len, type, sizeof(type));
	if (strncmp(type, "urn:imagetools:problem:", 23) != 0)
		return IT_CLI_AUTH_OTHER;
	slug = type + 23;
	if (status == 403 && strcmp(slug, "insufficient-scope") == 0)
		return IT_CLI_AUTH_SCOPE;
	if ((status == 401 && (strcmp(slug, "invalid-token") == 0 || strcmp(slug, "invalid-pairing-code") == 0)) ||
	    (status == 410 && strncmp(slug, "pairing-code-", 13) == 0))
		return IT_CLI_AUTH_TOKEN;
	return IT_CLI_AUTH_OTHER;
}

int it_cli_sleep_ms(long ms, volatile sig_atomic_t *stop)
{
	while (ms > 0) {
		long slice = ms > 100 ? 100 : ms;
		struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};

		if (stop && *stop)
			return -1;
		nanosleep(&ts, NULL);
		ms -= slice;
	}
	return stop && *stop ? -1 : 0;
}

int it_cli_make_dirs(const char *dir)
{
	char p[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof(p))
		return -1;
	memcpy(p, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (p[i] == '/' || p[i] == '\0') {
			char c = p[i];
			p[i] = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST)
				return -1;
			p[i] = c;
		}
	}
	return 0;
}

void it_cli_random_name(char *out)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char r[16];

	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)rand();
	for (size_t i = 0; i < sizeof(r); i++)
		out[i] = abc[r[i] & 63];
	out[sizeof(r)] = '\0';
}

struct curl_slist *it_cli_bearer(struct curl_slist *list, const char *cred)
{
	struct curl_slist *l;
	char line[300];

	snprintf(line, sizeof(line), "Authorization: Bearer %s", cred);
	l = curl_slist_append(list, line);
	if (l == NULL)
		curl_slist_free_all(list);
	/* The line held the credential: it does not stay in freed stack memory
	 * longer than it must. */
	explicit_bzero(line, sizeof(line));
	return l;
}

volatile sig_atomic_t it_cli_stop;

/* The CA file every handle trusts (it_cli_cacert_use), "" for the system's
 * store: one per process, like the settings it comes from, so that no
 * transfer of either program can be made without it. */
static char cacert[4096];

static void on_stop(int sig)
{
	(void)sig;
	it_cli_stop = 1;
}

void it_cli_catch_stop(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

void it_cli_curl_defaults(CURL *h, const char *program, long connect_s)
{
	char ua[128];

	/* libcurl keeps its own copy of the string. */
	snprintf(ua, sizeof(ua), "%s/%s", program, PACKAGE_VERSION);
	curl_easy_setopt(h, CURLOPT_USERAGENT, ua);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, connect_s);
	if (cacert[0])
		curl_easy_setopt(h, CURLOPT_CAINFO, cacert);
}

int it_cli_cacert_use(const char *path, char *err, size_t errlen)
{
	char line[256];
	int found = 0;
	FILE *f;

	cacert[0] = '\0';
	if (path == NULL)
		return 0;
	if (path[0] == '\0' || strlen(path) >= sizeof(cacert)) {
		snprintf(err, errlen, "the CA certificate file '%.200s' is not a usable path", path);
		return -1;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cannot read the CA certificate file %.300s: %s", path, strerror(errno));
		return -1;
	}
	/* libcurl would only say later, as a certificate problem of the
	 * server, that a file holds no certificate: a text file or a key
	 * given by mistake is said to be one here. */
	while (!found && fgets(line, sizeof(line), f))
		found = strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0 ||
			strncmp(line, "-----BEGIN TRUSTED CERTIFICATE-----", 35) == 0;
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read the CA certificate file %.300s: %s", path, strerror(errno));
		fclose(f);
		return -1;
	}
	fclose(f);
	if (!found) {
		snprintf(err, errlen,
			 "the CA certificate file %.300s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path);
		return -1;
	}
	memcpy(cacert, path, strlen(path) + 1);
	return 0;
}

int it_cli_tls_failure(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return 1;
	default: return 0;
	}
}

void it_cli_tls_message(char *out, size_t outlen, CURLcode rc, const char *detail)
{
	char d[CURL_ERROR_SIZE];

	it_cli_sanitize(d, sizeof(d), detail && detail[0] ? detail : curl_easy_strerror(rc));
	/* With a CA file already given, pointing at --cacert again would not
	 * help: the file is the wrong one, or the certificate names another
	 * host than the one in the server URL. */
	if (cacert[0])
		snprintf(out, outlen,
			 "the server's certificate cannot be verified (%s) with the CA file %.300s: it must hold the "
			 "server's certificate or its CA's, and the certificate must name the host of the server URL",
			 d, cacert);
	else
		snprintf(out, outlen,
			 "the server's certificate cannot be verified (%s); for a self-signed certificate or a private "
			 "CA, give its certificate with --cacert FILE or cacert = FILE in the config file",
			 d);
}

double it_cli_random(void)
{
	unsigned int v;

	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
		v = (unsigned int)rand();
	return (double)v / 4294967296.0;
}

void it_cli_header_value(const char *h, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), v;

	if (len <= nl + 1 || strncasecmp(h, name, nl) != 0 || h[nl] != ':')
		return;
	for (v = nl + 1; v < len && (h[v] == ' ' || h[v] == '\t'); v++)
		;
	while (len > v && (h[len - 1] == '\r' || h[len - 1] == '\n' || h[len - 1] == ' '))
		len--;
	if (len - v >= outlen)
		len = v + outlen - 1;
	memcpy(out, h + v, len - v);
	out[len - v] = '\0';
}

size_t it_cli_on_header(char *data, size_t size, size_t n, void *headers)
{
	it_cli_headers *hd = headers;

	if (size * n > 5 && strncmp(data, "HTTP/", 5) == 0) {
		hd->retry_after[0] = '\0';
		hd->content_type[0] = '\0';
	}
	it_cli_header_value(data, size * n, "Retry-After", hd->retry_after, sizeof(hd->retry_after));
	it_cli_header_value(data, size * n, "Content-Type", hd->content_type, sizeof(hd->content_type));
	return size * n;
}

/* pairing.c: imagetools-upload --pair: a pairing code exchanged for a token (POST /api/v1/pair), kept in the user's
 * config file. */
#include "config.h"

#include "cli/pairing.h"

#include "cli/cliutil.h"
#include "common/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The answer is a small JSON object; a longer one is not from ImageTools. */
#define MAX_ANSWER (64u * 1024)

static int has_prefix(const char *s, size_t n, const char *p)
{
	size_t pl = strlen(p);

	return n >= pl && strncmp(s, p, pl) == 0;
}

int it_pairing_parse(const char *arg, char *server, size_t serverlen, char *code, size_t codelen)
{
	const char *hash, *p, *end;
	size_t n;

	if (codelen < 27 || serverlen == 0)
		return -1;
	server[0] = code[0] = '\0';
	if (it_cli_pairing_code_valid(arg)) {
		snprintf(code, codelen, "%s", arg);
		return 0;
	}
	if (strncmp(arg, "http://", 7) != 0 && strncmp(arg, "https://", 8) != 0)
		return -1;
	if ((hash = strchr(arg, '#')) == NULL)
		return -1;
	/* The fragment is a list of key=value pairs (the page may add others). */
	for (p = hash + 1; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "&");
		if (has_prefix(p, (size_t)(end - p), "pair=") && (size_t)(end - p - 5) < codelen) {
			memcpy(code, p + 5, (size_t)(end - p - 5));
			code[end - p - 5] = '\0';
			break;
		}
	}
	if (!it_cli_pairing_code_valid(code)) {
		code[0] = '\0';
		return -1;
	}
	/* The site: the link without fragment, query, a page name or trailing
	 * slashes; the API lives under it. */
	n = (size_t)(hash - arg);
	if ((p = memchr(arg, '?', n)) != NULL)
		n = (size_t)(p - arg);
	for (size_t i = n; i > 0 && arg[i - 1] != '/'; i--) {
		if (arg[i - 1] == '.' &&
		    ((n - i == 4 && strncmp(arg + i, "html", 4) == 0) ||
		     (n - i == 3 && strncmp(arg + i, "htm", 3) == 0))) {
			while (n > 0 && arg[n - 1] != '/')
				n--;
			break;
		}
	}
	while (n > 0 && arg[n - 1] == '/')
		n--;
	if (n >= serverlen || strstr(arg, "://") + 3 >= arg + n) {
		code[0] = '\0';
		return -1;
	}
	memcpy(server, arg, n);
	server[n] = '\0';
	return 0;
}

void it_pairing_label(const char *program, char *out, size_t outlen)
{
	char host[256];

	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "this computer");
	host[sizeof(host) - 1] = '\0';
	/* A host name is ASCII: cutting it cannot split a character. */
	if (outlen > 65)
		outlen = 65;
	if (snprintf(out, outlen, "%s on %.*s", program, (int)(sizeof(host) - 1), host) < 0)
		out[0] = '\0';
	for (char *c = out; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

static size_t on_body(char *data, size_t size, size_t n, void *p)
{
	return it_buf_append(p, data, size * n) < 0 ? 0 : size * n;
}

static void copy_member(json_object *o, const char *key, char *out, size_t outlen)
{
	json_object *v;

	out[0] = '\0';
	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		it_cli_sanitize(out, outlen, json_object_get_string(v));
}

/* Posts the exchange request req to url through h and collects the answer
 * into body and hd, its status into *status. Returns IT_EXIT_OK, or
 * IT_EXIT_UNREACHABLE with msg set when the server could not be reached. */
static int post_exchange(CURL *h, const char *url, json_object *req, it_buf *body, it_cli_headers *hd, long *status,
			 char *msg, size_t msglen)
{
	struct curl_slist *hdr = NULL;
	char errbuf[CURL_ERROR_SIZE];
	CURLcode rc;

	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	hdr = curl_slist_append(hdr, "Accept: application/json");
	errbuf[0] = '\0';
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	it_cli_curl_defaults(h, "imagetools-upload", 15L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_COPYPOSTFIELDS, json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, it_cli_on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, hd);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	/* A code is single use: an exchange is never repeated on its own, since
	 * one whose answer was lost would be refused as used. */
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_slist_free_all(hdr);
	if (it_cli_tls_failure(rc)) {
		it_cli_tls_message(msg, msglen, rc, errbuf);
		return IT_EXIT_UNREACHABLE;
	}
	if (rc != CURLE_OK) {
		snprintf(msg, msglen, "cannot reach %s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return IT_EXIT_UNREACHABLE;
	}
	return IT_EXIT_OK;
}

/* Reads the token and what describes it from a 2xx answer into out.
 * Returns IT_EXIT_OK, or IT_EXIT_NOT_SERVER with msg set and out cleared
 * when the answer holds no token. */
static int read_token(const it_buf *body, long status, const char *url, it_pairing_result *out, char *msg,
		      size_t msglen)
{
	json_object *ans = it_cli_json_object(body->data, body->len);

	if (ans) {
		copy_member(ans, "token", out->token, sizeof(out->token));
		copy_member(ans, "device_id", out->device_id, sizeof(out->device_id));
		copy_member(ans, "scope", out->scope, sizeof(out->scope));
		copy_member(ans, "label", out->label, sizeof(out->label));
		copy_member(ans, "expires_at", out->expires_at, sizeof(out->expires_at));
	}
	json_object_put(ans);
	if (it_cli_cred_kind(out->token) != IT_CLI_CRED_TOKEN) {
		snprintf(msg, msglen, "%s answered %ld, but not with a token: check --server", url, status);
		memset(out, 0, sizeof(*out));
		return IT_EXIT_NOT_SERVER;
	}
	return IT_EXIT_OK;
}

/* Says in msg why the server refused the exchange (from its status, its
 * problem body and Retry-After) and returns the exit code that means. */
static int explain_refusal(long status, const it_buf *body, const it_cli_headers *hd, const char *url, char *msg,
			   size_t msglen)
{
	char why[600], type[128];
	long ra;

	it_cli_problem_message(body->data, body->len, status, why, sizeof(why));
	it_cli_problem_type(body->data, body->len, type, sizeof(type));
	if (it_cli_auth_problem(status, body->data, body->len) == IT_CLI_AUTH_TOKEN) {
		if (strcmp(type, "urn:imagetools:problem:pairing-code-used") == 0)
			snprintf(msg, msglen,
				 "this pairing code was already used: ask the ImageTools page for a new one (%s)", why);
		else if (strcmp(type, "urn:imagetools:problem:pairing-code-expired") == 0)
			snprintf(msg, msglen,
				 "this pairing code has expired: ask the ImageTools page for a new one (%s)", why);
		else
			snprintf(msg, msglen,
				 "the server does not know this pairing code: check it, or ask the ImageTools "
				 "page for a new one (%s)",
				 why);
		return IT_EXIT_TOKEN;
	}
	if (status == 429 || status >= 500) {
		ra = it_cli_retry_after(hd->retry_after, time(NULL));
		if (ra >= 0)
			snprintf(msg, msglen, "%s; try again in %ld s", why, ra);
		else
			snprintf(msg, msglen, "%s; try again later", why);
		return IT_EXIT_UNREACHABLE;
	}
	if (strncmp(type, "urn:imagetools:problem:", 23) != 0 || status == 404 || status == 405) {
		/* No route for /pair: another server, or one from before devices. */
		snprintf(msg, msglen, "%s is not an ImageTools server that pairs devices (HTTP %ld): check --server",
			 url, status);
		return IT_EXIT_NOT_SERVER;
	}
	snprintf(msg, msglen, "pairing was refused: %s", why);
	return IT_EXIT_FAILED;
}

int it_pairing_exchange(CURL *h, const char *server, const char *code, const char *label, const char *source,
			it_pairing_result *out, char *msg, size_t msglen)
{
	json_object *req = json_object_new_object();
	it_cli_headers hd;
	it_buf url, body;
	long status = 0;
	int result = IT_EXIT_FAILED;

	memset(out, 0, sizeof(*out));
	memset(&hd, 0, sizeof(hd));
	it_buf_init(&url, 8192);
	it_buf_init(&body, MAX_ANSWER);
	if (it_cli_url(&url, server, "/api/v1/pair") < 0) {
		snprintf(msg, msglen, "the server must be an http:// or https:// URL, or host:port");
		result = IT_EXIT_USAGE;
		goto out;
	}
	if (req == NULL) {
		snprintf(msg, msglen, "out of memory");
		goto out;
	}
	json_object_object_add(req, "code", json_object_new_string(code));
	json_object_object_add(req, "label", json_object_new_string(label));
	json_object_object_add(req, "source", json_object_new_string(source));
	result = post_exchange(h, url.data, req, &body, &hd, &status, msg, msglen);
	if (result != IT_EXIT_OK)
		goto out;
	if (status == 201 || status == 200)
		result = read_token(&body, status, url.data, out, msg, msglen);
	else
		result = explain_refusal(status, &body, &hd, url.data, msg, msglen);
out:
	json_object_put(req);
	/* The answer held the token. */
	if (body.data)
		explicit_bzero(body.data, body.len);
	it_buf_free(&url);
	it_buf_free(&body);
	return result;
}

/* Whether line (a line of a key = value file) sets one of the keys that a
 * pairing replaces. */
static int replaced_key(const char *line)
{
	static const char *const keys[] = {"server", "session", "token"};

	while (*line == ' ' || *line == '\t')
		line++;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t n = strlen(keys[i]);
		const char *p = line + n;

		if (strncmp(line, keys[i], n) != 0)
			continue;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '=')
			return 1;
	}
	return 0;
}

int it_pairing_save(const char *path, const char *server, const char *token, char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX + 32], *line = NULL;
	size_t cap = 0;
	FILE *in, *outf = NULL;
	int fd = -1, rc = -1;
	ssize_t n;

	if (strlen(path) >= sizeof(dir) || strchr(server, '"') || strchr(server, '\n')) {
		snprintf(err, errlen, "cannot keep this server address in %s", path);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if (it_cli_make_dirs(dirname(dir)) < 0) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (outf = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	/* Every other line stays as the user wrote it. */
	if ((in = fopen(path, "r")) != NULL) {
		while ((n = getline(&line, &cap, in)) > 0) {
			if (replaced_key(line))
				continue;
			fputs(line, outf);
			if (line[n - 1] != '\n')
				fputc('\n', outf);
		}
		fclose(in);
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	fprintf(outf, "server = \"%s\"\ntoken = \"%s\"\n", server, token);
	if (fflush(outf) != 0 || fsync(fileno(outf)) != 0) {
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fclose(outf) != 0) {
		outf = NULL;
		snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	outf = NULL;
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (outf)
		fclose(outf);
	if (rc < 0)
		unlink(tmp);
	free(line);
	return rc;
}

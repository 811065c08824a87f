/* h_devices.c: POST /tokens, POST /pairings, POST /pair, GET /devices, DELETE /devices/{id} (docs/api.md). */
#include "config.h"

#include "common/scope.h"
#include "common/token.h"
#include "db/db.h"
#include "db/devices.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The bodies here are a few short fields. */
#define BODY_MAX 4096
#define BODY_DEPTH 4
/* A token lives at most a year, like a session. */
#define TTL_MAX 31536000

/* The fields of a body, each NULL or the value found. */
struct fields {
	const char *scope, *label, *source, *code;
	int64_t ttl; /* -1: absent */
};

/* 1 when word is one of the space-separated words of list. */
static int in_list(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; *p;) {
		size_t len = strcspn(p, " ");
		if (len == n && strncmp(p, word, n) == 0)
			return 1;
		p += len;
		while (*p == ' ')
			p++;
	}
	return 0;
}

/* Reads the fields a body may carry (those whose name is in allowed,
 * a space-separated list), checking their types and forms. Returns 0, or 1
 * after answering 400. */
static int read_fields(it_req *req, json_object *body, const char *allowed, struct fields *f)
{
	memset(f, 0, sizeof(*f));
	f->ttl = -1;
	json_object_object_foreach(body, key, val)
	{
		const char *s = NULL;

		if (!in_list(allowed, key)) {
			it_resp_problem(req, 400, "unknown-field", "%.40s is not a field of this request (%s).", key,
					allowed);
			return 1;
		}
		if (strcmp(key, "ttl") == 0) {
			if (!json_object_is_type(val, json_type_int) || json_object_get_int64(val) < 0 ||
			    json_object_get_int64(val) > TTL_MAX) {
				it_resp_problem(
					req, 400, "invalid-ttl",
					"ttl is the token's lifetime in whole seconds, from 0 (as long as the session)"
					" to %d.",
					TTL_MAX);
				return 1;
			}
			f->ttl = json_object_get_int64(val);
			continue;
		}
		if (!json_object_is_type(val, json_type_string) ||
		    strlen(json_object_get_string(val)) != (size_t)json_object_get_string_len(val)) {
			it_resp_problem(req, 400, "invalid-field", "%s must be a string.", key);
			return 1;
		}
		s = json_object_get_string(val);
		if (strcmp(key, "scope") == 0) {
			if (it_scope_parse(s) == 0) {
				it_resp_problem(req, 400, "invalid-scope",
						"scope must be \"upload\", \"view\" or \"full\".");
				return 1;
			}
			f->scope = s;
		} else if (strcmp(key, "label") == 0) {
			if (!it_scope_label_valid(s)) {
				it_resp_problem(
					req, 400, "invalid-label",
					"label must be 1 to 64 characters of UTF-8 without control characters.");
				return 1;
			}
			f->label = s;
		} else if (strcmp(key, "source") == 0) {
			if (!it_scope_source_valid(s)) {
				it_resp_problem(req, 400, "invalid-source",
						"source must be 1 to 32 letters, digits, \"_\", \".\" or \"-\" (web, "
						"android_app,"
						" browser_addon, cli...).");
				return 1;
			}
			f->source = s;
		} else {
			f->code = s;
		}
	}
	return 0;
}

/* Answers 201 with a device's JSON and its token (shown this once). Takes
 * ownership of device. */
static void answer_token(it_req *req, json_object *device, char *token)
{
	json_object_object_add(device, "token", json_object_new_string(token));
	memset(token, 0, IT_TOKEN_LEN + 1);
	it_resp_json(req, 201, device);
	json_object_put(device);
}

static int devices_problem(it_req *req, int rc, const char *what)
{
	if (rc == 409) {
		it_resp_problem(
			req, 409, "too-many-devices",
			"This session already has %d %s: revoke some (DELETE /api/v1/devices/{device_id}) or wait"
			" for them to expire.",
			strcmp(what, "codes") == 0 ? IT_PAIRINGS_MAX : IT_DEVICES_MAX,
			strcmp(what, "codes") == 0 ? "pairing codes waiting to be used" : "devices");
		return 409;
	}
	return it_app_session_problem(req, rc);
}

void it_h_token_create(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char token[IT_TOKEN_LEN + 1];
	json_object *body = NULL, *device = NULL;
	it_principal p;
	struct fields f;
	int rc;

	/* Refused before the body is read: nothing is parsed for a caller
	 * that may not mint. */
	if (it_auth_principal(req, NULL, IT_SCOPE_FULL, &p) != 0) {
		it_req_drain(req, BODY_MAX);
		return;
	}
	if ((body = it_req_read_json(req, BODY_MAX, BODY_DEPTH)) == NULL ||
	    read_fields(req, body, "scope label source ttl", &f))
		goto out;
	if (f.scope == NULL || f.label == NULL) {
		it_resp_problem(req, 400, "missing-field",
				"Send {\"scope\": \"upload\"|\"view\"|\"full\", \"label\": \"...\"} (and optionally"
				" \"source\", \"ttl\").");
		goto out;
	}
	rc = it_devices_mint(&conn, p.session_id, it_scope_parse(f.scope), f.label, f.source ? f.source : "api",
			     f.ttl >= 0 ? f.ttl : it_g.cfg.token_ttl, token, &device);
	if (devices_problem(req, rc, "devices"))
		goto out;
	answer_token(req, device, token);
out:
	json_object_put(body);
}

/* The link a pairing QR code carries: public_url; else the origin of the
 * page that asked (the guard has vetted it), with url_prefix when that
 * page is this server's own (the page is served beside the API); else
 * this server as the request named it; "" when none is known. The code
 * rides in the fragment, which browsers never send to a server. */
static void pair_url(it_req *req, const char *code, char *out, size_t n)
{
	const char *origin = it_req_env(req, "HTTP_ORIGIN"), *host = it_req_env(req, "HTTP_HOST");
	const char *https = it_req_env(req, "HTTPS"), *prefix = "";
	char self[600] = "";
	const char *base = it_g.cfg.public_url;
	size_t len;

	if (host != NULL && strlen(host) < 512 && strpbrk(host, "/?#@\\ ") == NULL)
		snprintf(self, sizeof(self), "%s://%s", https && strcmp(https, "on") == 0 ? "https" : "http", host);
	if (base[0] == '\0' && origin != NULL && strcmp(origin, "null") != 0) {
		base = origin;
		if (strcmp(origin, self) == 0)
			prefix = it_g.cfg.url_prefix;
	} else if (base[0] == '\0') {
		base = self;
		prefix = it_g.cfg.url_prefix;
	}
	if (base[0] == '\0') {
		out[0] = '\0';
		return;
	}
	len = strlen(base);
	while (len > 0 && base[len - 1] == '/')
		len--;
	if (len > 1024)
		len = 1024;
	snprintf(out, n, "%.*s%s/#pair=%s", (int)len, base, prefix, code);
}

void it_h_pairing_create(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char code[IT_PAIRING_LEN + 1], expires[40], url[1200];
	json_object *body = NULL, *o;
	it_principal p;
	struct fields f;
	unsigned scope;
	int rc;

	if (it_auth_principal(req, NULL, IT_SCOPE_FULL, &p) != 0) {
		it_req_drain(req, BODY_MAX);
		return;
	}
	/* An empty body asks for the defaults. */
	if (req->content_length == 0) {
		memset(&f, 0, sizeof(f));
		f.ttl = -1;
	} else if ((body = it_req_read_json(req, BODY_MAX, BODY_DEPTH)) == NULL ||
		   read_fields(req, body, "scope label ttl", &f)) {
		goto out;
	}
	scope = f.scope ? it_scope_parse(f.scope) : IT_SCOPE_UPLOAD;
	rc = it_devices_pairing_create(&conn, p.session_id, scope, f.label, f.ttl >= 0 ? f.ttl : it_g.cfg.token_ttl,
				       it_g.cfg.pairing_ttl, code, expires);
	if (devices_problem(req, rc, "codes"))
		goto out;
	pair_url(req, code, url, sizeof(url));
	o = json_object_new_object();
	json_object_object_add(o, "code", json_object_new_string(code));
	json_object_object_add(o, "expires_at", json_object_new_string(expires));
	json_object_object_add(o, "pair_url", url[0] ? json_object_new_string(url) : NULL);
	json_object_object_add(o, "scope", json_object_new_string(it_scope_name(scope)));
	if (f.label)
		json_object_object_add(o, "label", json_object_new_string(f.label));
	memset(code, 0, sizeof(code));
	memset(url, 0, sizeof(url));
	it_resp_json(req, 201, o);
	json_object_put(o);
out:
	json_object_put(body);
}

void it_h_pair(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char token[IT_TOKEN_LEN + 1];
	json_object *body = NULL, *device = NULL;
	const char *reason;
	struct fields f;
	unsigned scope;
	int rc;

	/* The code is the credential: an address that keeps guessing is
	 * refused before its guess is looked at, and every exchange counts. */
	if (it_auth_blocked(req) || it_guard_rate(req, "pairing", req->remote_addr, it_g.cfg.rate_pairing)) {
		it_req_drain(req, BODY_MAX);
		return;
	}
	if ((body = it_req_read_json(req, BODY_MAX, BODY_DEPTH)) == NULL ||
	    read_fields(req, body, "code label source", &f))
		goto out;
	if (f.code == NULL || !it_token_pairing_valid(f.code)) {
		rc = 401;
	} else {
		rc = it_devices_pair(&conn, f.code, f.label, f.source ? f.source : "web", token, &device, &scope,
				     &reason);
	}
	switch (rc) {
	case 0: answer_token(req, device, token); break;
	case 401:
		it_auth_failed(req);
		it_resp_problem(
			req, 401, "invalid-pairing-code",
			"The pairing code is malformed or unknown: scan the QR code again, or ask for a new one.");
		break;
	case 410:
		if (strcmp(reason, "used") == 0)
			it_resp_problem(
				req, 410, "pairing-code-used",
				"This pairing code has been used already: a code pairs one device. Ask for a new one.");
		else
			it_resp_problem(req, 410, "pairing-code-expired",
					"This pairing code has expired. Ask for a new one.");
		break;
	default: devices_problem(req, rc, "devices"); break;
	}
out:
	json_object_put(body);
}

void it_h_devices_list(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	json_object *arr = NULL, *o;
	it_principal p;

	if (it_auth_principal(req, NULL, IT_SCOPE_FULL, &p) != 0)
		return;
	if (it_app_session_problem(req, it_devices_list(&conn, p.session_id, &arr)))
		return;
	o = json_object_new_object();
	json_object_object_add(o, "devices", arr);
	it_resp_json(req, 200, o);
	json_object_put(o);
}

void it_h_device_delete(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_principal p;
	int rc;

	if (it_auth_principal(req, NULL, IT_SCOPE_FULL, &p) != 0) {
		it_req_drain(req, BODY_MAX);
		return;
	}
	if (it_req_drain(req, BODY_MAX) < 0) {
		it_resp_problem(req, 413, "body-too-large", "DELETE takes no body.");
		return;
	}
	rc = it_devices_revoke(&conn, p.session_id, req->params[0]);
	if (rc == 404) {
		it_resp_problem(req, 404, "unknown-device",
				"This session has no such device (or it is revoked already).");
		return;
	}
	if (it_app_session_problem(req, rc))
		return;
	it_resp_begin(req, 204, NULL);
}

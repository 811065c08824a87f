/* auth.c: the credential a request presents, and the principal and scope it resolves to (docs/security.md). */
#include "config.h"

#include "fcgi/auth.h"

#include "common/cred.h"
#include "common/id.h"
#include "common/token.h"
#include "db/devices.h"
#include "fcgi/app.h"
#include "fcgi/guard.h"

#include <stdio.h>
#include <string.h>

/* The bucket refused tokens and pairing codes take from, per address. */
#define FAIL_KIND "auth-fail"

int it_auth_credential(const it_req *req, char *out, size_t outlen)
{
	const char *h = it_req_env(req, "HTTP_AUTHORIZATION");
	const char *tok;
	size_t toklen;
	int n;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (h != NULL && it_cred_bearer(h, strlen(h), &tok, &toklen))
		return it_cred_copy(tok, toklen, out, outlen);
	n = it_query_get(req->query, "session_id", out, outlen);
	if (n == -1)
		return 0;
	if (n < 0)
		return -1;
	return it_cred_copy(out, (size_t)n, out, outlen);
}

int it_auth_require_session(it_req *req, char *out, size_t outlen)
{
	int rc = it_auth_credential(req, out, outlen);

	if (rc == 0) {
		it_resp_header(req, "WWW-Authenticate", "Bearer realm=\"imagetools\"");
		it_resp_problem(req, 401, "credential-required",
				"This needs the session's credential: send \"Authorization: Bearer <session_id>\" (or"
				" ?session_id=). File and thumbnail bytes can also be fetched through the signed URLs"
				" the API hands out.");
		return -1;
	}
	if (rc < 0 || !it_id_session_valid(out)) {
		it_resp_problem(req, 400, "invalid-credential",
				"The credential is malformed: send \"Authorization: Bearer <session_id>\" with the id"
				" POST /api/v1/sessions returned.");
		return -1;
	}
	return 0;
}

int it_auth_allows(const it_principal *p, unsigned need)
{
	need &= IT_SCOPE_FULL;
	return (p->scope & need) == need;
}

void it_auth_refuse_scope(it_req *req, unsigned need)
{
	const char *name = it_scope_needed(need);

	it_resp_header(req, "WWW-Authenticate", "Bearer realm=\"imagetools\", error=\"insufficient_scope\", scope=\"%s\"",
		       name);
	it_resp_problem(req, 403, "insufficient-scope",
			"This credential's scope does not allow this request: it needs a credential of scope \"%s\"."
			" Nothing was changed.",
			name);
}

void it_auth_failed(it_req *req)
{
	int64_t retry;

	it_guard_rate_check(FAIL_KIND, req->remote_addr, it_g.cfg.rate_auth_failures, &retry);
}

void it_auth_refuse_token(it_req *req)
{
	it_auth_failed(req);
	it_resp_header(req, "WWW-Authenticate", "Bearer realm=\"imagetools\", error=\"invalid_token\"");
	it_resp_problem(req, 401, "invalid-token",
			"The token is unknown, expired or revoked. Ask the session's owner for a new one.");
}

int it_auth_blocked(it_req *req)
{
	int64_t retry;

	if (!it_guard_rate_peek(FAIL_KIND, req->remote_addr, it_g.cfg.rate_auth_failures, &retry))
		return 0;
	it_guard_rate_refuse(req, retry, "Too many refused credentials from this address");
	return 1;
}

int it_auth_principal(it_req *req, const char *cred, unsigned need, it_principal *out)
{
	/* Larger than any credential: a token with a tail is still seen as a
	 * token (401), not as an over-long session id (400). */
	char buf[1024];
	int rc;

	memset(out, 0, sizeof(*out));
	if (cred != NULL)
		rc = it_cred_copy(cred, strlen(cred), buf, sizeof(buf));
	else
		rc = it_auth_credential(req, buf, sizeof(buf));
	if (rc == 0) {
		it_resp_header(req, "WWW-Authenticate", "Bearer realm=\"imagetools\"");
		it_resp_problem(req, 401, "credential-required",
				"This needs a credential: send \"Authorization: Bearer <session_id or token>\".");
		return -1;
	}
	if (rc > 0 && it_token_is(buf)) {
		/* Checked before the token is looked at: an address that keeps
		 * guessing learns nothing more, not even "wrong". */
		if (it_auth_blocked(req))
			return -1;
		rc = it_token_valid(buf) ? it_devices_check(it_guard_conn(), buf, out) : 401;
	} else if (rc > 0 && it_id_session_valid(buf)) {
		if (need & IT_AUTH_SESSION_UNCHECKED) {
			snprintf(out->session_id, sizeof(out->session_id), "%.64s", buf);
			out->scope = IT_SCOPE_FULL;
			rc = 0;
		} else {
			rc = it_devices_check(it_guard_conn(), buf, out);
		}
	} else {
		it_resp_problem(req, 400, "invalid-credential",
				"The credential is malformed: send \"Authorization: Bearer <credential>\" with the session id"
				" POST /api/v1/sessions returned, or a token.");
		return -1;
	}
	memset(buf, 0, sizeof(buf));
	switch (rc) {
	case 0: break;
	case 401: it_auth_refuse_token(req); return -1;
	default: it_app_session_problem(req, rc); return -1;
	}
	if (!it_auth_allows(out, need)) {
		it_auth_refuse_scope(req, need);
		return -1;
	}
	return 0;
}

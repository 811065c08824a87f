/* auth.c: the credential a request presents, and the principal and scope it resolves to (docs/security.md). */
#include "config.h"

#include "fcgi/auth.h"

#include "common/cred.h"
#include "common/id.h"
#include "common/token.h"
#include "db/devices.h"
#include "db/metrics.h"
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
	if (h != NULL && it_cred_bearer(h, strlen(h), &tok, &toklen)) {
		n = it_cred_copy(tok, toklen, out, outlen);
	} else {
		n = it_req_query(req->query, "session_id", out, outlen);
		if (n == IT_QUERY_ABSENT)
			return 0;
		if (n >= 0)
			n = it_cred_copy(out, (size_t)n, out, outlen);
	}
	return n < 0 ? -1 : n;
}

int it_auth_allows(const it_principal *p, unsigned need)
{
	need &= IT_SCOPE_FULL;
	return (p->scope & need) == need;
}

static int refuse(it_auth_refusal *why, int status, const char *slug, const char *detail)
{
	why->status = status;
	why->slug = slug;
	why->detail = detail;
	return status;
}

static int refuse_token(it_req *req, it_auth_refusal *why)
{
	it_auth_failed(req);
	snprintf(why->www_authenticate, sizeof(why->www_authenticate),
		 "Bearer realm=\"imagetools\", error=\"invalid_token\"");
	return refuse(why, 401, "invalid-token",
		      "The token is unknown, expired or revoked. Ask the session's owner for a new one.");
}

static int refuse_scope(unsigned need, it_auth_refusal *why)
{
	snprintf(why->www_authenticate, sizeof(why->www_authenticate),
		 "Bearer realm=\"imagetools\", error=\"insufficient_scope\", scope=\"%s\"", it_scope_needed(need));
	snprintf(why->text, sizeof(why->text),
		 "This credential's scope does not allow this request: it needs a credential of scope \"%s\"."
		 " Nothing was changed.",
		 it_scope_needed(need));
	return refuse(why, 403, "insufficient-scope", why->text);
}

int it_auth_answer(it_req *req, const it_auth_refusal *why)
{
	if (why->www_authenticate[0])
		it_resp_header(req, "WWW-Authenticate", "%s", why->www_authenticate);
	if (why->status == 429)
		return it_guard_rate_refuse(req, why->retry_after, "Too many refused credentials from this address");
	if (why->status == 503)
		it_resp_header(req, "Retry-After", "5");
	it_resp_problem(req, why->status, why->slug, "%s", why->detail);
	return why->status;
}

void it_auth_failed(it_req *req)
{
	int64_t retry;

	it_guard_rate_check(FAIL_KIND, req->remote_addr, it_g.cfg.rate_auth_failures, &retry);
}

/* Whether the address has used up its refused credentials; counted in
 * imagetools_rate_limited_total like every 429. */
static int blocked(it_req *req, int64_t *retry)
{
	if (it_guard_rate_peek(FAIL_KIND, req->remote_addr, it_g.cfg.rate_auth_failures, retry) == 0)
		return 0;
	it_metrics_inc("imagetools_rate_limited_total", "limit=\"" FAIL_KIND "\"", 1);
	return 1;
}

int it_auth_blocked(it_req *req)
{
	int64_t retry;

	if (!blocked(req, &retry))
		return 0;
	return it_guard_rate_refuse(req, retry, "Too many refused credentials from this address");
}

/* Whether a credential that could not be copied (spaces, control bytes,
 * too long) still begins like a token: it is then a malformed token (401),
 * not a malformed session id (400). */
static int token_prefix(const it_req *req, const char *cred)
{
	const char *h = it_req_env(req, "HTTP_AUTHORIZATION"), *q = req->query, *tok;
	size_t n;

	if (cred != NULL)
		return it_token_is(cred);
	if (h != NULL && it_cred_bearer(h, strlen(h), &tok, &n))
		return n >= 4 && memcmp(tok, IT_TOKEN_PREFIX, 4) == 0;
	for (; q != NULL && *q; q += strcspn(q, "&"), q += *q == '&') {
		if (strncmp(q, "session_id=", 11) == 0)
			return strncmp(q + 11, IT_TOKEN_PREFIX, 4) == 0;
	}
	return 0;
}

int it_auth_resolve(it_req *req, const char *cred, unsigned need, it_principal *out, it_auth_refusal *why)
{
	/* Larger than any credential: a token with a tail is still seen as a
	 * token (401), not as an over-long session id (400). */
	char buf[1024];
	int rc;

	memset(out, 0, sizeof(*out));
	memset(why, 0, sizeof(*why));
	if (cred != NULL)
		rc = it_cred_copy(cred, strlen(cred), buf, sizeof(buf));
	else
		rc = it_auth_credential(req, buf, sizeof(buf));
	if (rc == 0) {
		snprintf(why->www_authenticate, sizeof(why->www_authenticate), "Bearer realm=\"imagetools\"");
		return refuse(why, 401, "credential-required",
			      "This needs a credential: send \"Authorization: Bearer <session_id or token>\".");
	}
	if (rc > 0 && it_token_is(buf)) {
		/* The address's failures are asked before the token is looked
		 * at (in the same statement): an address that keeps guessing
		 * learns nothing more, not even "wrong". */
		if (!it_token_valid(buf)) {
			if (blocked(req, &why->retry_after))
				return refuse(why, 429, "rate-limited",
					      "Too many refused credentials from this address.");
			rc = 401;
		} else {
			rc = it_devices_check_limited(it_guard_conn(), buf, FAIL_KIND, req->remote_addr,
						      it_g.cfg.rate_auth_failures, out, &why->retry_after);
			if (rc == 429) {
				it_metrics_inc("imagetools_rate_limited_total", "limit=\"" FAIL_KIND "\"", 1);
				return refuse(why, 429, "rate-limited",
					      "Too many refused credentials from this address.");
			}
		}
	} else if (rc > 0 && it_id_session_valid(buf)) {
		if (need & IT_AUTH_SESSION_UNCHECKED) {
			snprintf(out->session_id, sizeof(out->session_id), "%.64s", buf);
			out->scope = IT_SCOPE_FULL;
			rc = 0;
		} else {
			rc = it_devices_check(it_guard_conn(), buf, out);
		}
	} else if (rc < 0 && token_prefix(req, cred)) {
		if (blocked(req, &why->retry_after))
			return refuse(why, 429, "rate-limited", "Too many refused credentials from this address.");
		rc = 401;
	} else {
		return refuse(
			why, 400, "invalid-credential",
			"The credential is malformed: send \"Authorization: Bearer <credential>\" with the session"
			" id POST /api/v1/sessions returned, or a token.");
	}
	memset(buf, 0, sizeof(buf));
	switch (rc) {
	case 0: break;
	case 401: return refuse_token(req, why);
	case 404: return refuse(why, 404, "unknown-session", "No such session, or it has expired.");
	default: return refuse(why, 503, "database-unavailable", "The database cannot be reached; try again shortly.");
	}
	if (!it_auth_allows(out, need))
		return refuse_scope(need, why);
	return 0;
}

int it_auth_principal(it_req *req, const char *cred, unsigned need, it_principal *out)
{
	it_auth_refusal why;

	if (it_auth_resolve(req, cred, need, out, &why) == 0)
		return 0;
	return it_auth_answer(req, &why);
}

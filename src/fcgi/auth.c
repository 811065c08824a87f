/* auth.c: the credential a request presents for its session (docs/security.md). */
#include "config.h"

#include "fcgi/auth.h"

#include "common/cred.h"
#include "common/id.h"

#include <string.h>

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

/* auth.c: the credential a request presents for its session (docs/security.md). */
#include "config.h"

#include "fcgi/auth.h"

#include "common/id.h"

#include <string.h>
#include <strings.h>

/* Copies n bytes of a credential, refusing anything that is not a visible
 * ASCII character: a credential travels in headers and URLs, never with
 * spaces or control bytes. */
static int copy_cred(const char *p, size_t n, char *out, size_t outlen)
{
	if (n == 0 || n >= outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 1;
}

int it_auth_credential(const it_req *req, char *out, size_t outlen)
{
	const char *h = it_req_env(req, "HTTP_AUTHORIZATION");
	int n;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	if (h != NULL && *h != '\0') {
		size_t len;
		while (*h == ' ' || *h == '\t')
			h++;
		/* The scheme is case-insensitive (RFC 9110 11.1). Another scheme
		 * is not ours: a site behind HTTP Basic authentication has the
		 * browser send its password on every request, and the session
		 * then travels in the query. */
		if (strncasecmp(h, "Bearer", 6) == 0 && (h[6] == ' ' || h[6] == '\t')) {
			h += 6;
			while (*h == ' ' || *h == '\t')
				h++;
			len = strlen(h);
			while (len > 0 && (h[len - 1] == ' ' || h[len - 1] == '\t'))
				len--;
			return copy_cred(h, len, out, outlen);
		}
	}
	n = it_query_get(req->query, "session_id", out, outlen);
	if (n == -1)
		return 0;
	if (n < 0)
		return -1;
	return copy_cred(out, (size_t)n, out, outlen);
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

/* auth.h: the credential a request presents, and the principal and scope it resolves to (docs/security.md). */
#ifndef IT_FCGI_AUTH_H
#define IT_FCGI_AUTH_H

#include "common/scope.h"
#include "fcgi/request.h"

#include <stddef.h>
#include <stdint.h>

/* Longest credential copied out, without the NUL. Session ids are 22 to 64
 * characters, tokens 36; the room above that is for what may come. */
#define IT_AUTH_CRED_MAX 127

/* Finds the session credential the request presents and copies it into out
 * (outlen bytes, NUL-terminated): the "Authorization: Bearer <value>" header
 * first, else the session_id query parameter. An Authorization header of
 * another scheme (Basic, for a site behind a password) is not a credential
 * of ours and is passed over. Only where the credential
 * came from is decided here; whether it names a live session is the
 * handler's question. Returns its length (at least 1) when one was found, 0
 * when the request presents none, -1 when the one it presents is empty, too
 * long for out or not printable ASCII. */
int it_auth_credential(const it_req *req, char *out, size_t outlen);

/* A bit of need for it_auth_principal, not a scope: when the credential is
 * a session id, the database is not asked, because the handler's own query
 * checks that the session is live anyway (and a request costs no more than
 * before tokens existed). The principal then has scope IT_SCOPE_FULL and
 * until 0. Tokens are always checked. */
#define IT_AUTH_SESSION_UNCHECKED 0x100u

/* Resolves the request's credential (Bearer, else ?session_id=, or cred
 * when it is not NULL, e.g. a multipart field) into out and checks that it
 * holds every IT_SCOPE_* bit of need. Answers the request itself and
 * returns the status it answered with: 401 credential-required (none presented), 400
 * invalid-credential (neither a session id's nor a token's form), 401
 * invalid-token (a string starting "itk." that is not a live token:
 * malformed, unknown, expired or revoked, not saying which), 404
 * unknown-session (the session is unknown or has expired), 403
 * insufficient-scope (WWW-Authenticate names the scope needed; nothing was
 * done), 429 (too many refused tokens from this address: asked before the
 * token is looked at), 503. Returns 0 otherwise. Every refused token takes
 * one from the address's auth-fail bucket (rate_auth_failures). Safe inside
 * a transaction on the thread's connection (it asks on another one). */
int it_auth_principal(it_req *req, const char *cred, unsigned need, it_principal *out);

/* Why it_auth_resolve refused a credential: what it_auth_principal would
 * answer. */
typedef struct it_auth_refusal {
	int status;		    /* 400, 401, 403, 404, 429 or 503 */
	const char *slug;	    /* the problem type's slug */
	const char *detail;	    /* a sentence for humans (may point into text) */
	char www_authenticate[128]; /* the WWW-Authenticate value; "" when none */
	int64_t retry_after;	    /* seconds, with 429 */
	char text[192];
} it_auth_refusal;

/* it_auth_principal without the answer, for handlers that answer later
 * (an upload finds its credential in the middle of the body and answers
 * once the body is read): returns 0, or the status to answer (why->status)
 * with why filled in. Counts a
 * refused token in the auth-fail bucket all the same. */
int it_auth_resolve(it_req *req, const char *cred, unsigned need, it_principal *out, it_auth_refusal *why);

/* Answers the problem why describes, with its WWW-Authenticate and
 * Retry-After headers. Returns the status it answered with (why->status). */
int it_auth_answer(it_req *req, const it_auth_refusal *why);

/* 1 when p holds every scope bit of need. */
int it_auth_allows(const it_principal *p, unsigned need);

/* For credentials that are not tokens but fail the same way (pairing
 * codes): 429 after answering it when the address's auth-fail bucket is
 * empty; else 0. */
int it_auth_blocked(it_req *req);

/* Takes one from the address's auth-fail bucket (a refused pairing code). */
void it_auth_failed(it_req *req);

#endif

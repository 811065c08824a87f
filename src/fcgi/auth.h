/* auth.h: the credential a request presents for its session (docs/security.md). */
#ifndef IT_FCGI_AUTH_H
#define IT_FCGI_AUTH_H

#include "fcgi/request.h"

#include <stddef.h>

/* Longest credential copied out, without the NUL. Session ids are 22 to 64
 * characters; the room above that is for scoped tokens. */
#define IT_AUTH_CRED_MAX 127

/* Finds the session credential the request presents and copies it into out
 * (outlen bytes, NUL-terminated): the "Authorization: Bearer <value>" header
 * first, else the session_id query parameter. An Authorization header of
 * another scheme (Basic, for a site behind a password) is not a credential
 * of ours and is passed over. Only where the credential
 * came from is decided here; whether it names a live session is the
 * handler's question. Returns 1 when one was found, 0 when the request
 * presents none, -1 when the one it presents is empty, too long for out or
 * not printable ASCII. */
int it_auth_credential(const it_req *req, char *out, size_t outlen);

/* Like it_auth_credential, for endpoints that need the credential: when the
 * request presents none, answers 401 credential-required (with
 * WWW-Authenticate: Bearer); when it presents one that is not of the form
 * of a session id, answers 400 invalid-credential. Whether the session is
 * live and what it may see is left to the handler's query. out holds at
 * least IT_AUTH_CRED_MAX + 1 bytes. Returns 0 with the credential in out,
 * or -1 after answering. */
int it_auth_require_session(it_req *req, char *out, size_t outlen);

#endif

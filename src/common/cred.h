/* cred.h: the two ways a request presents its session credential, as both
 * imagetools.fcgi (src/fcgi/auth.c) and the bridge read them. */
#ifndef IT_COMMON_CRED_H
#define IT_COMMON_CRED_H

#include <stddef.h>

/* Whether an Authorization header value (len bytes, not necessarily
 * NUL-terminated) is of the Bearer scheme (case-insensitive, RFC 9110 11.1).
 * Returns 1 and points *tok, *toklen at its token with the blanks around it
 * removed (the token may be empty), or 0 for another scheme or none: a site
 * behind HTTP Basic authentication has the browser send its password with
 * every request, and that is not a credential of ours. */
int it_cred_bearer(const char *value, size_t len, const char **tok, size_t *toklen);

/* Copies the n bytes of a credential at p into out (outlen bytes, NUL-
 * terminated; p may lie inside out), refusing anything but visible ASCII: a
 * credential travels in headers and URLs, never with spaces or control
 * bytes. Returns its length (at least 1), or -EINVAL when it is empty, does
 * not fit or has such a byte. */
int it_cred_copy(const char *p, size_t n, char *out, size_t outlen);

#endif

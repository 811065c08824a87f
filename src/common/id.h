/* id.h: unguessable identifiers from the operating system's random source. */
#ifndef IT_COMMON_ID_H
#define IT_COMMON_ID_H

#include <stddef.h>

/* Length of a session id: 24 random bytes (192 bits) in unpadded base64url. */
#define IT_SESSION_ID_LEN 32

/* Fills out (at least IT_SESSION_ID_LEN + 1 bytes) with a new session id.
 * Returns 0, or a negative errno when the random source fails (the caller
 * must then refuse to create the session rather than fall back). */
int it_id_session(char *out);

/* Returns 1 when s has the form of a session id (URL-safe base64 alphabet,
 * 22 to 64 characters), 0 otherwise. Says nothing about whether it exists. */
int it_id_session_valid(const char *s);

/* Returns 1 when s is a canonical lower-case UUID (8-4-4-4-12 hex). */
int it_id_uuid_valid(const char *s);

/* Fills buf with n bytes from getrandom(2). Returns 0 or a negative errno. */
int it_id_random(void *buf, size_t n);

/* Encodes n bytes as unpadded base64url into out (4*ceil(n/3)+1 bytes). */
void it_base64url(const unsigned char *in, size_t n, char *out);

#endif

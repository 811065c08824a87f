/* urlsign.h: signed, expiring URLs for image bytes (HMAC-SHA256; docs/security.md). */
#ifndef IT_COMMON_URLSIGN_H
#define IT_COMMON_URLSIGN_H

#include <stddef.h>
#include <stdint.h>

/* Keys are 32 to 64 bytes: at least the output size of SHA-256, and no
 * longer than its block (HMAC would hash a longer key down anyway). */
#define IT_URLSIGN_KEY_MIN 32
#define IT_URLSIGN_KEY_MAX 64

/* HMAC-SHA256 output, and its unpadded base64url form without the NUL. */
#define IT_URLSIGN_MAC_LEN 32
#define IT_URLSIGN_SIG_LEN 43

/* Room for the query a signed URL carries ("v=...&exp=...&sig=..."). */
#define IT_URLSIGN_QUERY_MAX 112

/* Signed URLs expire on whole hours, so that every answer given within one
 * hour hands out the same URL for the same image (browser caches hit). */
#define IT_URLSIGN_ROUND 3600

/* A signing key and the lifetime of the URLs it signs. Plain data: copy it
 * freely; it owns nothing. */
typedef struct it_urlsign {
	unsigned char key[IT_URLSIGN_KEY_MAX];
	size_t keylen;
	int64_t ttl; /* seconds a URL lives at least */
} it_urlsign;

/* Outcomes of it_urlsign_verify. */
enum { IT_URLSIGN_OK = 0, IT_URLSIGN_BAD = -1, IT_URLSIGN_EXPIRED = -2 };

/* HMAC-SHA256 of msg (len bytes) under key (any length) into out. */
void it_urlsign_hmac(const void *key, size_t keylen, const void *msg, size_t len,
		     unsigned char out[IT_URLSIGN_MAC_LEN]);

/* Decodes a configured key: an even number of hex digits (at least 64), or
 * else base64 or base64url, padding optional. The result must be
 * IT_URLSIGN_KEY_MIN to IT_URLSIGN_KEY_MAX bytes. out holds
 * IT_URLSIGN_KEY_MAX bytes. Returns the key length, or -EINVAL when text is not
 * such a key (out is then unspecified). text must not be NULL. */
int it_urlsign_key_parse(const char *text, unsigned char *out);

/* Fills s with a key of keylen (IT_URLSIGN_KEY_MIN..MAX) bytes and the URL
 * lifetime ttl (seconds, > 0). Returns 0, or -EINVAL when keylen or ttl is
 * out of range. */
int it_urlsign_init(it_urlsign *s, const unsigned char *key, size_t keylen, int64_t ttl);

/* The expiry of a URL signed at now: now + ttl rounded up to the next whole
 * IT_URLSIGN_ROUND seconds (Unix time). */
int64_t it_urlsign_expiry(int64_t now, int64_t ttl);

/* The base64url signature (IT_URLSIGN_SIG_LEN characters and a NUL in out)
 * of the bytes named label ("file", "thumbnail") of image id at version,
 * valid until exp. The label, id, version and expiry are all covered, so a
 * signature for one of them says nothing about any other. */
void it_urlsign_sig(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t exp,
		    char out[IT_URLSIGN_SIG_LEN + 1]);

/* Writes the query of a URL signed at now ("v=<version>&exp=<unix>&sig=<sig>")
 * into out (outlen bytes, at least IT_URLSIGN_QUERY_MAX). Returns 0, or
 * -ENOSPC when out is too small. */
int it_urlsign_query(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t now, char *out,
		     size_t outlen);

/* Checks a signature presented with label, id, version and exp at time now.
 * The comparison takes the same time wherever the signatures differ.
 * A classification, not a failure (one of the common layer's documented
 * exceptions): returns IT_URLSIGN_OK, IT_URLSIGN_BAD (sig is not the signature of these
 * values under s's key; sig may be NULL) or IT_URLSIGN_EXPIRED (the
 * signature is right but exp is before now). */
int it_urlsign_verify(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t exp,
		      const char *sig, int64_t now);

#endif

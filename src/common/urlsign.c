/* urlsign.c: signed, expiring URLs for image bytes (HMAC-SHA256; docs/security.md). */
#include "config.h"

#include "common/urlsign.h"

#include "common/base64.h"
#include "common/hex.h"
#include "common/id.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

/* Names the scheme inside every signed message, so that a MAC made here can
 * never be replayed as the MAC of some other message under the same key
 * (the key is a server secret that may one day sign other things). */
#define DOMAIN "imagetools-url-1"

void it_urlsign_hmac(const void *key, size_t keylen, const void *msg, size_t len, unsigned char out[IT_URLSIGN_MAC_LEN])
{
	unsigned int outlen = IT_URLSIGN_MAC_LEN;
	static const unsigned char nokey[1];

	/* HMAC() treats a NULL key as "reuse the last one"; an empty key is a
	 * valid (if useless) key, so point at a real byte instead. */
	if (HMAC(EVP_sha256(), keylen ? key : nokey, (int)keylen, msg, len, out, &outlen) == NULL)
		memset(out, 0, IT_URLSIGN_MAC_LEN); /* cannot happen with SHA-256; never sign with garbage */
}

int it_urlsign_key_parse(const char *text, unsigned char *out)
{
	size_t n = strlen(text), i, len = 0;
	int hex = n >= 2 * IT_URLSIGN_KEY_MIN && n % 2 == 0;
	ssize_t r;

	for (i = 0; hex && i < n; i++)
		if (it_hex_value((unsigned char)text[i]) < 0)
			hex = 0;
	if (hex) {
		if (n / 2 > IT_URLSIGN_KEY_MAX)
			return -EINVAL;
		for (i = 0; i < n; i += 2)
			out[len++] = (unsigned char)(it_hex_value((unsigned char)text[i]) << 4 |
						     it_hex_value((unsigned char)text[i + 1]));
		return (int)len;
	}
	r = it_base64_decode_lax(text, n, out, IT_URLSIGN_KEY_MAX);
	return r >= IT_URLSIGN_KEY_MIN ? (int)r : -EINVAL;
}

int it_urlsign_init(it_urlsign *s, const unsigned char *key, size_t keylen, int64_t ttl)
{
	if (keylen < IT_URLSIGN_KEY_MIN || keylen > IT_URLSIGN_KEY_MAX || ttl <= 0)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	memcpy(s->key, key, keylen);
	s->keylen = keylen;
	s->ttl = ttl;
	return 0;
}

int64_t it_urlsign_expiry(int64_t now, int64_t ttl)
{
	int64_t t = now + ttl;

	return (t + IT_URLSIGN_ROUND - 1) / IT_URLSIGN_ROUND * IT_URLSIGN_ROUND;
}

void it_urlsign_sig(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t exp,
		    char out[IT_URLSIGN_SIG_LEN + 1])
{
	unsigned char mac[IT_URLSIGN_MAC_LEN];
	char msg[256];
	int n;

	/* Newlines separate the fields: none of them can contain one (label
	 * is a constant, id a UUID), so no two tuples share a message. */
	n = snprintf(msg, sizeof(msg), DOMAIN "\n%s\n%s\n%" PRId64 "\n%" PRId64, label, id, version, exp);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0; /* an id this long is never stored; sign nothing usable */
	it_urlsign_hmac(s->key, s->keylen, msg, (size_t)n, mac);
	it_base64url(mac, sizeof(mac), out);
	OPENSSL_cleanse(mac, sizeof(mac));
}

int it_urlsign_query(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t now, char *out,
		     size_t outlen)
{
	char sig[IT_URLSIGN_SIG_LEN + 1];
	int64_t exp = it_urlsign_expiry(now, s->ttl);
	int n;

	it_urlsign_sig(s, label, id, version, exp, sig);
	n = snprintf(out, outlen, "v=%" PRId64 "&exp=%" PRId64 "&sig=%s", version, exp, sig);
	return n < 0 || (size_t)n >= outlen ? -ENOSPC : 0;
}

int it_urlsign_verify(const it_urlsign *s, const char *label, const char *id, int64_t version, int64_t exp,
		      const char *sig, int64_t now)
{
	char want[IT_URLSIGN_SIG_LEN + 1];

	/* The length of a signature is public; only its bytes are compared in
	 * constant time. */
	if (sig == NULL || strlen(sig) != IT_URLSIGN_SIG_LEN)
		return IT_URLSIGN_BAD;
	it_urlsign_sig(s, label, id, version, exp, want);
	if (CRYPTO_memcmp(want, sig, IT_URLSIGN_SIG_LEN) != 0)
		return IT_URLSIGN_BAD;
	return exp >= now ? IT_URLSIGN_OK : IT_URLSIGN_EXPIRED;
}

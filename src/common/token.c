/* token.c: scoped tokens and pairing codes (token.h). */
#include "config.h"

#include "common/token.h"

#include "common/id.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

static int b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static int form(const char *s, const char *prefix, size_t len)
{
	if (s == NULL || strncmp(s, prefix, 4) != 0 || strlen(s) != len)
		return 0;
	for (size_t i = 4; i < len; i++)
		if (!b64url((unsigned char)s[i]))
			return 0;
	return 1;
}

int it_token_is(const char *s)
{
	return s != NULL && strncmp(s, IT_TOKEN_PREFIX, 4) == 0;
}

int it_token_valid(const char *s)
{
	return form(s, IT_TOKEN_PREFIX, IT_TOKEN_LEN);
}

int it_token_pairing_valid(const char *s)
{
	return form(s, IT_PAIRING_PREFIX, IT_PAIRING_LEN);
}

/* prefix and the base64url form of n random bytes. */
static int make(char *out, const char *prefix, size_t n)
{
	unsigned char raw[24];
	int rc = it_id_random(raw, n);

	if (rc < 0)
		return rc;
	memcpy(out, prefix, 4);
	it_base64url(raw, n, out + 4);
	return 0;
}

int it_token_new(char *out)
{
	return make(out, IT_TOKEN_PREFIX, 24);
}

int it_token_new_pairing(char *out)
{
	return make(out, IT_PAIRING_PREFIX, 16);
}

int it_token_new_device_id(char *out)
{
	return make(out, "dev_", 12);
}

void it_token_hash(const char *s, unsigned char out[IT_TOKEN_HASH_LEN])
{
	unsigned int n = IT_TOKEN_HASH_LEN;

	if (EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL) != 1)
		memset(out, 0, IT_TOKEN_HASH_LEN); /* cannot happen with SHA-256; matches no stored row */
}

void it_token_hash_hex(const unsigned char hash[IT_TOKEN_HASH_LEN], char *out)
{
	static const char hex[] = "0123456789abcdef";

	out[0] = '\\';
	out[1] = 'x';
	for (int i = 0; i < IT_TOKEN_HASH_LEN; i++) {
		out[2 + 2 * i] = hex[hash[i] >> 4];
		out[3 + 2 * i] = hex[hash[i] & 15];
	}
	out[2 + 2 * IT_TOKEN_HASH_LEN] = '\0';
}

void it_token_hash_text(const char *s, char out[IT_TOKEN_HASH_HEX_SIZE])
{
	unsigned char h[IT_TOKEN_HASH_LEN];

	it_token_hash(s, h);
	it_token_hash_hex(h, out);
}

int it_token_equal(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

/* token.h: scoped tokens and pairing codes: their forms, making them, and what is stored of them (docs/security.md). */
#ifndef IT_COMMON_TOKEN_H
#define IT_COMMON_TOKEN_H

/* A token is "itk." and 32 base64url characters (192 random bits), a
 * pairing code "itp." and 22 (128 bits). The "." never occurs in a session
 * id, so the form alone says which kind a credential is. */
#define IT_TOKEN_PREFIX "itk."
#define IT_TOKEN_LEN 36
#define IT_PAIRING_PREFIX "itp."
#define IT_PAIRING_LEN 26
#define IT_TOKEN_HASH_LEN 32
/* "\x" and 64 hex digits, with the NUL. */
#define IT_TOKEN_HASH_HEX_SIZE 67

/* 1 when s (NUL-terminated, NULL allowed) starts like a token ("itk."),
 * whether or not the rest has a token's form: such a credential is judged
 * as a token (401 when malformed), never as a session id. */
int it_token_is(const char *s);

/* 1 when s has exactly a token's form. */
int it_token_valid(const char *s);

/* 1 when s has exactly a pairing code's form. */
int it_token_pairing_valid(const char *s);

/* Fill out (IT_TOKEN_LEN + 1 bytes) with a new token, or out
 * (IT_PAIRING_LEN + 1 bytes) with a new pairing code, from getrandom.
 * Return 0, or a negative errno when the random source fails (the caller
 * must then refuse rather than fall back). */
int it_token_new(char *out);
int it_token_new_pairing(char *out);

/* Fills out (IT_DEVICE_ID_SIZE bytes, common/scope.h) with a new device id:
 * "dev_" and 16 base64url characters. Returns 0 or a negative errno. */
int it_token_new_device_id(char *out);

/* The SHA-256 of the whole text s: all that is stored of a token or a code.
 * (A token has 192 random bits: a fast hash is enough, nothing is gained by
 * a slow one.) */
void it_token_hash(const char *s, unsigned char out[IT_TOKEN_HASH_LEN]);

/* The hash in PostgreSQL's bytea text form ("\x" and 64 lower-case hex
 * digits) for a text parameter; out holds IT_TOKEN_HASH_HEX_SIZE bytes. */
void it_token_hash_hex(const unsigned char hash[IT_TOKEN_HASH_LEN], char *out);

/* it_token_hash then it_token_hash_hex. */
void it_token_hash_text(const char *s, char out[IT_TOKEN_HASH_HEX_SIZE]);

/* Compares two NUL-terminated strings of the same length in time that does
 * not depend on where they differ (CRYPTO_memcmp). 1 when equal. */
int it_token_equal(const char *a, const char *b);

#endif

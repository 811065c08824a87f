/* base64.h: standard base64 (RFC 4648 section 4) as tus headers carry it: strict decoding, padded encoding. */
#ifndef IT_COMMON_BASE64_H
#define IT_COMMON_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Decodes the n characters at in (standard alphabet "+/", "=" padding
 * optional but, when present, complete and only at the end) into out, which
 * holds outlen bytes. Characters outside the alphabet, a length that no
 * encoding has (one character past a multiple of four), and non-zero bits
 * left over in the last character are refused, so every value has exactly
 * one accepted form besides its unpadded twin. Returns the number of bytes
 * written, -EINVAL when in is not such an encoding, or -ENOSPC when out is
 * too small. in
 * need not be NUL-terminated; out is not NUL-terminated. */
ssize_t it_base64_decode(const char *in, size_t n, unsigned char *out, size_t outlen);

/* Decodes a key typed by a person: standard base64 or base64url (either
 * alphabet, even mixed), any number of trailing "=" and bits left over in
 * the last character ignored; otherwise as it_base64_decode (-EINVAL when
 * in is not such an encoding, -ENOSPC when out is too small). */
ssize_t it_base64_decode_lax(const char *in, size_t n, unsigned char *out, size_t outlen);

/* Encodes n bytes as padded standard base64 into out, which holds at least
 * 4 * ((n + 2) / 3) + 1 bytes (NUL-terminated). */
void it_base64_encode(const unsigned char *in, size_t n, char *out);

#endif

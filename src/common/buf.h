/* buf.h: growable byte buffers with a hard ceiling on their size.
 *
 * Return convention of the common layer (src/common/, docs/layout.md): a
 * call that can fail returns 0 or a negative errno (-EINVAL for input that
 * is not of the expected form, -ENOSPC when the caller's buffer is too
 * small, -ENOMEM, or the errno of the system call that failed), with a
 * sentence in err or why when it takes one. Decoders return the length
 * they wrote (it_base64_decode, it_urlsign_key_parse, it_cred_copy) or a
 * negative errno. Predicates (*_valid, *_listed, *_same, it_cred_bearer,
 * it_token_is, it_token_equal) return 1 or 0. Classifiers return a named
 * outcome and do not fail: it_origin_check (it_origin_verdict),
 * it_urlsign_verify (IT_URLSIGN_OK, _BAD, _EXPIRED), it_scope_parse (0
 * for none). A call that cannot fail returns void or its value. */
#ifndef IT_COMMON_BUF_H
#define IT_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A buffer that grows on demand up to max bytes. Anything that grows from
 * network input is an it_buf, so no client can make a process allocate
 * without bound. data is always NUL-terminated (not counted in len). */
typedef struct it_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
} it_buf;

/* Initialises an empty buffer that may grow to max bytes. Allocates nothing. */
void it_buf_init(it_buf *b, size_t max);

/* Frees the storage; the buffer may be reused after it_buf_init. */
void it_buf_free(it_buf *b);

/* Empties the buffer, keeping its storage. */
static inline void it_buf_reset(it_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

/* Appends n bytes. Returns 0, -ENOSPC if the ceiling would be passed (the
 * buffer is then unchanged), or -ENOMEM. */
int it_buf_append(it_buf *b, const void *p, size_t n);
int it_buf_puts(it_buf *b, const char *s);
int it_buf_printf(it_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int it_buf_vprintf(it_buf *b, const char *fmt, va_list ap);

/* Removes the first n bytes (n <= len), moving the rest to the front. */
void it_buf_consume(it_buf *b, size_t n);

#endif

/* buf.h: growable byte buffers with a hard ceiling on their size. */
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

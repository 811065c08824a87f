/* sseparse.h: an incremental, allocation-free parser for text/event-stream (WHATWG HTML, "Server-sent events"). */
#ifndef IT_CLI_SSEPARSE_H
#define IT_CLI_SSEPARSE_H

#include <stddef.h>

/* Ceilings on the fields the parser keeps. A longer event type or id is a
 * protocol error rather than something to truncate silently. */
#define IT_SSEPARSE_TYPE_MAX 127
#define IT_SSEPARSE_ID_MAX 255

/* One dispatched event. Every pointer refers to storage inside the parser or
 * the data buffer the caller handed to it_sseparse_init, and stays valid until the
 * next call to it_sseparse_feed. Strings are NUL-terminated. */
typedef struct it_sseparse_event {
	const char *type; /* the "event:" field, or "message" when there was none */
	size_t type_len;
	const char *data; /* the "data:" lines joined with "\n" (no final newline) */
	size_t data_len;
	const char *last_id; /* the last event ID buffer after this event ("" if never set) */
	int has_id;	     /* 1 when this event's own block carried a valid "id:" field */
} it_sseparse_event;

/* The parser state. Treat as opaque; it holds no heap memory, so it needs no
 * cleanup and may be copied or reset by calling it_sseparse_init again. */
typedef struct it_sseparse_parser {
	char *data;	 /* caller's buffer for the data lines */
	size_t data_cap; /* its size; data_len never reaches it (room for the NUL) */
	size_t data_len;
	char type[IT_SSEPARSE_TYPE_MAX + 1];
	size_t type_len;
	char last_id[IT_SSEPARSE_ID_MAX + 1];
	char pend_id[IT_SSEPARSE_ID_MAX + 1];
	size_t pend_len;
	int pend_nul; /* the id being read contains a NUL, so it is ignored */
	int block_has_id;
	unsigned long long retry_acc;
	int retry_ok; /* the retry value read so far is all digits */
	int retry_digits;
	long retry_ms;	 /* last valid "retry:" value, or -1 when none was seen */
	char name[8];	 /* field name being read (only short names matter) */
	size_t name_len; /* may exceed sizeof(name): the name is then unknown */
	int state;
	int field;
	int after_cr; /* the previous byte was CR: a following LF is part of that line end */
	int bom;      /* bytes of a leading UTF-8 byte order mark matched so far; -1 when past it */
} it_sseparse_parser;

/* Return values of it_sseparse_feed besides a negative errno. */
enum { IT_SSEPARSE_NEED_MORE = 0, IT_SSEPARSE_EVENT = 1 };

/* Prepares p to parse a new stream. data (caller-owned, at least 1 byte) holds
 * the "data:" lines of the event being read; an event whose data needs
 * data_cap bytes or more is refused with -EMSGSIZE. The parser never
 * allocates. */
void it_sseparse_init(it_sseparse_parser *p, char *data, size_t data_cap);

/* Consumes bytes from buf (len may be 0) until an event is complete or the
 * input runs out; *consumed is set to the number of bytes used either way.
 * Returns IT_SSEPARSE_EVENT with ev filled (the caller feeds the rest of buf,
 * buf + *consumed, next), IT_SSEPARSE_NEED_MORE when every byte was consumed
 * without completing an event, or -EMSGSIZE when a data, event type or id
 * field passes its ceiling (the stream cannot be followed further and the
 * parser must be re-initialised). Lines may end in CR, LF or CRLF and may be
 * split anywhere across calls, including between CR and LF. */
int it_sseparse_feed(it_sseparse_parser *p, const char *buf, size_t len, size_t *consumed, it_sseparse_event *ev);

/* The last valid "retry:" value in milliseconds, or -1 when none was seen. */
static inline long it_sseparse_retry(const it_sseparse_parser *p)
{
	return p->retry_ms;
}

#endif

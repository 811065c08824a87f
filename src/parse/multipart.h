/* multipart.h: an incremental multipart/form-data parser (RFC 7578, RFC 2046) that never allocates.
 *
 * Return convention of the parse layer (src/parse/, docs/layout.md): 0 or a
 * negative errno, as in the common layer. it_mp_boundary returns the
 * boundary's length or -EINVAL; it_mp_parse, like picohttpparser, returns the
 * bytes consumed (0 with IT_MP_NEED_MORE) or -EBADMSG, and it_mp_error()
 * then says why. it_mp_done is a predicate. */
#ifndef IT_PARSE_MULTIPART_H
#define IT_PARSE_MULTIPART_H

#include <stddef.h>
#include <sys/types.h>

/* RFC 2046 allows boundaries of 1 to 70 characters. */
#define IT_MP_BOUNDARY_MAX 70
/* Field names longer than this are refused (ours are a dozen bytes). */
#define IT_MP_NAME_MAX 128
/* Decoded file names are cut (at a character boundary) to this many bytes. */
#define IT_MP_FILENAME_MAX 1024
#define IT_MP_CTYPE_MAX 128
/* Spaces or tabs allowed between a boundary and its line end (RFC 2046
 * "transport padding"); more is treated as malformed. */
#define IT_MP_PADDING_MAX 64

/* How the parser is used (picohttpparser style):
 *
 *   The caller owns one buffer. It calls it_mp_parse with the bytes it
 *   holds; the parser reports one event and how many bytes it consumed.
 *   Bytes not consumed must be passed again, at the start of the next call,
 *   followed by newly read ones. The parser keeps no pointer into the
 *   buffer between calls and copies nothing but the few header values of
 *   it_mp_part.
 *
 *   It holds back at most a part's header block (max_header_bytes) or a
 *   possible delimiter line (IT_MP_BOUNDARY_MAX + IT_MP_PADDING_MAX + 8
 *   bytes), so a buffer of max_header_bytes + 8 KiB always makes progress.
 *   File data is never held back beyond that: IT_MP_DATA points into the
 *   caller's buffer, and memory stays flat whatever the part's size. */

enum it_mp_type {
	IT_MP_NEED_MORE = 0, /* nothing to report: pass the unconsumed bytes again with more */
	IT_MP_PART,	     /* a part starts; ev->part holds its headers */
	IT_MP_DATA,	     /* ev->data, ev->len: the next bytes of the current part's body */
	IT_MP_PART_END,	     /* the current part's body is complete */
	IT_MP_END,	     /* the close delimiter was seen; everything after is epilogue */
};

typedef struct it_mp_part {
	char name[IT_MP_NAME_MAX + 1];		/* the form field's name */
	char filename[IT_MP_FILENAME_MAX + 1];	/* decoded (filename* wins over filename), not sanitised */
	char content_type[IT_MP_CTYPE_MAX + 1]; /* as sent, "" when absent; never trust it */
	int has_filename;			/* a filename or filename* parameter was present */
	int filename_truncated;			/* it was longer than IT_MP_FILENAME_MAX */
} it_mp_part;

typedef struct it_mp_event {
	enum it_mp_type type;
	const char *data; /* IT_MP_DATA: points into the buffer given to it_mp_parse */
	size_t len;
	it_mp_part part; /* IT_MP_PART */
} it_mp_event;

typedef struct it_multipart {
	/* private */
	char delim[IT_MP_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
	size_t dlen;
	size_t max_header_bytes;
	int state;
	int parts;
	const char *error;
} it_multipart;

/* Extracts the boundary parameter from a Content-Type header value such as
 * `multipart/form-data; boundary="a b"` (quoted or not). Checks that the
 * type is multipart/form-data and the boundary has RFC 2046's form. Writes
 * it to out (IT_MP_BOUNDARY_MAX + 1 bytes) and returns its length, or
 * -EINVAL. */
int it_mp_boundary(const char *content_type, char *out);

/* Prepares mp for a body with boundary (1 to IT_MP_BOUNDARY_MAX bytes, as
 * returned by it_mp_boundary). A part's header block larger than
 * max_header_bytes is an error. Returns 0, or -EINVAL for a bad boundary. */
int it_mp_init(it_multipart *mp, const char *boundary, size_t max_header_bytes);

/* Parses buf[0..len) and fills ev with one event. Returns the number of
 * bytes consumed (possibly 0 with IT_MP_NEED_MORE), or -EBADMSG when the
 * input is malformed; it_mp_error() then says why, and every later call
 * fails too.
 * Never reads outside buf[0..len). */
ssize_t it_mp_parse(it_multipart *mp, const char *buf, size_t len, it_mp_event *ev);

/* Returns 1 once the close delimiter has been seen. A body that ends before
 * that is truncated. */
int it_mp_done(const it_multipart *mp);

/* A sentence saying why parsing failed, or NULL. */
const char *it_mp_error(const it_multipart *mp);

#endif

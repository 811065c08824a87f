/* sniff.h: an image's type from its magic bytes and its size from its header, never from the client. */
#ifndef IT_SNIFF_H
#define IT_SNIFF_H

#include <stddef.h>
#include <stdint.h>

/* Bytes it_sniff_type needs to decide (WebP's "RIFF....WEBP" is 12). */
#define IT_SNIFF_MAGIC_BYTES 12

typedef struct it_sniff {
	const char *content_type; /* "image/jpeg", "image/png", "image/gif", "image/webp" (static) */
	const char *ext;	  /* "jpg", "png", "gif", "webp" (static) */
	uint32_t width, height;	  /* set by it_sniff_image */
} it_sniff;

enum it_sniff_rc {
	IT_SNIFF_OK = 0,
	IT_SNIFF_NEED_MORE = 1, /* the bytes end before the answer: pass more */
	IT_SNIFF_UNKNOWN = -1,	/* not an image format we accept */
	IT_SNIFF_BAD = -2,	/* the right magic, but a corrupt or zero-sized header */
};

/* Decides the format from the first n bytes of a file. Sets out->content_type
 * and out->ext on IT_SNIFF_OK. Reads at most IT_SNIFF_MAGIC_BYTES bytes. */
enum it_sniff_rc it_sniff_type(const void *p, size_t n, it_sniff *out);

/* Decides the format and the pixel size from the first n bytes of a file
 * (for JPEG the size may come after large metadata segments: pass the whole
 * file when you can; it is only walked, never decoded). Never reads outside
 * p[0..n). */
enum it_sniff_rc it_sniff_image(const void *p, size_t n, it_sniff *out);

/* The same for the size bytes of a file open on fd, read with pread(2) a
 * few bytes at a time (the file offset does not move): walking a large file
 * costs a few reads, not its size in memory. A read error is IT_SNIFF_BAD. */
enum it_sniff_rc it_sniff_fd(int fd, uint64_t size, it_sniff *out);

#endif

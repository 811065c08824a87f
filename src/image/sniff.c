/* sniff.c: an image's type from its magic bytes and its size from its header, never from the client. */
#include "config.h"

#include "image/sniff.h"

#include <string.h>
#include <unistd.h>

static uint32_t be16(const unsigned char *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le16(const unsigned char *p)
{
	return (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le24(const unsigned char *p)
{
	return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[3] << 24 | le24(p);
}

enum it_sniff_rc it_sniff_type(const void *buf, size_t n, it_sniff *out)
{
	const unsigned char *p = buf;
	static const struct {
		const char *magic;
		size_t len;
		const char *type, *ext;
	} formats[] = {
		{"\xff\xd8\xff", 3, "image/jpeg", "jpg"},
		{"\x89PNG\r\n\x1a\n", 8, "image/png", "png"},
		{"GIF87a", 6, "image/gif", "gif"},
		{"GIF89a", 6, "image/gif", "gif"},
	};
	int undecided = 0;

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		size_t k = n < formats[i].len ? n : formats[i].len;
		if (memcmp(p, formats[i].magic, k) != 0)
			continue;
		if (k < formats[i].len) {
			undecided = 1;
			continue;
		}
		out->content_type = formats[i].type;
		out->ext = formats[i].ext;
		return IT_SNIFF_OK;
	}
	/* RIFF <size> WEBP */
	if (memcmp(p, "RIFF", n < 4 ? n : 4) == 0) {
		if (n < 12)
			return IT_SNIFF_NEED_MORE;
		if (memcmp(p + 8, "WEBP", 4) == 0) {
			out->content_type = "image/webp";
			out->ext = "webp";
			return IT_SNIFF_OK;
		}
	}
	return undecided ? IT_SNIFF_NEED_MORE : IT_SNIFF_UNKNOWN;
}

/* Where the header bytes come from: memory, or a file read with pread(2) so
 * that walking a large file touches no more of it than the few bytes read. */
typedef struct src {
	const unsigned char *mem;
	int fd;
	uint64_t size;
	unsigned char tmp[16];
	int io_error;
} src;

/* Returns the k (at most 16) bytes at off, or NULL when they lie beyond the
 * end (or cannot be read: io_error is then set). */
static const unsigned char *at(src *s, uint64_t off, size_t k)
{
	if (off > s->size || k > s->size - off)
		return NULL;
	if (s->mem)
		return s->mem + off;
	if (pread(s->fd, s->tmp, k, (off_t)off) != (ssize_t)k) {
		s->io_error = 1;
		return NULL;
	}
	return s->tmp;
}

static enum it_sniff_rc png_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 8, 16);

	/* The first chunk must be IHDR: length 13, then width and height. */
	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	if (be32(p) != 13 || memcmp(p + 4, "IHDR", 4) != 0)
		return IT_SNIFF_BAD;
	out->width = be32(p + 8);
	out->height = be32(p + 12);
	return IT_SNIFF_OK;
}

static enum it_sniff_rc gif_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 6, 4);

	/* The logical screen: every frame is drawn inside it. */
	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	out->width = le16(p);
	out->height = le16(p + 2);
	return IT_SNIFF_OK;
}

static enum it_sniff_rc webp_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 12, 4);
	char fourcc[4];

	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	memcpy(fourcc, p, 4);
	if (memcmp(fourcc, "VP8X", 4) == 0) {
		/* Extended format: the canvas size, minus one, 24 bits each. */
		if ((p = at(s, 24, 6)) == NULL)
			return IT_SNIFF_NEED_MORE;
		out->width = le24(p) + 1;
		out->height = le24(p + 3) + 1;
		return IT_SNIFF_OK;
	}
	if (memcmp(fourcc, "VP8L", 4) == 0) {
		/* Lossless: signature 0x2f, then 14 bits each of width-1, height-1. */
		uint32_t bits;
		if ((p = at(s, 20, 5)) == NULL)
			return IT_SNIFF_NEED_MORE;
		if (p[0] != 0x2f)
			return IT_SNIFF_BAD;
		bits = le32(p + 1);
		out->width = (bits & 0x3fff) + 1;
		out->height = ((bits >> 14) & 0x3fff) + 1;
		return IT_SNIFF_OK;
	}
	if (memcmp(fourcc, "VP8 ", 4) == 0) {
		/* Lossy: a key frame's tag (3 bytes), start code 9d 01 2a, then
		 * 14 bits each of width and height (2 bits of scaling above). */
		if ((p = at(s, 23, 7)) == NULL)
			return IT_SNIFF_NEED_MORE;
		if (p[0] != 0x9d || p[1] != 0x01 || p[2] != 0x2a)
			return IT_SNIFF_BAD;
		out->width = le16(p + 3) & 0x3fff;
		out->height = le16(p + 5) & 0x3fff;
		return IT_SNIFF_OK;
	}
	return IT_SNIFF_BAD;
}

static enum it_sniff_rc jpeg_size(src *s, it_sniff *out)
{
	uint64_t i = 2;
	const unsigned char *p;

	/* Walk the marker segments up to the first frame header (SOFn),
	 * reading only each segment's marker and length. */
	for (;;) {
		unsigned m;
		uint32_t len;

		if ((p = at(s, i, 1)) == NULL)
			return IT_SNIFF_NEED_MORE;
		if (p[0] != 0xff)
			return IT_SNIFF_BAD;
		for (;;) { /* fill bytes */
			if ((p = at(s, ++i, 1)) == NULL)
				return IT_SNIFF_NEED_MORE;
			if (p[0] != 0xff)
				break;
		}
		m = p[0];
		i++;
		if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
			continue; /* stand-alone markers */
		if (m == 0xd8 || m == 0xd9 || m == 0xda || m == 0x00)
			return IT_SNIFF_BAD; /* image data or the end before any frame */
		if ((p = at(s, i, 2)) == NULL)
			return IT_SNIFF_NEED_MORE;
		len = be16(p);
		if (len < 2)
			return IT_SNIFF_BAD;
		if ((m >= 0xc0 && m <= 0xcf) && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			/* SOFn: length, precision, height, width. */
			if (len < 7)
				return IT_SNIFF_BAD;
			if ((p = at(s, i + 3, 4)) == NULL)
				return IT_SNIFF_NEED_MORE;
			out->height = be16(p);
			out->width = be16(p + 2);
			return IT_SNIFF_OK;
		}
		i += len;
	}
}

static enum it_sniff_rc sniff(src *s, it_sniff *out)
{
	const unsigned char *p;
	size_t n = s->size < IT_SNIFF_MAGIC_BYTES ? (size_t)s->size : IT_SNIFF_MAGIC_BYTES;
	unsigned char head[IT_SNIFF_MAGIC_BYTES];
	enum it_sniff_rc rc;

	if ((p = at(s, 0, n)) == NULL && n > 0)
		return IT_SNIFF_NEED_MORE;
	if (n)
		memcpy(head, p, n);
	rc = it_sniff_type(head, n, out);
	if (rc != IT_SNIFF_OK)
		return rc;
	out->width = out->height = 0;
	switch (out->ext[0]) {
	case 'p': rc = png_size(s, out); break;
	case 'g': rc = gif_size(s, out); break;
	case 'w': rc = webp_size(s, out); break;
	default: rc = jpeg_size(s, out); break;
	}
	if (s->io_error)
		return IT_SNIFF_BAD;
	if (rc == IT_SNIFF_OK && (out->width == 0 || out->height == 0 || out->width > 0x7fffffff ||
				  out->height > 0x7fffffff))
		rc = IT_SNIFF_BAD;
	return rc;
}

enum it_sniff_rc it_sniff_image(const void *buf, size_t n, it_sniff *out)
{
	src s = {.mem = buf, .fd = -1, .size = n};

	return sniff(&s, out);
}

enum it_sniff_rc it_sniff_fd(int fd, uint64_t size, it_sniff *out)
{
	src s = {.mem = NULL, .fd = fd, .size = size};

	return sniff(&s, out);
}

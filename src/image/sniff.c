/* sniff.c: an image's type from its magic bytes and its size from its header, never from the client. */
#include "config.h"

#include "image/sniff.h"

#include <string.h>

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

static enum it_sniff_rc png_size(const unsigned char *p, size_t n, it_sniff *out)
{
	/* The first chunk must be IHDR: length 13, then width and height. */
	if (n < 24)
		return IT_SNIFF_NEED_MORE;
	if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0)
		return IT_SNIFF_BAD;
	out->width = be32(p + 16);
	out->height = be32(p + 20);
	return IT_SNIFF_OK;
}

static enum it_sniff_rc gif_size(const unsigned char *p, size_t n, it_sniff *out)
{
	/* The logical screen: every frame is drawn inside it. */
	if (n < 10)
		return IT_SNIFF_NEED_MORE;
	out->width = le16(p + 6);
	out->height = le16(p + 8);
	return IT_SNIFF_OK;
}

static enum it_sniff_rc webp_size(const unsigned char *p, size_t n, it_sniff *out)
{
	if (n < 16)
		return IT_SNIFF_NEED_MORE;
	if (memcmp(p + 12, "VP8X", 4) == 0) {
		/* Extended format: the canvas size, minus one, 24 bits each. */
		if (n < 30)
			return IT_SNIFF_NEED_MORE;
		out->width = le24(p + 24) + 1;
		out->height = le24(p + 27) + 1;
		return IT_SNIFF_OK;
	}
	if (memcmp(p + 12, "VP8L", 4) == 0) {
		/* Lossless: signature 0x2f, then 14 bits each of width-1, height-1. */
		uint32_t bits;
		if (n < 25)
			return IT_SNIFF_NEED_MORE;
		if (p[20] != 0x2f)
			return IT_SNIFF_BAD;
		bits = le32(p + 21);
		out->width = (bits & 0x3fff) + 1;
		out->height = ((bits >> 14) & 0x3fff) + 1;
		return IT_SNIFF_OK;
	}
	if (memcmp(p + 12, "VP8 ", 4) == 0) {
		/* Lossy: a key frame's tag (3 bytes), start code 9d 01 2a, then
		 * 14 bits each of width and height (2 bits of scaling above). */
		if (n < 30)
			return IT_SNIFF_NEED_MORE;
		if (p[23] != 0x9d || p[24] != 0x01 || p[25] != 0x2a)
			return IT_SNIFF_BAD;
		out->width = le16(p + 26) & 0x3fff;
		out->height = le16(p + 28) & 0x3fff;
		return IT_SNIFF_OK;
	}
	return IT_SNIFF_BAD;
}

static enum it_sniff_rc jpeg_size(const unsigned char *p, size_t n, it_sniff *out)
{
	size_t i = 2;

	/* Walk the marker segments up to the first frame header (SOFn). */
	for (;;) {
		unsigned m;
		uint32_t len;

		if (i >= n)
			return IT_SNIFF_NEED_MORE;
		if (p[i] != 0xff)
			return IT_SNIFF_BAD;
		while (i < n && p[i] == 0xff) /* fill bytes */
			i++;
		if (i >= n)
			return IT_SNIFF_NEED_MORE;
		m = p[i++];
		if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
			continue; /* stand-alone markers */
		if (m == 0xd8 || m == 0xd9 || m == 0xda || m == 0x00)
			return IT_SNIFF_BAD; /* image data or the end before any frame */
		if (i + 2 > n)
			return IT_SNIFF_NEED_MORE;
		len = be16(p + i);
		if (len < 2)
			return IT_SNIFF_BAD;
		if ((m >= 0xc0 && m <= 0xcf) && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			/* SOFn: length, precision, height, width. */
			if (len < 7)
				return IT_SNIFF_BAD;
			if (i + 7 > n)
				return IT_SNIFF_NEED_MORE;
			out->height = be16(p + i + 3);
			out->width = be16(p + i + 5);
			return IT_SNIFF_OK;
		}
		i += len;
	}
}

enum it_sniff_rc it_sniff_image(const void *buf, size_t n, it_sniff *out)
{
	const unsigned char *p = buf;
	enum it_sniff_rc rc = it_sniff_type(p, n, out);

	if (rc != IT_SNIFF_OK)
		return rc;
	out->width = out->height = 0;
	switch (out->ext[0]) {
	case 'p': rc = png_size(p, n, out); break;
	case 'g': rc = gif_size(p, n, out); break;
	case 'w': rc = webp_size(p, n, out); break;
	default: rc = jpeg_size(p, n, out); break;
	}
	if (rc == IT_SNIFF_OK && (out->width == 0 || out->height == 0 || out->width > 0x7fffffff ||
				  out->height > 0x7fffffff))
		rc = IT_SNIFF_BAD;
	return rc;
}

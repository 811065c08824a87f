/* sniff.c: an image's type from its magic bytes and its size from its header, never from the client. */
#include "config.h"

#include "image/sniff.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
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

/* HEIF brands (ISO/IEC 23008-12, and AV1-HEIF for AVIF) and what they hold.
 * The generic image-collection brands say nothing of the codec: the
 * compatible brands then decide (it_sniff_image). */
static const char *const heic_brands[] = {"heic", "heix", "heim", "heis", "hevc", "hevx"};
static const char *const avif_brands[] = {"avif", "avis"};
static const char *const heif_brands[] = {"mif1", "msf1", "miaf"};

static int brand_in(const unsigned char *b, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(b, list[i], 4) == 0)
			return 1;
	return 0;
}

#define NBRANDS(a) (sizeof(a) / sizeof((a)[0]))

/* Sets the type for the brand at b: 1 when it names one, 0 when it is a
 * generic HEIF brand, -1 when it is no HEIF brand. */
static int brand_type(const unsigned char *b, it_sniff *out)
{
	if (brand_in(b, heic_brands, NBRANDS(heic_brands))) {
		out->content_type = "image/heic";
		out->ext = "heic";
		return 1;
	}
	if (brand_in(b, avif_brands, NBRANDS(avif_brands))) {
		out->content_type = "image/avif";
		out->ext = "avif";
		return 1;
	}
	if (brand_in(b, heif_brands, NBRANDS(heif_brands))) {
		out->content_type = "image/heif";
		out->ext = "heif";
		return 0;
	}
	return -1;
}

/* ISOBMFF (HEIC, AVIF): the file starts with its ftyp box, <size> "ftyp"
 * <major brand>; a ftyp box is 16 + 4k bytes, far below 64 KiB, so the
 * first two bytes are zero (which also keeps every other format's magic
 * out of this branch). */
static enum it_sniff_rc isobmff_type(const unsigned char *p, size_t n, it_sniff *out)
{
	size_t k;

	if ((n > 0 && p[0] != 0) || (n > 1 && p[1] != 0))
		return IT_SNIFF_UNKNOWN;
	if (n >= 4 && (be32(p) < 16 || be32(p) % 4 != 0))
		return IT_SNIFF_UNKNOWN;
	k = n < 4 ? 0 : n - 4 < 4 ? n - 4 : 4;
	if (k > 0 && memcmp(p + 4, "ftyp", k) != 0)
		return IT_SNIFF_UNKNOWN;
	if (n < 12)
		return IT_SNIFF_NEED_MORE;
	return brand_type(p + 8, out) < 0 ? IT_SNIFF_UNKNOWN : IT_SNIFF_OK;
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
	switch (isobmff_type(p, n, out)) {
	case IT_SNIFF_OK: return IT_SNIFF_OK;
	case IT_SNIFF_NEED_MORE: undecided = 1; break;
	default: break;
	}
	return undecided ? IT_SNIFF_NEED_MORE : IT_SNIFF_UNKNOWN;
}

/* Where the header bytes come from: memory, or a file read with pread(2)
 * through a small window so that walking a large file touches no more of it
 * than the blocks it reads, and the chains of GIF sub-blocks cost one read
 * per window rather than one per block. */
#define WINDOW 4096
typedef struct src {
	const unsigned char *mem;
	int fd;
	uint64_t size;
	int final; /* size is the whole file: its end ends an animation */
	int io_error;
	uint64_t win_off;
	size_t win_len;
	unsigned char win[WINDOW];
} src;

/* Returns the k (at most 64) bytes at off, or NULL when they lie beyond the
 * end (or cannot be read: io_error is then set). */
static const unsigned char *at(src *s, uint64_t off, size_t k)
{
	ssize_t got;
	size_t want;

	if (off > s->size || k > s->size - off)
		return NULL;
	if (s->mem)
		return s->mem + off;
	if (off >= s->win_off && off + k <= s->win_off + s->win_len)
		return s->win + (off - s->win_off);
	want = s->size - off < WINDOW ? (size_t)(s->size - off) : WINDOW;
	got = pread(s->fd, s->win, want, (off_t)off);
	if (got < 0 || (size_t)got < k) {
		s->io_error = 1;
		s->win_len = 0;
		return NULL;
	}
	s->win_off = off;
	s->win_len = (size_t)got;
	return s->win;
}

/* Records one frame of w x h at (x, y): the largest by area, and the extent. */
static void add_frame(it_sniff *out, uint64_t x, uint64_t y, uint32_t w, uint32_t h)
{
	if ((uint64_t)w * h > (uint64_t)out->frame_width * out->frame_height) {
		out->frame_width = w;
		out->frame_height = h;
	}
	if (x + w > out->extent_width)
		out->extent_width = x + w > UINT32_MAX ? UINT32_MAX : (uint32_t)(x + w);
	if (y + h > out->extent_height)
		out->extent_height = y + h > UINT32_MAX ? UINT32_MAX : (uint32_t)(y + h);
	out->frames++;
}

/* The bit depths the PNG specification allows for each colour type. */
static int png_depth_ok(unsigned type, unsigned depth)
{
	switch (type) {
	case 0: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
	case 3: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
	default: return depth == 8 || depth == 16;
	}
}

static enum it_sniff_rc png_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 8, 21);
	unsigned depth, type, channels;

	/* The first chunk must be IHDR: length 13, width, height, bit depth,
	 * colour type, compression, filter, interlace. */
	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	if (be32(p) != 13 || memcmp(p + 4, "IHDR", 4) != 0)
		return IT_SNIFF_BAD;
	out->width = be32(p + 8);
	out->height = be32(p + 12);
	depth = p[16];
	type = p[17];
	switch (type) {
	case 0: channels = 1; break; /* grey: 1, 2, 4, 8, 16 bits */
	case 2: channels = 3; break; /* RGB: 8, 16 */
	case 3: channels = 4; break; /* palette: 1, 2, 4, 8 bits, expanded to RGB(A) */
	case 4: channels = 2; break; /* grey + alpha: 8, 16 */
	case 6: channels = 4; break; /* RGBA: 8, 16 */
	default: return IT_SNIFF_BAD;
	}
	if (!png_depth_ok(type, depth))
		return IT_SNIFF_BAD;
	if (p[20] > 1)
		return IT_SNIFF_BAD;
	/* Decoders hand out 8- or 16-bit samples whatever the stored depth. */
	out->bytes_per_pixel = channels * (depth == 16 ? 2 : 1);
	out->interlaced = p[20] == 1;
	add_frame(out, 0, 0, out->width, out->height);
	/* Adam7 spreads every row over seven passes: a decoder must hold the
	 * whole image before it can hand out the first row. */
	if (out->interlaced)
		out->whole_bytes = (uint64_t)out->width * out->height * out->bytes_per_pixel;
	return IT_SNIFF_OK;
}

/* Skips a chain of GIF sub-blocks (a length byte, then that many bytes)
 * up to its zero-length terminator. Returns 0, or 1 when the bytes end. */
static int gif_skip_blocks(src *s, uint64_t *off)
{
	const unsigned char *p;

	for (;;) {
		if ((p = at(s, *off, 1)) == NULL)
			return 1;
		*off += 1 + (uint64_t)p[0];
		if (p[0] == 0)
			return 0;
	}
}

static enum it_sniff_rc gif_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 6, 7);
	uint64_t off = 13;

	/* The logical screen, then (when its flag is set) the global colour
	 * table of 3 * 2^(n+1) bytes. */
	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	out->width = le16(p);
	out->height = le16(p + 2);
	out->extent_width = out->width;
	out->extent_height = out->height;
	if (p[4] & 0x80)
		off += 3u << ((p[4] & 7) + 1);
	/* Then blocks: extensions (0x21, a label, sub-blocks), images (0x2c,
	 * a descriptor, maybe a local colour table, the LZW code size,
	 * sub-blocks) and the trailer (0x3b). Every frame is walked: the
	 * screen says nothing about the size of the frames inside it. */
	for (;;) {
		if ((p = at(s, off, 1)) == NULL)
			break;
		if (p[0] == 0x3b)
			goto done;
		if (p[0] == 0x21) {
			off += 2;
			if (gif_skip_blocks(s, &off))
				break;
			continue;
		}
		if (p[0] != 0x2c)
			/* Decoders stop at bytes that are no block; so do we, once
			 * a frame has been seen. */
			goto done;
		if ((p = at(s, off + 1, 9)) == NULL)
			break;
		if (out->frames == IT_SNIFF_MAX_FRAMES) {
			out->frames++; /* "more than allowed": no need to walk on */
			goto done;
		}
		add_frame(out, le16(p), le16(p + 2), le16(p + 4), le16(p + 6));
		off += 10;
		if (p[8] & 0x80)
			off += 3u << ((p[8] & 7) + 1);
		off += 1; /* LZW minimum code size */
		if (gif_skip_blocks(s, &off))
			break;
	}
	/* The bytes ended inside the block list. */
	if (!s->final)
		return IT_SNIFF_NEED_MORE;
done:
	if (out->frames == 0)
		return IT_SNIFF_BAD;
	/* Some encoders write a zero screen and let the frames size it. */
	if (out->width == 0 || out->height == 0) {
		out->width = out->extent_width;
		out->height = out->extent_height;
	}
	/* The decoder draws every frame into a canvas of RGBA pixels and
	 * decodes each frame into a buffer of its own. */
	out->bytes_per_pixel = 4;
	out->whole_bytes =
		((uint64_t)out->extent_width * out->extent_height + (uint64_t)out->frame_width * out->frame_height) * 4;
	return IT_SNIFF_OK;
}

/* Walks the chunks of an animated WebP (VP8X with the animation flag) from
 * off to the end of the RIFF data, adding each ANMF frame. */
static enum it_sniff_rc webp_frames(src *s, it_sniff *out, uint64_t off, uint64_t end)
{
	const unsigned char *p;

	while (off < end) {
		uint64_t len;
		if ((p = at(s, off, 8)) == NULL)
			break;
		len = le32(p + 4);
		if (memcmp(p, "ANMF", 4) == 0) {
			const unsigned char *f;
			/* X/2, Y/2, width-1, height-1: 24 bits each. */
			if (len < 16)
				return IT_SNIFF_BAD;
			if ((f = at(s, off + 8, 12)) == NULL)
				break;
			if (out->frames == IT_SNIFF_MAX_FRAMES) {
				out->frames++;
				return IT_SNIFF_OK;
			}
			add_frame(out, 2 * (uint64_t)le24(f), 2 * (uint64_t)le24(f + 3), le24(f + 6) + 1,
				  le24(f + 9) + 1);
		}
		off += 8 + len + (len & 1);
	}
	if (off < end && !s->final)
		return IT_SNIFF_NEED_MORE;
	if (out->frames == 0)
		return s->final || off >= end ? IT_SNIFF_BAD : IT_SNIFF_NEED_MORE;
	return IT_SNIFF_OK;
}

static enum it_sniff_rc webp_size(src *s, it_sniff *out)
{
	const unsigned char *p = at(s, 4, 12);
	char fourcc[4];
	uint64_t end;

	if (p == NULL)
		return IT_SNIFF_NEED_MORE;
	end = 8 + (uint64_t)le32(p);
	memcpy(fourcc, p + 8, 4);
	out->bytes_per_pixel = 4;
	if (memcmp(fourcc, "VP8X", 4) == 0) {
		/* Extended format: flags, 3 reserved bytes, then the canvas
		 * size, minus one, 24 bits each. */
		enum it_sniff_rc rc = IT_SNIFF_OK;
		int animated;
		if ((p = at(s, 20, 10)) == NULL)
			return IT_SNIFF_NEED_MORE;
		animated = (p[0] & 0x02) != 0;
		out->width = le24(p + 4) + 1;
		out->height = le24(p + 7) + 1;
		out->extent_width = out->width;
		out->extent_height = out->height;
		if (animated) {
			/* Animation: frames of their own size at their own
			 * offsets, composed onto the canvas. */
			rc = webp_frames(s, out, 30, end);
			if (rc != IT_SNIFF_OK)
				return rc;
		} else {
			add_frame(out, 0, 0, out->width, out->height);
		}
		/* The canvas, and for an animation each frame's own buffer
		 * that is composed onto it. */
		out->whole_bytes = (uint64_t)out->extent_width * out->extent_height * 4;
		if (animated)
			out->whole_bytes += (uint64_t)out->frame_width * out->frame_height * 4;
		return rc;
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
	} else if (memcmp(fourcc, "VP8 ", 4) == 0) {
		/* Lossy: a key frame's tag (3 bytes), start code 9d 01 2a, then
		 * 14 bits each of width and height (2 bits of scaling above). */
		if ((p = at(s, 23, 7)) == NULL)
			return IT_SNIFF_NEED_MORE;
		if (p[0] != 0x9d || p[1] != 0x01 || p[2] != 0x2a)
			return IT_SNIFF_BAD;
		out->width = le16(p + 3) & 0x3fff;
		out->height = le16(p + 5) & 0x3fff;
	} else {
		return IT_SNIFF_BAD;
	}
	/* libwebp decodes the whole frame into one buffer. */
	add_frame(out, 0, 0, out->width, out->height);
	out->whole_bytes = (uint64_t)out->width * out->height * 4;
	return IT_SNIFF_OK;
}

/* The bytes of DCT coefficients a JPEG decoder keeps for the whole image
 * when it cannot stream (progressive or multi-scan): 64 coefficients of two
 * bytes per 8x8 block of every component, at its own sampling. */
static uint64_t jpeg_coef_bytes(const it_sniff *out, const unsigned char *comp, unsigned n, unsigned hmax,
				unsigned vmax)
{
	uint64_t sum = 0;

	for (unsigned c = 0; c < n; c++) {
		unsigned h = comp[3 * c + 1] >> 4, v = comp[3 * c + 1] & 15;
		uint64_t bw = ((uint64_t)out->width * h + hmax * 8 - 1) / (hmax * 8);
		uint64_t bh = ((uint64_t)out->height * v + vmax * 8 - 1) / (vmax * 8);
		/* Whole MCUs: round each up to the component's sampling. */
		bw = (bw + h - 1) / h * h;
		bh = (bh + v - 1) / v * v;
		sum += bw * bh * 64 * 2;
	}
	return sum;
}

static enum it_sniff_rc jpeg_size(src *s, it_sniff *out)
{
	uint64_t i = 2;
	const unsigned char *p;
	unsigned char comp[3 * 4];
	unsigned ncomp = 0, hmax = 1, vmax = 1;
	int have_frame = 0, progressive = 0;

	/* Walk the marker segments up to the first scan (SOS), reading only
	 * each segment's marker and length, and the frame header (SOFn) on
	 * the way: the scan says whether the decoder can stream. */
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
		if (m == 0xd8 || m == 0xd9 || m == 0x00)
			return IT_SNIFF_BAD; /* the end (or a second start) before any scan */
		if ((p = at(s, i, 2)) == NULL)
			return IT_SNIFF_NEED_MORE;
		len = be16(p);
		if (len < 2)
			return IT_SNIFF_BAD;
		if (m == 0xda) {
			unsigned ns;
			/* SOS: length, then the number of components in this
			 * scan. Fewer than the frame has means more scans: the
			 * decoder keeps every coefficient until the last. */
			if (!have_frame || len < 3)
				return IT_SNIFF_BAD;
			if ((p = at(s, i + 2, 1)) == NULL)
				return IT_SNIFF_NEED_MORE;
			ns = p[0];
			if (ns == 0 || ns > ncomp)
				return IT_SNIFF_BAD;
			out->interlaced = progressive || ns < ncomp;
			if (out->interlaced)
				out->whole_bytes = jpeg_coef_bytes(out, comp, ncomp, hmax, vmax);
			return IT_SNIFF_OK;
		}
		if ((m >= 0xc0 && m <= 0xcf) && m != 0xc4 && m != 0xc8 && m != 0xcc) {
			/* SOFn: length, precision, height, width, components,
			 * then id, sampling (H<<4 | V), table per component. */
			if (have_frame)
				return IT_SNIFF_BAD;
			if (len < 8)
				return IT_SNIFF_BAD;
			if ((p = at(s, i + 3, 5)) == NULL)
				return IT_SNIFF_NEED_MORE;
			out->height = be16(p);
			out->width = be16(p + 2);
			ncomp = p[4];
			/* libvips reads grey, YCbCr/RGB and CMYK. */
			if (ncomp == 0 || ncomp > 4 || len < 8 + 3 * ncomp)
				return IT_SNIFF_BAD;
			if ((p = at(s, i + 8, 3 * ncomp)) == NULL)
				return IT_SNIFF_NEED_MORE;
			memcpy(comp, p, 3 * ncomp);
			for (unsigned c = 0; c < ncomp; c++) {
				unsigned h = comp[3 * c + 1] >> 4, v = comp[3 * c + 1] & 15;
				if (h < 1 || h > 4 || v < 1 || v > 4)
					return IT_SNIFF_BAD;
				hmax = h > hmax ? h : hmax;
				vmax = v > vmax ? v : vmax;
			}
			/* SOF2, 6, 10, 14: progressive. */
			progressive = (m & 3) == 2;
			out->bytes_per_pixel = ncomp;
			add_frame(out, 0, 0, out->width, out->height);
			have_frame = 1;
		}
		i += len;
	}
}

/* One ISOBMFF box: its type, where its body starts and where it ends. */
typedef struct box {
	char type[4];
	uint64_t body, end;
	int to_end; /* size 0: the box runs to the end of the file */
} box;

/* The answer when the bytes end inside what must be read: more may come,
 * unless this is the whole file. */
static enum it_sniff_rc short_of(const src *s)
{
	return s->final ? IT_SNIFF_BAD : IT_SNIFF_NEED_MORE;
}

/* Reads the box header at off, which must lie inside [off, parent_end).
 * Returns OK, NEED_MORE/BAD (see short_of), or BAD for a box that claims
 * to be smaller than its header or to reach beyond its parent. */
static enum it_sniff_rc box_at(src *s, uint64_t off, uint64_t parent_end, box *b)
{
	const unsigned char *p = at(s, off, 8);
	uint64_t size;

	if (p == NULL)
		return short_of(s);
	size = be32(p);
	memcpy(b->type, p + 4, 4);
	b->body = off + 8;
	b->to_end = size == 0;
	if (size == 1) {
		/* A 64-bit size follows the type. */
		if ((p = at(s, off + 8, 8)) == NULL)
			return short_of(s);
		size = (uint64_t)be32(p) << 32 | be32(p + 4);
		b->body = off + 16;
	} else if (size == 0) {
		/* "To the end of the file": only the last box (mdat) does that,
		 * and nothing this walk needs comes after it. */
		size = parent_end - off;
	}
	if (size < b->body - off || size > parent_end - off)
		return IT_SNIFF_BAD;
	b->end = off + size;
	return IT_SNIFF_OK;
}

/* Finds the first child of type in [off, end). Returns OK (b set), BAD when
 * there is none (or a child is malformed), or NEED_MORE. */
static enum it_sniff_rc find_box(src *s, uint64_t off, uint64_t end, const char *type, box *b)
{
	for (int n = 0; off < end; n++) {
		enum it_sniff_rc rc;
		/* Real files have a handful of boxes per level; a file made of
		 * millions of empty ones is not worth walking. */
		if (n == 4096)
			return IT_SNIFF_BAD;
		rc = box_at(s, off, end, b);
		if (rc != IT_SNIFF_OK)
			return rc;
		if (memcmp(b->type, type, 4) == 0)
			return IT_SNIFF_OK;
		if (b->to_end)
			return IT_SNIFF_BAD; /* nothing follows */
		off = b->end;
	}
	return IT_SNIFF_BAD;
}

/* The properties of the primary item that size its pixels, and the largest
 * size any item declares. */
typedef struct heif_props {
	uint32_t width, height; /* ispe */
	unsigned depth;		/* pixi: the largest bits per channel, 8 without one */
	int rotated;		/* irot by 90 or 270 degrees */
	uint32_t max_w, max_h;	/* the largest ispe of any item */
} heif_props;

/* Walks ipma for item's property indices (1-based into ipco), up to max of
 * them. Returns the count, or -1 (BAD) / -2 (bytes end). */
static int ipma_indices(src *s, const box *ipma, uint32_t item, unsigned *idx, int max)
{
	const unsigned char *p = at(s, ipma->body, 8);
	uint64_t off = ipma->body + 8;
	uint32_t entries;
	unsigned version, flags;

	if (p == NULL)
		return -2;
	version = p[0];
	flags = (unsigned)p[3];
	entries = be32(p + 4);
	for (uint32_t e = 0; e < entries; e++) {
		uint32_t id;
		unsigned count, width = (flags & 1) ? 2 : 1, idlen = version < 1 ? 2 : 4;
		if (off + idlen + 1 > ipma->end)
			return -1;
		if ((p = at(s, off, idlen + 1)) == NULL)
			return -2;
		id = idlen == 2 ? be16(p) : be32(p);
		count = p[idlen];
		off += idlen + 1;
		if (off + (uint64_t)count * width > ipma->end)
			return -1;
		if (id != item) {
			off += (uint64_t)count * width;
			continue;
		}
		if ((p = at(s, off, count * width)) == NULL)
			return -2;
		if ((int)count > max)
			count = (unsigned)max;
		for (unsigned a = 0; a < count; a++)
			idx[a] = width == 2 ? be16(p + 2 * a) & 0x7fff : p[a] & 0x7f;
		return (int)count;
	}
	return 0;
}

/* Names the codec from the ftyp box and sets *ftyp_len. Returns OK,
 * UNKNOWN for a codec we do not take, or what the bytes' end means. */
static enum it_sniff_rc heif_codec(src *s, it_sniff *out, uint64_t *ftyp_len)
{
	const unsigned char *p;
	uint64_t off;
	int named;

	/* The type (it_sniff_type) came from the major brand; a generic one
	 * ("mif1") leaves the codec to the compatible brands. */
	if ((p = at(s, 0, 12)) == NULL)
		return short_of(s);
	*ftyp_len = be32(p);
	named = brand_type(p + 8, out);
	for (off = 16; named <= 0 && off + 4 <= *ftyp_len; off += 4) {
		if ((p = at(s, off, 4)) == NULL)
			return short_of(s);
		if (brand_in(p, heic_brands, NBRANDS(heic_brands)) || brand_in(p, avif_brands, NBRANDS(avif_brands)))
			named = brand_type(p, out);
	}
	if (named <= 0 && off + 4 > *ftyp_len)
		/* An image collection of a codec we do not take (JPEG in HEIF). */
		return IT_SNIFF_UNKNOWN;
	return IT_SNIFF_OK;
}

/* Finds the boxes that describe the items: pitm, ipco and ipma, all inside
 * the meta box that follows ftyp. Returns OK, BAD, or what the bytes' end
 * means. */
static enum it_sniff_rc item_boxes(src *s, uint64_t ftyp_len, box *pitm, box *ipco, box *ipma)
{
	/* The top level ends with the file; a prefix does not know where. */
	uint64_t end = s->final ? s->size : UINT64_MAX;
	box meta, iprp;
	enum it_sniff_rc rc;

	/* meta (a full box: version and flags first) holds pitm, the primary
	 * item's id, and iprp: ipco (the properties, numbered from 1) and ipma
	 * (which item has which). It comes before the media data in every
	 * file that can be shown while it loads, and libheif needs it first. */
	if ((rc = find_box(s, ftyp_len, end, "meta", &meta)) != IT_SNIFF_OK)
		return rc;
	if (meta.to_end || meta.end - meta.body < 4)
		return IT_SNIFF_BAD;
	/* libheif reads the whole meta box before anything else: so do we,
	 * and a file that ends inside it is damaged. */
	if (at(s, meta.end - 1, 1) == NULL)
		return short_of(s);
	if ((rc = find_box(s, meta.body + 4, meta.end, "pitm", pitm)) != IT_SNIFF_OK ||
	    (rc = find_box(s, meta.body + 4, meta.end, "iprp", &iprp)) != IT_SNIFF_OK ||
	    (rc = find_box(s, iprp.body, iprp.end, "ipco", ipco)) != IT_SNIFF_OK ||
	    (rc = find_box(s, iprp.body, iprp.end, "ipma", ipma)) != IT_SNIFF_OK)
		return rc;
	if (pitm->end - pitm->body < 6 || ipma->end - ipma->body < 8)
		return IT_SNIFF_BAD;
	return IT_SNIFF_OK;
}

/* Reads the primary item's id from pitm (at least 6 bytes long). */
static enum it_sniff_rc primary_item(src *s, const box *pitm, uint32_t *id)
{
	const unsigned char *p;

	/* pitm: version and flags, then the id in 16 bits (version 0) or 32. */
	if ((p = at(s, pitm->body, 6)) == NULL)
		return short_of(s);
	if (p[0] == 0) {
		*id = be16(p + 4);
		return IT_SNIFF_OK;
	}
	if (pitm->end - pitm->body < 8)
		return IT_SNIFF_BAD;
	if ((p = at(s, pitm->body, 8)) == NULL)
		return short_of(s);
	*id = be32(p + 4);
	return IT_SNIFF_OK;
}

/* Reads an ispe property: an item's width and height. */
static enum it_sniff_rc read_ispe(src *s, const box *prop, uint32_t *w, uint32_t *h)
{
	const unsigned char *p;

	/* A full box: version and flags, then width and height. */
	if (prop->end - prop->body < 12)
		return IT_SNIFF_BAD;
	if ((p = at(s, prop->body + 4, 8)) == NULL)
		return short_of(s);
	*w = be32(p);
	*h = be32(p + 4);
	return IT_SNIFF_OK;
}

/* Raises *depth to the largest bits per channel a pixi property declares. */
static enum it_sniff_rc read_pixi(src *s, const box *prop, unsigned *depth)
{
	const unsigned char *p;
	unsigned nch;

	/* A full box: channel count, then bits of each channel. */
	if (prop->end - prop->body < 5)
		return IT_SNIFF_BAD;
	if ((p = at(s, prop->body + 4, 1)) == NULL)
		return short_of(s);
	nch = p[0];
	if (nch > 16 || prop->end - prop->body < 5 + (uint64_t)nch)
		return IT_SNIFF_BAD;
	if (nch && (p = at(s, prop->body + 5, nch)) == NULL)
		return short_of(s);
	for (unsigned c = 0; c < nch; c++)
		*depth = p[c] > *depth ? p[c] : *depth;
	return IT_SNIFF_OK;
}

/* Reads an irot property: whether the image is shown turned a quarter. */
static enum it_sniff_rc read_irot(src *s, const box *prop, int *rotated)
{
	const unsigned char *p;

	if (prop->end - prop->body < 1)
		return IT_SNIFF_BAD;
	if ((p = at(s, prop->body, 1)) == NULL)
		return short_of(s);
	*rotated = (p[0] & 3) == 1 || (p[0] & 3) == 3;
	return IT_SNIFF_OK;
}

/* Walks every property in ipco, in order, into hp: the primary item's (its
 * nidx indices in idx) size, depth and rotation, and the largest size any
 * item declares (a grid's tiles, an alpha plane, a thumbnail: libheif
 * decodes those too). */
static enum it_sniff_rc item_props(src *s, const box *ipco, const unsigned *idx, int nidx, heif_props *hp)
{
	uint64_t off = ipco->body;
	enum it_sniff_rc rc;
	box prop;

	for (unsigned n = 1; off < ipco->end; n++) {
		int mine = 0;
		if (n > 4096)
			return IT_SNIFF_BAD;
		if ((rc = box_at(s, off, ipco->end, &prop)) != IT_SNIFF_OK)
			return rc;
		for (int a = 0; a < nidx; a++)
			mine |= idx[a] == n;
		if (memcmp(prop.type, "ispe", 4) == 0) {
			uint32_t w, h;
			if ((rc = read_ispe(s, &prop, &w, &h)) != IT_SNIFF_OK)
				return rc;
			if ((uint64_t)w * h > (uint64_t)hp->max_w * hp->max_h) {
				hp->max_w = w;
				hp->max_h = h;
			}
			if (mine) {
				hp->width = w;
				hp->height = h;
			}
		} else if (mine && memcmp(prop.type, "pixi", 4) == 0) {
			if ((rc = read_pixi(s, &prop, &hp->depth)) != IT_SNIFF_OK)
				return rc;
		} else if (mine && memcmp(prop.type, "irot", 4) == 0) {
			if ((rc = read_irot(s, &prop, &hp->rotated)) != IT_SNIFF_OK)
				return rc;
		}
		off = prop.end;
	}
	return IT_SNIFF_OK;
}

/* Sets out's size, frame, extent and decoding costs from hp. */
static void heif_costs(const heif_props *hp, it_sniff *out)
{
	/* The largest item is a frame turned the way the image is shown; the
	 * extent holds it and the image. */
	uint32_t fw = hp->rotated ? hp->max_h : hp->max_w, fh = hp->rotated ? hp->max_w : hp->max_h;

	/* libheif applies the rotation: the image is shown turned. */
	out->width = hp->rotated ? hp->height : hp->width;
	out->height = hp->rotated ? hp->width : hp->height;
	add_frame(out, 0, 0, fw, fh);
	out->extent_width = out->width > fw ? out->width : fw;
	out->extent_height = out->height > fh ? out->height : fh;
	/* libvips hands out 8- or 16-bit samples, RGB plus maybe alpha; libheif
	 * decodes the whole image at once, into its YCbCr planes (at most
	 * three full ones) and then into the interleaved RGBA that libvips
	 * reads rows from. */
	out->bytes_per_pixel = 4 * (hp->depth > 8 ? 2 : 1);
	out->whole_bytes = (uint64_t)hp->max_w * hp->max_h * (out->bytes_per_pixel + 3 * (hp->depth > 8 ? 2 : 1));
}

/* HEIC and AVIF: the primary item's size, depth and rotation, read from the
 * properties that meta's boxes assign to it. */
static enum it_sniff_rc isobmff_size(src *s, it_sniff *out)
{
	uint64_t ftyp_len = 0;
	box pitm, ipco, ipma;
	heif_props hp = {.depth = 8};
	uint32_t primary;
	unsigned idx[64];
	int nidx;
	enum it_sniff_rc rc;

	if ((rc = heif_codec(s, out, &ftyp_len)) != IT_SNIFF_OK ||
	    (rc = item_boxes(s, ftyp_len, &pitm, &ipco, &ipma)) != IT_SNIFF_OK ||
	    (rc = primary_item(s, &pitm, &primary)) != IT_SNIFF_OK)
		return rc;
	nidx = ipma_indices(s, &ipma, primary, idx, (int)(sizeof(idx) / sizeof(idx[0])));
	if (nidx < 0)
		return nidx == -2 ? short_of(s) : IT_SNIFF_BAD;
	if ((rc = item_props(s, &ipco, idx, nidx, &hp)) != IT_SNIFF_OK)
		return rc;
	if (hp.width == 0 || hp.height == 0 || hp.depth > 16)
		return IT_SNIFF_BAD;
	heif_costs(&hp, out);
	return IT_SNIFF_OK;
}

static enum it_sniff_rc sniff(src *s, it_sniff *out)
{
	const unsigned char *p;
	size_t n = s->size < IT_SNIFF_MAGIC_BYTES ? (size_t)s->size : IT_SNIFF_MAGIC_BYTES;
	unsigned char head[IT_SNIFF_MAGIC_BYTES];
	enum it_sniff_rc rc;

	memset(out, 0, sizeof(*out));
	if ((p = at(s, 0, n)) == NULL && n > 0)
		return s->io_error ? IT_SNIFF_BAD : IT_SNIFF_NEED_MORE;
	if (n)
		memcpy(head, p, n);
	rc = it_sniff_type(head, n, out);
	if (rc != IT_SNIFF_OK)
		return rc;
	switch (out->ext[0]) {
	case 'h':
	case 'a': rc = isobmff_size(s, out); break;
	case 'p': rc = png_size(s, out); break;
	case 'g': rc = gif_size(s, out); break;
	case 'w': rc = webp_size(s, out); break;
	default: rc = jpeg_size(s, out); break;
	}
	if (s->io_error)
		return IT_SNIFF_BAD;
	if (rc != IT_SNIFF_OK)
		return rc;
	if (out->width == 0 || out->height == 0 || out->width > 0x7fffffff || out->height > 0x7fffffff)
		return IT_SNIFF_BAD;
	/* A frame of no pixels (a GIF may declare one) adds nothing; the
	 * image itself is always inside its extent. */
	if (out->extent_width < out->width)
		out->extent_width = out->width;
	if (out->extent_height < out->height)
		out->extent_height = out->height;
	return IT_SNIFF_OK;
}

enum it_sniff_rc it_sniff_image(const void *buf, size_t n, it_sniff *out)
{
	src s = {.mem = buf, .fd = -1, .size = n};

	return sniff(&s, out);
}

enum it_sniff_rc it_sniff_whole(const void *buf, size_t n, it_sniff *out)
{
	src s = {.mem = buf, .fd = -1, .size = n, .final = 1};

	return sniff(&s, out);
}

enum it_sniff_rc it_sniff_fd(int fd, uint64_t size, it_sniff *out)
{
	src s = {.mem = NULL, .fd = fd, .size = size, .final = 1};

	return sniff(&s, out);
}

int it_sniff_check(const it_sniff *s, const it_sniff_limits *lim, char *why, size_t whylen)
{
	uint32_t side = s->extent_width > s->extent_height ? s->extent_width : s->extent_height;

	/* The image and every frame are inside the extent, so its sides bound
	 * theirs; but pixels are counted per frame and for the canvas, the
	 * way decoders allocate them. */
	if (s->frames > IT_SNIFF_MAX_FRAMES) {
		snprintf(why, whylen, "has more than %d frames; the limit is %d frames", IT_SNIFF_MAX_FRAMES,
			 IT_SNIFF_MAX_FRAMES);
		return -EFBIG;
	}
	if ((uint64_t)s->width * s->height > lim->max_pixels) {
		snprintf(why, whylen, "is %" PRIu32 "x%" PRIu32 " pixels; the limit (max_pixels) is %" PRIu64 " pixels",
			 s->width, s->height, lim->max_pixels);
		return -EFBIG;
	}
	if ((uint64_t)s->frame_width * s->frame_height > lim->max_pixels) {
		snprintf(why, whylen,
			 "has a frame of %" PRIu32 "x%" PRIu32 " pixels; the limit (max_pixels) is %" PRIu64 " pixels",
			 s->frame_width, s->frame_height, lim->max_pixels);
		return -EFBIG;
	}
	if ((uint64_t)s->extent_width * s->extent_height > lim->max_pixels) {
		snprintf(why, whylen,
			 "has frames reaching %" PRIu32 "x%" PRIu32 " pixels; the limit (max_pixels) is %" PRIu64
			 " pixels",
			 s->extent_width, s->extent_height, lim->max_pixels);
		return -EFBIG;
	}
	if (side > lim->max_dimension) {
		snprintf(why, whylen, "is %" PRIu32 " pixels %s; the limit (max_dimension) is %" PRIu64 " pixels", side,
			 s->extent_width >= s->extent_height ? "wide" : "high", lim->max_dimension);
		return -EFBIG;
	}
	if (s->whole_bytes > lim->max_decode_bytes) {
		snprintf(why, whylen,
			 "would take %" PRIu64 " MiB to decode (%s); the limit (max_decode_bytes) is %" PRIu64 " MiB",
			 (s->whole_bytes + (1 << 20) - 1) >> 20,
			 s->ext[0] == 'j'				? "progressive JPEG"
				 : s->ext[0] == 'p'			? "interlaced PNG"
				 : s->ext[0] == 'h' || s->ext[0] == 'a' ? "HEIF is decoded whole"
									: "whole frames",
			 lim->max_decode_bytes >> 20);
		return -EFBIG;
	}
	return 0;
}

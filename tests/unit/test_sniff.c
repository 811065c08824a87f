/* test_sniff.c: unit tests for image/sniff: types from magic bytes, sizes and decoding costs from headers
 * (every GIF and WebP frame walked, HEIF's boxes), the limits check, every prefix of every input placed right before an
 * unmapped page. */
#include "config.h"

#include "image/sniff.h"
#include "guard.h"
#include "tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A growing test input. */
typedef struct bytes {
	unsigned char *p;
	size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL)
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void put1(bytes *b, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(b, &c, 1);
}

static void le16(bytes *b, unsigned v)
{
	put1(b, v & 0xff);
	put1(b, v >> 8);
}

static void le24(bytes *b, unsigned v)
{
	le16(b, v & 0xffff);
	put1(b, v >> 16);
}

static void le32(bytes *b, uint32_t v)
{
	le16(b, v & 0xffff);
	le16(b, v >> 16);
}

static void be16(bytes *b, unsigned v)
{
	put1(b, v >> 8);
	put1(b, v & 0xff);
}

static void be32(bytes *b, uint32_t v)
{
	be16(b, v >> 16);
	be16(b, v & 0xffff);
}

static enum it_sniff_rc sniff_guarded(const void *p, size_t n, it_sniff *s, int whole)
{
	size_t mapped;
	unsigned char *g = guard_copy(p, n, &mapped);
	enum it_sniff_rc rc = whole ? it_sniff_whole(g, n, s) : it_sniff_image(g, n, s);

	guard_free(g, n, mapped);
	return rc;
}

static enum it_sniff_rc sniff_file(const void *p, size_t n, it_sniff *s)
{
	FILE *f = tmpfile();
	enum it_sniff_rc rc;

	if (f == NULL || fwrite(p, 1, n, f) != n || fflush(f) != 0)
		abort();
	rc = it_sniff_fd(fileno(f), n, s);
	fclose(f);
	return rc;
}

static int same(const it_sniff *a, const it_sniff *b)
{
	return a->width == b->width && a->height == b->height && a->extent_width == b->extent_width &&
		a->extent_height == b->extent_height && a->frame_width == b->frame_width &&
		a->frame_height == b->frame_height && a->frames == b->frames &&
		a->bytes_per_pixel == b->bytes_per_pixel && a->whole_bytes == b->whole_bytes &&
		a->interlaced == b->interlaced && a->content_type == b->content_type;
}

/* The full input gives want; it_sniff_whole and it_sniff_fd agree with
 * it_sniff_image on it; every shorter prefix (a split point for a
 * streaming caller) gives NEED_MORE or the same answer, never another size
 * or a crash, and as a whole file never crashes either. Returns what the
 * full input gave in *s. */
static void check(const char *name, const void *p, size_t n, enum it_sniff_rc want, it_sniff *s)
{
	it_sniff t;
	enum it_sniff_rc rc = sniff_guarded(p, n, s, 0);
	int prefixes_ok = 1;

	is_int(rc, want, "%s: result", name);
	is_int(sniff_guarded(p, n, &t, 1), want, "%s: the same as a whole buffer", name);
	if (want == IT_SNIFF_OK)
		ok(same(s, &t), "%s: and the same facts", name);
	is_int(sniff_file(p, n, &t), want, "%s: the same from a file", name);
	if (want == IT_SNIFF_OK)
		ok(same(s, &t), "%s: and the same facts", name);
	for (size_t k = 0; k < n; k++) {
		enum it_sniff_rc r = sniff_guarded(p, k, &t, 0);
		if (r == IT_SNIFF_OK && (want != IT_SNIFF_OK || !same(s, &t)))
			prefixes_ok = 0;
		if (r != IT_SNIFF_OK && r != IT_SNIFF_NEED_MORE && r != want)
			prefixes_ok = 0;
		/* As a whole file a prefix is just a shorter file: any answer,
		 * but read within bounds (the guard page). */
		(void)sniff_guarded(p, k, &t, 1);
	}
	ok(prefixes_ok, "%s: every prefix needs more or agrees", name);
}

static void png(bytes *b, uint32_t w, uint32_t h, unsigned depth, unsigned type, unsigned interlace)
{
	put(b, "\x89PNG\r\n\x1a\n", 8);
	be32(b, 13);
	put(b, "IHDR", 4);
	be32(b, w);
	be32(b, h);
	put1(b, depth);
	put1(b, type);
	put1(b, 0);
	put1(b, 0);
	put1(b, interlace);
	be32(b, 0); /* CRC: not checked by the sniffer */
}

static void gif_screen(bytes *b, unsigned w, unsigned h, int gct)
{
	put(b, "GIF89a", 6);
	le16(b, w);
	le16(b, h);
	put1(b, gct ? 0x80 : 0); /* a 2-colour global table */
	put1(b, 0);
	put1(b, 0);
	if (gct)
		put(b, "\0\0\0\xff\xff\xff", 6);
}

/* An image: descriptor, optional 4-colour local table, code size, then
 * data sub-blocks (lengths 255, ..., the rest) of nbytes in all. */
static void gif_frame(bytes *b, unsigned x, unsigned y, unsigned w, unsigned h, int lct, size_t nbytes)
{
	put1(b, 0x2c);
	le16(b, x);
	le16(b, y);
	le16(b, w);
	le16(b, h);
	put1(b, lct ? 0x81 : 0);
	if (lct)
		put(b, "\0\0\0\x2c\x2c\x2c\x3b\x3b\x3b\x21\x21\x21", 12); /* bytes that look like blocks */
	put1(b, 2);
	while (nbytes > 0) {
		size_t k = nbytes > 255 ? 255 : nbytes;
		put1(b, (unsigned)k);
		for (size_t i = 0; i < k; i++)
			put1(b, 0x2c); /* an image separator inside the data, to be skipped */
		nbytes -= k;
	}
	put1(b, 0);
}

static void gif_gce(bytes *b)
{
	put(b, "\x21\xf9\x04\x04\x0a\x00\x00\x00", 8);
}

static void webp_riff(bytes *b)
{
	uint32_t n = (uint32_t)b->n - 8;
	memcpy(b->p + 4, &(unsigned char[4]){n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >> 24}, 4);
}

static void webp_vp8x(bytes *b, unsigned flags, unsigned w, unsigned h)
{
	put(b, "RIFF\0\0\0\0WEBPVP8X", 16);
	le32(b, 10);
	put1(b, flags);
	put(b, "\0\0\0", 3);
	le24(b, w - 1);
	le24(b, h - 1);
}

static void webp_anmf(bytes *b, unsigned x, unsigned y, unsigned w, unsigned h)
{
	put(b, "ANMF", 4);
	le32(b, 16 + 10 + 1); /* the frame header, then a (fake) odd-sized chunk inside */
	le24(b, x / 2);
	le24(b, y / 2);
	le24(b, w - 1);
	le24(b, h - 1);
	le24(b, 100);
	put1(b, 0);
	put(b, "VP8L", 4);
	le32(b, 3);
	put(b, "\x2f\0\0", 3);
	put1(b, 0); /* padding to even */
}

/* A JPEG: SOI, APP0, an APP1 of app1 bytes full of bytes that look like
 * markers, fill bytes, DQT, SOFn with the given components (id, HV), DHT,
 * then SOS with ns components. */
static void jpeg(bytes *b, unsigned sof, unsigned w, unsigned h, const unsigned char *hv, unsigned ncomp, unsigned ns,
		 size_t app1)
{
	put(b, "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", 20);
	if (app1) {
		put(b, "\xff\xe1", 2);
		be16(b, (unsigned)app1 + 2);
		for (size_t i = 0; i < app1; i++)
			put1(b, i % 2 ? 0xc0 : 0xff);
	}
	put(b, "\xff\xff\xff\xdb\x00\x04\x00\x00", 8);
	put1(b, 0xff);
	put1(b, sof);
	be16(b, 8 + 3 * ncomp);
	put1(b, 8);
	be16(b, h);
	be16(b, w);
	put1(b, ncomp);
	for (unsigned c = 0; c < ncomp; c++) {
		put1(b, c + 1);
		put1(b, hv[c]);
		put1(b, 0);
	}
	put(b, "\xff\xc4\x00\x03\x00", 5);
	put(b, "\xff\xda", 2);
	be16(b, 6 + 2 * ns);
	put1(b, ns);
	for (unsigned c = 0; c < ns; c++) {
		put1(b, c + 1);
		put1(b, 0);
	}
	put(b, "\x00\x3f\x00", 3);
	put(b, "\x12\x34", 2); /* entropy-coded data follows */
}

static const it_sniff_limits dflt = {100000000, 16384, 128u << 20};

static void expect_refused(const char *name, const it_sniff *s, const char *word)
{
	char why[200];

	is_int(it_sniff_check(s, &dflt, why, sizeof(why)), -EFBIG, "%s: refused", name);
	ok(strstr(why, word) != NULL, "%s: says %s: %s", name, word, why);
}

static void expect_allowed(const char *name, const it_sniff *s)
{
	char why[200] = "";

	is_int(it_sniff_check(s, &dflt, why, sizeof(why)), 0, "%s: allowed %s", name, why);
}

static void test_png(void)
{
	bytes b = {0};
	it_sniff s;

	png(&b, 300, 200, 8, 6, 0);
	check("PNG 300x200 RGBA", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 300 && s.height == 200 && s.frames == 1 && s.bytes_per_pixel == 4 && s.whole_bytes == 0 &&
		   !s.interlaced,
	   "PNG: 300x200, one frame, 4 bytes a pixel, streamed");
	is_str(s.content_type, "image/png", "PNG: content type");
	expect_allowed("PNG 300x200", &s);

	b.n = 0;
	png(&b, 1000000, 100, 16, 6, 0);
	check("PNG 1000000x100 16-bit RGBA", b.p, b.n, IT_SNIFF_OK, &s);
	is_int(s.bytes_per_pixel, 8, "16-bit RGBA: 8 bytes a pixel");
	expect_refused("PNG 1000000 wide (within max_pixels)", &s, "max_dimension");

	b.n = 0;
	png(&b, 100000, 100000, 8, 2, 0);
	check("PNG declaring 100000x100000", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("PNG 100000x100000", &s, "max_pixels");

	b.n = 0;
	png(&b, 8000, 6000, 16, 6, 1);
	check("interlaced PNG 8000x6000 16-bit RGBA", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.interlaced && s.whole_bytes == 8000ull * 6000 * 8, "interlaced: the whole image is held (%llu bytes)",
	   (unsigned long long)s.whole_bytes);
	expect_refused("interlaced PNG 8000x6000", &s, "max_decode_bytes");

	b.n = 0;
	png(&b, 640, 480, 2, 3, 1);
	check("interlaced palette PNG 640x480", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.bytes_per_pixel == 4 && s.whole_bytes == 640 * 480 * 4, "palette: expanded to RGBA");
	expect_allowed("interlaced PNG 640x480", &s);

	b.n = 0;
	png(&b, 10, 10, 4, 2, 0);
	check("PNG RGB at 4 bits (no such thing)", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	png(&b, 10, 10, 8, 5, 0);
	check("PNG colour type 5", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	png(&b, 10, 10, 8, 2, 2);
	check("PNG interlace method 2", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	png(&b, 0, 5, 8, 2, 0);
	check("PNG with a zero width", b.p, b.n, IT_SNIFF_BAD, &s);
	free(b.p);
}

static void test_gif(void)
{
	bytes b = {0};
	it_sniff s, t;

	gif_screen(&b, 320, 240, 1);
	put(&b, "\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00", 19);
	gif_gce(&b);
	gif_frame(&b, 0, 0, 10, 10, 0, 600);
	gif_gce(&b);
	gif_frame(&b, 10, 20, 300, 200, 1, 30);
	put(&b, "\x21\xfe\x02hi\x00", 6); /* a comment */
	put1(&b, 0x3b);
	check("GIF 320x240, two frames", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 320 && s.height == 240 && s.frames == 2 && s.frame_width == 300 && s.frame_height == 200 &&
		   s.extent_width == 320 && s.extent_height == 240,
	   "GIF: screen 320x240, 2 frames, the largest 300x200");
	ok(s.bytes_per_pixel == 4 && s.whole_bytes == (320 * 240 + 300 * 200) * 4, "GIF: canvas and frame held");
	expect_allowed("GIF 320x240", &s);

	/* Without its trailer, cut inside the last frame's data: a stream
	 * needs more, a whole file is what a decoder shows. */
	b.n -= 8;
	is_int(sniff_guarded(b.p, b.n, &t, 0), IT_SNIFF_NEED_MORE, "GIF without trailer: a prefix needs more");
	is_int(sniff_guarded(b.p, b.n, &t, 1), IT_SNIFF_OK, "GIF without trailer: whole, it is what is there");
	ok(t.frames == 2 && t.frame_width == 300, "GIF without trailer: both frames counted");
	is_int(sniff_file(b.p, b.n, &t), IT_SNIFF_OK, "GIF without trailer: from a file too");

	/* The bomb: a 1x1 screen, one 65535x65535 frame, 42 bytes. */
	b.n = 0;
	gif_screen(&b, 1, 1, 1);
	gif_frame(&b, 0, 0, 65535, 65535, 0, 4);
	put1(&b, 0x3b);
	check("GIF 1x1 screen, 65535x65535 frame", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 1 && s.frame_width == 65535 && s.extent_height == 65535, "the frame is seen (%zu bytes)", b.n);
	expect_refused("GIF 65535x65535 frame", &s, "frame of 65535x65535");

	b.n = 0;
	gif_screen(&b, 1, 1, 0);
	gif_frame(&b, 0, 0, 8000, 8000, 0, 4);
	put1(&b, 0x3b);
	check("GIF 8000x8000 frame (within max_pixels)", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("GIF 8000x8000 frame", &s, "max_decode_bytes");

	b.n = 0;
	gif_screen(&b, 100, 100, 0);
	gif_frame(&b, 60000, 60000, 10, 10, 0, 4);
	put1(&b, 0x3b);
	check("GIF frame outside the screen", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.extent_width == 60010 && s.extent_height == 60010, "the extent covers it");
	expect_refused("GIF frame at 60000,60000", &s, "reaching 60010x60010");

	b.n = 0;
	gif_screen(&b, 65535, 1525, 0);
	put1(&b, 0x3b);
	check("GIF 65535x1525 screen without frames", b.p, b.n, IT_SNIFF_BAD, &s);

	b.n = 0;
	gif_screen(&b, 65535, 1525, 0);
	gif_frame(&b, 0, 0, 1, 1, 0, 4);
	put1(&b, 0x3b);
	check("GIF 65535x1525 screen", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("GIF 65535x1525 screen", &s, "max_dimension");

	b.n = 0;
	gif_screen(&b, 0, 0, 0);
	gif_frame(&b, 5, 5, 50, 40, 0, 4);
	put1(&b, 0x3b);
	check("GIF with a zero screen", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 55 && s.height == 45, "the frames size it (%ux%u)", s.width, s.height);

	b.n = 0;
	gif_screen(&b, 10, 10, 0);
	for (int i = 0; i < IT_SNIFF_MAX_FRAMES + 10; i++)
		gif_frame(&b, 0, 0, 10, 10, 0, 1);
	put1(&b, 0x3b);
	is_int(sniff_guarded(b.p, b.n, &s, 0), IT_SNIFF_OK, "GIF with %d frames", IT_SNIFF_MAX_FRAMES + 10);
	is_int(s.frames, IT_SNIFF_MAX_FRAMES + 1, "counted up to the limit");
	expect_refused("GIF with many frames", &s, "frames");
	is_int(sniff_file(b.p, b.n, &t), IT_SNIFF_OK, "many frames from a file (across read windows)");
	ok(same(&s, &t), "the same facts");

	/* One frame whose data spans many 4 KiB read windows, then a huge one. */
	b.n = 0;
	gif_screen(&b, 10, 10, 1);
	gif_frame(&b, 0, 0, 10, 10, 1, 100000);
	gif_frame(&b, 0, 0, 20000, 20000, 0, 1);
	put1(&b, 0x3b);
	is_int(sniff_file(b.p, b.n, &s), IT_SNIFF_OK, "GIF with 100 kB of sub-blocks from a file");
	ok(s.frames == 2 && s.frame_width == 20000, "the frame after them is found");

	check("GIF with garbage before any frame", "GIF89a\x01\x00\x01\x00\x00\x00\x00\x99", 14, IT_SNIFF_BAD, &s);
	free(b.p);
}

/* ISOBMFF boxes for HEIF: box_begin reserves the size, box_end fills it in. */
static size_t box_begin(bytes *b, const char *type)
{
	size_t at = b->n;
	be32(b, 0);
	put(b, type, 4);
	return at;
}

static void box_end(bytes *b, size_t at)
{
	uint32_t n = (uint32_t)(b->n - at);
	b->p[at] = n >> 24;
	b->p[at + 1] = (n >> 16) & 0xff;
	b->p[at + 2] = (n >> 8) & 0xff;
	b->p[at + 3] = n & 0xff;
}

static void heif_ftyp(bytes *b, const char *major, const char *compat)
{
	size_t f = box_begin(b, "ftyp");
	put(b, major, 4);
	be32(b, 0);
	put(b, compat, strlen(compat));
	box_end(b, f);
}

static void heif_ispe(bytes *b, uint32_t w, uint32_t h)
{
	size_t x = box_begin(b, "ispe");
	be32(b, 0);
	be32(b, w);
	be32(b, h);
	box_end(b, x);
}

/* A HEIF: ftyp, then meta with hdlr, pitm (item 1), iprp: ipco with
 * properties 1 ispe of the primary (w x h), 2 pixi (depth), 3 irot (rot,
 * when rot >= 0), 4 ispe of a second item (w2 x h2, when w2 > 0); ipma
 * (version v, flags fl) gives item 1 properties 1, 2 and 3 and item 2
 * property 4; then mdat. */
static void heif(bytes *b, const char *major, const char *compat, uint32_t w, uint32_t h, unsigned depth, int rot,
		 uint32_t w2, uint32_t h2, unsigned v, unsigned fl)
{
	size_t meta, x, iprp, ipco;

	heif_ftyp(b, major, compat);
	meta = box_begin(b, "meta");
	be32(b, 0);
	x = box_begin(b, "hdlr");
	put(b, "\0\0\0\0\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0", 25);
	box_end(b, x);
	x = box_begin(b, "pitm");
	be32(b, v << 24);
	if (v)
		be32(b, 1);
	else
		be16(b, 1);
	box_end(b, x);
	iprp = box_begin(b, "iprp");
	ipco = box_begin(b, "ipco");
	heif_ispe(b, w, h);
	x = box_begin(b, "pixi");
	be32(b, 0);
	put1(b, 3);
	put1(b, depth);
	put1(b, depth);
	put1(b, depth);
	box_end(b, x);
	x = box_begin(b, rot >= 0 ? "irot" : "free");
	put1(b, rot >= 0 ? (unsigned)rot : 0);
	box_end(b, x);
	if (w2)
		heif_ispe(b, w2, h2);
	box_end(b, ipco);
	x = box_begin(b, "ipma");
	be32(b, v << 24 | fl);
	be32(b, w2 ? 2 : 1);
	for (unsigned item = 1; item <= (w2 ? 2u : 1u); item++) {
		unsigned props[3] = {1, 2, 3}, n = item == 1 ? 3 : 1;
		if (item == 2)
			props[0] = 4;
		if (v)
			be32(b, item);
		else
			be16(b, item);
		put1(b, n);
		for (unsigned k = 0; k < n; k++) {
			if (fl & 1)
				be16(b, 0x8000 | props[k]);
			else
				put1(b, 0x80 | props[k]);
		}
	}
	box_end(b, x);
	box_end(b, iprp);
	box_end(b, meta);
	x = box_begin(b, "mdat");
	put(b,
	    "\0\0\0\x10"
	    "coded",
	    9);
	box_end(b, x);
}

static void test_heif(void)
{
	bytes b = {0};
	it_sniff s, t;

	heif(&b, "heic", "mif1heic", 4032, 3024, 8, -1, 0, 0, 0, 0);
	check("HEIC 4032x3024", b.p, b.n, IT_SNIFF_OK, &s);
	is_str(s.content_type, "image/heic", "HEIC: content type");
	is_str(s.ext, "heic", "HEIC: extension");
	ok(s.width == 4032 && s.height == 3024 && s.frames == 1 && s.bytes_per_pixel == 4,
	   "HEIC: 4032x3024, one frame, 8-bit RGBA");
	ok(s.whole_bytes == 4032ull * 3024 * 7, "HEIC is decoded whole: planes and RGBA (%llu)",
	   (unsigned long long)s.whole_bytes);
	expect_allowed("HEIC 12 MP", &s);

	b.n = 0;
	heif(&b, "mif1", "mif1miafheic", 640, 480, 8, -1, 0, 0, 1, 1);
	is_int(it_sniff_type(b.p, IT_SNIFF_MAGIC_BYTES, &t), IT_SNIFF_OK, "a generic major brand is HEIF to the magic");
	is_str(t.content_type, "image/heif", "(image/heif until the brands are read)");
	check("HEIF mif1 with heic compatible, ipma v1 wide", b.p, b.n, IT_SNIFF_OK, &s);
	is_str(s.content_type, "image/heic", "the compatible brand names HEVC");
	ok(s.width == 640 && s.height == 480, "640x480");

	b.n = 0;
	heif(&b, "avif", "avifmif1miafMA1B", 1000, 500, 10, 1, 0, 0, 0, 0);
	check("AVIF 10-bit turned 90 degrees", b.p, b.n, IT_SNIFF_OK, &s);
	is_str(s.content_type, "image/avif", "AVIF: content type");
	ok(s.width == 500 && s.height == 1000 && s.bytes_per_pixel == 8 && s.frame_width == 500 &&
		   s.extent_height == 1000,
	   "irot: shown 500x1000; 10 bits decode to 16-bit samples (%ux%u, %u)", s.width, s.height, s.bytes_per_pixel);

	b.n = 0;
	heif(&b, "mif1", "mif1miafavif", 64, 64, 8, 2, 0, 0, 0, 0);
	check("HEIF mif1 with avif compatible, turned 180", b.p, b.n, IT_SNIFF_OK, &s);
	ok(strcmp(s.content_type, "image/avif") == 0 && s.width == 64, "AVIF by its compatible brand");

	b.n = 0;
	heif(&b, "heic", "mif1heic", 64, 64, 8, -1, 65535, 65535, 0, 0);
	check("HEIC with a 65535x65535 second item", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 64 && s.frame_width == 65535, "the primary is 64x64; the largest item is seen");
	expect_refused("HEIC hiding a huge item", &s, "frame of 65535x65535");

	b.n = 0;
	heif(&b, "heic", "mif1heic", 40000, 30000, 8, -1, 0, 0, 0, 0);
	check("HEIC 40000x30000", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("HEIC 1200 MP", &s, "max_pixels");

	b.n = 0;
	heif(&b, "heic", "mif1heic", 8000, 8000, 8, -1, 0, 0, 0, 0);
	check("HEIC 8000x8000", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("HEIC 64 MP decoded whole", &s, "max_decode_bytes");

	/* A 64-bit box size before meta. */
	b.n = 0;
	heif_ftyp(&b, "heic", "mif1heic");
	be32(&b, 1);
	put(&b, "free", 4);
	be32(&b, 0);
	be32(&b, 24);
	put(&b, "12345678", 8);
	{
		bytes c = {0};
		heif(&c, "heic", "mif1heic", 300, 200, 8, -1, 0, 0, 0, 0);
		put(&b, c.p + 24, c.n - 24); /* c without its ftyp (24 bytes) */
		free(c.p);
	}
	check("HEIC with a 64-bit sized box first", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 300 && s.height == 200, "300x200");

	b.n = 0;
	heif(&b, "mif1", "mif1miafjpeg", 64, 64, 8, -1, 0, 0, 0, 0);
	check("HEIF without a codec we take", b.p, b.n, IT_SNIFF_UNKNOWN, &s);

	b.n = 0;
	heif_ftyp(&b, "heic", "mif1heic");
	be32(&b, 0);
	put(&b, "mdat", 4);
	put(&b, "data", 4);
	check("HEIC whose media data runs to the end before any meta", b.p, b.n, IT_SNIFF_BAD, &s);

	b.n = 0;
	heif(&b, "heic", "mif1heic", 64, 64, 8, -1, 0, 0, 0, 0);
	b.p[24 + 1] += 1; /* meta claims 64 KiB more than the file has */
	is_int(sniff_guarded(b.p, b.n, &s, 1), IT_SNIFF_BAD, "meta larger than the file: damaged");
	is_int(sniff_guarded(b.p, b.n, &s, 0), IT_SNIFF_NEED_MORE, "(or, streaming, not all there yet)");

	b.n = 0;
	heif(&b, "heic", "mif1heic", 0, 64, 8, -1, 0, 0, 0, 0);
	check("HEIC of zero width", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	heif(&b, "heic", "mif1heic", 64, 64, 8, -1, 0, 0, 0, 0);
	for (size_t k = 0; k + 4 <= b.n; k++)
		if (memcmp(b.p + k, "pitm", 4) == 0)
			b.p[k] = 'x'; /* pitm becomes "xitm" */
	check("HEIC without a primary item", b.p, b.n, IT_SNIFF_BAD, &s);

	check("QuickTime",
	      "\0\0\0\x14"
	      "ftypqt  \0\0\0\0qt  ",
	      20, IT_SNIFF_UNKNOWN, &s);
	check("ftyp of a wrong size",
	      "\0\0\0\x13"
	      "ftypheic\0\0\0\0mif",
	      19, IT_SNIFF_UNKNOWN, &s);
	is_int(it_sniff_type("\0\0", 2, &s), IT_SNIFF_NEED_MORE, "two zero bytes: maybe a HEIF");
	free(b.p);
}

static void test_webp(void)
{
	static const unsigned char webp_l[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0,	  'W',	'E',  'B',  'P', 'V',
					       'P', '8', 'L', 5,   0, 0, 0, 0x2f, 0x63, 0x40, 0x0c, 0x00};
	static const unsigned char webp_lossy[] = {'R',	 'I',  'F',  'F',  0,	 0,    0,    0,	   'W',	 'E',
						   'B',	 'P',  'V',  'P',  '8',	 ' ',  10,   0,	   0,	 0,
						   0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01};
	bytes b = {0};
	it_sniff s;

	webp_vp8x(&b, 0x10, 800, 600);
	webp_riff(&b);
	check("WebP VP8X 800x600", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 800 && s.height == 600 && s.frames == 1 && s.whole_bytes == 800 * 600 * 4,
	   "WebP VP8X: 800x600, one frame, decoded whole");
	check("WebP VP8L 100x50", webp_l, sizeof(webp_l), IT_SNIFF_OK, &s);
	ok(s.width == 100 && s.height == 50, "VP8L: 100x50");
	check("WebP VP8 640x480", webp_lossy, sizeof(webp_lossy), IT_SNIFF_OK, &s);
	ok(s.width == 640 && s.height == 480, "VP8: 640x480");

	b.n = 0;
	webp_vp8x(&b, 0x10, 16777216, 16777216);
	webp_riff(&b);
	check("WebP VP8X canvas 2^24 x 2^24", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("WebP canvas 2^24", &s, "max_pixels");

	b.n = 0;
	webp_vp8x(&b, 0x12, 200, 100);
	put(&b, "ANIM", 4);
	le32(&b, 6);
	put(&b, "\0\0\0\0\0\0", 6);
	webp_anmf(&b, 0, 0, 200, 100);
	webp_anmf(&b, 50, 20, 100, 60);
	put(&b, "EXIF", 4);
	le32(&b, 3);
	put(&b, "abc\0", 4);
	webp_riff(&b);
	check("animated WebP 200x100, two frames", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.frames == 2 && s.frame_width == 200 && s.extent_width == 200 && s.extent_height == 100,
	   "animated WebP: two frames inside the canvas");
	expect_allowed("animated WebP 200x100", &s);

	b.n = 0;
	webp_vp8x(&b, 0x12, 64, 64);
	webp_anmf(&b, 0, 0, 64, 64);
	webp_anmf(&b, 0, 0, 16384, 16384);
	webp_riff(&b);
	check("animated WebP with a 16384x16384 frame", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.frame_width == 16384 && s.extent_width == 16384, "the huge frame is seen");
	expect_refused("animated WebP 16384x16384 frame", &s, "frame of 16384x16384");

	b.n = 0;
	webp_vp8x(&b, 0x12, 64, 64);
	webp_anmf(&b, 16000, 16000, 64, 64);
	webp_riff(&b);
	check("animated WebP frame far outside", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("animated WebP frame at 16000,16000", &s, "reaching");

	b.n = 0;
	webp_vp8x(&b, 0x12, 64, 64);
	webp_riff(&b);
	check("animated WebP without frames", b.p, b.n, IT_SNIFF_BAD, &s);
	free(b.p);
}

static void test_jpeg(void)
{
	static const unsigned char h420[] = {0x22, 0x11, 0x11}, h444[] = {0x11, 0x11, 0x11},
				   bad_hv[] = {0x22, 0x10, 0x11}, h5[] = {0x11, 0x11, 0x11, 0x11, 0x11};
	bytes b = {0};
	it_sniff s;

	/* 60000 bytes of EXIF that look like SOF markers, fill bytes, then
	 * SOF2 (progressive) 4032x3024 4:2:0. */
	jpeg(&b, 0xc2, 4032, 3024, h420, 3, 1, 60000);
	check("progressive JPEG 4032x3024 after large metadata", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.width == 4032 && s.height == 3024 && s.bytes_per_pixel == 3 && s.interlaced,
	   "progressive: 4032x3024, 3 components");
	/* Y: 504x378 blocks, Cb and Cr 252x189, 128 bytes each. */
	ok(s.whole_bytes == (504ull * 378 + 2 * 252 * 189) * 128, "coefficients of every block are held (%llu)",
	   (unsigned long long)s.whole_bytes);
	is_str(s.content_type, "image/jpeg", "JPEG: content type");
	expect_allowed("progressive 12 MP", &s);
	{
		it_sniff t;
		is_int(sniff_guarded(b.p, 30000, &t, 1), IT_SNIFF_NEED_MORE, "JPEG cut inside APP1 needs more");
		is_int(sniff_file(b.p, 30000, &t), IT_SNIFF_NEED_MORE, "it_sniff_fd: a shorter size needs more");
	}

	b.n = 0;
	jpeg(&b, 0xc0, 4032, 3024, h420, 3, 3, 0);
	check("baseline JPEG 4032x3024", b.p, b.n, IT_SNIFF_OK, &s);
	ok(!s.interlaced && s.whole_bytes == 0, "baseline, one scan: streamed");

	b.n = 0;
	jpeg(&b, 0xc1, 4032, 3024, h444, 3, 1, 0);
	check("sequential JPEG in three scans", b.p, b.n, IT_SNIFF_OK, &s);
	ok(s.interlaced && s.whole_bytes == 504ull * 378 * 128 * 3, "multi-scan: coefficients held");

	b.n = 0;
	jpeg(&b, 0xc0, 65535, 65535, h444, 3, 3, 0);
	check("JPEG SOF 65535x65535", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("JPEG 65535x65535", &s, "max_pixels");

	b.n = 0;
	jpeg(&b, 0xc2, 9000, 9000, h444, 3, 1, 0);
	check("progressive JPEG 9000x9000 4:4:4", b.p, b.n, IT_SNIFF_OK, &s);
	expect_refused("progressive 81 MP", &s, "max_decode_bytes");

	b.n = 0;
	jpeg(&b, 0xc0, 100, 100, h5, 5, 5, 0);
	check("JPEG with 5 components", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	jpeg(&b, 0xc0, 100, 100, bad_hv, 3, 3, 0);
	check("JPEG with a zero sampling factor", b.p, b.n, IT_SNIFF_BAD, &s);
	b.n = 0;
	jpeg(&b, 0xc0, 100, 100, h444, 3, 4, 0);
	check("JPEG scan with more components than the frame", b.p, b.n, IT_SNIFF_BAD, &s);

	check("JPEG with scan data before a frame", "\xff\xd8\xff\xda\x00\x03\x01", 7, IT_SNIFF_BAD, &s);
	check("JPEG with garbage between segments", "\xff\xd8\xff\xe0\x00\x02X", 7, IT_SNIFF_BAD, &s);
	check("JPEG ending before a frame", "\xff\xd8\xff\xd9", 4, IT_SNIFF_BAD, &s);
	free(b.p);
}

static void test_limits(void)
{
	it_sniff s = {.content_type = "image/png",
		      .ext = "png",
		      .width = 10000,
		      .height = 10000,
		      .extent_width = 10000,
		      .extent_height = 10000,
		      .frame_width = 10000,
		      .frame_height = 10000,
		      .frames = 1,
		      .bytes_per_pixel = 3};
	char why[200];

	is_int(it_sniff_check(&s, &dflt, why, sizeof(why)), 0, "10000x10000 streamed PNG: allowed");
	s.width = s.extent_width = s.frame_width = 10001;
	expect_refused("10001x10000", &s, "max_pixels");
	s.width = s.extent_width = s.frame_width = 16385;
	s.height = s.extent_height = s.frame_height = 100;
	expect_refused("16385 wide", &s, "16385 pixels wide");
	s.width = s.extent_width = s.frame_width = 100;
	s.height = s.extent_height = s.frame_height = 16385;
	expect_refused("16385 high", &s, "16385 pixels high");
	s.height = s.extent_height = s.frame_height = 100;
	s.whole_bytes = (128u << 20) + 1;
	expect_refused("one byte over max_decode_bytes", &s, "129 MiB");
	s.whole_bytes = 128u << 20;
	is_int(it_sniff_check(&s, &dflt, why, sizeof(why)), 0, "exactly max_decode_bytes: allowed");
	s.frames = IT_SNIFF_MAX_FRAMES;
	is_int(it_sniff_check(&s, &dflt, why, sizeof(why)), 0, "IT_SNIFF_MAX_FRAMES frames: allowed");
}

int main(void)
{
	it_sniff s;

	test_png();
	test_gif();
	test_webp();
	test_jpeg();
	test_heif();
	test_limits();

	check("plain text", "hello, world, this is text", 26, IT_SNIFF_UNKNOWN, &s);
	check("PDF", "%PDF-1.7\n%\xe2\xe3\xcf\xd3", 14, IT_SNIFF_UNKNOWN, &s);
	check("SVG (not accepted: it can carry script)", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>", 41,
	      IT_SNIFF_UNKNOWN, &s);
	check("RIFF that is not WebP", "RIFF\0\0\0\0WAVEfmt ", 16, IT_SNIFF_UNKNOWN, &s);
	is_int(it_sniff_type("\x89PN", 3, &s), IT_SNIFF_NEED_MORE, "three bytes of PNG magic: undecided");
	is_int(it_sniff_type("\x89PX", 3, &s), IT_SNIFF_UNKNOWN, "a wrong third byte decides");
	is_int(it_sniff_type("", 0, &s), IT_SNIFF_NEED_MORE, "nothing yet: undecided");
	return tap_done();
}

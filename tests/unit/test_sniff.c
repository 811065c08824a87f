/* test_sniff.c: unit tests for image/sniff: types from magic bytes, sizes from headers, every prefix
 * of every input placed right before an unmapped page. */
#include "config.h"

#include "image/sniff.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *guard_end;

static void guard_init(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *base = mmap(NULL, (size_t)pg * 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED || mprotect(base + pg * 63, (size_t)pg, PROT_NONE) != 0) {
		printf("Bail out! cannot map a guard page\n");
		exit(1);
	}
	guard_end = base + pg * 63;
}

static enum it_sniff_rc sniff_guarded(const void *p, size_t n, it_sniff *s)
{
	memcpy(guard_end - n, p, n);
	return it_sniff_image(guard_end - n, n, s);
}

/* The full input gives want (and w x h); every shorter prefix gives
 * NEED_MORE or the same answer, never a different size or a crash. */
static void check(const char *name, const void *p, size_t n, enum it_sniff_rc want, const char *type, uint32_t w,
		  uint32_t h)
{
	it_sniff s;
	enum it_sniff_rc rc = sniff_guarded(p, n, &s);
	int prefixes_ok = 1;

	is_int(rc, want, "%s: result", name);
	if (want == IT_SNIFF_OK) {
		is_str(s.content_type, type, "%s: content type", name);
		ok(s.width == w && s.height == h, "%s: %ux%u (got %ux%u)", name, w, h, s.width, s.height);
	}
	for (size_t k = 0; k < n; k++) {
		it_sniff t;
		enum it_sniff_rc r = sniff_guarded(p, k, &t);
		if (r == IT_SNIFF_OK && (t.width != s.width || t.height != s.height || want != IT_SNIFF_OK))
			prefixes_ok = 0;
		if (r != IT_SNIFF_OK && r != IT_SNIFF_NEED_MORE && r != want)
			prefixes_ok = 0;
	}
	ok(prefixes_ok, "%s: every prefix needs more or agrees", name);
}

int main(void)
{
	static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
					    0, 0, 0x01, 0x2c, 0, 0, 0, 0xc8, 8, 6, 0, 0, 0};
	static const unsigned char png_bomb[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D',
						 'R', 0, 0x01, 0x86, 0xa0, 0, 0x01, 0x86, 0xa0, 8, 2, 0, 0, 0};
	static const unsigned char png_zero[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D',
						 'R', 0, 0, 0, 0, 0, 0, 0, 5, 8, 2, 0, 0, 0};
	static const unsigned char gif[] = {'G', 'I', 'F', '8', '9', 'a', 0x40, 0x01, 0xf0, 0x00, 0, 0, 0};
	static const unsigned char webp_x[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X',
					       10, 0, 0, 0, 0x10, 0, 0, 0, 0x1f, 0x03, 0, 0x57, 0x02, 0};
	/* VP8L: 0x2f, then (w-1) | (h-1) << 14 little-endian: 100x50 */
	static const unsigned char webp_l[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'L',
					       5, 0, 0, 0, 0x2f, 0x63, 0x40, 0x0c, 0x00};
	static const unsigned char webp_lossy[] = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' ',
						   10, 0, 0, 0, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01};
	unsigned char jpeg[70000];
	size_t j = 0;

	guard_init();
	check("PNG 300x200", png, sizeof(png), IT_SNIFF_OK, "image/png", 300, 200);
	check("PNG declaring 100000x100000", png_bomb, sizeof(png_bomb), IT_SNIFF_OK, "image/png", 100000, 100000);
	check("PNG with a zero width", png_zero, sizeof(png_zero), IT_SNIFF_BAD, NULL, 0, 0);
	check("GIF 320x240", gif, sizeof(gif), IT_SNIFF_OK, "image/gif", 320, 240);
	check("WebP VP8X 800x600", webp_x, sizeof(webp_x), IT_SNIFF_OK, "image/webp", 800, 600);
	check("WebP VP8L 100x50", webp_l, sizeof(webp_l), IT_SNIFF_OK, "image/webp", 100, 50);
	check("WebP VP8 640x480", webp_lossy, sizeof(webp_lossy), IT_SNIFF_OK, "image/webp", 640, 480);

	/* JPEG: SOI, APP0, a 60000-byte APP1 (EXIF with a thumbnail), fill
	 * bytes, DQT, then SOF2 (progressive) 4032x3024. */
	memcpy(jpeg + j, "\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00", 20);
	j += 20;
	jpeg[j++] = 0xff;
	jpeg[j++] = 0xe1;
	jpeg[j++] = 60000 >> 8;
	jpeg[j++] = 60000 & 0xff;
	memset(jpeg + j, 0xc0, 59998); /* bytes that look like SOF markers */
	j += 59998;
	jpeg[j++] = 0xff;
	jpeg[j++] = 0xff;
	memcpy(jpeg + j, "\xff\xdb\x00\x04\x00\x00", 6);
	j += 6;
	memcpy(jpeg + j, "\xff\xc2\x00\x11\x08\x0b\xd0\x0f\xc0\x03", 10);
	j += 10;
	{
		it_sniff s;
		is_int(sniff_guarded(jpeg, j, &s), IT_SNIFF_OK, "JPEG with large metadata: found the frame");
		ok(s.width == 4032 && s.height == 3024, "JPEG: 4032x3024 from SOF2 (got %ux%u)", s.width, s.height);
		is_int(sniff_guarded(jpeg, 30000, &s), IT_SNIFF_NEED_MORE, "JPEG cut inside APP1 needs more");
		is_str(s.content_type, "image/jpeg", "JPEG: content type");
	}
	{
		/* The same walk over a file, with pread. */
		FILE *f = tmpfile();
		it_sniff s;
		ok(f && fwrite(jpeg, 1, j, f) == j && fflush(f) == 0, "JPEG written to a temporary file");
		is_int(it_sniff_fd(fileno(f), j, &s), IT_SNIFF_OK, "it_sniff_fd: JPEG found in the file");
		ok(s.width == 4032 && s.height == 3024, "it_sniff_fd: 4032x3024");
		is_int(it_sniff_fd(fileno(f), 30000, &s), IT_SNIFF_NEED_MORE, "it_sniff_fd: a shorter size needs more");
		fclose(f);
	}
	check("JPEG with scan data before a frame", "\xff\xd8\xff\xda\x00\x02", 6, IT_SNIFF_BAD, NULL, 0, 0);
	check("JPEG with garbage between segments", "\xff\xd8\xff\xe0\x00\x02X", 7, IT_SNIFF_BAD, NULL, 0, 0);

	check("plain text", "hello, world, this is text", 26, IT_SNIFF_UNKNOWN, NULL, 0, 0);
	check("PDF", "%PDF-1.7\n%\xe2\xe3\xcf\xd3", 14, IT_SNIFF_UNKNOWN, NULL, 0, 0);
	check("SVG (not accepted: it can carry script)", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>", 41,
	      IT_SNIFF_UNKNOWN, NULL, 0, 0);
	check("RIFF that is not WebP", "RIFF\0\0\0\0WAVEfmt ", 16, IT_SNIFF_UNKNOWN, NULL, 0, 0);
	{
		it_sniff s;
		is_int(it_sniff_type("\x89PN", 3, &s), IT_SNIFF_NEED_MORE, "three bytes of PNG magic: undecided");
		is_int(it_sniff_type("\x89PX", 3, &s), IT_SNIFF_UNKNOWN, "a wrong third byte decides");
		is_int(it_sniff_type("", 0, &s), IT_SNIFF_NEED_MORE, "nothing yet: undecided");
	}
	return tap_done();
}

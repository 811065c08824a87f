/* test_cmyk.c: unit tests of src/worker/cmyk.c (CMYK JPEGs re-encoded as YCCK). */
#include "config.h"

#include "tap.h"
#include "worker/cmyk.h"

#include <setjmp.h>
#include <stdint.h>

#include <jpeglib.h>

#define W 96
#define H 64

/* A smooth CMYK test pattern: every channel a different gradient. */
static unsigned char sample(int x, int y, int ch)
{
	switch (ch) {
	case 0: return (unsigned char)(x * 255 / (W - 1));
	case 1: return (unsigned char)(y * 255 / (H - 1));
	case 2: return (unsigned char)((x + y) * 255 / (W + H - 2));
	default: return (unsigned char)(64 + (x * y) % 64);
	}
}

/* Encodes the pattern as plain CMYK at quality 95, with the Adobe segment
 * (Photoshop's inverted samples) or without, plus a COM segment and, when
 * app2 is not 0, an APP2 segment of app2 bytes (where an ICC profile goes;
 * a CMYK one is hundreds of kilobytes, in segments of up to 64 KiB). */
static unsigned char *make(int adobe, unsigned app2, unsigned long *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr e;
	unsigned char *buf = NULL, row[W * 4];
	static unsigned char profile[65000];

	*len = 0;
	c.err = jpeg_std_error(&e);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &buf, len);
	c.image_width = W;
	c.image_height = H;
	c.input_components = 4;
	c.in_color_space = JCS_CMYK;
	jpeg_set_defaults(&c);
	jpeg_set_colorspace(&c, JCS_CMYK);
	c.write_Adobe_marker = adobe ? TRUE : FALSE;
	jpeg_set_quality(&c, 95, TRUE);
	jpeg_start_compress(&c, TRUE);
	jpeg_write_marker(&c, JPEG_COM, (const JOCTET *)"kept", 4);
	if (app2) {
		memset(profile, 'p', sizeof(profile));
		jpeg_write_marker(&c, JPEG_APP0 + 2, profile, app2);
	}
	while (c.next_scanline < H) {
		JSAMPROW r[1] = {row};
		for (int x = 0; x < W; x++)
			for (int ch = 0; ch < 4; ch++)
				row[x * 4 + ch] = sample(x, (int)c.next_scanline, ch);
		jpeg_write_scanlines(&c, r, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	return buf;
}

/* A small greyscale JPEG: not CMYK. */
static unsigned char *make_grey(unsigned long *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr e;
	unsigned char *buf = NULL, row[W];

	*len = 0;
	c.err = jpeg_std_error(&e);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &buf, len);
	c.image_width = W;
	c.image_height = H;
	c.input_components = 1;
	c.in_color_space = JCS_GRAYSCALE;
	jpeg_set_defaults(&c);
	jpeg_start_compress(&c, TRUE);
	memset(row, 128, sizeof(row));
	while (c.next_scanline < H) {
		JSAMPROW r[1] = {row};
		jpeg_write_scanlines(&c, r, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	return buf;
}

struct facts {
	J_COLOR_SPACE space;
	int adobe, comment, hs[4];
	double max_err; /* largest difference from the pattern, as stored */
};

/* Decodes a result and compares its stored samples with the pattern,
 * inverted when invert. */
static void facts_of(const unsigned char *p, size_t n, int invert, struct facts *f)
{
	struct jpeg_decompress_struct d;
	struct jpeg_error_mgr e;
	unsigned char row[W * 4];

	memset(f, 0, sizeof(*f));
	d.err = jpeg_std_error(&e);
	jpeg_create_decompress(&d);
	jpeg_mem_src(&d, p, (unsigned long)n);
	jpeg_save_markers(&d, JPEG_COM, 0xffff);
	jpeg_read_header(&d, TRUE);
	f->space = d.jpeg_color_space;
	f->adobe = d.saw_Adobe_marker;
	f->comment = d.marker_list && d.marker_list->data_length == 4 && memcmp(d.marker_list->data, "kept", 4) == 0;
	for (int ci = 0; ci < 4 && ci < d.num_components; ci++)
		f->hs[ci] = d.comp_info[ci].h_samp_factor;
	d.out_color_space = JCS_CMYK;
	jpeg_start_decompress(&d);
	while (d.output_scanline < d.output_height) {
		JSAMPROW r[1] = {row};
		int y = (int)d.output_scanline;
		jpeg_read_scanlines(&d, r, 1);
		for (int x = 0; x < W; x++)
			for (int ch = 0; ch < 4; ch++) {
				int want = sample(x, y, ch), got = row[x * 4 + ch];
				double diff = abs((invert ? 255 - want : want) - got);
				if (diff > f->max_err)
					f->max_err = diff;
			}
	}
	jpeg_finish_decompress(&d);
	jpeg_destroy_decompress(&d);
}

int main(void)
{
	unsigned long n;
	unsigned char *src;
	void *out;
	size_t outlen;
	char why[200];
	struct facts f;

	/* Adobe CMYK (inverted, as Photoshop writes it) becomes YCCK. */
	src = make(1, 0, &n);
	is_int(it_cmyk_jpeg(src, n, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), 0,
	       "Adobe CMYK re-encoded: %s", why);
	ok(outlen > 0 && outlen < n, "smaller than the quality-95 source (%zu < %lu)", outlen, n);
	facts_of(out, outlen, 0, &f);
	ok(f.space == JCS_YCCK && f.adobe, "written as YCCK with its Adobe segment");
	ok(f.hs[0] == 1 && f.hs[1] == 1 && f.hs[2] == 1 && f.hs[3] == 1, "full resolution like the source");
	ok(f.comment, "the COM segment is copied");
	ok(f.max_err < 40, "the samples keep their meaning (largest difference %.0f)", f.max_err);
	free(out);

	is_int(it_cmyk_jpeg(src, n, 75, 1, 1, 1 << 20, &out, &outlen, why, sizeof(why)), 0, "subsampled, progressive");
	facts_of(out, outlen, 0, &f);
	ok(f.space == JCS_YCCK && f.hs[0] == 2 && f.hs[1] == 1 && f.hs[3] == 2, "chroma at half resolution");
	free(out);

	/* Too large to hold, truncated, damaged: the ordinary path's. */
	is_int(it_cmyk_jpeg(src, n, 75, -1, 0, W * H * 8 - 1, &out, &outlen, why, sizeof(why)), -1,
	       "over max_bytes: not here (%s)", why);
	ok(out == NULL && outlen == 0, "and nothing returned");
	is_int(it_cmyk_jpeg(src, n / 2, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), -1,
	       "truncated: not here (%s)", why);
	is_int(it_cmyk_jpeg(src, 20, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), -1,
	       "20 bytes: not here (%s)", why);
	is_int(it_cmyk_jpeg("not a jpeg at all", 17, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), -1,
	       "not a JPEG: not here (%s)", why);
	free(src);

	/* CMYK without the Adobe segment holds plain samples: YCCK needs
	 * the segment, which says "inverted", so they are inverted. */
	src = make(0, 0, &n);
	is_int(it_cmyk_jpeg(src, n, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), 0, "plain CMYK re-encoded");
	facts_of(out, outlen, 1, &f);
	ok(f.space == JCS_YCCK && f.adobe && f.max_err < 40, "inverted under its new Adobe segment (%.0f)", f.max_err);
	free(out);
	free(src);

	/* A large segment fills more than libjpeg's first output buffer,
	 * which it then replaces by a larger one: a file damaged after it
	 * must still come back with nothing returned and nothing freed
	 * twice. */
	src = make(1, 60000, &n);
	is_int(it_cmyk_jpeg(src, n, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), 0,
	       "with a 60000-byte APP2 segment: re-encoded");
	ok(outlen > 60000, "the segment is copied (%zu bytes)", outlen);
	free(out);
	is_int(it_cmyk_jpeg(src, n - 500, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), -1,
	       "with a 60000-byte APP2 segment, truncated: not here (%s)", why);
	ok(out == NULL && outlen == 0, "and nothing returned");
	free(src);

	src = make_grey(&n);
	is_int(it_cmyk_jpeg(src, n, 75, -1, 0, 1 << 20, &out, &outlen, why, sizeof(why)), -1,
	       "greyscale: not here (%s)", why);
	free(src);
	return tap_done();
}

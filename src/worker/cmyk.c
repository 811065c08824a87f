/* cmyk.c: re-encodes a CMYK JPEG as YCCK with libjpeg, which libvips cannot write. */
#include "config.h"

#include "worker/cmyk.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

/* A hostile progressive file can hold thousands of scans, each a pass over
 * the whole image; real encoders write about a dozen. */
#define MAX_SCANS 100

struct err {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
};

/* libjpeg's errors end in exit() unless the handler jumps out. */
static void on_error(j_common_ptr c)
{
	struct err *e = (struct err *)c->err;

	e->pub.format_message(c, e->msg);
	longjmp(e->jump, 1);
}

/* A warning (level -1) is corrupt data that libjpeg would paper over with
 * grey blocks: such a file takes the ordinary path, which refuses it. */
static void on_message(j_common_ptr c, int level)
{
	if (level < 0)
		on_error(c);
}

static void on_progress(j_common_ptr c)
{
	j_decompress_ptr d = (j_decompress_ptr)c;

	if (c->is_decompressor && d->input_scan_number > MAX_SCANS) {
		struct err *e = (struct err *)c->err;
		snprintf(e->msg, sizeof(e->msg), "more than %d scans", MAX_SCANS);
		longjmp(e->jump, 1);
	}
}

/* Points both error managers at handlers that jump back instead of exiting. */
static void catch_errors(j_decompress_ptr d, struct err *derr, j_compress_ptr c, struct err *cerr)
{
	memset(derr, 0, sizeof(*derr));
	memset(cerr, 0, sizeof(*cerr));
	d->err = jpeg_std_error(&derr->pub);
	derr->pub.error_exit = on_error;
	derr->pub.emit_message = on_message;
	c->err = jpeg_std_error(&cerr->pub);
	cerr->pub.error_exit = on_error;
	cerr->pub.emit_message = on_message;
}

/* Reads the header of in[0..len) and keeps its APPn and COM segments.
 * Returns 0 when it is an 8-bit CMYK image small enough for max_bytes, or
 * -1 with why set. */
static int read_header(j_decompress_ptr d, const void *in, size_t len, uint64_t max_bytes, char *why, size_t whylen)
{
	jpeg_mem_src(d, (const unsigned char *)in, (unsigned long)len);
	jpeg_save_markers(d, JPEG_COM, 0xffff);
	for (int m = 0; m < 16; m++)
		jpeg_save_markers(d, JPEG_APP0 + m, 0xffff);
	if (jpeg_read_header(d, TRUE) != JPEG_HEADER_OK) {
		snprintf(why, whylen, "no image in the file");
		return -1;
	}
	if (d->num_components != 4 || (d->jpeg_color_space != JCS_CMYK && d->jpeg_color_space != JCS_YCCK) ||
	    d->data_precision != 8) {
		snprintf(why, whylen, "not 8-bit CMYK");
		return -1;
	}
	/* Optimised Huffman tables take a second pass over the coefficients
	 * of the whole image: 4 channels of 2-byte coefficients. */
	if ((uint64_t)d->image_width * d->image_height * 8 > max_bytes) {
		snprintf(why, whylen, "%ux%u is too large to hold whole", d->image_width, d->image_height);
		return -1;
	}
	d->out_color_space = JCS_CMYK;
	return 0;
}

/* Sets c up to write the image d decodes as YCCK. */
static void ycck_params(j_compress_ptr c, j_decompress_ptr d, int quality, int subsample, int progressive)
{
	int sub = subsample;

	c->image_width = d->output_width;
	c->image_height = d->output_height;
	c->input_components = 4;
	c->in_color_space = JCS_CMYK;
	jpeg_set_defaults(c);
	/* Sets YCCK's components (Y and K with table 0, Cb and Cr with 1) and
	 * the Adobe segment with transform 2; no JFIF, which is for YCbCr. */
	jpeg_set_colorspace(c, JCS_YCCK);
	/* -1: subsampled when the source's channels are sampled differently. */
	for (int ci = 1; sub < 0 && ci < 4; ci++)
		if (d->comp_info[ci].h_samp_factor != d->comp_info[0].h_samp_factor ||
		    d->comp_info[ci].v_samp_factor != d->comp_info[0].v_samp_factor)
			sub = 1;
	if (sub <= 0)
		for (int ci = 0; ci < 4; ci++)
			c->comp_info[ci].h_samp_factor = c->comp_info[ci].v_samp_factor = 1;
	jpeg_set_quality(c, quality, TRUE);
	c->optimize_coding = TRUE;
	if (progressive)
		jpeg_simple_progression(c);
}

/* Writes the segments d kept to c, but JFIF and Adobe, which libjpeg
 * writes itself. */
static void copy_markers(j_decompress_ptr d, j_compress_ptr c)
{
	for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next) {
		if (m->marker == JPEG_APP0 && m->data_length >= 5 && memcmp(m->data, "JFIF", 5) == 0)
			continue;
		if (m->marker == JPEG_APP0 + 14 && m->data_length >= 5 && memcmp(m->data, "Adobe", 5) == 0)
			continue;
		jpeg_write_marker(c, m->marker, m->data, m->data_length);
	}
}

/* Passes every row from d to c through row (output_width * 4 samples),
 * inverted when d saw no Adobe segment. Returns 0, or -1 with why set. */
static int copy_rows(j_decompress_ptr d, j_compress_ptr c, JSAMPLE *row, char *why, size_t whylen)
{
	while (d->output_scanline < d->output_height) {
		JSAMPROW rows[1] = {row};
		if (jpeg_read_scanlines(d, rows, 1) != 1) {
			snprintf(why, whylen, "reading: no more rows");
			return -1;
		}
		if (!d->saw_Adobe_marker)
			for (JDIMENSION x = 0; x < d->output_width * 4; x++)
				row[x] = (JSAMPLE)(255 - row[x]);
		jpeg_write_scanlines(c, rows, 1);
	}
	return 0;
}

int it_cmyk_jpeg(const void *in, size_t len, int quality, int subsample, int progressive, uint64_t max_bytes,
		 void **out, size_t *outlen, char *why, size_t whylen)
{
	struct jpeg_decompress_struct d;
	struct jpeg_compress_struct c;
	struct jpeg_progress_mgr prog = {.progress_monitor = on_progress};
	struct err derr, cerr;
	/* volatile: read after a longjmp back into this frame, where every
	 * libjpeg error of the helpers above lands too. */
	volatile int have_d = 0, have_c = 0, have_dest = 0, rc = -1;
	unsigned char *volatile obuf = NULL;
	JSAMPLE *volatile row = NULL;
	unsigned long olen = 0;

	*out = NULL;
	*outlen = 0;
	if (whylen)
		why[0] = '\0';
	catch_errors(&d, &derr, &c, &cerr);
	if (setjmp(derr.jump)) {
		snprintf(why, whylen, "reading: %s", derr.msg);
		goto out;
	}
	if (setjmp(cerr.jump)) {
		snprintf(why, whylen, "writing: %s", cerr.msg);
		goto out;
	}
	jpeg_create_decompress(&d);
	have_d = 1;
	d.progress = &prog;
	if (read_header(&d, in, len, max_bytes, why, whylen) != 0)
		goto out;
	jpeg_start_decompress(&d);

	jpeg_create_compress(&c);
	have_c = 1;
	ycck_params(&c, &d, quality, subsample, progressive);
	jpeg_mem_dest(&c, (unsigned char **)&obuf, &olen);
	have_dest = 1;
	jpeg_start_compress(&c, TRUE);
	copy_markers(&d, &c);
	row = malloc((size_t)d.output_width * 4);
	if (row == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (copy_rows(&d, &c, row, why, whylen) != 0)
		goto out;
	jpeg_finish_compress(&c);
	jpeg_finish_decompress(&d);
	*out = obuf;
	*outlen = olen;
	obuf = NULL;
	rc = 0;
out:
	/* The memory destination moves to a larger buffer as it fills (a
	 * CMYK profile alone takes several), freeing the one before, and
	 * tells obuf which one it is only in term_destination: on failure
	 * obuf would still name a freed buffer. */
	if (rc != 0 && have_dest)
		c.dest->term_destination(&c);
	if (have_c)
		jpeg_destroy_compress(&c);
	if (have_d)
		jpeg_destroy_decompress(&d);
	free(row);
	free(obuf);
	return rc;
}

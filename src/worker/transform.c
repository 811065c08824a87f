/* transform.c: the image work of each operation type (compress, resize, convert), done by libvips on buffers. */
#include "config.h"

#include "worker/transform.h"

#include "common/log.h"
#include "image/sniff.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <vips/vips.h>

/* libvips warns on stderr about every damaged file it meets; the worker
 * already reports those per image, so the warnings go to the debug log. */
static void vips_warning(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer arg)
{
	(void)domain;
	(void)level;
	(void)arg;
	it_log_debug("libvips: %s", message);
}

int it_xf_init(const char *argv0)
{
	if (VIPS_INIT(argv0))
		return -1;
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE, vips_warning, NULL);
	/* Every image is seen once: libvips' operation cache would only keep
	 * decoded pixels of earlier images alive and grow the worker's RSS. */
	vips_cache_set_max(0);
	vips_cache_set_max_mem(0);
	return 0;
}

void it_xf_shutdown(void)
{
	vips_shutdown();
}

static void vips_err(char *err, size_t errlen, const char *what)
{
	const char *e = vips_error_buffer();
	size_t n;

	snprintf(err, errlen, "%s: %s", what, e && *e ? e : "unknown error");
	/* libvips messages end in newlines and may span lines. */
	for (n = 0; err[n]; n++)
		if (err[n] == '\n')
			err[n] = (err[n + 1] ? ' ' : '\0');
	vips_error_clear();
}

static enum it_op_format choose_format(const it_op_params *p, const char *in_type)
{
	if (p->format != IT_FMT_KEEP)
		return p->format;
	if (strcmp(in_type, "image/webp") == 0)
		return IT_FMT_WEBP;
	if (strcmp(in_type, "image/jpeg") == 0)
		return IT_FMT_JPEG;
	/* Compression means a lossy format; resizing keeps lossless images
	 * (PNG, GIF, TIFF...) lossless and their transparency intact. */
	return p->type == IT_OP_COMPRESS ? IT_FMT_JPEG : IT_FMT_PNG;
}

/* Encodes img; JPEG has no alpha, so transparent images are flattened on
 * white first. Returns 0 or -1 (vips error set). */
static int save(VipsImage *img, enum it_op_format fmt, int quality, int strip, void **buf, size_t *len)
{
	VipsImage *flat = NULL;
	int rc;

	if (fmt == IT_FMT_JPEG && vips_image_hasalpha(img)) {
		VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
		rc = vips_flatten(img, &flat, "background", white, NULL);
		vips_area_unref(VIPS_AREA(white));
		if (rc)
			return -1;
		img = flat;
	}
	switch (fmt) {
	case IT_FMT_PNG: rc = vips_pngsave_buffer(img, buf, len, "compression", 6, "strip", strip, NULL); break;
	case IT_FMT_WEBP: rc = vips_webpsave_buffer(img, buf, len, "Q", quality, "strip", strip, NULL); break;
	default:
		/* No optimize_coding: it costs about 40 % more time for 3 % fewer
		 * bytes on photographs (measured, docs/performance.md). */
		rc = vips_jpegsave_buffer(img, buf, len, "Q", quality, "strip", strip, NULL);
		break;
	}
	if (flat)
		g_object_unref(flat);
	return rc ? -1 : 0;
}

static const char *mime(enum it_op_format f)
{
	return f == IT_FMT_PNG ? "image/png" : f == IT_FMT_WEBP ? "image/webp" : "image/jpeg";
}

/* The size a resize to p produces from w x h (thumbnail's rules: fit in
 * the box, a missing side unbounded, smaller images kept unless enlarge). */
static void resized(const it_op_params *p, uint32_t w, uint32_t h, double *ow, double *oh)
{
	double sx = p->width ? (double)p->width / w : 1e300, sy = p->height ? (double)p->height / h : 1e300;
	double sc = sx < sy ? sx : sy;

	if (!p->enlarge && sc > 1)
		sc = 1;
	*ow = w * sc;
	*oh = h * sc;
}

/* Refuses what would take more memory than lim allows, from the header
 * walk alone (it_sniff_check: every frame, the decoder's whole-image
 * buffers, the row width), and what the operation itself would hold: an
 * upright rotation needs the whole image, an enlargement its output, and
 * the WebP encoder its whole output (libvips hands libwebp one picture:
 * measured, about 5 bytes a pixel for RGB and 13 with alpha above what a
 * streamed JPEG of the same image takes). */
static int check_limits(const it_op_params *p, enum it_op_format fmt, const void *in, size_t len,
			const it_sniff_limits *lim, int rotate, char *err, size_t errlen)
{
	it_sniff s;
	char why[200];
	double ow = 0, oh = 0;

	if (it_sniff_whole(in, len, &s) != IT_SNIFF_OK) {
		snprintf(err, errlen, "not a readable image: damaged or unknown header");
		return -1;
	}
	if (rotate && (uint64_t)s.width * s.height * s.bytes_per_pixel > s.whole_bytes)
		s.whole_bytes = (uint64_t)s.width * s.height * s.bytes_per_pixel;
	if (it_sniff_check(&s, lim, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "the image %s", why);
		return -1;
	}
	if (p->type == IT_OP_RESIZE) {
		resized(p, s.width, s.height, &ow, &oh);
		if (ow > (double)lim->max_dimension || oh > (double)lim->max_dimension ||
		    ow * oh > (double)lim->max_pixels) {
			snprintf(err, errlen, "resizing would make %.0fx%.0f pixels, more than max_pixels or max_dimension",
				 ow, oh);
			return -1;
		}
	} else {
		ow = s.width;
		oh = s.height;
	}
	if (fmt == IT_FMT_WEBP) {
		/* Grey + alpha and RGBA (any depth), GIF and WebP may carry alpha. */
		double per = s.bytes_per_pixel == 2 || s.bytes_per_pixel >= 4 ? 13 : 5;
		if (ow * oh * per > (double)lim->max_decode_bytes) {
			snprintf(err, errlen,
				 "encoding %.0fx%.0f pixels as WebP would take %.0f MiB; the limit (max_decode_bytes) is "
				 "%" PRIu64 " MiB",
				 ow, oh, ow * oh * per / 1048576, lim->max_decode_bytes >> 20);
			return -1;
		}
	}
	return 0;
}

int it_xf_apply(const it_op_params *p, const char *in_type, const void *in, size_t len, const it_sniff_limits *lim,
		int thumb_size, it_xf_out *out, char *err, size_t errlen)
{
	VipsImage *hdr = NULL, *img = NULL, *tmp = NULL, *thumb = NULL;
	enum it_op_format fmt = choose_format(p, in_type);
	int orientation = 1, rc = -1;

	memset(out, 0, sizeof(*out));
	/* Our own header walk first: libvips is not asked even for the header
	 * of an image that would not be decoded anyway. */
	if (check_limits(p, fmt, in, len, lim, 0, err, errlen) < 0)
		goto out;
	hdr = vips_image_new_from_buffer(in, len, "", NULL);
	if (hdr == NULL) {
		vips_err(err, errlen, "not a readable image");
		goto out;
	}
	if (vips_image_get_typeof(hdr, VIPS_META_ORIENTATION))
		vips_image_get_int(hdr, VIPS_META_ORIENTATION, &orientation);
	if (p->type != IT_OP_RESIZE && p->strip && orientation > 1 &&
	    check_limits(p, fmt, in, len, lim, 1, err, errlen) < 0)
		goto out;

	if (p->type == IT_OP_RESIZE) {
		/* thumbnail_buffer shrinks while decoding (JPEG DCT scaling,
		 * WebP scaled load), much faster than decode-then-resize, and
		 * applies the EXIF orientation. A missing side is unbounded. */
		int w = p->width ? p->width : VIPS_MAX_COORD, h = p->height ? p->height : VIPS_MAX_COORD;
		if (vips_thumbnail_buffer((void *)in, len, &img, w, "height", h, "size",
					  p->enlarge ? VIPS_SIZE_BOTH : VIPS_SIZE_DOWN, "fail_on", VIPS_FAIL_ON_TRUNCATED,
					  NULL)) {
			vips_err(err, errlen, "cannot resize");
			goto out;
		}
	} else {
		/* Sequential access streams the decode into the encoder in
		 * strips; a rotation needs the whole image, so only then is it
		 * decoded with random access. */
		int rotate = p->strip && orientation > 1;
		img = vips_image_new_from_buffer(in, len, "", "access",
						 rotate ? VIPS_ACCESS_RANDOM : VIPS_ACCESS_SEQUENTIAL, "fail_on",
						 VIPS_FAIL_ON_TRUNCATED, NULL);
		if (img == NULL) {
			vips_err(err, errlen, "cannot decode");
			goto out;
		}
		if (rotate) {
			/* Stripping metadata drops the EXIF orientation, so it
			 * is applied to the pixels instead. */
			if (vips_autorot(img, &tmp, NULL)) {
				vips_err(err, errlen, "cannot rotate");
				goto out;
			}
			g_object_unref(img);
			img = tmp;
			tmp = NULL;
		}
	}
	if (save(img, fmt, p->quality, p->strip, &out->data, &out->len) < 0) {
		/* Decoding is lazy: a damaged file fails here, while it is read. */
		vips_err(err, errlen, "damaged or unsupported image");
		goto out;
	}
	out->width = vips_image_get_width(img);
	out->height = vips_image_get_height(img);
	out->content_type = mime(fmt);

	if (thumb_size > 0) {
		/* From the encoded result, so the thumbnail shows what is stored. */
		if (vips_thumbnail_buffer(out->data, out->len, &thumb, thumb_size, "height", thumb_size, "size",
					  VIPS_SIZE_DOWN, NULL) ||
		    save(thumb, vips_image_hasalpha(thumb) ? IT_FMT_PNG : IT_FMT_JPEG, 80, 1, &out->thumb,
			 &out->thumb_len) < 0) {
			vips_err(err, errlen, "cannot make the thumbnail");
			goto out;
		}
		out->thumb_type = vips_image_hasalpha(thumb) ? "image/png" : "image/jpeg";
	}
	rc = 0;
out:
	if (rc < 0)
		it_xf_out_free(out);
	if (thumb)
		g_object_unref(thumb);
	if (tmp)
		g_object_unref(tmp);
	if (img)
		g_object_unref(img);
	if (hdr)
		g_object_unref(hdr);
	return rc;
}

void it_xf_out_free(it_xf_out *out)
{
	g_free(out->data);
	g_free(out->thumb);
	memset(out, 0, sizeof(*out));
}

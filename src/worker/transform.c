/* transform.c: the image work of each operation type (compress, resize, convert), done by libvips on buffers. */
#include "config.h"

#include "worker/transform.h"

#include "common/log.h"
#include "image/sniff.h"
#include "worker/cmyk.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

int it_transform_init(const char *argv0)
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

void it_transform_shutdown(void)
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

/* The formats an image may be in, from its sniffed content type. */
enum kind { K_JPEG, K_PNG, K_GIF, K_WEBP, K_HEIC, K_AVIF, K_OTHER };

static enum kind kind_of(const char *type)
{
	static const struct {
		const char *type;
		enum kind k;
	} kinds[] = {{"image/jpeg", K_JPEG}, {"image/png", K_PNG},   {"image/gif", K_GIF},  {"image/webp", K_WEBP},
		     {"image/heic", K_HEIC}, {"image/heif", K_HEIC}, {"image/avif", K_AVIF}};

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(type, kinds[i].type) == 0)
			return kinds[i].k;
	return K_OTHER;
}

static const char *kind_name(enum kind k)
{
	static const char *const names[] = {"JPEG", "PNG", "GIF", "WebP", "HEIC", "AVIF", "image"};
	return names[k];
}

/* What an image is written as: a format of params, or GIF (kept). */
enum outfmt { O_JPEG, O_PNG, O_GIF, O_WEBP, O_AVIF };

static const char *mime(enum outfmt f)
{
	static const char *const types[] = {"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif"};
	return types[f];
}

/* Whether writing f keeps the format of a source of kind k. */
static int same_format(enum outfmt f, enum kind k)
{
	return (f == O_JPEG && k == K_JPEG) || (f == O_PNG && k == K_PNG) || (f == O_GIF && k == K_GIF) ||
		(f == O_WEBP && k == K_WEBP) || (f == O_AVIF && k == K_AVIF);
}

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int avif_ok, heif_read_ok;

/* AVIF needs libheif built with an AV1 encoder, which libvips cannot tell
 * without trying: a 16x16 image is encoded once per process. */
static void probe(void)
{
	VipsImage *x = NULL;
	void *buf = NULL;
	size_t len = 0;

	heif_read_ok = vips_type_find("VipsForeignLoad", "heifload_source") != 0;
	if (vips_black(&x, 16, 16, "bands", 3, NULL) == 0 &&
	    vips_heifsave_buffer(x, &buf, &len, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "Q", 50, NULL) == 0 &&
	    len > 12)
		avif_ok = 1;
	vips_error_clear();
	g_free(buf);
	if (x)
		g_object_unref(x);
}

int it_transform_can_write(enum it_op_format f)
{
	pthread_once(&probe_once, probe);
	return f != IT_FMT_AVIF || avif_ok;
}

int it_transform_can_read_heif(void)
{
	pthread_once(&probe_once, probe);
	return heif_read_ok;
}

/* Whether a WebP file is lossless: its first image chunk is VP8L (after
 * VP8X, and inside the first ANMF frame of an animation); VP8 is lossy.
 * The chunk walk stays inside in[0..len). */
static int webp_lossless(const unsigned char *in, size_t len)
{
	size_t off = 12;

	while (off + 8 <= len) {
		uint32_t n = (uint32_t)in[off + 4] | (uint32_t)in[off + 5] << 8 | (uint32_t)in[off + 6] << 16 |
			(uint32_t)in[off + 7] << 24;
		if (memcmp(in + off, "VP8L", 4) == 0)
			return 1;
		if (memcmp(in + off, "VP8 ", 4) == 0)
			return 0;
		if (memcmp(in + off, "ANMF", 4) == 0) {
			/* The frame's own header (16 bytes), then its chunks. */
			off += 8 + 16;
			continue;
		}
		if (n > len)
			break;
		off += 8 + (size_t)n + (n & 1);
	}
	return 0;
}

/* Whether a PNG stores a palette (IHDR colour type 3). */
static int png_palette(const unsigned char *in, size_t len)
{
	return len > 25 && in[25] == 3;
}

/* Whether the ICC profile attached to img describes sRGB, going by the
 * text of its description tag ('desc', ASCII in v2 profiles, UTF-16 in v4
 * 'mluc'). Viewers assume sRGB for an image without a profile, so such a
 * profile can go with the other metadata without changing a colour. */
static int profile_is_srgb(VipsImage *img)
{
	const unsigned char *p;
	size_t n;
	uint32_t tags;

	if (!vips_image_get_typeof(img, VIPS_META_ICC_NAME) ||
	    vips_image_get_blob(img, VIPS_META_ICC_NAME, (const void **)&p, &n) != 0 || n < 132)
		return 0;
	tags = (uint32_t)p[128] << 24 | (uint32_t)p[129] << 16 | (uint32_t)p[130] << 8 | p[131];
	for (uint32_t t = 0; t < tags && 132 + 12 * (size_t)t + 12 <= n; t++) {
		const unsigned char *e = p + 132 + 12 * t;
		size_t off = (size_t)e[4] << 24 | (size_t)e[5] << 16 | (size_t)e[6] << 8 | e[7];
		size_t sz = (size_t)e[8] << 24 | (size_t)e[9] << 16 | (size_t)e[10] << 8 | e[11];
		if (memcmp(e, "desc", 4) != 0 || off > n || sz > n - off)
			continue;
		for (size_t k = off; k + 7 <= off + sz; k++)
			if (memcmp(p + k, "sRGB", 4) == 0 || memcmp(p + k, "\0s\0R\0G\0B", 7) == 0)
				return 1;
		if (sz >= 4 && memcmp(p + off + sz - 4, "sRGB", 4) == 0)
			return 1;
	}
	return 0;
}

/* The metadata fields strip removes: every EXIF field (libvips rebuilds the
 * EXIF block from them when saving), XMP, IPTC, comments, the EXIF
 * thumbnail. */
static void *collect_field(VipsImage *img, const char *name, GValue *value, void *arg)
{
	GPtrArray *names = arg;

	(void)img;
	(void)value;
	if (strncmp(name, "exif-", 5) == 0 || strcmp(name, VIPS_META_XMP_NAME) == 0 ||
	    strcmp(name, VIPS_META_IPTC_NAME) == 0 || strcmp(name, VIPS_META_PHOTOSHOP_NAME) == 0 ||
	    strncmp(name, "png-comment-", 12) == 0 || strcmp(name, "gif-comment") == 0 ||
	    strcmp(name, "jpeg-thumbnail-data") == 0 || strcmp(name, VIPS_META_ORIENTATION) == 0)
		g_ptr_array_add(names, g_strdup(name));
	return NULL;
}

/* Replaces *img by a copy without the fields strip removes, and without an
 * sRGB profile. Returns 1 when a profile remains (the saver must then not
 * strip, and writes at most libvips' own resolution-only EXIF next to it),
 * 0 when nothing does (the saver strips everything), -1 on failure. */
static int strip_metadata(VipsImage **img)
{
	VipsImage *c;
	GPtrArray *names = g_ptr_array_new_with_free_func(g_free);

	if (vips_copy(*img, &c, NULL)) {
		g_ptr_array_free(names, TRUE);
		return -1;
	}
	vips_image_map(c, collect_field, names);
	for (guint i = 0; i < names->len; i++)
		vips_image_remove(c, g_ptr_array_index(names, i));
	if (profile_is_srgb(c))
		vips_image_remove(c, VIPS_META_ICC_NAME);
	g_ptr_array_free(names, TRUE);
	g_object_unref(*img);
	*img = c;
	return vips_image_get_typeof(c, VIPS_META_ICC_NAME) ? 1 : 0;
}

/* Replaces *img by what op(*img) made; unrefs the old one. */
#define STEP(img, call)                      \
	do {                                 \
		VipsImage *step_out_ = NULL; \
		if (call) {                  \
			goto out;            \
		}                            \
		g_object_unref(img);         \
		(img) = step_out_;           \
	} while (0)

/* Encodes img as fmt. src is the source's kind, for what "keep" means in
 * each format (a palette PNG stays a palette, a lossless WebP lossless).
 * Returns 0 or -1 (vips error set). */
static int save(VipsImage *img, enum outfmt fmt, const it_op_params *p, int strip, int src_palette, int src_lossless,
		void **buf, size_t *len)
{
	int rc;

	switch (fmt) {
	case O_PNG:
		if (p->palette && vips_image_get_format(img) == VIPS_FORMAT_USHORT) {
			/* libimagequant takes 8-bit pixels: 16-bit ones go
			 * down to 8 first (quantising loses far more). */
			VipsImage *eight = NULL;
			int grey = vips_image_get_bands(img) <= 2;
			if (vips_colourspace(img, &eight, grey ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB,
					     NULL))
				return -1;
			rc = vips_pngsave_buffer(eight, buf, len, "palette", TRUE, "Q", p->quality, "dither", 1.0,
						 "compression", 9, "strip", strip, NULL);
			g_object_unref(eight);
		} else if (p->palette || src_palette) {
			/* libimagequant keeps alpha. A source that was a
			 * palette already is redone at full quality without
			 * dithering: its colours come back as they were. */
			rc = vips_pngsave_buffer(img, buf, len, "palette", TRUE, "Q", p->palette ? p->quality : 100,
						 "dither", p->palette ? 1.0 : 0.0, "compression", 9, "strip", strip,
						 NULL);
		} else {
			/* Lossless: the best deflate level with the adaptive
			 * row filter; 16-bit stays 16-bit. */
			rc = vips_pngsave_buffer(img, buf, len, "compression", 9, "filter", VIPS_FOREIGN_PNG_FILTER_ALL,
						 "strip", strip, NULL);
		}
		break;
	case O_GIF:
		/* reuse: the frames keep the source's palette instead of
		 * being quantised again, so colours do not drift. */
		rc = vips_gifsave_buffer(img, buf, len, "reuse", TRUE, "strip", strip, NULL);
		break;
	case O_WEBP:
		if (src_lossless)
			rc = vips_webpsave_buffer(img, buf, len, "lossless", TRUE, "strip", strip, NULL);
		else
			rc = vips_webpsave_buffer(img, buf, len, "Q", p->quality, "strip", strip, NULL);
		break;
	case O_AVIF:
		rc = vips_heifsave_buffer(img, buf, len, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "Q",
					  p->quality, "strip", strip, NULL);
		break;
	default:
		/* Optimised Huffman tables (3 % fewer bytes), progressive
		 * when asked; trellis quantisation and scan optimisation
		 * where libjpeg is mozjpeg (libvips ignores them otherwise). */
		rc = vips_jpegsave_buffer(img, buf, len, "Q", p->quality, "optimize_coding", TRUE, "interlace",
					  p->progressive, "trellis_quant", TRUE, "overshoot_deringing", TRUE,
					  "optimize_scans", p->progressive, "subsample_mode",
					  p->subsample == IT_SUB_ON	       ? VIPS_FOREIGN_SUBSAMPLE_ON
						  : p->subsample == IT_SUB_OFF ? VIPS_FOREIGN_SUBSAMPLE_OFF
									       : VIPS_FOREIGN_SUBSAMPLE_AUTO,
					  "strip", strip, NULL);
		break;
	}
	return rc ? -1 : 0;
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
 * streamed JPEG of the same image takes). s receives the header facts. */
static int check_limits(const it_op_params *p, enum outfmt fmt, const void *in, size_t len, const it_sniff_limits *lim,
			int rotate, it_sniff *s, char *err, size_t errlen)
{
	char why[200];
	double ow = 0, oh = 0;

	if (it_sniff_whole(in, len, s) != IT_SNIFF_OK) {
		snprintf(err, errlen, "not a readable image: damaged or unknown header");
		return -1;
	}
	if (rotate && (uint64_t)s->width * s->height * s->bytes_per_pixel > s->whole_bytes)
		s->whole_bytes = (uint64_t)s->width * s->height * s->bytes_per_pixel;
	if (it_sniff_check(s, lim, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "the image %s", why);
		return -1;
	}
	if (p->type == IT_OP_RESIZE) {
		resized(p, s->width, s->height, &ow, &oh);
		if (ow > (double)lim->max_dimension || oh > (double)lim->max_dimension ||
		    ow * oh > (double)lim->max_pixels) {
			snprintf(err, errlen,
				 "resizing would make %.0fx%.0f pixels, more than max_pixels or max_dimension", ow, oh);
			return -1;
		}
	} else {
		ow = s->width;
		oh = s->height;
	}
	if (fmt == O_WEBP || fmt == O_AVIF) {
		/* Grey + alpha and RGBA (any depth), GIF and WebP may carry
		 * alpha. libheif, like libwebp, takes the whole picture. */
		double per = s->bytes_per_pixel == 2 || s->bytes_per_pixel >= 4 ? 13 : 5;
		if (ow * oh * per > (double)lim->max_decode_bytes) {
			snprintf(err, errlen,
				 "encoding %.0fx%.0f pixels as %s would take %.0f MiB; the limit (max_decode_bytes) is "
				 "%" PRIu64 " MiB",
				 ow, oh, fmt == O_WEBP ? "WebP" : "AVIF", ow * oh * per / 1048576,
				 lim->max_decode_bytes >> 20);
			return -1;
		}
	}
	return 0;
}

/* The output format for p and a source of kind k; -1 when the image stays
 * as it is (unchanged says why). */
static int choose_format(const it_op_params *p, enum kind k, char *unchanged, size_t ulen)
{
	switch (p->format) {
	case IT_FMT_JPEG: return O_JPEG;
	case IT_FMT_PNG: return O_PNG;
	case IT_FMT_WEBP: return O_WEBP;
	case IT_FMT_AVIF: return O_AVIF;
	default: break;
	}
	switch (k) {
	case K_JPEG: return O_JPEG;
	case K_PNG: return O_PNG;
	case K_GIF: return O_GIF;
	case K_WEBP: return O_WEBP;
	case K_AVIF:
	case K_HEIC:
		if (p->type == IT_OP_COMPRESS) {
			snprintf(unchanged, ulen,
				 "%s is kept as it is: it is already compressed about as well as a photo can be; "
				 "convert it to JPEG or WebP for programs that cannot open it",
				 kind_name(k));
			return -1;
		}
		/* A resized HEIF is written as JPEG: every program opens that. */
		return O_JPEG;
	default: return O_PNG;
	}
}

/* One image on its way through it_transform_apply: what it is, what it
 * becomes, and the libvips images that hold it until the end. */
struct job {
	const it_op_params *p; /* the operation, or keep444 once that is chosen */
	it_op_params keep444;
	const void *in;
	size_t len;
	const it_sniff_limits *lim;
	enum kind k;
	enum outfmt fmt;
	int animated; /* every frame is kept */
	it_sniff s;
	VipsImage *hdr, *img;
	it_transform_out *out;
	char *err;
	size_t errlen;
};

/* Refuses what this libvips cannot read or write. Returns 0 or -1. */
static int can_convert(const struct job *j)
{
	if ((j->k == K_HEIC || j->k == K_AVIF) && !it_transform_can_read_heif()) {
		snprintf(j->err, j->errlen, "this server's libvips cannot read %s images (no HEIF loader)",
			 kind_name(j->k));
		return -1;
	}
	if (j->fmt == O_AVIF && !it_transform_can_write(IT_FMT_AVIF)) {
		snprintf(j->err, j->errlen, "this server's libvips cannot write AVIF (libheif has no AV1 encoder)");
		return -1;
	}
	return 0;
}

/* Decides whether every frame is kept, and notes the frames that are not. */
static void plan_frames(struct job *j)
{
	/* An animation stays one where the format holds one (GIF, WebP). */
	int animated = j->s.frames > 1 && (j->k == K_GIF || j->k == K_WEBP);

	if (animated && j->fmt != O_GIF && j->fmt != O_WEBP)
		snprintf(j->out->note, sizeof(j->out->note), "only the first of %u frames: %s holds one", j->s.frames,
			 j->fmt == O_JPEG	   ? "JPEG"
				 : j->fmt == O_PNG ? "PNG"
						   : "AVIF");
	j->animated = animated && (j->fmt == O_GIF || j->fmt == O_WEBP);
}

/* Compresses a CMYK JPEG with metadata kept through libjpeg. Returns 1 when
 * out holds the result, 0 when the image takes the libvips path. */
static int ycck_path(struct job *j)
{
	const it_op_params *p = j->p;
	it_transform_out *out = j->out;
	void *buf = NULL;
	size_t blen = 0;
	char why[200];

	/* A CMYK JPEG is written as YCCK, which libvips cannot do (its plain
	 * CMYK is about a quarter larger); with strip it goes through
	 * libvips, which also turns it upright. */
	if (p->type != IT_OP_COMPRESS || j->k != K_JPEG || j->fmt != O_JPEG || p->strip)
		return 0;
	if (it_cmyk_jpeg(j->in, j->len, p->quality,
			 p->subsample == IT_SUB_ON	      ? 1
				 : p->subsample == IT_SUB_OFF ? 0
							      : -1,
			 p->progressive, j->lim->max_decode_bytes, &buf, &blen, why, sizeof(why)) != 0) {
		if (strcmp(why, "not 8-bit CMYK") != 0)
			it_log_debug("compress: CMYK through libvips (%s)", why);
		return 0;
	}
	out->data = g_malloc(blen);
	memcpy(out->data, buf, blen);
	out->len = blen;
	free(buf);
	out->width = (int)j->s.width;
	out->height = (int)j->s.height;
	out->frames = 1;
	out->content_type = mime(O_JPEG);
	return 1;
}

/* Reads the header into j->hdr and decides whether the orientation goes
 * into the pixels (*rotate), refusing an upright rotation beyond the
 * limits. Returns 0 or -1. */
static int open_header(struct job *j, int *rotate)
{
	int orientation = 1;

	j->hdr = vips_image_new_from_buffer(j->in, j->len, "", NULL);
	if (j->hdr == NULL) {
		vips_err(j->err, j->errlen, "not a readable image");
		return -1;
	}
	if (vips_image_get_typeof(j->hdr, VIPS_META_ORIENTATION))
		vips_image_get_int(j->hdr, VIPS_META_ORIENTATION, &orientation);
	/* The orientation goes into the pixels when the tag will not be
	 * there to say it: metadata stripped, or another format. */
	*rotate = !j->animated && orientation > 1 && (j->p->strip || !same_format(j->fmt, j->k));
	if (j->p->type != IT_OP_RESIZE && *rotate &&
	    check_limits(j->p, j->fmt, j->in, j->len, j->lim, 1, &j->s, j->err, j->errlen) < 0)
		return -1;
	return 0;
}

/* Decodes the image into j->img: resized for a resize, turned upright
 * when rotate says so. Returns 0 or -1. */
static int decode(struct job *j, int rotate)
{
	const it_op_params *p = j->p;
	int rc = -1;

	if (p->type == IT_OP_RESIZE) {
		/* thumbnail_buffer shrinks while decoding (JPEG DCT scaling,
		 * WebP scaled load), much faster than decode-then-resize, and
		 * applies the EXIF orientation. A missing side is unbounded;
		 * the aspect is kept; smaller images stay unless enlarge. */
		int w = p->width ? p->width : VIPS_MAX_COORD, h = p->height ? p->height : VIPS_MAX_COORD;
		if (vips_thumbnail_buffer((void *)j->in, j->len, &j->img, w, "height", h, "size",
					  p->enlarge ? VIPS_SIZE_BOTH : VIPS_SIZE_DOWN, "fail_on",
					  VIPS_FAIL_ON_TRUNCATED, "option_string", j->animated ? "n=-1" : "", NULL)) {
			vips_err(j->err, j->errlen, "cannot resize");
			goto out;
		}
	} else {
		/* Sequential access streams the decode into the encoder in
		 * strips; a rotation needs the whole image, so only then is it
		 * decoded with random access. */
		VipsAccess access = rotate ? VIPS_ACCESS_RANDOM : VIPS_ACCESS_SEQUENTIAL;
		if (j->animated)
			j->img = vips_image_new_from_buffer(j->in, j->len, "", "access", access, "fail_on",
							    VIPS_FAIL_ON_TRUNCATED, "n", -1, NULL);
		else
			j->img = vips_image_new_from_buffer(j->in, j->len, "", "access", access, "fail_on",
							    VIPS_FAIL_ON_TRUNCATED, NULL);
		if (j->img == NULL) {
			vips_err(j->err, j->errlen, "cannot decode");
			goto out;
		}
		if (rotate)
			STEP(j->img, vips_autorot(j->img, &step_out_, NULL));
	}
	rc = 0;
out:
	return rc;
}

/* Flattens j->img onto the chosen background, for JPEG, which has no
 * alpha, and notes it. Returns 0 or -1. */
static int flatten(struct job *j)
{
	const it_op_params *p = j->p;
	it_transform_out *out = j->out;
	VipsImage *flat = NULL;
	VipsArrayDouble *bg =
		vips_array_double_newv(3, (double)p->background[0], (double)p->background[1], (double)p->background[2]);
	int bands = vips_image_get_bands(j->img), r;

	if (bands <= 2) {
		vips_area_unref(VIPS_AREA(bg));
		bg = vips_array_double_newv(
			1, (0.2126 * p->background[0] + 0.7152 * p->background[1] + 0.0722 * p->background[2]));
	}
	r = vips_flatten(j->img, &flat, "background", bg, NULL);
	vips_area_unref(VIPS_AREA(bg));
	if (r)
		return -1;
	g_object_unref(j->img);
	j->img = flat;
	snprintf(out->note + strlen(out->note), sizeof(out->note) - strlen(out->note),
		 "%stransparency flattened onto #%02x%02x%02x", out->note[0] ? "; " : "", p->background[0],
		 p->background[1], p->background[2]);
	return 0;
}

/* Makes j->img's colours fit the output format. Returns 0 or -1. */
static int fit_format(struct job *j)
{
	int rc = -1;

	/* CMYK becomes sRGB when the format changes (only JPEG holds CMYK,
	 * and a CMYK profile must not end up on RGB pixels). */
	if (vips_image_get_interpretation(j->img) == VIPS_INTERPRETATION_CMYK && !same_format(j->fmt, j->k))
		STEP(j->img,
		     vips_icc_transform(j->img, &step_out_, "srgb", "embedded", TRUE, "input_profile", "cmyk", NULL));
	if (j->fmt == O_JPEG && vips_image_hasalpha(j->img) && flatten(j) < 0)
		goto out;
	rc = 0;
out:
	return rc;
}

/* Turns subsampling off for a 4:4:4 JPEG source when p says "auto". */
static void keep_chroma(struct job *j)
{
	/* "auto" keeps a JPEG's own chroma resolution: subsampling a 4:4:4
	 * source halves its colour detail, which a compressor must not do
	 * behind the owner's back (ImageMagick keeps the source's sampling
	 * too). */
	const char *sub = NULL;

	if (j->p->subsample == IT_SUB_AUTO && j->k == K_JPEG && j->fmt == O_JPEG &&
	    vips_image_get_typeof(j->hdr, "jpeg-chroma-subsample") &&
	    vips_image_get_string(j->hdr, "jpeg-chroma-subsample", &sub) == 0 && sub && strcmp(sub, "4:4:4") == 0) {
		j->keep444 = *j->p;
		j->keep444.subsample = IT_SUB_OFF;
		j->p = &j->keep444;
	}
}

/* Encodes j->img into out, without the metadata strip removes, and records
 * what was stored. Returns 0 or -1. */
static int encode(struct job *j)
{
	const it_op_params *p = j->p;
	it_transform_out *out = j->out;
	int strip_all = 0, page_h, frames;

	if (p->strip) {
		int kept = strip_metadata(&j->img);
		if (kept < 0)
			return -1;
		strip_all = kept == 0;
	}
	if (save(j->img, j->fmt, p, strip_all, j->k == K_PNG && j->fmt == O_PNG && png_palette(j->in, j->len),
		 j->k == K_WEBP && j->fmt == O_WEBP && p->format == IT_FMT_KEEP && webp_lossless(j->in, j->len),
		 &out->data, &out->len) < 0) {
		/* Decoding is lazy: a damaged file fails here, while it is read. */
		vips_err(j->err, j->errlen, "damaged or unsupported image");
		return -1;
	}
	page_h = vips_image_get_page_height(j->img);
	frames = j->animated && page_h > 0 ? vips_image_get_height(j->img) / page_h : 1;
	out->width = vips_image_get_width(j->img);
	out->height = frames > 1 ? page_h : vips_image_get_height(j->img);
	out->frames = frames;
	out->content_type = mime(j->fmt);
	return 0;
}

/* Transforms the image with libvips into out. Returns 0 or -1. */
static int through_vips(struct job *j)
{
	int rotate;

	if (open_header(j, &rotate) < 0 || decode(j, rotate) < 0 || fit_format(j) < 0)
		return -1;
	keep_chroma(j);
	return encode(j);
}

/* Drops a result that is not smaller than the original's len bytes. */
static void keep_original(it_transform_out *out, size_t len)
{
	/* A compressor must never make a file bigger: the original stays,
	 * and the entry says why. */
	snprintf(out->unchanged, sizeof(out->unchanged),
		 "re-encoding gave %zu bytes, not fewer than the original's %zu: the original is kept", out->len, len);
	g_free(out->data);
	out->data = NULL;
	out->len = 0;
	out->note[0] = '\0';
}

/* Renders the thumbnail of the result, with longest edge size. Returns 0
 * or -1. */
static int thumbnail(struct job *j, int size)
{
	it_transform_out *out = j->out;
	it_op_params tp = *j->p;
	VipsImage *thumb = NULL;
	int from_source, rc = -1;

	tp.quality = 80;
	tp.palette = 0;
	tp.progressive = 0;
	tp.subsample = IT_SUB_AUTO;
	/* From the encoded result, so the thumbnail shows what is stored;
	 * but a JPEG recompressed as JPEG looks the same at thumbnail size,
	 * and when the result is progressive it would be decoded whole,
	 * where the source (usually baseline) shrinks while it decodes:
	 * measured on a 12 MP photo, 0.18 s against 0.10. A baseline result
	 * is the cheapest of all to read (0.07 s): it is smaller than the
	 * source. */
	from_source = j->p->type == IT_OP_COMPRESS && j->k == K_JPEG && j->fmt == O_JPEG && j->p->progressive;
	if (vips_thumbnail_buffer(from_source ? (void *)j->in : out->data, from_source ? j->len : out->len, &thumb,
				  size, "height", size, "size", VIPS_SIZE_DOWN, NULL) ||
	    save(thumb, vips_image_hasalpha(thumb) ? O_PNG : O_JPEG, &tp, 1, 0, 0, &out->thumb, &out->thumb_len) < 0) {
		vips_err(j->err, j->errlen, "cannot make the thumbnail");
		goto out;
	}
	out->thumb_type = vips_image_hasalpha(thumb) ? "image/png" : "image/jpeg";
	rc = 0;
out:
	if (thumb)
		g_object_unref(thumb);
	return rc;
}

int it_transform_apply(const it_op_params *p, const char *in_type, const void *in, size_t len,
		       const it_sniff_limits *lim, int thumb_size, it_transform_out *out, char *err, size_t errlen)
{
	struct job j = {.p = p,
			.in = in,
			.len = len,
			.lim = lim,
			.k = kind_of(in_type),
			.out = out,
			.err = err,
			.errlen = errlen};
	int rc = -1, fmt;

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	fmt = choose_format(p, j.k, out->unchanged, sizeof(out->unchanged));
	/* Our own header walk first: libvips is not asked even for the header
	 * of an image that would not be decoded anyway. */
	if (check_limits(p, fmt < 0 ? O_JPEG : (enum outfmt)fmt, in, len, lim, 0, &j.s, err, errlen) < 0)
		goto out;
	if (fmt < 0) {
		rc = 0;
		goto out;
	}
	j.fmt = (enum outfmt)fmt;
	if (can_convert(&j) < 0)
		goto out;
	plan_frames(&j);
	if (!ycck_path(&j) && through_vips(&j) < 0)
		goto out;
	if (j.p->type == IT_OP_COMPRESS && out->len >= len) {
		keep_original(out, len);
		rc = 0;
		goto out;
	}
	if (thumb_size > 0 && thumbnail(&j, thumb_size) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		if (!err[0])
			vips_err(err, errlen, "cannot process the image");
		it_transform_out_free(out);
		memset(out, 0, sizeof(*out));
	}
	if (j.img)
		g_object_unref(j.img);
	if (j.hdr)
		g_object_unref(j.hdr);
	return rc;
}

void it_transform_out_free(it_transform_out *out)
{
	g_free(out->data);
	g_free(out->thumb);
	out->data = out->thumb = NULL;
	out->len = out->thumb_len = 0;
}

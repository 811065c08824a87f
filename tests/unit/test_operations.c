/* test_operations.c: operation parameters (src/db/operations.c) and libvips transforms (src/worker/transform.c). */
#include "config.h"

#include "db/operations.h"
#include "worker/transform.h"

#include "tap.h"

#include <errno.h>
#include <stdlib.h>
#include <vips/vips.h>

static int parse(enum it_op_type t, const char *json, it_op_params *p, char *err)
{
	json_object *o = json ? json_tokener_parse(json) : NULL;
	int rc = it_op_params_parse(t, o, p, err, 160);

	json_object_put(o);
	return rc;
}

static void test_params(void)
{
	it_op_params p;
	char err[160];
	json_object *o;

	is_int(it_op_type_parse("bulk_compress"), IT_OP_COMPRESS, "bulk_compress is known");
	is_int(it_op_type_parse("bulk_resize"), IT_OP_RESIZE, "bulk_resize is known");
	is_int(it_op_type_parse("bulk_convert"), IT_OP_CONVERT, "bulk_convert is known");
	is_int(it_op_type_parse("bulk_delete"), -EINVAL, "unknown type refused");
	is_int(it_op_type_parse(NULL), -EINVAL, "NULL type refused");

	is_int(parse(IT_OP_COMPRESS, NULL, &p, err), 0, "compress without params");
	is_int(p.quality, 75, "default quality 75");
	is_int(p.strip, 0, "compress keeps metadata unless asked");
	ok(p.progressive == 0 && p.palette == 0 && p.subsample == IT_SUB_AUTO,
	   "baseline JPEG, no palette, auto subsampling");
	ok(p.background[0] == 255 && p.background[1] == 255 && p.background[2] == 255, "white background");
	is_int(parse(IT_OP_COMPRESS,
		     "{\"palette\":true,\"subsample\":\"off\",\"background\":\"#10A0ff\",\"format\":\"avif\"}", &p,
		     err),
	       0, "palette, subsampling, background, AVIF");
	ok(p.palette && p.subsample == IT_SUB_OFF && p.background[0] == 0x10 && p.background[1] == 0xa0 &&
		   p.background[2] == 0xff && p.format == IT_FMT_AVIF,
	   "values taken");
	is_int(parse(IT_OP_COMPRESS, "{\"background\":\"white\"}", &p, err), -EINVAL, "a colour name refused");
	is_str(err, "params.background must be a colour written \"#rrggbb\".", "the error shows the form");
	is_int(parse(IT_OP_COMPRESS, "{\"subsample\":\"420\"}", &p, err), -EINVAL, "an unknown subsampling refused");
	is_int(p.format, IT_FMT_KEEP, "compress keeps the format by default");
	is_int(parse(IT_OP_COMPRESS, "{\"quality\":40,\"format\":\"webp\",\"strip\":false}", &p, err), 0,
	       "compress with every param");
	ok(p.quality == 40 && p.format == IT_FMT_WEBP && p.strip == 0, "values taken");
	is_int(parse(IT_OP_COMPRESS, "{\"quality\":0}", &p, err), -EINVAL, "quality 0 refused");
	is_str(err, "params.quality must be between 1 and 100.", "the error names the range");
	is_int(parse(IT_OP_COMPRESS, "{\"quality\":101}", &p, err), -EINVAL, "quality 101 refused");
	is_int(parse(IT_OP_COMPRESS, "{\"quality\":\"75\"}", &p, err), -EINVAL, "quality as a string refused");
	is_int(parse(IT_OP_COMPRESS, "{\"quality\":75.5}", &p, err), -EINVAL, "fractional quality refused");
	is_int(parse(IT_OP_COMPRESS, "{\"format\":\"png\"}", &p, err), -EINVAL, "compress to PNG refused");
	is_int(parse(IT_OP_COMPRESS, "{\"qualty\":75}", &p, err), -EINVAL, "misspelt key refused");
	is_str(err, "params.qualty is not a parameter of bulk_compress.", "the error names the key");
	is_int(parse(IT_OP_COMPRESS, "[1]", &p, err), -EINVAL, "params must be an object");
	is_int(parse(IT_OP_COMPRESS, "{\"width\":10}", &p, err), -EINVAL, "width is not a compress param");

	is_int(parse(IT_OP_RESIZE, NULL, &p, err), -EINVAL, "resize needs a size");
	is_int(parse(IT_OP_RESIZE, "{\"width\":800}", &p, err), 0, "resize by width only");
	ok(p.width == 800 && p.height == 0 && p.enlarge == 0, "width taken, height unbounded");
	is_int(parse(IT_OP_RESIZE, "{\"width\":0,\"height\":10}", &p, err), -EINVAL, "width 0 refused");
	is_int(parse(IT_OP_RESIZE, "{\"width\":16385}", &p, err), -EINVAL, "width past the maximum refused");
	is_int(parse(IT_OP_RESIZE, "{\"width\":100,\"height\":50,\"format\":\"png\",\"enlarge\":true}", &p, err), 0,
	       "resize with every param");
	ok(p.height == 50 && p.format == IT_FMT_PNG && p.enlarge == 1, "values taken");

	is_int(parse(IT_OP_CONVERT, NULL, &p, err), -EINVAL, "convert needs a format");
	is_int(parse(IT_OP_CONVERT, "{\"format\":\"keep\"}", &p, err), -EINVAL, "convert to keep refused");
	is_int(parse(IT_OP_CONVERT, "{\"format\":\"gif\"}", &p, err), -EINVAL, "convert to gif refused");
	is_int(parse(IT_OP_CONVERT, "{\"format\":\"png\"}", &p, err), 0, "convert to png");

	/* The stored form goes through the same validation when the worker reads it. */
	parse(IT_OP_RESIZE, "{\"height\":300}", &p, err);
	o = it_op_params_json(&p);
	{
		it_op_params q;
		is_int(it_op_params_parse(IT_OP_RESIZE, o, &q, err, sizeof(err)), 0, "stored params parse again");
		ok(q.height == 300 && q.width == 0 && q.quality == p.quality, "and mean the same");
	}
	json_object_put(o);
}

/* Encodes a w x h test pattern as JPEG (quality 95) or PNG. */
static void *make_image(int w, int h, int png, size_t *len)
{
	VipsImage *x = NULL, *y = NULL;
	void *buf = NULL;

	if (vips_xyz(&x, w, h, NULL) || vips_cast_uchar(x, &y, NULL))
		return NULL;
	if (png)
		vips_pngsave_buffer(y, &buf, len, NULL);
	else
		vips_jpegsave_buffer(y, &buf, len, "Q", 95, NULL);
	g_object_unref(x);
	g_object_unref(y);
	return buf;
}

/* An RGBA image of w x h with a horizontal alpha ramp, as PNG. */
static void *make_rgba_png(int w, int h, size_t *len)
{
	VipsImage *x = NULL, *y = NULL, *a = NULL;
	void *buf = NULL;

	vips_xyz(&x, w, h, NULL);
	vips_cast_uchar(x, &y, NULL);
	vips_extract_band(y, &a, 0, NULL);
	{
		VipsImage *in[4] = {a, a, y, a};
		VipsImage *j = NULL;
		vips_bandjoin(in, &j, 4, NULL);
		vips_pngsave_buffer(j, &buf, len, NULL);
		g_object_unref(j);
	}
	g_object_unref(x);
	g_object_unref(y);
	g_object_unref(a);
	return buf;
}

static void test_formats(const it_sniff_limits *lim)
{
	it_op_params p;
	it_transform_out out;
	char err[256];
	size_t len = 0;
	void *png = make_rgba_png(300, 200, &len);
	VipsImage *back;

	parse(IT_OP_COMPRESS, NULL, &p, err);
	is_int(it_transform_apply(&p, "image/png", png, len, lim, 64, &out, err, sizeof(err)), 0,
	       "compress a PNG with alpha");
	if (out.unchanged[0]) {
		ok(out.data == NULL, "unchanged: %s", out.unchanged);
	} else {
		is_str(out.content_type, "image/png", "it stays PNG");
		ok(out.len < len, "and is smaller (%zu < %zu)", out.len, len);
		back = vips_image_new_from_buffer(out.data, out.len, "", NULL);
		ok(back && vips_image_get_bands(back) == 4, "with its alpha channel");
		if (back)
			g_object_unref(back);
	}
	it_transform_out_free(&out);

	/* An image that cannot get smaller stays as it is, with the reason. */
	{
		void *tight = NULL;
		size_t tlen = 0;
		VipsImage *x = NULL;
		vips_black(&x, 64, 64, "bands", 3, NULL);
		vips_jpegsave_buffer(x, &tight, &tlen, "Q", 20, "optimize_coding", TRUE, "strip", TRUE, NULL);
		g_object_unref(x);
		parse(IT_OP_COMPRESS, "{\"quality\":95}", &p, err);
		is_int(it_transform_apply(&p, "image/jpeg", tight, tlen, lim, 64, &out, err, sizeof(err)), 0,
		       "compress a JPEG at a higher quality than it has");
		ok(out.unchanged[0] && out.data == NULL && out.thumb == NULL, "the original stays: %s", out.unchanged);
		it_transform_out_free(&out);
		g_free(tight);
	}

	/* To JPEG: alpha flattened onto the chosen background, and said. */
	parse(IT_OP_CONVERT, "{\"format\":\"jpeg\",\"background\":\"#000000\"}", &p, err);
	is_int(it_transform_apply(&p, "image/png", png, len, lim, 0, &out, err, sizeof(err)), 0,
	       "convert RGBA to JPEG");
	is_str(out.content_type, "image/jpeg", "JPEG");
	ok(strstr(out.note, "#000000") != NULL, "the note says onto what: %s", out.note);
	back = out.data ? vips_image_new_from_buffer(out.data, out.len, "", NULL) : NULL;
	{
		double px[4] = {0};
		double *v = NULL;
		int n = 0;
		/* Top left is fully transparent: flattened onto black it is black. */
		if (back && vips_getpoint(back, &v, &n, 0, 0, NULL) == 0 && n >= 1)
			px[0] = v[0];
		g_free(v);
		ok(back && vips_image_get_bands(back) == 3 && px[0] < 16, "3 bands, transparent became black (%g)",
		   px[0]);
	}
	if (back)
		g_object_unref(back);
	it_transform_out_free(&out);

	/* To WebP: alpha kept, nothing flattened. */
	parse(IT_OP_CONVERT, "{\"format\":\"webp\"}", &p, err);
	is_int(it_transform_apply(&p, "image/png", png, len, lim, 0, &out, err, sizeof(err)), 0,
	       "convert RGBA to WebP");
	back = out.data ? vips_image_new_from_buffer(out.data, out.len, "", NULL) : NULL;
	ok(back && vips_image_get_bands(back) == 4 && out.note[0] == '\0', "alpha kept, no note");
	if (back)
		g_object_unref(back);
	it_transform_out_free(&out);
	g_free(png);

	/* An animated GIF stays animated, every frame. */
	{
		VipsImage *x = NULL, *y = NULL, *frames[3], *anim = NULL;
		void *gif = NULL;
		size_t glen = 0;
		vips_xyz(&x, 40, 30, NULL);
		vips_cast_uchar(x, &y, NULL);
		for (int i = 0; i < 3; i++)
			vips_linear1(y, &frames[i], 1, 60 * i, "uchar", TRUE, NULL);
		vips_arrayjoin(frames, &anim, 3, "across", 1, NULL);
		vips_image_set_int(anim, "page-height", 30);
		vips_gifsave_buffer(anim, &gif, &glen, NULL);
		parse(IT_OP_COMPRESS, NULL, &p, err);
		is_int(it_transform_apply(&p, "image/gif", gif, glen, lim, 32, &out, err, sizeof(err)), 0,
		       "compress an animated GIF");
		if (out.unchanged[0])
			ok(1, "unchanged: %s", out.unchanged);
		else
			ok(strcmp(out.content_type, "image/gif") == 0 && out.frames == 3 && out.width == 40 &&
				   out.height == 30,
			   "a GIF of 3 frames of 40x30 (%s, %d, %dx%d)", out.content_type, out.frames, out.width,
			   out.height);
		it_transform_out_free(&out);
		parse(IT_OP_CONVERT, "{\"format\":\"jpeg\"}", &p, err);
		is_int(it_transform_apply(&p, "image/gif", gif, glen, lim, 0, &out, err, sizeof(err)), 0,
		       "convert the animation to JPEG");
		ok(out.frames == 1 && strstr(out.note, "first of 3 frames") != NULL, "one frame, and said: %s",
		   out.note);
		it_transform_out_free(&out);
		parse(IT_OP_CONVERT, "{\"format\":\"webp\"}", &p, err);
		is_int(it_transform_apply(&p, "image/gif", gif, glen, lim, 0, &out, err, sizeof(err)), 0,
		       "convert the animation to WebP");
		ok(out.frames == 3 && out.height == 30, "every frame (%d)", out.frames);
		it_transform_out_free(&out);
		for (int i = 0; i < 3; i++)
			g_object_unref(frames[i]);
		g_object_unref(anim);
		g_object_unref(x);
		g_object_unref(y);
		g_free(gif);
	}

	/* HEIC: kept as it is by compress, convertible to JPEG. */
	if (it_transform_can_read_heif()) {
		VipsImage *x = NULL;
		void *heic = NULL;
		size_t hlen = 0;
		vips_black(&x, 64, 48, "bands", 3, NULL);
		if (vips_heifsave_buffer(x, &heic, &hlen, "Q", 50, NULL) == 0) {
			parse(IT_OP_COMPRESS, NULL, &p, err);
			is_int(it_transform_apply(&p, "image/heic", heic, hlen, lim, 0, &out, err, sizeof(err)), 0,
			       "compress a HEIC");
			ok(strstr(out.unchanged, "HEIC") != NULL, "kept as it is, with the reason: %s", out.unchanged);
			it_transform_out_free(&out);
			parse(IT_OP_CONVERT, "{\"format\":\"jpeg\"}", &p, err);
			is_int(it_transform_apply(&p, "image/heic", heic, hlen, lim, 16, &out, err, sizeof(err)), 0,
			       "convert a HEIC to JPEG: %s", err);
			ok(out.width == 64 && out.height == 48 && strcmp(out.content_type, "image/jpeg") == 0,
			   "a 64x48 JPEG");
			it_transform_out_free(&out);
		} else {
			ok(1, "# SKIP this libvips cannot write HEIC");
		}
		vips_error_clear();
		g_free(heic);
		g_object_unref(x);
	}
}

static void test_transform(void)
{
	static const it_sniff_limits lim = {100000000, 16384, 134217728}, tiny = {1000, 16384, 134217728};
	it_op_params p;
	it_transform_out out;
	char err[256];
	size_t len = 0;
	void *jpg = make_image(640, 480, 0, &len);

	ok(jpg != NULL, "test JPEG made");
	parse(IT_OP_COMPRESS, "{\"quality\":50}", &p, err);
	is_int(it_transform_apply(&p, "image/jpeg", jpg, len, &lim, 64, &out, err, sizeof(err)), 0, "compress");
	ok(out.len > 0 && out.len < len, "smaller than the quality-95 original (%zu < %zu)", out.len, len);
	ok(out.width == 640 && out.height == 480, "same size");
	is_str(out.content_type, "image/jpeg", "still JPEG");
	ok(out.thumb != NULL && out.thumb_len > 0, "thumbnail made");
	it_transform_out_free(&out);

	parse(IT_OP_RESIZE, "{\"width\":100,\"height\":100}", &p, err);
	is_int(it_transform_apply(&p, "image/jpeg", jpg, len, &lim, 0, &out, err, sizeof(err)), 0, "resize");
	ok(out.width == 100 && out.height == 75, "fits within 100x100 keeping the aspect (%dx%d)", out.width,
	   out.height);
	ok(out.thumb == NULL, "no thumbnail asked");
	it_transform_out_free(&out);

	parse(IT_OP_CONVERT, "{\"format\":\"webp\"}", &p, err);
	is_int(it_transform_apply(&p, "image/jpeg", jpg, len, &lim, 0, &out, err, sizeof(err)), 0, "convert");
	is_str(out.content_type, "image/webp", "to WebP");
	ok(out.len > 12 && memcmp((char *)out.data + 8, "WEBP", 4) == 0, "the bytes are WebP");
	it_transform_out_free(&out);

	parse(IT_OP_COMPRESS, NULL, &p, err);
	is_int(it_transform_apply(&p, "image/jpeg", jpg, len, &tiny, 0, &out, err, sizeof(err)), -1,
	       "more than max_pixels refused");
	ok(strstr(err, "max_pixels") != NULL, "and says why: %s", err);
	is_int(it_transform_apply(&p, "image/jpeg", jpg, len / 2, &lim, 0, &out, err, sizeof(err)), -1,
	       "truncated JPEG refused");
	is_int(it_transform_apply(&p, "image/jpeg", "not an image at all", 19, &lim, 0, &out, err, sizeof(err)), -1,
	       "garbage refused");
	ok(err[0] != '\0' && strchr(err, '\n') == NULL, "one-line error: %s", err);
	g_free(jpg);

	/* A portrait photo stored sideways with EXIF orientation 6: stripping the
	 * metadata must not turn it sideways, so the rotation goes into the pixels. */
	{
		VipsImage *x = NULL, *y = NULL, *back;
		void *rot = NULL;
		size_t rotlen = 0;

		vips_xyz(&x, 640, 480, NULL);
		vips_cast_uchar(x, &y, NULL);
		vips_image_set_int(y, VIPS_META_ORIENTATION, 6);
		vips_jpegsave_buffer(y, &rot, &rotlen, "Q", 95, NULL);
		g_object_unref(x);
		g_object_unref(y);
		parse(IT_OP_COMPRESS, "{\"quality\":60}", &p, err);
		is_int(it_transform_apply(&p, "image/jpeg", rot, rotlen, &lim, 0, &out, err, sizeof(err)), 0,
		       "compress a rotated photo, keeping its metadata");
		ok(out.width == 640 && out.height == 480, "pixels stay as stored (%dx%d)", out.width, out.height);
		back = vips_image_new_from_buffer(out.data, out.len, "", NULL);
		{
			int o = 0;
			ok(back && vips_image_get_typeof(back, VIPS_META_ORIENTATION) &&
				   vips_image_get_int(back, VIPS_META_ORIENTATION, &o) == 0 && o == 6,
			   "and the orientation tag with them (%d)", o);
		}
		if (back)
			g_object_unref(back);
		it_transform_out_free(&out);
		parse(IT_OP_COMPRESS, "{\"quality\":60,\"strip\":true}", &p, err);
		is_int(it_transform_apply(&p, "image/jpeg", rot, rotlen, &lim, 0, &out, err, sizeof(err)), 0,
		       "compress a rotated photo, stripping metadata");
		ok(out.width == 480 && out.height == 640, "the orientation is applied (%dx%d)", out.width, out.height);
		back = vips_image_new_from_buffer(out.data, out.len, "", NULL);
		ok(back && !vips_image_get_typeof(back, VIPS_META_EXIF_NAME), "and the EXIF block is gone");
		if (back)
			g_object_unref(back);
		it_transform_out_free(&out);
		g_free(rot);
	}

	test_formats(&lim);

	jpg = make_image(200, 100, 1, &len);
	parse(IT_OP_RESIZE, "{\"width\":50}", &p, err);
	is_int(it_transform_apply(&p, "image/png", jpg, len, &lim, 0, &out, err, sizeof(err)), 0, "resize a PNG");
	is_str(out.content_type, "image/png", "stays PNG");
	ok(out.width == 50 && out.height == 25, "50x25");
	it_transform_out_free(&out);
	g_free(jpg);
}

int main(int argc, char **argv)
{
	(void)argc;
	test_params();
	if (it_transform_init(argv[0]) < 0) {
		ok(0, "libvips starts");
	} else {
		test_transform();
		it_transform_shutdown();
	}
	return tap_done();
}

/* it-ssim.c: the mean SSIM of two image files, for the compression tests and benchmark.
 *
 *     it-ssim A B      prints one number: 1 means the same picture
 *
 * SSIM (Wang, Bovik, Sheikh, Simoncelli 2004) of the luminance of both
 * images, with the usual Gaussian window (sigma 1.5) and constants
 * (0.01 * 255)^2 and (0.03 * 255)^2, on the first frame, turned upright
 * from EXIF, CMYK turned to sRGB, transparency flattened onto white, 16-bit
 * scaled to 8 bits. ImageMagick 6 has no SSIM metric; libvips has the
 * operations it is made of, and runs them in memory. Exit status 2 when an
 * image cannot be read or the sizes differ. */
#include <stdio.h>
#include <stdlib.h>
#include <vips/vips.h>

/* Replaces *img by what the call made. */
#define STEP(img, call)                        \
	do {                                   \
		VipsImage *o_ = NULL;          \
		if (call)                      \
			return -1;             \
		vips_object_local(parent, o_); \
		(img) = o_;                    \
	} while (0)

static int luma(VipsObject *parent, const char *path, VipsImage **out)
{
	VipsImage *img = vips_image_new_from_file(path, "access", VIPS_ACCESS_RANDOM, NULL);
	int ushort;

	if (img == NULL)
		return -1;
	vips_object_local(parent, img);
	STEP(img, vips_autorot(img, &o_, NULL));
	if (vips_image_get_interpretation(img) == VIPS_INTERPRETATION_CMYK)
		STEP(img, vips_colourspace(img, &o_, VIPS_INTERPRETATION_sRGB, NULL));
	ushort = vips_image_get_format(img) == VIPS_FORMAT_USHORT;
	if (vips_image_hasalpha(img)) {
		double w = ushort ? 65535 : 255;
		VipsArrayDouble *bg = vips_array_double_newv(1, w);
		int rc = vips_flatten(img, out, "background", bg, NULL);
		vips_area_unref(VIPS_AREA(bg));
		if (rc)
			return -1;
		vips_object_local(parent, *out);
		img = *out;
	}
	STEP(img, vips_colourspace(img, &o_, ushort ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W, NULL));
	STEP(img, vips_linear1(img, &o_, ushort ? 1.0 / 257 : 1.0, 0, NULL));
	*out = img;
	return 0;
}

static int blur(VipsObject *parent, VipsImage *in, VipsImage **out)
{
	if (vips_gaussblur(in, out, 1.5, "precision", VIPS_PRECISION_FLOAT, "min_ampl", 0.01, NULL))
		return -1;
	vips_object_local(parent, *out);
	return 0;
}

static int mul(VipsObject *parent, VipsImage *a, VipsImage *b, VipsImage **out)
{
	if (vips_multiply(a, b, out, NULL))
		return -1;
	vips_object_local(parent, *out);
	return 0;
}

static int ssim(VipsObject *parent, const char *a, const char *b, double *mean)
{
	const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
	VipsImage *x, *y, *xx, *yy, *xy, *mx, *my, *bxx, *byy, *bxy, *mx2, *my2, *mxy, *t[12];

	if (luma(parent, a, &x) || luma(parent, b, &y))
		return -1;
	if (vips_image_get_width(x) != vips_image_get_width(y) ||
	    vips_image_get_height(x) != vips_image_get_height(y)) {
		fprintf(stderr, "it-ssim: the images differ in size\n");
		return -1;
	}
	if (mul(parent, x, x, &xx) || mul(parent, y, y, &yy) || mul(parent, x, y, &xy) || blur(parent, x, &mx) ||
	    blur(parent, y, &my) || blur(parent, xx, &bxx) || blur(parent, yy, &byy) || blur(parent, xy, &bxy) ||
	    mul(parent, mx, mx, &mx2) || mul(parent, my, my, &my2) || mul(parent, mx, my, &mxy))
		return -1;
	/* ((2 mx my + c1)(2 sxy + c2)) / ((mx^2 + my^2 + c1)(sx^2 + sy^2 + c2)) */
	if (vips_linear1(mxy, &t[0], 2, c1, NULL) || vips_subtract(bxy, mxy, &t[1], NULL) ||
	    vips_linear1(t[1], &t[2], 2, c2, NULL) || vips_add(mx2, my2, &t[3], NULL) ||
	    vips_linear1(t[3], &t[4], 1, c1, NULL) || vips_subtract(bxx, mx2, &t[5], NULL) ||
	    vips_subtract(byy, my2, &t[6], NULL) || vips_add(t[5], t[6], &t[7], NULL) ||
	    vips_linear1(t[7], &t[8], 1, c2, NULL) || vips_multiply(t[0], t[2], &t[9], NULL) ||
	    vips_multiply(t[4], t[8], &t[10], NULL) || vips_divide(t[9], t[10], &t[11], NULL))
		return -1;
	for (int i = 0; i < 12; i++)
		vips_object_local(parent, t[i]);
	return vips_avg(t[11], mean, NULL);
}

int main(int argc, char **argv)
{
	VipsObject *parent;
	double mean = 0;
	int rc;

	if (VIPS_INIT(argv[0]))
		return 2;
	if (argc != 3) {
		fprintf(stderr, "usage: it-ssim A B\n");
		return 2;
	}
	parent = VIPS_OBJECT(vips_image_new());
	rc = ssim(parent, argv[1], argv[2], &mean);
	g_object_unref(parent);
	if (rc) {
		fprintf(stderr, "it-ssim: %s\n", vips_error_buffer());
		return 2;
	}
	printf("%.6f\n", mean);
	vips_shutdown();
	return 0;
}

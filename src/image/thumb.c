/* thumb.c: thumbnails with libvips, from an image in a file. */
#include "config.h"

#include "image/thumb.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef IT_HAVE_VIPS
#include <vips/vips.h>

int it_thumb_available(void)
{
	return 1;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc = -EIO;

static void init_once(void)
{
	if (VIPS_INIT("imagetools") != 0)
		return;
	/* Each request makes one thumbnail of a file that is deleted right
	 * after: caching operations would only hold memory and descriptors. */
	vips_cache_set_max(0);
	/* One worker thread per thumbnail: requests already run in parallel,
	 * and this keeps memory per upload predictable. */
	vips_concurrency_set(1);
	/* Only our sniffed formats (JPEG, PNG, GIF, WebP, HEIC, AVIF) ever
	 * reach libvips, but should one
	 * slip through, the large third-party loaders (ImageMagick, PDF,
	 * OpenSlide) stay out of reach of uploaded bytes. */
	vips_block_untrusted_set(TRUE);
	init_rc = 0;
}

int it_thumb_init(void)
{
	pthread_once(&once, init_once);
	return init_rc;
}

int it_thumb_heif_readable(void)
{
	return it_thumb_init() == 0 && vips_type_find("VipsForeignLoad", "heifload_source") != 0;
}

static pthread_once_t avif_once = PTHREAD_ONCE_INIT;
static int avif_ok;

static void avif_probe(void)
{
	VipsImage *x = NULL;
	void *buf = NULL;
	size_t len = 0;

	if (vips_black(&x, 16, 16, "bands", 3, NULL) == 0 &&
	    vips_heifsave_buffer(x, &buf, &len, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "Q", 50, NULL) == 0)
		avif_ok = len > 12;
	vips_error_clear();
	g_free(buf);
	if (x)
		g_object_unref(x);
}

int it_thumb_avif_writable(void)
{
	if (it_thumb_init() < 0)
		return 0;
	pthread_once(&avif_once, avif_probe);
	return avif_ok;
}

int it_thumb_make(int fd, int size, void **out, size_t *outlen, const char **content_type, char *err, size_t errlen)
{
	VipsSource *src = NULL;
	VipsImage *img = NULL;
	void *buf = NULL;
	size_t len = 0;
	int rc = -EINVAL;

	*out = NULL;
	*outlen = 0;
	if (it_thumb_init() < 0) {
		snprintf(err, errlen, "libvips failed to start");
		return -EIO;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot rewind the image file");
		return rc;
	}
	/* vips_thumbnail_source opens the image with sequential access and
	 * shrinks while loading where the format allows it (JPEG by DCT
	 * scaling, WebP by libwebp's scaled decode); PNG and GIF are decoded
	 * at full size, in strips. What a thumbnail costs then depends on the
	 * row, not the file: measured with libvips 8.14 on a 777 kB PNG of
	 * 1000000x100 16-bit RGBA pixels, the peak was 1.2 GB, of which about
	 * a thousand rows (8 MB each, more once premultiplied to float) sit
	 * in the loader's line cache and the shrink's input regions; a plain
	 * sequential copy of an 8192-wide 16-bit RGBA PNG holds 53 MB of
	 * region buffers the same way. libvips has no allocation ceiling per
	 * operation, so the bound is set before it runs: it_sniff_check caps
	 * the width (max_dimension: at 16384 the worst PNG, 16-bit RGBA, peaks
	 * near 160 MB above the process's base) and the buffers that decoders
	 * hold whole (max_decode_bytes: GIF canvases, interlaced PNG,
	 * progressive JPEG, WebP). */
	src = vips_source_new_from_descriptor(fd);
	if (src == NULL)
		goto out;
	if (vips_thumbnail_source(src, &img, size, "height", size, "size", VIPS_SIZE_DOWN, NULL) != 0)
		goto out;
	if (vips_image_hasalpha(img)) {
		if (vips_pngsave_buffer(img, &buf, &len, "strip", TRUE, "compression", 6, NULL) != 0)
			goto out;
		*content_type = "image/png";
	} else {
		if (vips_jpegsave_buffer(img, &buf, &len, "Q", 80, "strip", TRUE, NULL) != 0)
			goto out;
		*content_type = "image/jpeg";
	}
	/* g_free and free are the same allocator on glibc builds of GLib, but
	 * copying keeps the ownership contract plain. */
	*out = malloc(len ? len : 1);
	if (*out == NULL)
		goto out;
	memcpy(*out, buf, len);
	*outlen = len;
	rc = 0;
out:
	if (rc != 0) {
		const char *e = vips_error_buffer();
		size_t n = strcspn(e, "\n");
		snprintf(err, errlen, "%.*s", (int)(n < 200 ? n : 200), n ? e : "libvips could not read the image");
		vips_error_clear();
	}
	g_free(buf);
	if (img)
		g_object_unref(img);
	if (src)
		g_object_unref(src);
	vips_thread_shutdown();
	return rc;
}

#else /* !IT_HAVE_VIPS */

/* Built --without-vips: no image is ever decoded in this process. */

int it_thumb_available(void)
{
	return 0;
}

int it_thumb_init(void)
{
	return 0;
}

int it_thumb_heif_readable(void)
{
	return 0;
}

int it_thumb_avif_writable(void)
{
	return 0;
}

int it_thumb_make(int fd, int size, void **out, size_t *outlen, const char **content_type, char *err, size_t errlen)
{
	(void)fd;
	(void)size;
	*out = NULL;
	*outlen = 0;
	*content_type = NULL;
	snprintf(err, errlen, "this server was built without libvips and makes no thumbnails");
	return -ENOTSUP;
}

#endif

/* thumb.h: thumbnails with libvips, from an image in a file (or none, in a build without libvips). */
#ifndef IT_IMAGE_THUMB_H
#define IT_IMAGE_THUMB_H

#include <stddef.h>

/* Whether this build makes thumbnails at all: 0 when configured
 * --without-vips, where every function below answers "cannot" (init 0,
 * readable and writable 0, make -1) and uploads are stored without a
 * thumbnail (GET .../thumbnail answers 404 no-thumbnail). */
int it_thumb_available(void);

/* Starts libvips once per process (later calls do nothing) and turns off its
 * operation cache, which would otherwise keep decoded images and descriptors
 * of deleted temporary files alive. Called by it_thumb_make; call it from
 * main() before threads if you want start-up errors early. Returns 0, or
 * -EIO when libvips did not start. */
int it_thumb_init(void);

/* Whether this libvips reads HEIF images (HEIC, AVIF): it has the heif
 * loader (libheif). Debian's libvips 8.14 has it; a build without it
 * cannot show or convert what phones send, and uploads of those are then
 * refused with a sentence that says so. Starts libvips (it_thumb_init). */
int it_thumb_heif_readable(void);

/* Whether this libvips writes AVIF: libheif with an AV1 encoder, which only
 * trying tells (a 16x16 image, once per process). For GET /health, so that
 * a page offers AVIF only where operations can make it. */
int it_thumb_avif_writable(void);

/* Makes a thumbnail of the image held in fd (read from offset 0; fd is not
 * closed), its longest edge at most size pixels (never enlarged), rotated
 * upright from EXIF, metadata stripped: PNG when the image has an alpha
 * channel, JPEG otherwise. Returns 0 and sets *out (heap, free() it),
 * *outlen and *content_type (static), or a negative errno with a sentence in
 * err: -EINVAL when libvips cannot read the image, -EIO when it did not
 * start, -ENOTSUP in a build without libvips. The caller runs it_sniff_check (image/sniff.h)
 * on the same file first: decoding is where a bomb would go off, and what
 * that check lets through is what bounds the memory a thumbnail takes. */
int it_thumb_make(int fd, int size, void **out, size_t *outlen, const char **content_type, char *err, size_t errlen);

#endif

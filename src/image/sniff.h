/* sniff.h: an image's type from its magic bytes and its size from its header, never from the client.
 *
 * Return convention of the image layer (src/image/, docs/layout.md): 0 or a
 * negative errno, with a sentence in err or why when the call takes one
 * (it_sniff_check -EFBIG, it_filename_disposition -ENOSPC, it_thumb_make
 * -EINVAL/-EIO/-ENOTSUP). The sniffers (it_sniff_type, _image, _whole, _fd)
 * return enum it_sniff_rc (OK, NEED_MORE, UNKNOWN, BAD), a parser's outcome
 * that every caller compares against by name. it_thumb_available,
 * it_thumb_heif_readable and it_thumb_avif_writable are predicates; the file
 * name functions return the length they wrote or a string. */
#ifndef IT_IMAGE_SNIFF_H
#define IT_IMAGE_SNIFF_H

#include <stddef.h>
#include <stdint.h>

/* Bytes it_sniff_type needs to decide (WebP's "RIFF....WEBP" and HEIF's
 * "....ftyp<brand>" are 12). */
#define IT_SNIFF_MAGIC_BYTES 12

/* Frames an animation may declare. libvips reads every frame header of a GIF
 * or animated WebP when it opens one, and keeps state per frame; no image
 * people upload has more (a 10-minute animation at 6 frames per second). */
#define IT_SNIFF_MAX_FRAMES 4096

/* What the header says about the pixels a decoder will produce: everything
 * it_sniff_check needs to decide before any decoder allocates. */
typedef struct it_sniff {
	/* "image/jpeg", "image/png", "image/gif", "image/webp", "image/heic",
	 * "image/avif" (static); it_sniff_type alone may also answer
	 * "image/heif" for a HEIF whose major brand does not name the codec:
	 * the whole header walk then decides between HEIC and AVIF. */
	const char *content_type;
	const char *ext;	/* "jpg", "png", "gif", "webp", "heic", "avif" ("heif"), static */
	uint32_t width, height; /* the image as shown (GIF screen, WebP canvas, PNG/JPEG frame) */
	/* The smallest canvas that holds the image and every frame at its
	 * offset: a GIF frame may lie outside (or be larger than) the screen
	 * it belongs to, and decoders size their buffers to cover it. */
	uint32_t extent_width, extent_height;
	uint32_t frame_width, frame_height; /* the largest frame by area (the image itself when still) */
	uint32_t frames;		    /* 1 for still images; IT_SNIFF_MAX_FRAMES + 1 means "more" */
	uint32_t bytes_per_pixel; /* as decoded: 16-bit RGBA PNG is 8, GIF and WebP 4, JPEG one per component */
	/* Bytes the decoder holds at once whatever libvips asks of it: the
	 * whole canvas for GIF and WebP, the whole image for an interlaced PNG,
	 * the DCT coefficients of every block for a progressive or multi-scan
	 * JPEG; 0 for decoders that stream rows (baseline JPEG, PNG). */
	uint64_t whole_bytes;
	int interlaced; /* PNG Adam7, progressive or multi-scan JPEG */
} it_sniff;

enum it_sniff_rc {
	IT_SNIFF_OK = 0,
	IT_SNIFF_NEED_MORE = 1, /* the bytes end before the answer: pass more */
	IT_SNIFF_UNKNOWN = -1,	/* not an image format we accept */
	IT_SNIFF_BAD = -2,	/* the right magic, but a corrupt or zero-sized header */
};

/* Decides the format from the first n bytes of a file. Sets out->content_type
 * and out->ext on IT_SNIFF_OK. Reads at most IT_SNIFF_MAGIC_BYTES bytes. */
enum it_sniff_rc it_sniff_type(const void *p, size_t n, it_sniff *out);

/* Decides the format and every field of out from the first n bytes of a file
 * (more may follow: an animation whose frames are not all there yet needs
 * more). Headers are walked (GIF blocks and LZW sub-blocks by their lengths,
 * RIFF chunks, JPEG segments, the ISOBMFF boxes of HEIF: ftyp brands, then
 * meta's pitm and iprp for the primary item's ispe size, pixi depth and
 * irot rotation, and the largest ispe of any item), never decoded. HEIF is
 * one frame (libvips shows the primary image). Never reads outside p[0..n). */
enum it_sniff_rc it_sniff_image(const void *p, size_t n, it_sniff *out);

/* The same for p[0..n) that is the whole file: an animation that ends early
 * (a GIF without its trailer) is judged by the frames that are there, as a
 * decoder would show it. Never reads outside p[0..n). */
enum it_sniff_rc it_sniff_whole(const void *p, size_t n, it_sniff *out);

/* The same for the whole file of size bytes open on fd, read with pread(2)
 * through a 4 KiB window (the file offset does not move): walking a large
 * file costs a few reads, not its size in memory. A read error is
 * IT_SNIFF_BAD. */
enum it_sniff_rc it_sniff_fd(int fd, uint64_t size, it_sniff *out);

/* What a server lets a decoder take (configuration.md: max_pixels,
 * max_dimension, max_decode_bytes). */
typedef struct it_sniff_limits {
	uint64_t max_pixels;	   /* of the image, its extent and every frame */
	uint64_t max_dimension;	   /* longest side of the image, its extent or any frame */
	uint64_t max_decode_bytes; /* ceiling on whole_bytes */
} it_sniff_limits;

/* Decides whether the image sniffed into s (IT_SNIFF_OK) may be decoded
 * within lim. Returns 0, or -EFBIG with a sentence fragment in why that follows
 * the file's name ("has a 65535x65535 frame; ..."). The upload handler and
 * the worker both call it before libvips sees the bytes. */
int it_sniff_check(const it_sniff *s, const it_sniff_limits *lim, char *why, size_t whylen);

#endif

/* transform.h: the image work of each operation type (compress, resize, convert), done by libvips on buffers. */
#ifndef IT_WORKER_TRANSFORM_H
#define IT_WORKER_TRANSFORM_H

#include "db/operations.h"
#include "image/sniff.h"

#include <stddef.h>
#include <stdint.h>

/* A transformed image. data is owned by the struct (it_transform_out_free). When
 * unchanged is not empty the original stays as it is (compressing would not
 * have made it smaller, or the format is kept as it is): data and thumb are
 * then NULL and unchanged says why, in a sentence for people. */
typedef struct it_transform_out {
	void *data;
	size_t len;
	int width, height;	  /* as stored; of one frame for an animation */
	int frames;		  /* frames in the result (1 for a still image) */
	const char *content_type; /* static string: image/jpeg, image/png, image/gif, image/webp, image/avif */
	void *thumb;		  /* thumbnail (JPEG or PNG), or NULL */
	size_t thumb_len;
	const char *thumb_type;
	char unchanged[200];
	/* What the result lost that is worth telling ("only the first of 12
	 * frames: JPEG holds one"; "transparency flattened onto #ffffff"), or "". */
	char note[200];
} it_transform_out;

/* Starts libvips for this process (argv0 for its messages). Returns 0 or -1. */
int it_transform_init(const char *argv0);

/* Releases libvips' process-wide state (at exit, for leak checkers). */
void it_transform_shutdown(void);

/* Whether this libvips writes f (AVIF needs libheif with an AV1 encoder:
 * found out once, by encoding a tiny image) and reads HEIF (HEIC, AVIF). */
int it_transform_can_write(enum it_op_format f);
int it_transform_can_read_heif(void);

/* Applies p to the encoded image in[0..len) whose sniffed type is in_type,
 * and renders a thumbnail of the result with longest edge thumb_size (0: no
 * thumbnail). Images beyond lim (it_sniff_check, and for the operation: an
 * upright rotation holds the whole image, a resize its output) are refused
 * before libvips reads them.
 *
 * Compression keeps the format (JPEG re-encoded, PNG optimised losslessly
 * or, with p->palette, quantised keeping alpha, WebP lossy or lossless as
 * the source was, animated GIF and WebP with every frame; HEIC and AVIF
 * stay as they are) and never makes a file larger: a result that is not
 * smaller leaves out->unchanged set. The EXIF orientation goes into the
 * pixels whenever the metadata goes (p->strip) or the format changes;
 * otherwise pixels and tag stay as they were. p->strip drops EXIF, XMP,
 * IPTC and comments; an ICC profile that is not sRGB stays (the colours
 * would change without it). CMYK becomes sRGB when the format changes.
 * Alpha is flattened onto p->background only for a format without alpha
 * (JPEG), and out->note says so.
 *
 * Returns 0 and fills out, or -1 with a sentence in err (a corrupt or
 * unsupported file, or a format this libvips cannot write). */
int it_transform_apply(const it_op_params *p, const char *in_type, const void *in, size_t len,
		       const it_sniff_limits *lim, int thumb_size, it_transform_out *out, char *err, size_t errlen);

/* Frees what out holds; safe on a zeroed or already freed struct. */
void it_transform_out_free(it_transform_out *out);

#endif

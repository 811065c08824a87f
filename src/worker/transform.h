/* transform.h: the image work of each operation type (compress, resize, convert), done by libvips on buffers. */
#ifndef IT_TRANSFORM_H
#define IT_TRANSFORM_H

#include "db/operations.h"
#include "image/sniff.h"

#include <stddef.h>
#include <stdint.h>

/* A transformed image. data is owned by the struct (it_xf_out_free). */
typedef struct it_xf_out {
	void *data;
	size_t len;
	int width, height;
	const char *content_type; /* static string: image/jpeg, image/png, image/webp */
	void *thumb;		  /* thumbnail (JPEG or PNG), or NULL */
	size_t thumb_len;
	const char *thumb_type;
} it_xf_out;

/* Starts libvips for this process (argv0 for its messages). Returns 0 or -1. */
int it_xf_init(const char *argv0);

/* Releases libvips' process-wide state (at exit, for leak checkers). */
void it_xf_shutdown(void);

/* Applies p to the encoded image in[0..len) whose sniffed type is in_type,
 * and renders a thumbnail of the result with longest edge thumb_size (0: no
 * thumbnail). Images beyond lim (it_sniff_check, and for the operation: an
 * upright rotation holds the whole image, a resize its output) are refused
 * before libvips reads them. Returns 0 and fills out, or -1 with a sentence in err (a
 * corrupt or unsupported file). */
int it_xf_apply(const it_op_params *p, const char *in_type, const void *in, size_t len, const it_sniff_limits *lim,
		int thumb_size, it_xf_out *out, char *err, size_t errlen);

/* Frees what out holds; safe on a zeroed or already freed struct. */
void it_xf_out_free(it_xf_out *out);

#endif

/* cmyk.h: re-encodes a CMYK JPEG as YCCK with libjpeg, which libvips cannot write. */
#ifndef IT_WORKER_CMYK_H
#define IT_WORKER_CMYK_H

#include <stddef.h>
#include <stdint.h>

/* Re-encodes the CMYK or YCCK JPEG in[0..len) at quality (1-100) as YCCK:
 * C, M and Y turned into luminance and two chroma channels, the chroma
 * quantised with libjpeg's chrominance table, K with the luminance one, as
 * Photoshop and ImageMagick write CMYK. libvips writes plain CMYK with the
 * luminance table on all four channels, about a quarter larger at the same
 * quality setting. The samples keep their meaning: an Adobe file's
 * inverted CMYK (Photoshop's convention, which readers undo when they see
 * the Adobe segment) passes through as it is, and a file without that
 * segment is inverted on the way, since YCCK is only said by one. Every APPn and COM segment but JFIF and Adobe, which
 * libjpeg writes itself, is copied (ICC profile, EXIF, XMP). subsample 1
 * takes libjpeg's YCCK sampling (chroma at half resolution each way), 0
 * keeps every channel at full resolution, -1 does what the source does
 * (full unless its channels are sampled differently). Huffman tables are
 * optimised, which holds the whole image's coefficients: 8 bytes a pixel,
 * at most max_bytes. progressive asks for progressive scans.
 *
 * Returns 0 and sets *out (malloc'd; the caller frees it with free()) and
 * *outlen; or -1 when the file is not a 4-channel 8-bit JPEG, is too large
 * for max_bytes, or is damaged (libjpeg warnings count): why says which,
 * and the caller takes its ordinary path, which reports damage properly.
 * Never exits or aborts on a bad file. */
int it_cmyk_jpeg(const void *in, size_t len, int quality, int subsample, int progressive, uint64_t max_bytes,
		 void **out, size_t *outlen, char *why, size_t whylen);

#endif

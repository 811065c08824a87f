/* fuzz_http_head.c: libFuzzer target for the bridge's upgrade request head parser. */
#include "config.h"

#include "bridge/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	it_http_header h[64];
	it_http_request req = {.headers = h, .num_headers = 64};
	int rc = it_http_parse_request((const char *)data, size, &req);
	size_t i;

	if (rc > (int)size)
		abort();
	if (rc > 0) {
		/* Everything handed out lies inside the head. */
		const char *end = (const char *)data + rc;
		if (req.target + req.target_len > end)
			abort();
		for (i = 0; i < req.num_headers; i++)
			if (h[i].value + h[i].value_len > end || h[i].name + h[i].name_len > end)
				abort();
		(void)it_http_find(&req, "Sec-WebSocket-Key");
		for (i = 0; i < req.num_headers; i++)
			(void)it_http_has_token(h[i].value, h[i].value_len, "upgrade");
	}
	return 0;
}

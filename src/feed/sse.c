/* sse.c: the text/event-stream wire format. */
#include "config.h"

#include "feed/sse.h"

#include <string.h>

int it_sse_event(it_buf *out, int64_t seq, const char *type, const char *json, size_t json_len)
{
	size_t before = out->len;
	int rc = it_buf_printf(out, "id: %lld\nevent: %s\ndata: ", (long long)seq, type);

	if (rc == 0)
		rc = it_buf_append(out, json, json_len);
	if (rc == 0)
		rc = it_buf_append(out, "\n\n", 2);
	if (rc < 0 && out->data) {
		out->len = before;
		out->data[before] = '\0';
	}
	return rc;
}

int it_sse_transient(it_buf *out, const char *type, const char *json)
{
	return it_buf_printf(out, "event: %s\ndata: %s\n\n", type, json);
}

int it_sse_retry(it_buf *out, int64_t ms)
{
	return it_buf_printf(out, "retry: %lld\n\n", (long long)ms);
}

int it_sse_comment(it_buf *out, const char *text)
{
	return it_buf_printf(out, ": %s\n\n", text);
}

/* test_sse.c: unit tests for hub/sse. */
#include "config.h"

#include "feed/sse.h"
#include "tap.h"

#include <errno.h>

int main(void)
{
	it_buf b;

	it_buf_init(&b, 4096);
	is_int(it_sse_event(&b, 42, "image.uploaded", "{\"id\":42}", 9), 0, "event");
	is_str(b.data, "id: 42\nevent: image.uploaded\ndata: {\"id\":42}\n\n", "id, event, data, blank line");
	it_buf_reset(&b);
	it_sse_transient(&b, "connection.status", "{}");
	is_str(b.data, "event: connection.status\ndata: {}\n\n", "transient events carry no id");
	it_buf_reset(&b);
	it_sse_retry(&b, 3000);
	is_str(b.data, "retry: 3000\n\n", "retry hint");
	it_buf_reset(&b);
	it_sse_comment(&b, "keepalive");
	is_str(b.data, ": keepalive\n\n", "comment");
	it_buf_free(&b);

	it_buf_init(&b, 40);
	it_buf_puts(&b, "x");
	is_int(it_sse_event(&b, 1, "t", "0123456789012345678901234567890123456789", 40), -ENOSPC,
	       "an event that does not fit is refused");
	is_str(b.data, "x", "and leaves the buffer as it was");
	it_buf_free(&b);
	return tap_done();
}

/* test_buf.c: unit tests for common/buf. */
#include "config.h"

#include "common/buf.h"
#include "tap.h"

#include <errno.h>

int main(void)
{
	it_buf b;

	it_buf_init(&b, 16);
	is_int(it_buf_puts(&b, "hello"), 0, "append within the ceiling");
	is_str(b.data, "hello", "content is NUL-terminated");
	is_int(it_buf_printf(&b, " %d", 42), 0, "printf appends");
	is_str(b.data, "hello 42", "printf result");
	is_int(it_buf_puts(&b, "12345678"), 0, "exactly to the ceiling");
	is_int(b.len, 16, "length at the ceiling");
	is_int(it_buf_append(&b, "x", 1), -ENOSPC, "one byte past the ceiling is refused");
	is_int(b.len, 16, "a refused append leaves the buffer unchanged");
	is_int(it_buf_printf(&b, "%s", "y"), -ENOSPC, "printf past the ceiling is refused");
	it_buf_consume(&b, 6);
	is_str(b.data, "4212345678", "consume drops the front");
	it_buf_consume(&b, 100);
	is_int(b.len, 0, "consuming more than there is empties it");
	it_buf_free(&b);

	it_buf_init(&b, 1 << 20);
	for (int i = 0; i < 100000; i++)
		it_buf_append(&b, "ab", 2);
	is_int(b.len, 200000, "grows through many reallocations");
	ok(b.cap <= (1 << 20) + 1, "capacity never exceeds the ceiling");
	it_buf_free(&b);
	return tap_done();
}

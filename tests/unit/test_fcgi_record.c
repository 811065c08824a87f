/* test_fcgi_record.c: unit tests for hub/fcgi_record. */
#include "config.h"

#include "hub/fcgi_record.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>

int main(void)
{
	it_buf b;
	it_fcgi_record_scan scan;
	static uint8_t big[70000];

	it_buf_init(&b, 1 << 20);
	is_int(it_fcgi_record_stdout(&b, 0x1234, "hello", 5), 0, "stdout record");
	is_int(b.len, 13, "8-byte header plus content, no padding");
	ok(memcmp(b.data, "\x01\x06\x12\x34\x00\x05\x00\x00hello", 13) == 0, "header: version, type, id, length");
	it_buf_reset(&b);

	memset(big, 'x', sizeof(big));
	is_int(it_fcgi_record_stdout(&b, 1, big, sizeof(big)), 0, "large body");
	is_int(b.len, sizeof(big) + 16, "split into two records");
	ok((uint8_t)b.data[4] == 0xff && (uint8_t)b.data[5] == 0xff, "first record is 65535 bytes");
	ok((uint8_t)b.data[8 + 65535 + 4] == ((70000 - 65535) >> 8) &&
		   (uint8_t)b.data[8 + 65535 + 5] == ((70000 - 65535) & 0xff),
	   "second record carries the rest");
	it_buf_free(&b);

	it_buf_init(&b, 20);
	is_int(it_fcgi_record_stdout(&b, 1, "0123456789abcdef", 16), -ENOSPC, "over the ceiling refused");
	is_int(b.len, 0, "nothing appended");
	is_int(it_fcgi_record_stdout(&b, 1, "0123456789ab", 12), 0, "exactly to the ceiling");
	is_int(it_fcgi_record_end(&b, 1), 0, "end records go in even when the buffer is full");
	is_int(b.len, 20 + 24, "empty stdout plus end request");
	ok(memcmp(b.data + 20, "\x01\x06\x00\x01\x00\x00\x00\x00\x01\x03\x00\x01\x00\x08\x00\x00", 16) == 0,
	   "empty stdout then end request headers");
	ok(memcmp(b.data + 36, "\x00\x00\x00\x00\x00\x00\x00\x00", 8) == 0, "app status 0, request complete");
	it_buf_free(&b);

	{
		/* stdin EOF record, then a params record with padding, then abort. */
		static const uint8_t in[] = {1, 5, 0, 7, 0, 0, 0, 0, 1, 4, 0, 7, 0, 3, 5, 0, 'a', 'b', 'c', 0,
					     0, 0, 0, 0, 1, 2, 0, 9, 0, 0, 0, 0, 1, 2, 0, 7, 0,	  0,   0,   0};
		memset(&scan, 0, sizeof(scan));
		is_int(it_fcgi_record_scan_feed(&scan, 7, in, 32), 0,
		       "records of other types, and an abort of another id");
		is_int(it_fcgi_record_scan_feed(&scan, 7, in + 32, 8), 1, "abort of our request seen");
		memset(&scan, 0, sizeof(scan));
		int seen = 0;
		for (size_t i = 0; i < sizeof(in); i++)
			seen |= it_fcgi_record_scan_feed(&scan, 7, in + i, 1);
		ok(seen, "abort seen when fed byte by byte");
	}
	return tap_done();
}

/* test_id.c: unit tests for common/id. */
#include "config.h"

#include "common/id.h"
#include "tap.h"

int main(void)
{
	char a[IT_SESSION_ID_LEN + 1], b[IT_SESSION_ID_LEN + 1], enc[16];
	int good = 1;

	is_int(it_id_session(a), 0, "session id from getrandom");
	is_int(strlen(a), IT_SESSION_ID_LEN, "32 characters: 192 bits");
	ok(it_id_session_valid(a), "a new id is well-formed");
	it_id_session(b);
	ok(strcmp(a, b) != 0, "two ids differ");
	for (int i = 0; i < 1000; i++) {
		it_id_session(b);
		if (!it_id_session_valid(b) || strcmp(a, b) == 0)
			good = 0;
	}
	ok(good, "1000 more ids are well-formed and new");

	it_base64url((const unsigned char *)"\xfb\xff", 2, enc);
	is_str(enc, "-_8", "base64url uses - and _ and no padding");
	it_base64url((const unsigned char *)"foobar", 6, enc);
	is_str(enc, "Zm9vYmFy", "base64url of a whole group");

	ok(!it_id_session_valid(""), "empty id refused");
	ok(!it_id_session_valid("short"), "short id refused");
	ok(!it_id_session_valid("abcdefghijklmnopqrstuv/x"), "slash refused");
	ok(!it_id_session_valid("abcdefghijklmnopqrstuv'x"), "quote refused");
	ok(!it_id_session_valid("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123"),
	   "65 characters refused");
	ok(it_id_session_valid("abcdefghijklmnopqrstuv"), "22 characters accepted");
	ok(!it_id_session_valid(NULL), "NULL refused");

	ok(it_id_uuid_valid("0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b"), "uuid accepted");
	ok(!it_id_uuid_valid("0B7E3C1A-2f4d-4c5e-9a8b-1c2d3e4f5a6b"), "upper-case uuid refused");
	ok(!it_id_uuid_valid("0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6"), "short uuid refused");
	ok(!it_id_uuid_valid("0b7e3c1a2f4d-4c5e-9a8b-1c2d3e4f5a6b0"), "misplaced dash refused");
	return tap_done();
}

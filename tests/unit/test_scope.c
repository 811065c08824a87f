/* test_scope.c: unit tests for common/scope and common/token (scope names, device fields, token forms). */
#include "config.h"

#include "common/id.h"
#include "common/scope.h"
#include "common/token.h"
#include "tap.h"

#include <string.h>

static void scopes(void)
{
	is_int(it_scope_parse("upload"), IT_SCOPE_UPLOAD, "upload");
	is_int(it_scope_parse("view"), IT_SCOPE_VIEW, "view");
	is_int(it_scope_parse("full"), IT_SCOPE_FULL, "full");
	is_int(it_scope_parse("Full"), 0, "names are case-sensitive");
	is_int(it_scope_parse("manage"), 0, "manage is a bit, not a scope");
	is_int(it_scope_parse(NULL), 0, "NULL");
	is_str(it_scope_name(IT_SCOPE_VIEW), "view", "name of view");
	ok(it_scope_name(IT_SCOPE_UPLOAD | IT_SCOPE_VIEW) == NULL, "upload+view has no name");
	is_str(it_scope_needed(IT_SCOPE_UPLOAD), "upload", "upload needs upload");
	is_str(it_scope_needed(IT_SCOPE_VIEW), "view", "view needs view");
	is_str(it_scope_needed(IT_SCOPE_MANAGE), "full", "manage needs full");
	is_str(it_scope_needed(IT_SCOPE_UPLOAD | IT_SCOPE_VIEW), "full", "both need full");
}

static void fields(void)
{
	ok(it_scope_label_valid("Anna's phone"), "a plain label");
	ok(it_scope_label_valid("\xd0\x90\xd0\xbd\xd0\xbd\xd0\xb0 \xf0\x9f\x93\xb1"), "UTF-8 with an emoji");
	ok(!it_scope_label_valid(""), "empty");
	ok(!it_scope_label_valid("a\nb"), "a newline");
	ok(!it_scope_label_valid("a\x7f"), "DEL");
	ok(!it_scope_label_valid("a\xc2\x85"), "a C1 control (NEL)");
	ok(!it_scope_label_valid("\xc0\xaf"), "an overlong form");
	ok(!it_scope_label_valid("\xed\xa0\x80"), "a surrogate");
	ok(!it_scope_label_valid("\xe2\x82"), "cut in the middle of a character");
	{
		char l[300];
		memset(l, 'a', 64);
		l[64] = '\0';
		ok(it_scope_label_valid(l), "64 characters");
		l[64] = 'a';
		l[65] = '\0';
		ok(!it_scope_label_valid(l), "65 characters");
		for (int i = 0; i < 64; i++)
			memcpy(l + 3 * i, "\xe2\x82\xac", 3);
		l[192] = '\0';
		ok(it_scope_label_valid(l), "64 three-byte characters");
	}
	ok(it_scope_source_valid("android_app"), "android_app");
	ok(it_scope_source_valid("cli-1.2"), "dots and dashes");
	ok(!it_scope_source_valid("a b"), "a space");
	ok(!it_scope_source_valid(""), "empty source");
	ok(!it_scope_source_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "33 characters");
	ok(it_scope_device_id_valid("dev_AAAAAAAAAAAAAAA-"), "a device id");
	ok(!it_scope_device_id_valid("dev_AAAAAAAAAAAAAAA"), "one short");
	ok(!it_scope_device_id_valid("dev_AAAAAAAAAAAAAAA."), "a dot");
}

static void tokens(void)
{
	char t[IT_TOKEN_LEN + 1], t2[IT_TOKEN_LEN + 1], c[IT_PAIRING_LEN + 1], d[IT_DEVICE_ID_SIZE];
	char h[IT_TOKEN_HASH_HEX_SIZE];

	is_int(it_token_new(t), 0, "a token");
	is_int((int)strlen(t), IT_TOKEN_LEN, "36 characters");
	ok(it_token_valid(t) && it_token_is(t), "of a token's form");
	ok(!it_id_session_valid(t), "never of a session id's form");
	it_token_new(t2);
	ok(strcmp(t, t2) != 0, "two tokens differ");
	is_int(it_token_new_pairing(c), 0, "a pairing code");
	is_int((int)strlen(c), IT_PAIRING_LEN, "26 characters");
	ok(it_token_pairing_valid(c) && !it_token_valid(c) && !it_token_is(c), "of a code's form only");
	is_int(it_token_new_device_id(d), 0, "a device id");
	ok(it_scope_device_id_valid(d), "of a device id's form");
	t[IT_TOKEN_LEN - 1] = '\0';
	ok(!it_token_valid(t) && it_token_is(t), "truncated: still judged as a token, not valid");
	ok(!it_token_valid("itk.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), "a character outside base64url");
	it_token_hash_text("itk.x", h);
	/* printf 'itk.x' | sha256sum */
	is_str(h, "\\x0c96096278833ff5d7ed654d41fa4e1462ca4e968a89ce40bc78e284783159f1", "SHA-256 in bytea text form");
	ok(it_token_equal("abc", "abc") && !it_token_equal("abc", "abd") && !it_token_equal("abc", "ab"),
	   "constant-time equality");
}

int main(void)
{
	scopes();
	fields();
	tokens();
	return tap_done();
}

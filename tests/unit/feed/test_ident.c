/* test_ident.c: what a streaming client may say about itself (client_id, label, source). */
#include "config.h"

#include "feed/ident.h"

#include "guard.h"
#include "tap.h"

#include <string.h>

static int id_ok(const char *s)
{
	return it_ident_client_id_valid(s, strlen(s));
}

static int label_ok(const char *s)
{
	return it_ident_label_valid(s, strlen(s));
}

static int source_ok(const char *s)
{
	return it_ident_source_valid(s, strlen(s));
}

int main(void)
{
	char long_id[66], long_label[300];
	it_ident id;

	ok(id_ok("tab-1") && id_ok("a_B-9") && id_ok("x"), "client ids of [A-Za-z0-9_-]");
	ok(!id_ok("") && !id_ok("a b") && !id_ok("a.b") && !id_ok("ä") && !id_ok("a/b"), "anything else is refused");
	memset(long_id, 'a', 65);
	long_id[65] = '\0';
	ok(!id_ok(long_id), "65 characters is too long");
	long_id[64] = '\0';
	ok(id_ok(long_id), "64 is the most");
	ok(!it_ident_client_id_valid("ab\0c", 4), "an embedded NUL is refused");

	ok(label_ok("Anna's phone") && label_ok("Chrome add-on · Büro") && label_ok("手机"), "labels in UTF-8");
	ok(!label_ok("") && !label_ok("tab\t1") && !label_ok("a\nb") && !label_ok("\x7f"), "no control characters");
	ok(!label_ok("\xc2\x85") && !label_ok("\xc3") && !label_ok("\xc0\xaf") && !label_ok("\xed\xa0\x80"),
	   "C1 controls, truncated, overlong and surrogate sequences are refused");
	for (int i = 0; i < 64; i++)
		memcpy(long_label + 3 * i, "\xe2\x82\xac", 3); /* 64 euro signs: 192 bytes */
	long_label[192] = '\0';
	ok(label_ok(long_label), "64 characters of three bytes each");
	memcpy(long_label + 192, "x", 2);
	ok(!label_ok(long_label), "65 characters is too many");

	ok(source_ok("web") && source_ok("android_app") && source_ok("browser.addon-2"), "sources of [A-Za-z0-9_.-]");
	ok(!source_ok("") && !source_ok("a b") && !source_ok("abcdefghijklmnopqrstuvwxyz0123456"),
	   "empty, spaces or 33 characters are refused");

	/* No validator reads past n: each input placed right before an
	 * unmapped page. */
	{
		static const char *inputs[] = {"tab-1", "Anna's phone", "\xe2\x82", "web"};
		for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
			size_t n = strlen(inputs[k]);
			for (size_t cut = 0; cut <= n; cut++) {
				size_t mapped;
				unsigned char *p = guard_copy(inputs[k], cut, &mapped);
				it_ident_client_id_valid((const char *)p, cut);
				it_ident_label_valid((const char *)p, cut);
				it_ident_source_valid((const char *)p, cut);
				guard_free(p, cut, mapped);
			}
		}
		/* A read past the end would have crashed. */
		ok(1, "every prefix of every input is judged without a read past its end");
	}

	memset(&id, 0, sizeof(id));
	ok(!it_ident_announces(&id), "an anonymous connection does not announce itself");
	snprintf(id.client_id, sizeof(id.client_id), "tab-1");
	snprintf(id.label, sizeof(id.label), "My tab");
	ok(it_ident_announces(&id), "a client_id announces it");
	it_ident_set_device(&id, "dev_abcdefghijklmnop", "Anna's phone", "android_app");
	ok(strcmp(id.label, "Anna's phone") == 0 && strcmp(id.source, "android_app") == 0 &&
		   strcmp(id.device_id, "dev_abcdefghijklmnop") == 0,
	   "a token's device label and source win over the client's own");
	memset(&id, 0, sizeof(id));
	snprintf(id.label, sizeof(id.label), "Kept");
	it_ident_set_device(&id, "dev_x", "", NULL);
	ok(it_ident_announces(&id) && strcmp(id.label, "Kept") == 0,
	   "a token announces; an empty device label keeps the client's");
	return tap_done();
}

/* test_presence.c: unit tests for feed/presence: what a client may call itself, and who it is. */
#include "config.h"

#include "feed/presence.h"
#include "tap.h"

#include <string.h>

static void validators(void)
{
	char long_id[80], label[300];

	ok(it_presence_client_id_valid("tab-1_A"), "a client id of letters, digits, - and _");
	ok(!it_presence_client_id_valid(""), "an empty client id");
	ok(!it_presence_client_id_valid("tab 1"), "a space in a client id");
	ok(!it_presence_client_id_valid("tab.1"), "a dot in a client id");
	memset(long_id, 'a', 64);
	long_id[64] = '\0';
	ok(it_presence_client_id_valid(long_id), "a client id of 64 characters");
	long_id[64] = 'a';
	long_id[65] = '\0';
	ok(!it_presence_client_id_valid(long_id), "a client id of 65 characters");

	ok(it_presence_source_valid("android_app"), "a source");
	ok(it_presence_source_valid("cli-2.0"), "a source with a dot");
	ok(!it_presence_source_valid("a/b"), "a slash in a source");
	ok(!it_presence_source_valid("abcdefghijklmnopqrstuvwxyz0123456"), "a source of 33 characters");

	ok(it_presence_label_valid("Anna's phone"), "a label");
	ok(it_presence_label_valid("T\xc3\xa9l\xc3\xa9phone d'\xc3\x89lise \xf0\x9f\x93\xb1"), "a label in UTF-8");
	ok(!it_presence_label_valid(""), "an empty label");
	ok(!it_presence_label_valid("a\nb"), "a newline in a label");
	ok(!it_presence_label_valid("a\x7f"), "DEL in a label");
	ok(!it_presence_label_valid("a\xc2\x85"), "a C1 control (NEL) in a label");
	ok(!it_presence_label_valid("\xc0\xaf"), "an overlong form");
	ok(!it_presence_label_valid("\xed\xa0\x80"), "a surrogate");
	ok(!it_presence_label_valid("\xe2\x82"), "a truncated sequence");
	ok(!it_presence_label_valid("\xff"), "a byte that starts nothing");
	/* 64 characters of two bytes each pass, 65 do not. */
	for (int i = 0; i < 65; i++)
		memcpy(label + 2 * i, "\xc3\xa9", 2);
	label[128] = '\0';
	ok(it_presence_label_valid(label), "64 characters (128 bytes)");
	label[128] = '\xc3';
	label[130] = '\0';
	ok(!it_presence_label_valid(label), "65 characters");
}

static void ident(void)
{
	it_presence_ident id;

	is_int(it_presence_ident_set(&id, NULL, NULL, NULL, NULL, NULL, NULL), 0, "no client id, no device: anonymous");
	is_int(it_presence_ident_set(&id, NULL, "Tab", "web", "", NULL, NULL), 0,
	       "a label alone does not announce a connection");
	is_int(it_presence_ident_set(&id, "tab1", "Tab", "web", NULL, NULL, NULL), 1, "a client id announces it");
	is_str(id.client_id, "tab1", "its client id");
	is_str(id.label, "Tab", "its label");
	is_str(id.source, "web", "its source");
	is_str(id.device_id, "", "no device");
	is_int(it_presence_ident_set(&id, "tab1", NULL, NULL, NULL, NULL, NULL), 1, "label and source are optional");
	is_str(id.label, "", "no label");
	is_int(it_presence_ident_set(&id, NULL, "Mine", "cli", "dev_AAAAbbbbCCCCdddd", "Anna's phone", "android_app"), 1,
	       "a device announces it");
	is_str(id.client_id, "dev_AAAAbbbbCCCCdddd", "the device id is the client id");
	is_str(id.label, "Anna's phone", "the device's label wins");
	is_str(id.source, "android_app", "the device's source wins");
	is_int(it_presence_ident_set(&id, "tab2", NULL, NULL, "dev_AAAAbbbbCCCCdddd", NULL, NULL), 1,
	       "a device with a client id of its own");
	is_str(id.client_id, "tab2", "the client id given is kept");
	is_str(id.device_id, "dev_AAAAbbbbCCCCdddd", "and the device is named");
	is_int(it_presence_ident_set(&id, "tab 1", NULL, NULL, NULL, NULL, NULL), -1, "a malformed client id");
	is_str(id.client_id, "", "nothing is kept of it");
	is_int(it_presence_ident_set(&id, "tab1", "a\tb", NULL, NULL, NULL, NULL), -1, "a malformed label");
	is_int(it_presence_ident_set(&id, "tab1", NULL, "we b", NULL, NULL, NULL), -1, "a malformed source");
	is_int(it_presence_ident_set(&id, NULL, NULL, NULL, "dev_'", NULL, NULL), -1, "a malformed device id");
}

int main(void)
{
	validators();
	ident();
	return tap_done();
}

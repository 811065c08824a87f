/* test_pairing.c: unit tests for cli/pairing (pairing links and codes, the config file a pairing writes). */
#include "config.h"

#include "cli/pairing.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/it-pairing-XXXXXX";

static const char *slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return "";
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

#define CODE "itp.Pq9rS8tUvWxYz012345ABC"

int main(void)
{
	char server[256], code[64], path[4200], err[600], label[72];
	struct stat st;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return 1;

	/* Links and codes. */
	is_int(it_pairing_parse(CODE, server, sizeof(server), code, sizeof(code)), 0, "a bare code");
	ok(server[0] == '\0' && strcmp(code, CODE) == 0, "a bare code has no server");
	is_int(it_pairing_parse("https://photos.example/app/#pair=" CODE, server, sizeof(server), code, sizeof(code)),
	       0, "the page's pairing link");
	is_str(server, "https://photos.example/app", "the server is the link without fragment and slash");
	is_str(code, CODE, "the code is the fragment's pair value");
	it_pairing_parse("http://h:8080/index.html?x=1#lang=de&pair=" CODE "&y", server, sizeof(server), code,
			 sizeof(code));
	is_str(server, "http://h:8080", "a page name and a query are dropped; other fragment keys skipped");
	is_str(code, CODE, "the code among other fragment keys");
	it_pairing_parse("http://h/a.html/b/#pair=" CODE, server, sizeof(server), code, sizeof(code));
	is_str(server, "http://h/a.html/b", "only a last segment is a page name");
	is_int(it_pairing_parse("http://h/#s=AbCdEf0123456789_-ghijklmnopqrst", server, sizeof(server), code,
				sizeof(code)),
	       -1, "a link with a session id, not a code");
	is_int(it_pairing_parse("http://h/#pair=itp.short", server, sizeof(server), code, sizeof(code)), -1,
	       "a code of the wrong form");
	is_int(it_pairing_parse("ftp://h/#pair=" CODE, server, sizeof(server), code, sizeof(code)), -1,
	       "another scheme");
	is_int(it_pairing_parse("http://#pair=" CODE, server, sizeof(server), code, sizeof(code)), -1, "no host");
	is_int(it_pairing_parse("itp.Pq9rS8tUvWxYz012345ABC ", server, sizeof(server), code, sizeof(code)), -1,
	       "a code with a trailing space is not taken as a link");
	is_int(it_pairing_parse("http://h/#pair=" CODE, server, 4, code, sizeof(code)), -1,
	       "a server too long for the buffer");

	/* The label. */
	it_pairing_label("imagetools-upload", label, sizeof(label));
	ok(strncmp(label, "imagetools-upload on ", 21) == 0 && strlen(label) <= 64, "label: %s", label);

	/* The config file: written whole with mode 0600, other lines kept. */
	snprintf(path, sizeof(path), "%s/new/imagetools/cli.conf", dir);
	is_int(it_pairing_save(path, "http://h:8080", "itk.one", err, sizeof(err)), 0, "a new file in new directories");
	is_str(slurp(path), "server = \"http://h:8080\"\ntoken = \"itk.one\"\n", "server and token");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "mode 0600");
	f = fopen(path, "w");
	fputs("# mine\nserver = http://old\n  session = OLD\nsource = android_app\ntoken=itk.old\nsessions_x = 1", f);
	fclose(f);
	chmod(path, 0644);
	is_int(it_pairing_save(path, "https://new", "itk.two", err, sizeof(err)), 0, "over an existing file");
	is_str(slurp(path),
	       "# mine\nsource = android_app\nsessions_x = 1\nserver = \"https://new\"\ntoken = \"itk.two\"\n",
	       "server, session and token lines replaced; every other line kept");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "an existing 0644 file becomes 0600");
	is_int(it_pairing_save(path, "http://h\"x", "itk.three", err, sizeof(err)), -1, "a quote in the server");
	is_int(it_pairing_save("/proc/nope/cli.conf", "http://h", "itk.x", err, sizeof(err)), -1,
	       "an unwritable place");
	ok(strstr(err, "/proc/nope") != NULL, "is named: %s", err);

	unlink(path);
	snprintf(path, sizeof(path), "%s/new/imagetools", dir);
	rmdir(path);
	snprintf(path, sizeof(path), "%s/new", dir);
	rmdir(path);
	rmdir(dir);
	return tap_done();
}

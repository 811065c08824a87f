/* test_filename.c: unit tests for image/filename: display names, UTF-8 repair, Content-Disposition. */
#include "config.h"

#include "image/filename.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

static const char *san(const char *in, const char *ext)
{
	static char out[256];
	it_filename_sanitize(in, ext, out, sizeof(out));
	return out;
}

int main(void)
{
	char out[2048], big[1200];

	is_str(san("photo.jpg", "jpg"), "photo.jpg", "a plain name is kept");
	is_str(san("../../etc/passwd", NULL), "passwd", "path components are dropped");
	is_str(san("C:\\Users\\me\\x.gif", "gif"), "x.gif", "Windows paths too");
	is_str(san("a\r\nb\tc.png", NULL), "a b c.png", "CR, LF and tab become spaces");
	is_str(san("a\x01\x7f"
		   "b.png",
		   NULL),
	       "ab.png", "control characters are removed");
	is_str(san("evil\xe2\x80\xaegnp.exe", NULL), "evilgnp.exe", "bidi overrides are removed");
	is_str(san("<script>alert(1)</script>.png", NULL), "script>.png",
	       "the last '/' still starts the name; the rest is kept for display (escaped by renderers)");
	is_str(san("\"quoted\" 'name'.jpg", NULL), "\"quoted\" 'name'.jpg", "quotes are kept for display");
	is_str(san("..", "jpg"), "image.jpg", "'..' becomes a default name");
	is_str(san("  .hidden. ", NULL), "hidden", "leading and trailing dots and spaces are trimmed");
	is_str(san("", "webp"), "image.webp", "an empty name becomes image.<ext>");
	is_str(san("dir/", NULL), "image", "a trailing separator leaves nothing: the default");
	is_str(san("caf\xc3\xa9 \xe2\x82\xac.jpg", NULL), "caf\xc3\xa9 \xe2\x82\xac.jpg", "UTF-8 is kept");
	is_str(san("bad\xff\xfe.jpg", NULL), "bad\xef\xbf\xbd\xef\xbf\xbd.jpg", "invalid UTF-8 becomes U+FFFD");

	/* The extension follows the content. */
	is_str(san("x.html", "jpg"), "x.jpg", "a wrong extension is replaced by the sniffed one");
	is_str(san("x.HTM", "png"), "x.png", "whatever its case");
	is_str(san("photo.JPEG", "jpg"), "photo.JPEG", "a matching extension is kept as written");
	is_str(san("scan.jfif", "jpg"), "scan.jfif", "any extension of the type matches");
	is_str(san("photo.jpg", "png"), "photo.png", "an image extension of another type is replaced too");
	is_str(san("scan", "jpg"), "scan.jpg", "a name without an extension gets one");
	is_str(san("a.jpg.html", "jpg"), "a.jpg", "a.jpg.html: the wrong last extension goes, the right one stays");
	is_str(san("a.png.html", "jpg"), "a.png.jpg", "a.png.html: the wrong last one is replaced");
	is_str(san("a.html.jpg", "jpg"), "a.html.jpg", "a.html.jpg: only the last extension counts, kept");
	is_str(san("evil.svg", "webp"), "evil.webp", "svg becomes webp");
	is_str(san("x.exe ", "gif"), "x.gif", "trailing spaces are trimmed before the extension is judged");
	is_str(san("x.html.", "jpg"), "x.jpg", "a trailing dot does not hide the extension");
	is_str(san("v1.final draft", "jpg"), "v1.final draft.jpg", "text after a dot that is no extension is kept");
	is_str(san("holiday.2024", "jpg"), "holiday.2024.jpg", "digits only are no extension (numbered names)");
	is_str(san("clip.mp4", "gif"), "clip.gif", "letters and digits are an extension");
	is_str(san("x.verylongext", "jpg"), "x.verylongext.jpg", "more than 8 characters is not an extension");
	is_str(san(".html", "jpg"), "html.jpg", "a hidden-file name loses its dot and gets the extension");
	is_str(san("..", "jpg"), "image.jpg", "nothing left: image.<ext>");
	is_str(san("a .html", "png"), "a.png", "spaces before the replaced extension are trimmed");
	is_str(san("caf\xc3\xa9.html", "jpg"), "caf\xc3\xa9.jpg", "UTF-8 stems are kept");
	is_str(san("x.jpg:evil.html", "jpg"), "x.jpg:evil.jpg", "the last extension decides, whatever precedes it");
	{
		char small[8];
		it_filename_sanitize("abcdefghij.html", "webp", small, sizeof(small));
		is_str(small, "ab.webp", "a cut keeps the whole extension");
		it_filename_sanitize("abc.html", "webp", small, 5);
		is_str(small, "", "no room for the extension: empty rather than wrong");
	}
	is_str(it_filename_ext_for_type("image/jpeg"), "jpg", "ext for image/jpeg");
	is_str(it_filename_ext_for_type("image/webp"), "webp", "ext for image/webp");
	is_str(it_filename_ext_for_type("image/heic"), "heic", "ext for image/heic");
	is_str(it_filename_ext_for_type("image/avif"), "avif", "ext for image/avif");
	{
		char nm[64];
		it_filename_sanitize("IMG_0001.HEIC", "heic", nm, sizeof(nm));
		is_str(nm, "IMG_0001.HEIC", "a HEIC keeps its .HEIC as written");
		it_filename_sanitize("IMG_0001.HEIC", "jpg", nm, sizeof(nm));
		is_str(nm, "IMG_0001.jpg", "converted to JPEG it becomes .jpg");
		it_filename_sanitize("photo.avif", "avif", nm, sizeof(nm));
		is_str(nm, "photo.avif", "an AVIF keeps .avif");
	}
	ok(it_filename_ext_for_type("text/html") == NULL && it_filename_ext_for_type(NULL) == NULL,
	   "no ext for other types");

	memset(big, 'a', 1000);
	strcpy(big + 1000, ".jpeg");
	{
		const char *s = san(big, NULL);
		is_int(strlen(s), 255, "long names are cut to 255 bytes");
		ok(strcmp(s + 250, ".jpeg") == 0, "the extension survives the cut");
		s = san(big, "jpg");
		is_int(strlen(s), 255, "with the sniffed extension: cut to 255 bytes");
		ok(strcmp(s + 250, ".jpeg") == 0, "the matching extension survives the cut");
		strcpy(big + 1000, ".html");
		s = san(big, "png");
		ok(strlen(s) == 255 && strcmp(s + 251, ".png") == 0, "a long name with a wrong extension: cut, .png");
	}
	memset(big, 0, sizeof(big));
	for (int i = 0; i < 300; i++)
		memcpy(big + 3 * i, "\xe2\x82\xac", 3);
	{
		const char *s = san(big, NULL);
		ok(strlen(s) <= 255 && strlen(s) % 3 == 0, "a cut never splits a character");
	}

	it_filename_utf8("ok\xc0\xaf", out, sizeof(out));
	is_str(out, "ok\xef\xbf\xbd\xef\xbf\xbd", "overlong encodings are replaced");
	it_filename_utf8("\xed\xa0\x80", out, sizeof(out));
	is_str(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "surrogates are replaced");

	is_int(it_filename_disposition("caf\xc3\xa9 \"1\".jpg", out, sizeof(out)), 0, "disposition fits");
	is_str(out, "attachment; filename=\"caf_ _1_.jpg\"; filename*=UTF-8''caf%C3%A9%20%221%22.jpg",
	       "ASCII fallback and RFC 8187 filename*");
	is_int(it_filename_disposition("x.jpg", out, 20), -ENOSPC, "too small an output is refused");
	return tap_done();
}

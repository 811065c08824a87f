/* scope.c: scope names and the forms of device fields (scope.h). */
#include "config.h"

#include "common/scope.h"

#include <string.h>

unsigned it_scope_parse(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "upload") == 0)
		return IT_SCOPE_UPLOAD;
	if (strcmp(s, "view") == 0)
		return IT_SCOPE_VIEW;
	if (strcmp(s, "full") == 0)
		return IT_SCOPE_FULL;
	return 0;
}

const char *it_scope_name(unsigned scope)
{
	switch (scope) {
	case IT_SCOPE_UPLOAD: return "upload";
	case IT_SCOPE_VIEW: return "view";
	case IT_SCOPE_FULL: return "full";
	default: return NULL;
	}
}

const char *it_scope_needed(unsigned need)
{
	need &= IT_SCOPE_FULL;
	if (need == IT_SCOPE_UPLOAD)
		return "upload";
	if (need == IT_SCOPE_VIEW)
		return "view";
	/* Anything with manage, or upload and view together: only full has it. */
	return "full";
}

static int b64url(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int it_scope_device_id_valid(const char *s)
{
	if (s == NULL || strncmp(s, "dev_", 4) != 0 || strlen(s) != 20)
		return 0;
	for (int i = 4; i < 20; i++)
		if (!b64url((unsigned char)s[i]))
			return 0;
	return 1;
}

int it_scope_label_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	int chars = 0;

	if (s == NULL)
		return 0;
	while (*p) {
		unsigned cp;
		int n;

		if (*p < 0x80) {
			cp = *p;
			n = 0;
		} else if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			n = 1;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			n = 2;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			n = 3;
		} else {
			return 0;
		}
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (*p & 0x3f);
		}
		/* Overlong forms, surrogates and values past U+10FFFF are not
		 * UTF-8 (RFC 3629); PostgreSQL would refuse them anyway. */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))
			return 0;
		if (++chars > 64)
			return 0;
	}
	return chars > 0;
}

int it_scope_source_valid(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!b64url(c) && c != '.')
			return 0;
	}
	return 1;
}

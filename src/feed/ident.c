/* ident.c: validators for what a streaming client says about itself (ident.h). */
#include "config.h"

#include "feed/ident.h"

#include <stdio.h>
#include <string.h>

static int in_set(const char *s, size_t n, size_t max, const char *extra)
{
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      (c != '\0' && strchr(extra, c) != NULL)))
			return 0;
	}
	return 1;
}

int it_ident_client_id_valid(const char *s, size_t n)
{
	return in_set(s, n, 64, "_-");
}

int it_ident_source_valid(const char *s, size_t n)
{
	return in_set(s, n, 32, "_.-");
}

int it_ident_label_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	if (n > 64)
		return 0;
	/* Well-formed UTF-8 (no overlongs, surrogates or code points past
	 * U+10FFFF) without C0, DEL or C1 controls: a label is shown to
	 * people and written into JSON. */
	while (i < n) {
		unsigned c = p[i], cp, need, min;
		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07, min = 0x10000;
		else
			return 0;
		if (n - i - 1 < need)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
			return 0;
		i += need + 1;
	}
	return 1;
}

void it_ident_set_device(it_ident *id, const char *device_id, const char *label, const char *source)
{
	snprintf(id->device_id, sizeof(id->device_id), "%s", device_id ? device_id : "");
	if (label && *label)
		snprintf(id->label, sizeof(id->label), "%s", label);
	if (source && *source)
		snprintf(id->source, sizeof(id->source), "%s", source);
}

int it_ident_announces(const it_ident *id)
{
	return id->client_id[0] != '\0' || id->device_id[0] != '\0';
}

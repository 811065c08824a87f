/* ident.c: validators for what a streaming client says about itself (ident.h). */
#include "config.h"

#include "feed/ident.h"

#include "common/scope.h"

#include <stdio.h>
#include <string.h>

/* 1 to max of [A-Za-z0-9] and the characters of extra. */
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

/* n bytes at s, at most size - 1 of them and no NUL, that valid accepts as
 * a C string; size is at most IT_DEVICE_LABEL_SIZE. */
static int str_valid(const char *s, size_t n, size_t size, int (*valid)(const char *))
{
	char b[IT_DEVICE_LABEL_SIZE];

	if (n == 0 || n >= size || n >= sizeof(b) || memchr(s, '\0', n) != NULL)
		return 0;
	memcpy(b, s, n);
	b[n] = '\0';
	return valid(b);
}

int it_ident_source_valid(const char *s, size_t n)
{
	return str_valid(s, n, IT_DEVICE_SOURCE_SIZE, it_scope_source_valid);
}

int it_ident_label_valid(const char *s, size_t n)
{
	return str_valid(s, n, IT_DEVICE_LABEL_SIZE, it_scope_label_valid);
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

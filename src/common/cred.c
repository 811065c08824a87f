/* cred.c: the session credential's two forms (cred.h). */
#include "config.h"

#include "common/cred.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

static int blank(char c)
{
	return c == ' ' || c == '\t';
}

int it_cred_bearer(const char *value, size_t len, const char **tok, size_t *toklen)
{
	while (len > 0 && blank(*value))
		value++, len--;
	if (len < 7 || strncasecmp(value, "Bearer", 6) != 0 || !blank(value[6]))
		return 0;
	value += 6;
	len -= 6;
	while (len > 0 && blank(*value))
		value++, len--;
	while (len > 0 && blank(value[len - 1]))
		len--;
	*tok = value;
	*toklen = len;
	return 1;
}

int it_cred_copy(const char *p, size_t n, char *out, size_t outlen)
{
	if (n == 0 || n >= outlen || n > INT_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return -EINVAL;
	memmove(out, p, n);
	out[n] = '\0';
	return (int)n;
}

/* host.c: the Host allow-list (server_names): whether a Host header names this site. */
#include "config.h"

#include "common/host.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

/* Only the shape is checked: a name with odd characters simply matches no
 * entry. */
int it_host_split(const char *s, size_t n, it_hostport *hp)
{
	const char *end = s + n, *p;

	memset(hp, 0, sizeof(*hp));
	if (n == 0)
		return -EINVAL;
	if (s[0] == '[') {
		p = memchr(s, ']', n);
		if (p == NULL || p == s + 1)
			return -EINVAL;
		hp->name = s;
		hp->name_len = (size_t)(p - s) + 1;
		p++;
	} else {
		p = memchr(s, ':', n);
		if (p == NULL)
			p = end;
		hp->name = s;
		hp->name_len = (size_t)(p - s);
		if (hp->name_len == 0)
			return -EINVAL;
	}
	if (p < end) {
		size_t i;
		if (*p != ':')
			return -EINVAL;
		hp->port = p + 1;
		hp->port_len = (size_t)(end - p - 1);
		if (hp->port_len == 0 || hp->port_len > 5)
			return -EINVAL;
		for (i = 0; i < hp->port_len; i++)
			if (hp->port[i] < '0' || hp->port[i] > '9')
				return -EINVAL;
	}
	/* User info, paths, queries, spaces and control characters have no
	 * place in a Host header. */
	for (p = hp->name; p < hp->name + hp->name_len; p++)
		if (*p == '@' || *p == '/' || *p == '?' || *p == '#' || *p == '\\' || (unsigned char)*p <= ' ' ||
		    *p == 0x7f)
			return -EINVAL;
	return 0;
}

static int port_is(const it_hostport *hp, const char *port)
{
	return hp->port_len == strlen(port) && memcmp(hp->port, port, hp->port_len) == 0;
}

static int entry_matches(const it_hostport *e, const it_hostport *h)
{
	if (e->name_len != h->name_len || strncasecmp(e->name, h->name, e->name_len) != 0)
		return 0;
	if (e->port == NULL)
		return 1;
	if (h->port == NULL)
		return port_is(e, "80") || port_is(e, "443");
	return e->port_len == h->port_len && memcmp(e->port, h->port, e->port_len) == 0;
}

int it_host_listed(const char *list, const char *host, size_t hlen)
{
	const char *p = list;
	it_hostport h;

	if (list == NULL || strspn(list, " \t") == strlen(list))
		return 1;
	if (host == NULL || it_host_split(host, hlen, &h) < 0)
		return 0;
	if (h.name[0] != '[' && h.name_len > 1 && h.name[h.name_len - 1] == '.')
		h.name_len--;
	while (*p) {
		it_hostport e;
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		n = strcspn(p, " \t");
		if (n && it_host_split(p, n, &e) == 0 && entry_matches(&e, &h))
			return 1;
		p += n;
	}
	return 0;
}

/* host.h: the Host allow-list (server_names): whether a Host header names this site. */
#ifndef IT_COMMON_HOST_H
#define IT_COMMON_HOST_H

#include <stddef.h>

/* A Host value (or the host[:port] part of an origin) split into its name and
 * port. Both point into the string given to it_host_split. */
typedef struct it_hostport {
	const char *name; /* a reg-name, an IPv4 address or "[IPv6]" (brackets kept) */
	size_t name_len;
	const char *port; /* 1 to 5 digits, or NULL when there is no port */
	size_t port_len;
} it_hostport;

/* Splits s (n bytes, not necessarily NUL-terminated) into *hp. Returns 0, or
 * -EINVAL when s is not host[:port] with host a non-empty reg-name, an IPv4
 * address or a bracketed IPv6 address: user info, a path, a query, a
 * fragment, a backslash, spaces or control characters, an unbracketed IPv6
 * address or a port that is not 1 to 5 digits. Only the shape is checked.
 * Never reads outside s. */
int it_host_split(const char *s, size_t n, it_hostport *hp);

/* Returns 1 when host (a Host header value of hlen bytes, not necessarily
 * NUL-terminated; NULL allowed) is one of the names in list, else 0.
 *
 * list is space-separated entries, each a host name, an IPv4 address or a
 * bracketed IPv6 address, optionally followed by ":port". NULL or an empty
 * list allows every host (1, whatever host is). Otherwise:
 * - names compare ASCII case-insensitively, and a Host name ending in one
 *   dot (the absolute form) is the same name without it;
 * - an entry without a port matches the name with any port or none;
 * - an entry with a port matches the name with that port, and also without
 *   one when the port is 80 or 443 (a browser leaves out its scheme's
 *   default port, and behind a TLS proxy the scheme is unknown here);
 * - a missing, empty or malformed Host (user info, a path, an unbracketed
 *   IPv6 address, a port that is not 1 to 5 digits) matches nothing. */
int it_host_listed(const char *list, const char *host, size_t hlen);

#endif

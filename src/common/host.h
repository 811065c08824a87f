/* host.h: the Host allow-list (server_names): whether a Host header names this site. */
#ifndef IT_COMMON_HOST_H
#define IT_COMMON_HOST_H

#include <stddef.h>

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

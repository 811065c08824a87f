/* scope.h: what a credential may do (scopes), and the principal a request's credential resolves to. */
#ifndef IT_COMMON_SCOPE_H
#define IT_COMMON_SCOPE_H

#include <stdint.h>

/* Scope bits. A session id holds them all; a token holds those of the scope
 * its owner gave it: "upload" = IT_SCOPE_UPLOAD (add images), "view" =
 * IT_SCOPE_VIEW (read images, files, operations, events), "full" =
 * IT_SCOPE_FULL (both, and manage: rename, delete, operations, tokens,
 * pairing codes, devices, the session itself). */
#define IT_SCOPE_UPLOAD 1u
#define IT_SCOPE_VIEW 2u
#define IT_SCOPE_MANAGE 4u
#define IT_SCOPE_FULL 7u

/* Room for a device id ("dev_" and 16 base64url characters) with its NUL. */
#define IT_DEVICE_ID_SIZE 24
/* A device label: 1 to 64 characters of UTF-8, so up to 256 bytes. */
#define IT_DEVICE_LABEL_SIZE 257
/* A device source: 1 to 32 of [A-Za-z0-9_.-]. */
#define IT_DEVICE_SOURCE_SIZE 33

/* Who a request speaks for: the session its credential opens, and what it
 * may do there. Plain data, copied freely. */
typedef struct it_principal {
	char session_id[65];
	char device_id[IT_DEVICE_ID_SIZE]; /* "" when the credential is the session id */
	char label[IT_DEVICE_LABEL_SIZE];  /* the device's; "" for the session id */
	char source[IT_DEVICE_SOURCE_SIZE];
	unsigned scope; /* IT_SCOPE_* bits */
	int64_t until;	/* epoch seconds: the earlier of the session's and the token's expiry; 0: not asked */
} it_principal;

/* The bits of "upload", "view" or "full" (s may be NULL), or 0 for anything
 * else. */
unsigned it_scope_parse(const char *s);

/* The name of a scope that is exactly one of the three ("upload", "view",
 * "full"), or NULL. */
const char *it_scope_name(unsigned scope);

/* The smallest named scope that holds every bit of need: "upload", "view"
 * or "full" (for WWW-Authenticate's scope= and problem texts). Never NULL. */
const char *it_scope_needed(unsigned need);

/* 1 when s is a device id's form ("dev_" and 16 base64url characters). */
int it_scope_device_id_valid(const char *s);

/* 1 when s (NUL-terminated) is a usable device label: 1 to 64 characters of
 * valid UTF-8 without control characters (C0, DEL, C1). */
int it_scope_label_valid(const char *s);

/* 1 when s is a usable device source: 1 to 32 of [A-Za-z0-9_.-]. */
int it_scope_source_valid(const char *s);

#endif

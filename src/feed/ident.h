/* ident.h: who is behind a streaming connection, as it says (client_id, label, source) and as its token says
 * (docs/feed.md).
 *
 * Every transport (the hub's SSE and long-poll, the bridge's WebSocket, SSE
 * and long-poll) keeps one it_ident per connection that announces itself, so
 * that presence can show it: a connection announces itself when it presents
 * a client_id or authenticates with a token. The fields come from query
 * parameters (client_id, client_label, client_source) or from a WebSocket
 * auth message; a token's device label and source win over the client's own.
 *
 * No allocation, no state: plain validators and a struct the transport owns. */
#ifndef IT_FEED_IDENT_H
#define IT_FEED_IDENT_H

#include "common/scope.h"

#include <stddef.h>

typedef struct it_ident {
	char client_id[65];		    /* 1-64 of [A-Za-z0-9_-]; "" when the client gave none */
	char label[IT_DEVICE_LABEL_SIZE];   /* 1-64 characters of UTF-8, no control characters; may be "" */
	char source[IT_DEVICE_SOURCE_SIZE]; /* 1-32 of [A-Za-z0-9_.-]; may be "" */
	char device_id[IT_DEVICE_ID_SIZE];  /* the token's device; "" for a session id */
	char session_id[72];		    /* set by the transport when the feed admits it */
} it_ident;

/* Validators for n bytes at s (not necessarily NUL-terminated), by the rules
 * a device's label and source follow (common/scope.h). Each returns 1 when
 * the value is acceptable, else 0. */
int it_ident_client_id_valid(const char *s, size_t n);
int it_ident_label_valid(const char *s, size_t n);
int it_ident_source_valid(const char *s, size_t n);

/* Stores the token's device (device_id, label, source: NUL-terminated, any
 * may be NULL) in id; a non-empty label or source replaces the client's. */
void it_ident_set_device(it_ident *id, const char *device_id, const char *label, const char *source);

/* Whether the connection shows itself in presence: it gave a client_id or
 * came with a token. Anonymous connections (session id, no client_id) do
 * not, so that clients that know nothing of presence see no new events. */
int it_ident_announces(const it_ident *id);

#endif

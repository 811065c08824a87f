/* secrets.h: server secrets shared through the database, and this process's URL signer. */
#ifndef IT_DB_SECRETS_H
#define IT_DB_SECRETS_H

#include "common/config.h"
#include "common/urlsign.h"

#include <libpq-fe.h>
#include <stddef.h>

/* Longest secret kept, in bytes. */
#define IT_SECRET_MAX 64

/* Reads the secret called name into out (len bytes, 32..IT_SECRET_MAX),
 * first storing len fresh random bytes under that name when there is none
 * yet. Every process and node gets the same bytes: the one stored first
 * wins. Must be called outside a transaction (the new secret must commit
 * on its own, whatever the caller's work does next). Returns 0, or 503
 * when the database cannot be reached, the connection is inside a
 * transaction, or the stored secret has another length. */
int it_secrets_get(PGconn **connp, const char *name, size_t len, unsigned char *out);

/* The signer of image URLs for this process: the key from
 * cfg->url_signing_key, or when that is empty the "url_signing" secret of
 * the database (made on first use), with cfg->signed_url_ttl. Loaded once
 * per process and cached; thread-safe. Call it before opening a
 * transaction on *connp. Returns a pointer to the process-wide signer (do
 * not free it), or NULL when the key cannot be had (configured key
 * malformed: logged; database unreachable: the caller answers 503 and a
 * later call tries again). */
const it_urlsign *it_secrets_url_signer(PGconn **connp, const it_config *cfg);

#endif

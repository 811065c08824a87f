/* devices.h: scoped tokens, pairing codes and devices in PostgreSQL (sql/009_devices.sql), for request threads. */
#ifndef IT_DB_DEVICES_H
#define IT_DB_DEVICES_H

#include "common/scope.h"
#include "common/token.h"

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stdint.h>

/* Live (unrevoked, unexpired) devices one session may have (and ten times
 * as many rows with the revoked and expired ones of the last day), and
 * pairing codes waiting to be used: a full-scope caller cannot grow the
 * tables without bound. */
#define IT_DEVICES_MAX 100
#define IT_PAIRINGS_MAX 20

/* Every function answers 0 on success or an HTTP status the caller passes
 * on; 503 always means the database could not answer (logged). None takes
 * ownership of its arguments; strings are NUL-terminated. */

/* Resolves cred, a session id or a token of valid form (it_token_valid),
 * into out: 0 when it opens a live session; 401 when a token is unknown,
 * expired or revoked (not saying which); 404 when the session is unknown or
 * has expired. The stored hash of a token's row is compared again with
 * CRYPTO_memcmp, so that whatever the index lookup leaks in time, no
 * answer depends on a partial match. Refreshes the device's last_seen_at at
 * most every 30 s. *connp must not be inside a transaction that lasts: the
 * refresh takes the device row's lock until commit. */
int it_devices_check(PGconn **connp, const char *cred, it_principal *out);

/* it_devices_check behind a limit on failures: when the rate-limit bucket
 * of kind and subject (db/ratelimit.h; "auth-fail" and a client address)
 * holds no token, answers 429 with *retry_after (whole seconds, at least 1)
 * before the credential is looked at; otherwise as it_devices_check. Takes
 * nothing from the bucket (the caller takes on a failure). One round trip.
 * per_minute <= 0: no limit. */
int it_devices_check_limited(PGconn **connp, const char *cred, const char *kind, const char *subject,
			     int64_t per_minute, it_principal *out, int64_t *retry_after);

/* The same check in three steps, for callers that send the statement
 * themselves (the bridge and the feed, asynchronously):
 * it_devices_check_params fills hash (IT_TOKEN_HASH_HEX_SIZE bytes) and the
 * two text parameters of IT_DEVICES_CHECK_SQL for cred, or answers 401 for
 * a malformed token (nothing to send); it_devices_check_result reads the
 * statement's result (NULL allowed: 503) with the same hash, into out, with
 * the answers of it_devices_check. */
#define IT_DEVICES_CHECK_SQL                                                                  \
	"SELECT status, session_id, scope, device_id, label, source, until_epoch, token_hash" \
	" FROM it_credential_check($1, $2::bytea)"
int it_devices_check_params(const char *cred, char *hash, const char *params[2]);
int it_devices_check_result(const PGresult *res, const char *hash, it_principal *out);

/* 0 when device_id's token still works, 401 when it was revoked or has
 * expired (since the request began), 503. With lock, inside the caller's
 * transaction on conn just before it commits what the device sent: the row
 * is then held FOR SHARE until the transaction ends, so a revocation either
 * committed before (and the caller rolls back) or waits for the commit,
 * which comes at once. */
int it_devices_live(PGconn *conn, const char *device_id, int lock);

/* Makes a token of scope (IT_SCOPE_UPLOAD, _VIEW or _FULL) for session with
 * label and source (valid forms, see common/scope.h), living ttl seconds (0:
 * as long as the session), and appends device.paired. Writes the token,
 * shown this once, to token (IT_TOKEN_LEN + 1 bytes) and the device's JSON
 * (device_id, label, source, scope, created_at, expires_at) to *device
 * (json_object_put it). Returns 0, 404 (session unknown or expired), 409
 * (no room: IT_DEVICES_MAX live devices already) or 503. */
int it_devices_mint(PGconn **connp, const char *session, unsigned scope, const char *label, const char *source,
		    int64_t ttl, char *token, json_object **device);

/* Makes a single-use pairing code of session that lives ttl seconds and
 * carries scope, label (NULL: none) and the lifetime token_ttl (0: the
 * session's) of the token its exchange makes. Writes the code to code
 * (IT_PAIRING_LEN + 1 bytes) and its expiry (it_ts form) to expires_at (40
 * bytes). Returns 0, 404, 409 (IT_PAIRINGS_MAX codes waiting) or 503. */
int it_devices_pairing_create(PGconn **connp, const char *session, unsigned scope, const char *label, int64_t token_ttl,
			      int64_t ttl, char *code, char *expires_at);

/* Exchanges code (a pairing code of valid form) for a new device labelled
 * label (NULL: the owner's choice) with source. Writes the token to token
 * (IT_TOKEN_LEN + 1 bytes), the device's JSON to *device and its scope
 * bits to *scope. Returns 0; 401 unknown code; 410 with *reason "used" or
 * "expired"; 409 when the session has no room for another device (the code
 * stays usable); 503. */
int it_devices_pair(PGconn **connp, const char *code, const char *label, const char *source, char *token,
		    json_object **device, unsigned *scope, const char **reason);

/* The session's live devices, newest first, as a JSON array (*out,
 * json_object_put it) of device objects with last_seen_at. 0 or 503. */
int it_devices_list(PGconn **connp, const char *session, json_object **out);

/* Revokes device_id of session (it_device_revoke: event, NOTIFY). 0, 404
 * (no such live device in this session) or 503. */
int it_devices_revoke(PGconn **connp, const char *session, const char *device_id);

#endif

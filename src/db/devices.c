/* devices.c: scoped tokens, pairing codes and devices in PostgreSQL (devices.h). */
#include "config.h"

#include "db/devices.h"

#include "common/log.h"
#include "db/db.h"
#include "db/ratelimit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src);
}

/* The JSON text of column col, parsed; NULL when it is NULL or unparsable. */
static json_object *json_col(const PGresult *res, int col)
{
	if (PQgetisnull(res, 0, col))
		return NULL;
	return json_tokener_parse(PQgetvalue(res, 0, col));
}

/* Runs one of the SQL functions that answer an HTTP status in their first
 * column (it_device_mint, it_pairing_create, it_pairing_exchange); not
 * repeated after a reconnect, as the first try may have committed. Sets *rc
 * to that status, or to 503 and returns NULL when there is no answer. */
static PGresult *status_row(PGconn **connp, const char *what, const char *sql, int nparams, const char *const *params,
			    int *rc)
{
	PGresult *res = it_db_exec_row(connp, 0, what, sql, nparams, params);

	*rc = res != NULL ? atoi(PQgetvalue(res, 0, 0)) : 503;
	return res;
}

/* A new device token and device id. Returns 0, or 503 when the random
 * source failed. */
static int new_device(char *token, char *id)
{
	if (it_token_new(token) < 0 || it_token_new_device_id(id) < 0) {
		it_log_error("random source failed: refusing to make a token");
		return 503;
	}
	return 0;
}

int it_devices_check_params(const char *cred, char *hash, const char *params[2])
{
	params[0] = params[1] = NULL;
	hash[0] = '\0';
	if (it_token_is(cred)) {
		if (!it_token_valid(cred))
			return 401;
		it_token_hash_text(cred, hash);
		params[1] = hash;
	} else {
		params[0] = cred;
	}
	return 0;
}

int it_devices_check_result(const PGresult *res, const char *hash, it_principal *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1 || PQnfields(res) < 8) {
		if (res)
			it_log_warn("credential check failed: %s", PQresultErrorMessage(res));
		return 503;
	}
	rc = atoi(PQgetvalue(res, 0, 0));
	if (rc != 200)
		return rc == 401 || rc == 404 ? rc : 503;
	/* The index found the row by hash; the answer must not rest on how
	 * the lookup compared, so the hash is compared again in full. */
	if (hash[0] && !it_token_equal(PQgetvalue(res, 0, 7), hash))
		return 401;
	copy(out->session_id, sizeof(out->session_id), PQgetvalue(res, 0, 1));
	out->scope = it_scope_parse(PQgetvalue(res, 0, 2));
	copy(out->device_id, sizeof(out->device_id), PQgetvalue(res, 0, 3));
	copy(out->label, sizeof(out->label), PQgetvalue(res, 0, 4));
	copy(out->source, sizeof(out->source), PQgetvalue(res, 0, 5));
	out->until = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
	/* The table's CHECK makes an unknown scope impossible. */
	return out->scope ? 0 : 503;
}

/* IT_DEVICES_CHECK_SQL behind a limit on failures: $3, $4 and $5 are the
 * bucket's key, capacity and rate, and a ninth column says how long to wait. */
#define CHECK_LIMITED_SQL                                                                                  \
	"SELECT status, session_id, scope, device_id, label, source, until_epoch, token_hash, retry_after" \
	" FROM it_credential_check_limited($1, $2::bytea, $3, $4, $5)"

/* The check of it_devices_check, behind the failure limit of bucket b when
 * b is not NULL (it_devices_check_limited). */
static int check(PGconn **connp, const char *cred, const it_ratelimit_bucket *b, it_principal *out,
		 int64_t *retry_after)
{
	char hash[IT_TOKEN_HASH_HEX_SIZE];
	const char *params[5];
	PGresult *res;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = it_devices_check_params(cred, hash, params)) != 0)
		return rc;
	/* Safe to repeat after a reconnect: a read (of the bucket too), and a
	 * refresh of last_seen_at that means the same done twice. */
	if (b == NULL) {
		res = it_db_exec(connp, 1, IT_DEVICES_CHECK_SQL, 2, params);
	} else {
		params[2] = b->key;
		params[3] = b->cap;
		params[4] = b->rate;
		res = it_db_exec(connp, 1, CHECK_LIMITED_SQL, 5, params);
	}
	if (b != NULL && it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) == 429) {
		*retry_after = it_ratelimit_retry_after(strtod(PQgetvalue(res, 0, 8), NULL));
		rc = 429;
	} else {
		rc = it_devices_check_result(res, hash, out);
	}
	PQclear(res);
	return rc;
}

int it_devices_check(PGconn **connp, const char *cred, it_principal *out)
{
	return check(connp, cred, NULL, out, NULL);
}

int it_devices_check_limited(PGconn **connp, const char *cred, const char *kind, const char *subject,
			     int64_t per_minute, it_principal *out, int64_t *retry_after)
{
	it_ratelimit_bucket b;

	*retry_after = 0;
	it_ratelimit_bucket_init(&b, kind, subject, per_minute);
	return check(connp, cred, &b, out, retry_after);
}

int it_devices_live(PGconn *conn, const char *device_id, int lock)
{
	const char *params[2] = {device_id, lock ? "t" : "f"};
	PGresult *res = it_db_exec_row(&conn, 0, "device check", "SELECT it_device_live($1, $2::boolean)", 2, params);
	int rc = res == NULL ? 503 : strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 0 : 401;

	PQclear(res);
	return rc;
}

int it_devices_mint(PGconn **connp, const char *session, unsigned scope, const char *label, const char *source,
		    int64_t ttl, char *token, json_object **device)
{
	char id[IT_DEVICE_ID_SIZE], hash[IT_TOKEN_HASH_HEX_SIZE], ttls[24], max[16];
	const char *params[8] = {session, id, hash, it_scope_name(scope), label, source, ttls, max};
	PGresult *res;
	int rc = 503;

	*device = NULL;
	if (params[3] == NULL)
		return 503;
	if (new_device(token, id) != 0)
		return 503;
	it_token_hash_text(token, hash);
	snprintf(ttls, sizeof(ttls), "%" PRId64, ttl);
	snprintf(max, sizeof(max), "%d", IT_DEVICES_MAX);
	res = status_row(
		connp, "token insert",
		"SELECT status, device FROM it_device_mint($1, $2, $3::bytea, $4, $5, $6, $7::integer, $8::integer)", 8,
		params, &rc);
	if (rc == 201)
		rc = (*device = json_col(res, 1)) != NULL ? 0 : 503;
	PQclear(res);
	if (rc != 0)
		memset(token, 0, IT_TOKEN_LEN + 1);
	return rc;
}

int it_devices_pairing_create(PGconn **connp, const char *session, unsigned scope, const char *label, int64_t token_ttl,
			      int64_t ttl, char *code, char *expires_at)
{
	char hash[IT_TOKEN_HASH_HEX_SIZE], tts[24], ttls[24], max[16];
	const char *params[7] = {session, hash, it_scope_name(scope), label, tts, ttls, max};
	PGresult *res;
	int rc = 503;

	expires_at[0] = '\0';
	if (params[2] == NULL)
		return 503;
	if (it_token_new_pairing(code) < 0) {
		it_log_error("random source failed: refusing to make a pairing code");
		return 503;
	}
	it_token_hash_text(code, hash);
	snprintf(tts, sizeof(tts), "%" PRId64, token_ttl);
	snprintf(ttls, sizeof(ttls), "%" PRId64, ttl);
	snprintf(max, sizeof(max), "%d", IT_PAIRINGS_MAX);
	res = status_row(connp, "pairing code insert",
			 "SELECT status, expires_at FROM it_pairing_create($1, $2::bytea, $3, $4, $5::integer,"
			 " $6::integer, $7::integer)",
			 7, params, &rc);
	if (rc == 201) {
		copy(expires_at, 40, PQgetvalue(res, 0, 1));
		rc = 0;
	}
	PQclear(res);
	if (rc != 0)
		memset(code, 0, IT_PAIRING_LEN + 1);
	return rc;
}

int it_devices_pair(PGconn **connp, const char *code, const char *label, const char *source, char *token,
		    json_object **device, unsigned *scope, const char **reason)
{
	char id[IT_DEVICE_ID_SIZE], chash[IT_TOKEN_HASH_HEX_SIZE], thash[IT_TOKEN_HASH_HEX_SIZE], max[16];
	const char *params[6] = {chash, id, thash, label, source, max};
	PGresult *res;
	int rc = 503;

	*device = NULL;
	*scope = 0;
	*reason = "unknown";
	if (!it_token_pairing_valid(code))
		return 401;
	if (new_device(token, id) != 0)
		return 503;
	it_token_hash_text(code, chash);
	it_token_hash_text(token, thash);
	snprintf(max, sizeof(max), "%d", IT_DEVICES_MAX);
	res = status_row(connp, "pairing exchange",
			 "SELECT status, reason, device, device->>'scope' FROM it_pairing_exchange($1::bytea, $2,"
			 " $3::bytea, $4, $5, $6::integer)",
			 6, params, &rc);
	if (rc == 410)
		*reason = strcmp(PQgetvalue(res, 0, 1), "used") == 0 ? "used" : "expired";
	if (rc == 201) {
		*scope = it_scope_parse(PQgetvalue(res, 0, 3));
		rc = (*device = json_col(res, 2)) != NULL && *scope ? 0 : 503;
	}
	PQclear(res);
	if (rc != 0) {
		memset(token, 0, IT_TOKEN_LEN + 1);
		json_object_put(*device);
		*device = NULL;
	}
	return rc;
}

int it_devices_list(PGconn **connp, const char *session, json_object **out)
{
	const char *params[1] = {session};
	PGresult *res;
	int rc = 503;

	*out = NULL;
	res = it_db_exec_row(
		connp, 1, "device list",
		"SELECT coalesce(jsonb_agg(it_device_json(d, s.expires_at) ORDER BY d.created_at DESC, d.id),"
		" '[]'::jsonb) FROM sessions s JOIN devices d ON d.session_id = s.id"
		" WHERE s.id = $1 AND d.revoked_at IS NULL AND (d.expires_at IS NULL OR d.expires_at > now())",
		1, params);
	if (res)
		rc = (*out = json_col(res, 0)) != NULL ? 0 : 503;
	PQclear(res);
	return rc;
}

int it_devices_revoke(PGconn **connp, const char *session, const char *device_id)
{
	const char *params[2] = {session, device_id};
	PGresult *res;
	int rc = 503;

	if (!it_scope_device_id_valid(device_id))
		return 404;
	/* Not repeated after a reconnect: had the first try committed, the
	 * second would find the device revoked and answer 404. */
	res = it_db_exec_row(connp, 0, "device revocation", "SELECT it_device_revoke($1, $2)", 2, params);
	if (res)
		rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 0 : 404;
	PQclear(res);
	return rc;
}

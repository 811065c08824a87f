/* secrets.c: server secrets shared through the database, and this process's URL signer. */
#include "config.h"

#include "db/secrets.h"

#include "common/id.h"
#include "common/log.h"
#include "db/db.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reads the secret's hex form from a one-row result into out. */
static int take(const PGresult *res, size_t len, unsigned char *out)
{
	const char *hex;

	if (PQntuples(res) != 1)
		return -1;
	hex = PQgetvalue(res, 0, 0);
	if (strlen(hex) != 2 * len)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int it_secrets_get(PGconn **connp, const char *name, size_t len, unsigned char *out)
{
	static const char select_sql[] = "SELECT encode(value, 'hex') FROM server_secrets WHERE name = $1";
	unsigned char fresh[IT_SECRET_MAX];
	char hex[2 * IT_SECRET_MAX + 1];
	const char *params[2] = {name, hex};
	PGresult *res;
	int rc = 503;

	if (len < 32 || len > IT_SECRET_MAX || *connp == NULL || PQtransactionStatus(*connp) == PQTRANS_INTRANS ||
	    PQtransactionStatus(*connp) == PQTRANS_INERROR)
		return 503;
	/* Nearly always the secret exists: one read. */
	res = it_db_exec(connp, 1, select_sql, 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1) {
		rc = take(res, len, out) == 0 ? 0 : 503;
		if (rc != 0)
			it_log_error("server secret %s has the wrong length", name);
		PQclear(res);
		return rc;
	}
	if (!it_db_ok(res, PGRES_TUPLES_OK)) {
		PQclear(res);
		return 503;
	}
	PQclear(res);
	if (it_id_random(fresh, len) != 0)
		return 503;
	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", fresh[i]);
	OPENSSL_cleanse(fresh, sizeof(fresh));
	/* Autocommit: if another process got there first, its insert has
	 * committed by the time ON CONFLICT gives up on ours, and the read
	 * below sees the winner. */
	res = it_db_exec(connp, 1,
			 "INSERT INTO server_secrets (name, value) VALUES ($1, decode($2, 'hex'))"
			 " ON CONFLICT (name) DO NOTHING",
			 2, params);
	OPENSSL_cleanse(hex, sizeof(hex));
	if (!it_db_ok(res, PGRES_COMMAND_OK)) {
		PQclear(res);
		return 503;
	}
	PQclear(res);
	res = it_db_exec(connp, 1, select_sql, 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK) && take(res, len, out) == 0)
		rc = 0;
	PQclear(res);
	return rc;
}

static pthread_mutex_t signer_lock = PTHREAD_MUTEX_INITIALIZER;
static it_urlsign signer;
static int signer_ready;

const it_urlsign *it_secrets_url_signer(PGconn **connp, const it_config *cfg)
{
	unsigned char key[IT_URLSIGN_KEY_MAX];
	const it_urlsign *out = NULL;
	int n;

	pthread_mutex_lock(&signer_lock);
	if (signer_ready) {
		out = &signer;
		goto out;
	}
	if (cfg->url_signing_key && cfg->url_signing_key[0]) {
		n = it_urlsign_key_parse(cfg->url_signing_key, key);
		if (n < 0) {
			/* The configuration check refuses such keys at start-up;
			 * this only guards against a config struct built by hand. */
			it_log_error("url_signing_key is not 32 to 64 bytes in hex or base64");
			goto out;
		}
	} else {
		n = IT_URLSIGN_KEY_MIN;
		if (it_secrets_get(connp, "url_signing", (size_t)n, key) != 0)
			goto out;
	}
	if (it_urlsign_init(&signer, key, (size_t)n, cfg->signed_url_ttl) == 0) {
		signer_ready = 1;
		out = &signer;
	}
out:
	pthread_mutex_unlock(&signer_lock);
	OPENSSL_cleanse(key, sizeof(key));
	return out;
}

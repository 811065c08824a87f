/* h_tus.c: resumable uploads, tus 1.0.0 (core, creation, creation-with-upload, creation-defer-length, termination,
 * checksum, expiration). */
#include "config.h"

#include "common/base64.h"
#include "common/id.h"
#include "common/log.h"
#include "db/blob.h"
#include "db/devices.h"
#include "db/db.h"
#include "db/images.h"
#include "db/metrics.h"
#include "db/secrets.h"
#include "db/tus.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "fcgi/ingest.h"
#include "image/filename.h"
#include "image/sniff.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TUS_VERSION "1.0.0"
#define TUS_EXTENSIONS "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
#define OCTET_STREAM "application/offset+octet-stream"
/* One read of a PATCH body. */
#define READ_BUF (128 * 1024)
/* Bytes of one PATCH between two commits: what a crash of this process (or
 * of the database) can cost the client at most, against one commit (and
 * one WAL flush) per step. A PATCH with Upload-Checksum is all or nothing,
 * so it commits once, at its end. */
#define STEP_BYTES (8 * 1024 * 1024)
/* After a refusal, the rest of a body is read and dropped up to this many
 * bytes so that the client sees the answer; beyond, the connection is cut. */
#define DRAIN_MAX (8 * 1024 * 1024)
#define FIELD_MAX 128

static const char *const sources[] = {"web", "android_app", "browser_addon", "cli", "api"};

/* One tus request. */
typedef struct tus {
	it_req *req;
	PGconn *conn;
	int in_txn;
	it_tus_upload up;
	char cred[IT_AUTH_CRED_MAX + 1]; /* the credential presented with the request, "" when none */
	it_principal who;		 /* whom cred speaks for; session_id "" when none */
	int terminating;		 /* a DELETE: allowed after the device's revocation */
	it_ingest_error err;		 /* the first error */
	int64_t body_read;
	/* A request that sends the whole upload from its first byte keeps a
	 * local copy and its SHA-256 on the way, as a multipart upload does,
	 * so that finishing need not read the bytes back from the database. */
	int local_fd;
	EVP_MD_CTX *local_md;
	int64_t local_len;
} tus;

static int db_fail(tus *t)
{
	return it_ingest_fail(&t->err, 503, "database-unavailable",
			      "The database cannot be reached; try again shortly.");
}

/* The headers every tus response carries, and those of discovery. */
static void version_header(it_req *req)
{
	it_resp_header(req, "Tus-Resumable", TUS_VERSION);
}

void it_h_tus_discovery_headers(it_req *req)
{
	version_header(req);
	it_resp_header(req, "Tus-Version", TUS_VERSION);
	it_resp_header(req, "Tus-Extension", TUS_EXTENSIONS);
	it_resp_header(req, "Tus-Max-Size", "%" PRId64, it_g.cfg.max_upload_bytes);
	it_resp_header(req, "Tus-Checksum-Algorithm", "sha1");
}

/* RFC 9110 IMF-fixdate, as Upload-Expires wants it. */
static void expires_header(it_req *req, int64_t when)
{
	char buf[64];
	time_t tt = (time_t)when;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	it_resp_header(req, "Upload-Expires", "%s", buf);
}

static void answer_problem(tus *t)
{
	if (t->err.status == 412)
		it_resp_header(t->req, "Tus-Version", TUS_VERSION);
	it_ingest_answer(t->req, &t->err);
}

/* Tus-Resumable must name the version this server speaks (every request
 * but OPTIONS). */
static int check_version(tus *t)
{
	const char *v = it_req_env(t->req, "HTTP_TUS_RESUMABLE");

	if (v == NULL || strcmp(v, TUS_VERSION) != 0)
		return it_ingest_fail(&t->err, 412, "tus-version-unsupported",
				      "This server speaks tus " TUS_VERSION "; send Tus-Resumable: " TUS_VERSION ".");
	return 0;
}

/* A non-negative decimal header value; -1 when absent, -2 when malformed. */
static int64_t header_uint(const it_req *req, const char *name)
{
	const char *v = it_req_env(req, name);
	int64_t n;

	if (v == NULL)
		return -1;
	if (it_parse_uint(v, INT64_MAX / 2, &n) != 0)
		return -2;
	return n;
}

static int valid_source(const char *s)
{
	for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
		if (strcmp(s, sources[i]) == 0)
			return 1;
	return 0;
}

/* What Upload-Metadata carries for us. */
typedef struct metadata {
	char session[FIELD_MAX + 1];
	char source[16];
	char filename[IT_IMAGE_ORIG_MAX + 1];
	int have_filename; /* "filename" wins over "name" (Uppy sends both) */
} metadata;

/* Decodes one value into out (a string: NUL bytes refused). */
static int meta_value(tus *t, const char *key, size_t klen, const char *v, size_t vlen, char *out, size_t outlen)
{
	ssize_t n = it_base64_decode(v, vlen, (unsigned char *)out, outlen - 1);

	if (n < 0)
		return it_ingest_fail(&t->err, 400, "malformed-metadata",
				      "The Upload-Metadata value of %.*s is not base64 or too long.", (int)klen, key);
	out[n] = '\0';
	if (strlen(out) != (size_t)n)
		return it_ingest_fail(&t->err, 400, "malformed-metadata",
				      "The Upload-Metadata value of %.*s contains a NUL byte.", (int)klen, key);
	return 0;
}

/* Parses Upload-Metadata ("key base64,key base64,key"): keys are unique,
 * non-empty, without spaces or commas; values are base64. Keys we do not
 * use are allowed (and echoed by HEAD). */
static int parse_metadata(tus *t, const char *s, metadata *m)
{
	char scratch[IT_IMAGE_ORIG_MAX + 1];
	const char *keys[64];
	size_t klens[64];
	int nkeys = 0;

	memset(m, 0, sizeof(*m));
	if (s == NULL || *s == '\0')
		return 0;
	if (strlen(s) > IT_TUS_METADATA_MAX)
		return it_ingest_fail(&t->err, 400, "malformed-metadata", "Upload-Metadata is longer than %d bytes.",
				      IT_TUS_METADATA_MAX);
	while (*s) {
		const char *key = s, *val = NULL;
		size_t klen, vlen = 0;

		while (*s && *s != ' ' && *s != ',')
			s++;
		klen = (size_t)(s - key);
		if (*s == ' ') {
			val = ++s;
			while (*s && *s != ',')
				s++;
			vlen = (size_t)(s - val);
		}
		if (*s == ',')
			s++;
		while (*s == ' ')
			s++;
		if (klen == 0)
			return it_ingest_fail(&t->err, 400, "malformed-metadata", "Upload-Metadata has an empty key.");
		for (size_t i = 0; i < klen; i++)
			if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
				return it_ingest_fail(&t->err, 400, "malformed-metadata",
						      "Upload-Metadata has a key with a control character.");
		for (int i = 0; i < nkeys; i++)
			if (klens[i] == klen && memcmp(keys[i], key, klen) == 0)
				return it_ingest_fail(&t->err, 400, "malformed-metadata",
						      "Upload-Metadata names %.*s twice.", (int)klen, key);
		if (nkeys == (int)(sizeof(keys) / sizeof(keys[0])))
			return it_ingest_fail(&t->err, 400, "malformed-metadata", "Upload-Metadata has too many keys.");
		keys[nkeys] = key;
		klens[nkeys++] = klen;
#define IS(k) (klen == sizeof(k) - 1 && memcmp(key, k, klen) == 0)
		if (IS("session_id")) {
			if (meta_value(t, key, klen, val, vlen, m->session, sizeof(m->session)) != 0)
				return -1;
		} else if (IS("source")) {
			if (meta_value(t, key, klen, val, vlen, m->source, sizeof(m->source)) != 0)
				return -1;
			if (!valid_source(m->source))
				return it_ingest_fail(
					&t->err, 400, "unknown-source",
					"source must be one of web, android_app, browser_addon, cli, api.");
		} else if (IS("filename") || (IS("name") && !m->have_filename)) {
			if (meta_value(t, key, klen, val, vlen, m->filename, sizeof(m->filename)) != 0)
				return -1;
			m->have_filename |= IS("filename");
		} else if (val != NULL && meta_value(t, key, klen, val, vlen, scratch, sizeof(scratch)) != 0) {
			return -1;
		}
#undef IS
	}
	return 0;
}

/* Resolves cred (a session id or a token) into t->who, which must be
 * allowed to upload. */
static int resolve(tus *t, const char *cred)
{
	it_auth_refusal why;

	if (it_auth_resolve(t->req, cred, IT_SCOPE_UPLOAD | IT_AUTH_SESSION_UNCHECKED, &t->who, &why) != 0)
		return it_ingest_refused(t->req, &t->err, &why);
	return 0;
}

/* The credential presented with the request itself, if any
 * (Authorization: Bearer or ?session_id=): without one, the upload's URL
 * is the capability, as tus clients expect. */
static int read_credential(tus *t)
{
	int rc = it_auth_credential(t->req, t->cred, sizeof(t->cred));

	/* A malformed credential is refused by resolve (401 when it begins
	 * like a token, else 400), from the request's own copy. */
	if (rc < 0 && resolve(t, NULL) == 0)
		return it_ingest_fail(&t->err, 400, "invalid-session-id",
				      "The session in the Authorization header or the URL is malformed.");
	if (rc < 0)
		return -1;
	if (rc == 0) {
		t->cred[0] = '\0';
		return 0;
	}
	return resolve(t, t->cred);
}

/* The refusal for an upload whose device's token was revoked or expired. */
static int device_gone(tus *t)
{
	it_auth_refusal why = {0};

	snprintf(why.www_authenticate, sizeof(why.www_authenticate),
		 "Bearer realm=\"imagetools\", error=\"invalid_token\"");
	why.status = 401;
	why.slug = "invalid-token";
	why.detail = "The token that began this upload is revoked or expired: nothing more of it is stored.";
	return it_ingest_refused(t->req, &t->err, &why);
}

/* Reads the request's upload (with lock: in a new transaction, its row
 * locked): unknown, expired, or of another session than the one presented,
 * all answer 404 alike. */
static int load_upload(tus *t, const char *id, int lock)
{
	int rc;

	if (lock) {
		if (it_db_begin(&t->conn) != 0)
			return db_fail(t);
		t->in_txn = 1;
	}
	rc = it_tus_get(&t->conn, id, lock, &t->up);
	if (rc == 0 && t->who.session_id[0] != '\0' && strcmp(t->who.session_id, t->up.session_id) != 0)
		rc = 404;
	/* An upload a device began takes nothing more once the device's token
	 * is revoked or has expired, whoever sends the bytes (asked again
	 * before every commit: end_txn). */
	if (rc == 0 && t->up.device_id[0] != '\0' && !t->terminating &&
	    (rc = it_devices_live(t->conn, t->up.device_id, 0)) == 401)
		return device_gone(t);
	if (rc == 404)
		return it_ingest_fail(&t->err, 404, "unknown-upload",
				      "No such upload: it never existed, has expired or was terminated.");
	if (rc == 423)
		return it_ingest_fail(&t->err, 423, "upload-locked",
				      "Another request is writing to this upload; try again shortly.");
	if (rc != 0)
		return db_fail(t);
	return 0;
}

static int lock_upload(tus *t, const char *id)
{
	return load_upload(t, id, 1);
}

static void end_txn(tus *t, int commit)
{
	if (!t->in_txn)
		return;
	/* What a device sent is committed only while its token works; the
	 * device row is held from here to the commit (it_devices_live). */
	if (commit && t->up.device_id[0] != '\0' && !t->terminating) {
		int rc = it_devices_live(t->conn, t->up.device_id, 1);
		if (rc != 0) {
			if (rc == 401)
				device_gone(t);
			else
				db_fail(t);
			commit = 0;
		}
	}
	if (commit) {
		if (it_db_commit(t->conn) != 0)
			db_fail(t);
	} else {
		it_db_rollback(t->conn);
	}
	t->in_txn = 0;
}

/* Ends the upload t->up for good because of a refusal (slug): deletes it
 * and its bytes and tells the session, in a transaction of its own. */
static void remove_upload(tus *t, const char *reason)
{
	PGconn *conn = t->conn;

	end_txn(t, 0);
	if (it_db_begin(&conn) != 0)
		return;
	t->conn = conn;
	if (it_tus_get(&t->conn, t->up.id, 1, &t->up) == 0 && it_tus_remove(t->conn, &t->up, reason) == 0)
		it_db_commit(t->conn);
	else
		it_db_rollback(t->conn);
}

/* The upload's bytes are all there: they become an image through the same
 * step as a multipart file (ingest.h), in one transaction with its
 * image.uploaded event and the row's new state. A refusal (not an image,
 * pixels, quota) ends the upload; a database error leaves it complete, and
 * the next HEAD or PATCH tries again. */
static int finish(tus *t)
{
	const it_urlsign *signer;
	it_ingest_error e = {0};
	it_image img;
	int64_t held;
	int fd = -1, rc;
	char labels[48];

	end_txn(t, 1);
	if (t->err.status)
		return -1;
	if ((signer = it_secrets_url_signer(&t->conn, &it_g.cfg)) == NULL)
		return db_fail(t);
	if (lock_upload(t, t->up.id) != 0)
		return -1;
	if (t->up.image_id[0] != '\0' || t->up.length < 0 || t->up.offset != t->up.length)
		return 0; /* another request finished it, or it is not complete */
	memset(&img, 0, sizeof(img));
	img.blob_id = t->up.blob_id;
	img.size = t->up.length;
	if ((fd = it_ingest_tmpfile()) < 0) {
		it_log_error("cannot create a temporary file: %s", strerror(errno));
		rc = it_ingest_fail(&t->err, 503, "storage-unavailable", "The upload cannot be stored right now.");
		goto out;
	}
	/* The bytes arrived over many requests and maybe many processes: the
	 * hash and the local file for the sniffer and libvips come from the
	 * stored blob, read once in bounded memory. */
	if (t->local_fd >= 0 && t->local_md != NULL && t->local_len == img.size) {
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int dlen = 0;
		static const char hexd[] = "0123456789abcdef";
		if (EVP_DigestFinal_ex(t->local_md, digest, &dlen) != 1 || dlen != 32) {
			rc = it_ingest_fail(&t->err, 503, "out-of-memory",
					    "The server is out of memory; try again shortly.");
			goto out;
		}
		for (unsigned i = 0; i < dlen; i++) {
			img.sha256[2 * i] = hexd[digest[i] >> 4];
			img.sha256[2 * i + 1] = hexd[digest[i] & 15];
		}
		img.sha256[64] = '\0';
		close(fd);
		fd = t->local_fd;
		t->local_fd = -1;
	} else if (it_blob_export(t->conn, img.blob_id, fd, img.sha256) != 0) {
		rc = db_fail(t);
		goto out;
	}
	if (it_blob_set_sha256(t->conn, img.blob_id, img.sha256) != 0) {
		rc = db_fail(t);
		goto out;
	}
	if (it_ingest_examine(t->conn, fd, img.size, t->up.filename, &img, &e) != 0) {
		rc = it_ingest_fail(&t->err, e.status, e.slug, "%s", e.detail);
		goto out;
	}
	rc = it_images_session_bytes(t->conn, t->up.session_id, 1, &held);
	if (rc == 404) {
		rc = it_ingest_fail(&t->err, 404, "unknown-upload", "No such upload: its session has expired.");
		goto out;
	}
	if (rc != 0) {
		rc = db_fail(t);
		goto out;
	}
	if (it_g.cfg.max_session_bytes > 0 && held + img.size > it_g.cfg.max_session_bytes) {
		rc = it_ingest_fail(&t->err, 413, "session-quota-exceeded",
				    "The session holds %" PRId64
				    " bytes; with this upload it would pass its limit of %" PRId64
				    " bytes. Delete images to make room.",
				    held, it_g.cfg.max_session_bytes);
		goto out;
	}
	snprintf(img.session_id, sizeof(img.session_id), "%s", t->up.session_id);
	snprintf(img.source, sizeof(img.source), "%s", t->up.source);
	if (it_ingest_record(t->conn, &img, signer, &e) != 0) {
		rc = it_ingest_fail(&t->err, e.status, e.slug, "%s", e.detail);
		goto out;
	}
	if (it_tus_done(t->conn, t->up.id, img.id) != 0) {
		rc = db_fail(t);
		goto out;
	}
	end_txn(t, 1);
	if (t->err.status) {
		rc = -1;
		goto out;
	}
	snprintf(t->up.image_id, sizeof(t->up.image_id), "%s", img.id);
	snprintf(labels, sizeof(labels), "source=\"%s\"", img.source);
	it_metrics_inc("imagetools_uploads_total", labels, 1);
	it_metrics_inc("imagetools_upload_bytes_total", NULL, img.size);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc != 0 && t->err.status != 503 && t->err.status != 0)
		remove_upload(t, t->err.slug);
	return rc;
}

static void local_drop(tus *t)
{
	if (t->local_fd >= 0)
		close(t->local_fd);
	t->local_fd = -1;
	if (t->local_md != NULL)
		EVP_MD_CTX_free(t->local_md);
	t->local_md = NULL;
}

/* One PATCH body on its way into the blob. */
struct body {
	it_blob_writer w;
	int writer_open;
	EVP_MD_CTX *md;		/* the SHA-1 of an Upload-Checksum; NULL without one */
	unsigned char want[20]; /* the digest Upload-Checksum names */
	int64_t start, end_max; /* the offset it starts at, and the furthest it may reach */
	int64_t received, step; /* bytes written, and bytes since the last committed step */
	int sniffing;		/* it starts the upload: its first bytes must look like an image */
	unsigned char head[IT_SNIFF_MAGIC_BYTES];
	size_t head_len;
};

/* Reads Upload-Checksum, when there is one, into b->want and starts
 * b->md. Returns 0, or -1 with t's error set. */
static int body_checksum(tus *t, struct body *b)
{
	const char *ck = it_req_env(t->req, "HTTP_UPLOAD_CHECKSUM");
	const char *sp;

	if (ck == NULL)
		return 0;
	sp = strchr(ck, ' ');
	if (sp == NULL || (size_t)(sp - ck) != 4 || strncasecmp(ck, "sha1", 4) != 0)
		return it_ingest_fail(
			&t->err, 400, "unsupported-checksum",
			"Upload-Checksum must be \"sha1 <base64 digest>\"; sha1 is the algorithm this server "
			"supports (Tus-Checksum-Algorithm).");
	if (it_base64_decode(sp + 1, strlen(sp + 1), b->want, sizeof(b->want)) != (ssize_t)sizeof(b->want))
		return it_ingest_fail(&t->err, 400, "malformed-checksum",
				      "The Upload-Checksum digest is not 20 bytes of base64.");
	if ((b->md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(b->md, EVP_sha1(), NULL) != 1)
		return it_ingest_fail(&t->err, 503, "out-of-memory", "The server is out of memory; try again shortly.");
	return 0;
}

/* Opens the local copy when the body starts the upload and none is open. */
static void local_open(tus *t, int64_t start)
{
	if (start != 0 || t->local_fd >= 0 || (t->local_fd = it_ingest_tmpfile()) < 0)
		return;
	t->local_md = EVP_MD_CTX_new();
	t->local_len = 0;
	if (t->local_md == NULL || EVP_DigestInit_ex(t->local_md, EVP_sha256(), NULL) != 1)
		local_drop(t);
}

/* Reads the next piece of the body into buf (READ_BUF bytes). Returns its
 * length, 0 at the end, or -1 with t's error set (too slow, cut short). */
static ssize_t body_read(tus *t, const struct body *b, char *buf)
{
	it_req *req = t->req;
	size_t want_n = READ_BUF;
	ssize_t r;

	if (req->content_length >= 0 && req->content_length - b->received < (int64_t)want_n)
		want_n = (size_t)(req->content_length - b->received);
	if (want_n == 0)
		return 0;
	r = it_req_read(req, buf, want_n);
	if (r == 0 && req->content_length < 0)
		return 0; /* the end of a body of unknown length */
	if (r > 0)
		return r;
	if (r == IT_REQ_TOO_SLOW)
		return it_ingest_fail(&t->err, 408, "too-slow",
				      "The request body arrived slower than %" PRId64
				      " bytes per second; the bytes received "
				      "are kept: ask HEAD for the offset and go on from there.",
				      it_g.cfg.upload_min_rate);
	return it_ingest_fail(&t->err, 400, "truncated",
			      "The request body ended early; the bytes received are kept: ask HEAD for the "
			      "offset and go on from there.");
}

/* Refuses a body that starts the upload as soon as its first bytes say it
 * is not an image. Returns 0, or -1 with t's error set (415). */
static int body_sniff(tus *t, struct body *b, const char *buf, size_t r)
{
	if (b->sniffing && it_ingest_sniff_head(b->head, &b->head_len, buf, r))
		return it_ingest_fail(&t->err, 415, "not-an-image",
				      "The upload is not a JPEG, PNG, GIF, WebP, HEIC or AVIF image.");
	return 0;
}

/* Makes one step durable: ends the COPY, records the offset (and maybe a
 * progress event), commits, and goes on in a new transaction that holds
 * the row again. Returns 0, or -1 with t's error set. */
static int body_step(tus *t, struct body *b)
{
	b->writer_open = 0;
	if (it_blob_writer_finish(&b->w) != 0 ||
	    it_tus_advance(t->conn, t->up.id, b->start + b->received, it_g.cfg.resumable_upload_ttl,
			   it_g.cfg.upload_progress_interval_ms) != 0)
		return db_fail(t);
	end_txn(t, 1);
	if (t->err.status)
		return -1;
	t->up.offset = b->start + b->received;
	b->step = 0;
	if (lock_upload(t, t->up.id) != 0)
		return -1;
	if (it_blob_writer_resume(&b->w, t->conn, t->up.blob_id, t->up.offset) != 0)
		return db_fail(t);
	b->writer_open = 1;
	return 0;
}

/* Takes r bytes of the body: the sniff, the checksum, the blob, the local
 * copy, and a committed step every STEP_BYTES unless a checksum makes the
 * body all or nothing. Returns 0, or -1 with t's error set. */
static int body_take(tus *t, struct body *b, const char *buf, size_t r)
{
	if (body_sniff(t, b, buf, r) < 0)
		return -1;
	if (b->md != NULL && EVP_DigestUpdate(b->md, buf, r) != 1)
		return it_ingest_fail(&t->err, 503, "out-of-memory", "The server is out of memory; try again shortly.");
	if (it_blob_writer_append(&b->w, buf, r) != 0)
		return db_fail(t);
	if (t->local_fd >= 0) {
		/* Only a shortcut: without it, finishing reads the blob. */
		if (it_ingest_write(t->local_fd, buf, r) != 0 || EVP_DigestUpdate(t->local_md, buf, r) != 1)
			local_drop(t);
		else
			t->local_len += (int64_t)r;
	}
	b->received += (int64_t)r;
	b->step += (int64_t)r;
	if (b->md == NULL && b->step >= STEP_BYTES)
		return body_step(t, b);
	return 0;
}

/* Ends the body once read: drops it all when it failed and is all or
 * nothing (or not worth keeping), compares the checksum, and records the
 * new offset. Returns 0, or -1 with t's error set. */
static int body_finish(tus *t, struct body *b)
{
	unsigned char got[EVP_MAX_MD_SIZE];
	unsigned int got_len = 0;

	if (t->err.status != 0 && (b->md != NULL || (t->err.status != 400 && t->err.status != 408))) {
		/* All or nothing, or nothing worth keeping: the transaction ends
		 * here, so that the caller keeps nothing of it. */
		it_blob_writer_abort(&b->w);
		b->writer_open = 0;
		end_txn(t, 0);
		return -1;
	}
	if (b->md != NULL) {
		if (EVP_DigestFinal_ex(b->md, got, &got_len) != 1 || got_len != sizeof(b->want) ||
		    memcmp(got, b->want, sizeof(b->want)) != 0)
			return it_ingest_fail(
				&t->err, 460, "checksum-mismatch",
				"The bytes received do not have the SHA-1 of Upload-Checksum; they were discarded: "
				"send them again from the same offset.");
	}
	b->writer_open = 0;
	if (it_blob_writer_finish(&b->w) != 0 ||
	    it_tus_advance(t->conn, t->up.id, b->start + b->received, it_g.cfg.resumable_upload_ttl,
			   it_g.cfg.upload_progress_interval_ms) != 0)
		return db_fail(t);
	t->up.offset = b->start + b->received;
	return t->err.status ? -1 : 0;
}

/* Writes the request body at t->up.offset (the caller checked it and holds
 * the row in an open transaction), one committed step of STEP_BYTES at a
 * time unless a checksum makes the body all or nothing. Bytes that arrived
 * before the client went away are kept (tus asks for as many as possible),
 * so that a resume re-sends only what was never received. Returns 0 or -1
 * with t's error set. */
static int write_body(tus *t)
{
	it_req *req = t->req;
	struct body b;
	char *buf = NULL;
	ssize_t r;
	int ret = -1;

	memset(&b, 0, sizeof(b));
	b.start = t->up.offset;
	b.sniffing = t->up.offset == 0;
	if (body_checksum(t, &b) < 0)
		goto out;
	/* What this request may add: up to the declared length, or, while it
	 * is deferred, up to the largest file allowed. */
	b.end_max = t->up.length >= 0 ? t->up.length : it_g.cfg.max_upload_bytes;
	if (req->content_length > b.end_max - b.start) {
		it_ingest_fail(&t->err, 413, t->up.length >= 0 ? "past-upload-length" : "file-too-large",
			       "The PATCH would take the upload to %" PRId64 " bytes, past its %s of %" PRId64
			       " bytes.",
			       t->up.offset + req->content_length, t->up.length >= 0 ? "Upload-Length" : "limit",
			       t->up.length >= 0 ? t->up.length : it_g.cfg.max_upload_bytes);
		goto out;
	}
	if (req->content_length == 0) {
		ret = 0;
		goto out;
	}
	if ((buf = malloc(READ_BUF)) == NULL) {
		it_ingest_fail(&t->err, 503, "out-of-memory", "The server is out of memory; try again shortly.");
		goto out;
	}
	if (it_blob_writer_resume(&b.w, t->conn, t->up.blob_id, t->up.offset) != 0) {
		db_fail(t);
		goto out;
	}
	b.writer_open = 1;
	local_open(t, b.start);
	while ((r = body_read(t, &b, buf)) > 0) {
		t->body_read += r;
		if (b.start + b.received + r > b.end_max) {
			it_ingest_fail(&t->err, 413, "past-upload-length", "The PATCH goes past the upload's length.");
			break;
		}
		if (body_take(t, &b, buf, (size_t)r) < 0)
			goto out;
	}
	ret = body_finish(t, &b);
out:
	if (b.writer_open)
		it_blob_writer_abort(&b.w);
	if (b.md != NULL)
		EVP_MD_CTX_free(b.md);
	free(buf);
	return ret;
}

/* A PATCH (or the body of a creation-with-upload) at offset, the upload
 * row locked in t's transaction. On success the offset is committed and,
 * when it reached the length, the upload has become an image. */
static int patch_locked(tus *t, int64_t offset)
{
	int64_t len = header_uint(t->req, "HTTP_UPLOAD_LENGTH");

	if (len == -2)
		return it_ingest_fail(&t->err, 400, "malformed-upload-length",
				      "Upload-Length is not a non-negative integer.");
	if (len >= 0) {
		if (t->up.length >= 0 && len != t->up.length)
			return it_ingest_fail(&t->err, 400, "upload-length-fixed",
					      "The upload's length is %" PRId64 " already.", t->up.length);
		if (t->up.length < 0) {
			if (len > it_g.cfg.max_upload_bytes)
				return it_ingest_fail(&t->err, 413, "file-too-large",
						      "The upload is larger than the limit of %" PRId64 " bytes.",
						      it_g.cfg.max_upload_bytes);
			if (len < t->up.offset)
				return it_ingest_fail(&t->err, 400, "upload-length-too-small",
						      "Upload-Length is smaller than the bytes already received.");
			if (it_tus_set_length(t->conn, t->up.id, len) != 0)
				return db_fail(t);
			t->up.length = len;
		}
	}
	if (offset != t->up.offset)
		return it_ingest_fail(&t->err, 409, "offset-mismatch",
				      "Upload-Offset is %" PRId64 " but the upload holds %" PRId64
				      " bytes; ask HEAD and go on from there.",
				      offset, t->up.offset);
	if (t->up.image_id[0] == '\0' && it_g.cfg.max_session_bytes > 0) {
		/* The quota on the bytes received, for uploads whose length was
		 * deferred (a declared one was checked at creation); checked
		 * again under the session's lock when the upload completes. */
		int64_t held, end = offset + (t->req->content_length > 0 ? t->req->content_length : 0);
		int rc = it_images_session_bytes(t->conn, t->up.session_id, 0, &held);
		if (rc != 0)
			return rc == 404 ? it_ingest_fail(&t->err, 404, "unknown-upload",
							  "No such upload: its session has expired.")
					 : db_fail(t);
		if (held + end > it_g.cfg.max_session_bytes)
			return it_ingest_fail(&t->err, 413, "session-quota-exceeded",
					      "The session holds %" PRId64
					      " bytes; with this upload it would pass its limit of %" PRId64
					      " bytes. Delete images to make room.",
					      held, it_g.cfg.max_session_bytes);
	}
	if (t->up.image_id[0] == '\0') {
		int rc = write_body(t);
		if (rc != 0 && (t->err.status == 400 || t->err.status == 408) && t->in_txn) {
			/* The bytes that did arrive are kept. */
			int status = t->err.status;
			t->err.status = 0;
			end_txn(t, 1);
			if (t->err.status == 0)
				t->err.status = status;
		}
		if (rc != 0 && t->err.status == 415)
			remove_upload(t, t->err.slug);
		if (rc != 0)
			return -1;
	} else if (t->req->content_length > 0) {
		return it_ingest_fail(&t->err, 413, "past-upload-length", "The upload is complete already.");
	}
	if (t->up.length >= 0 && t->up.offset == t->up.length && t->up.image_id[0] == '\0')
		return finish(t);
	end_txn(t, 1);
	return t->err.status ? -1 : 0;
}

/* The parts of a request every tus handler starts with. */
static tus *tus_begin(it_req *req)
{
	tus *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		it_resp_problem(req, 503, "out-of-memory", "The server is out of memory; try again shortly.");
		return NULL;
	}
	t->req = req;
	t->local_fd = -1;
	t->conn = it_db_thread_conn();
	version_header(req);
	if (check_version(t) == 0)
		read_credential(t);
	if (t->err.status == 0 && t->conn == NULL)
		db_fail(t);
	return t;
}

/* Answers t's error (dropping what is left of the body) and frees t. */
static void tus_end(tus *t, int drain)
{
	it_req *req = t->req;

	if (t->in_txn)
		end_txn(t, 0);
	if (t->err.status) {
		answer_problem(t);
		it_resp_flush(req);
		if (drain && (req->content_length < 0 || req->content_length - t->body_read <= DRAIN_MAX))
			it_req_drain(req, DRAIN_MAX);
	}
	local_drop(t);
	free(t);
}

static int is_octet_stream(const it_req *req)
{
	const char *ct = it_req_env(req, "CONTENT_TYPE");

	return ct != NULL && strncasecmp(ct, OCTET_STREAM, sizeof(OCTET_STREAM) - 1) == 0 &&
		(ct[sizeof(OCTET_STREAM) - 1] == '\0' || ct[sizeof(OCTET_STREAM) - 1] == ';' ||
		 ct[sizeof(OCTET_STREAM) - 1] == ' ');
}

/* Reads Upload-Length or Upload-Defer-Length (one of them, -1 in *len
 * when deferred) and checks the length against max_upload_bytes. Returns
 * 0, or -1 with t's error set. */
static int creation_length(tus *t, int64_t *len)
{
	const char *defer = it_req_env(t->req, "HTTP_UPLOAD_DEFER_LENGTH");

	*len = header_uint(t->req, "HTTP_UPLOAD_LENGTH");
	if (*len == -2)
		return it_ingest_fail(&t->err, 400, "malformed-upload-length",
				      "Upload-Length is not a non-negative integer.");
	if ((*len >= 0) == (defer != NULL) || (defer != NULL && strcmp(defer, "1") != 0))
		return it_ingest_fail(&t->err, 400, "missing-upload-length",
				      "Send either Upload-Length or Upload-Defer-Length: 1.");
	if (*len > it_g.cfg.max_upload_bytes)
		return it_ingest_fail(&t->err, 413, "file-too-large",
				      "The upload is larger than the limit of %" PRId64 " bytes (Tus-Max-Size).",
				      it_g.cfg.max_upload_bytes);
	return 0;
}

/* Parses Upload-Metadata into m and settles the session: the request's
 * credential, else the metadata's session_id (a session id or a token),
 * which must not name another one. Returns 0 with t->who set, or -1 with
 * t's error set. */
static int creation_session(tus *t, metadata *m)
{
	if (parse_metadata(t, it_req_env(t->req, "HTTP_UPLOAD_METADATA"), m) != 0)
		return -1;
	if (m->session[0] != '\0' && t->cred[0] != '\0' && strcmp(m->session, t->cred) != 0 &&
	    strcmp(m->session, t->who.session_id) != 0)
		return it_ingest_fail(
			&t->err, 400, "session-mismatch",
			"The session_id of Upload-Metadata names another session than the Authorization header or "
			"the URL.");
	if (m->session[0] == '\0' && t->cred[0] == '\0')
		return it_ingest_fail(
			&t->err, 400, "missing-session-id",
			"Name the session: session_id in Upload-Metadata, or an Authorization: Bearer header.");
	/* Without a credential in the request, the metadata's session_id is
	 * the credential (a session id or a token). */
	if (t->cred[0] == '\0' && resolve(t, m->session) != 0)
		return -1;
	return 0;
}

/* Counts the declared length against the session's quota at once, so
 * that an upload that could never fit is refused before its first byte.
 * Returns 0, or -1 with t's error set. */
static int creation_quota(tus *t, int64_t len)
{
	int64_t held;
	int rc = it_images_session_bytes(t->conn, t->up.session_id, 0, &held);

	if (rc == 404)
		return it_ingest_fail(&t->err, 404, "unknown-session", "No such session, or it has expired.");
	if (rc != 0)
		return db_fail(t);
	if (it_g.cfg.max_session_bytes > 0 && len > 0 && held + len > it_g.cfg.max_session_bytes)
		return it_ingest_fail(&t->err, 413, "session-quota-exceeded",
				      "The session holds %" PRId64
				      " bytes; with this upload it would pass its limit of %" PRId64
				      " bytes. Delete images to make room.",
				      held, it_g.cfg.max_session_bytes);
	return 0;
}

/* Names the upload (a random id), fills t->up from the request and m, and
 * stores it in a transaction of its own. Returns 0, or -1 with t's error
 * set. */
static int creation_record(tus *t, const metadata *m, int64_t len)
{
	const char *md = it_req_env(t->req, "HTTP_UPLOAD_METADATA");
	unsigned char rnd[24];
	int rc;

	if (it_id_random(rnd, sizeof(rnd)) != 0)
		return it_ingest_fail(&t->err, 503, "random-unavailable",
				      "The server cannot make an upload id right now.");
	it_base64url(rnd, sizeof(rnd), t->up.id);
	t->up.length = len;
	snprintf(t->up.metadata, sizeof(t->up.metadata), "%s", md ? md : "");
	snprintf(t->up.filename, sizeof(t->up.filename), "%s", m->filename);
	it_filename_sanitize(m->filename, NULL, t->up.display, sizeof(t->up.display));
	snprintf(t->up.source, sizeof(t->up.source), "%s", m->source[0] ? m->source : "web");
	if (it_db_begin(&t->conn) != 0)
		return db_fail(t);
	t->in_txn = 1;
	rc = it_tus_create(t->conn, &t->up, it_g.cfg.resumable_upload_ttl);
	if (rc == 404)
		return it_ingest_fail(&t->err, 404, "unknown-session", "No such session, or it has expired.");
	if (rc != 0)
		return db_fail(t);
	end_txn(t, 1);
	return t->err.status ? -1 : 0;
}

/* creation-with-upload: the body is the first PATCH. A refusal of its
 * bytes still leaves the upload created (Location is sent), as the
 * extension asks, unless the bytes ended it. Returns 0 when the creation
 * is to be answered 201, -1 with t's error set otherwise. */
static int creation_body(tus *t)
{
	if (lock_upload(t, t->up.id) == 0 && patch_locked(t, 0) == 0)
		return 0;
	if (t->err.status != 400 && t->err.status != 408 && t->err.status != 460 && t->err.status != 503 &&
	    t->err.status != 423)
		return -1;
	t->err.status = 0;
	if (t->in_txn)
		end_txn(t, 0);
	it_req_drain(t->req, DRAIN_MAX);
	return 0;
}

/* Runs one tus request: step answers it when the request's common part
 * (tus_begin: version, credential, connection) passed, and leaves t's error
 * set otherwise; tus_end answers the error, dropping the rest of the body
 * when drain is set. */
static void tus_run(it_req *req, int drain, void (*step)(tus *t))
{
	tus *t = tus_begin(req);

	if (t == NULL)
		return;
	if (t->err.status == 0)
		step(t);
	tus_end(t, drain);
}

static void create(tus *t)
{
	it_req *req = t->req;
	int64_t len;
	metadata m;
	int with_body;
	char location[512];

	if (creation_length(t, &len) != 0 || creation_session(t, &m) != 0)
		return;
	memset(&t->up, 0, sizeof(t->up));
	snprintf(t->up.session_id, sizeof(t->up.session_id), "%s", t->who.session_id);
	snprintf(t->up.device_id, sizeof(t->up.device_id), "%s", t->who.device_id);
	with_body = is_octet_stream(req) && req->content_length != 0;
	if (!with_body && req->content_length > 0) {
		it_ingest_fail(&t->err, 415, "not-offset-octet-stream",
			       "A creation request's body (creation-with-upload) is Content-Type: " OCTET_STREAM ".");
		return;
	}
	/* A refusal here is answered by the guard; t has no error, so
	 * tus_end only frees it. */
	if (it_guard_rate(req, "uploads", req->remote_addr, it_g.cfg.rate_uploads))
		return;
	if (it_ingest_session_rate(t->up.session_id, &t->err) != 0 || creation_quota(t, len) != 0 ||
	    creation_record(t, &m, len) != 0)
		return;
	snprintf(location, sizeof(location), "%s/api/v1/uploads/tus/%s", req->url_prefix, t->up.id);
	it_resp_header(req, "Location", "%s", location);
	if (with_body && creation_body(t) != 0)
		return;
	it_resp_header(req, "Upload-Offset", "%" PRId64, t->up.offset);
	expires_header(req, t->up.expires);
	snprintf(req->log_note, sizeof(req->log_note), "tus=%.8s", t->up.id);
	it_resp_begin(req, 201, NULL);
}

static void head(tus *t)
{
	it_req *req = t->req;

	/* No lock: a HEAD must answer while a PATCH is writing. */
	if (load_upload(t, req->params[0], 0) != 0)
		return;
	/* Complete but not yet an image (the request that sent the last byte
	 * failed on the database or died): finish it now, since a client that
	 * sees offset == length will not send anything more. */
	if (t->up.length >= 0 && t->up.offset == t->up.length && t->up.image_id[0] == '\0' && finish(t) != 0)
		return;
	it_resp_header(req, "Upload-Offset", "%" PRId64, t->up.offset);
	if (t->up.length >= 0)
		it_resp_header(req, "Upload-Length", "%" PRId64, t->up.length);
	else
		it_resp_header(req, "Upload-Defer-Length", "1");
	if (t->up.metadata[0])
		it_resp_header(req, "Upload-Metadata", "%s", t->up.metadata);
	if (t->up.image_id[0] == '\0')
		expires_header(req, t->up.expires);
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_begin(req, 200, NULL);
}

static void patch(tus *t)
{
	it_req *req = t->req;
	int64_t offset;

	if (!is_octet_stream(req)) {
		it_ingest_fail(&t->err, 415, "not-offset-octet-stream",
			       "A PATCH body is Content-Type: " OCTET_STREAM ".");
		return;
	}
	offset = header_uint(req, "HTTP_UPLOAD_OFFSET");
	if (offset < 0) {
		it_ingest_fail(&t->err, 400, "malformed-upload-offset",
			       "Upload-Offset is missing or not a non-negative integer.");
		return;
	}
	if (lock_upload(t, req->params[0]) != 0 || patch_locked(t, offset) != 0)
		return;
	it_resp_header(req, "Upload-Offset", "%" PRId64, t->up.offset);
	if (t->up.image_id[0] == '\0')
		expires_header(req, t->up.expires);
	it_resp_begin(req, 204, NULL);
}

static void terminate(tus *t)
{
	t->terminating = 1;
	if (lock_upload(t, t->req->params[0]) != 0)
		return;
	if (it_tus_remove(t->conn, &t->up, "terminated") != 0) {
		db_fail(t);
		return;
	}
	end_txn(t, 1);
	if (t->err.status == 0)
		it_resp_begin(t->req, 204, NULL);
}

void it_h_tus_create(it_req *req)
{
	tus_run(req, 1, create);
}

/* HEAD (and GET) /uploads/tus/{id}: where the upload stands. */
void it_h_tus_head(it_req *req)
{
	tus_run(req, 0, head);
}

void it_h_tus_patch(it_req *req)
{
	tus_run(req, 1, patch);
}

void it_h_tus_delete(it_req *req)
{
	tus_run(req, 1, terminate);
}

/* POST with X-HTTP-Method-Override: PATCH or DELETE, for clients and
 * proxies that cannot send those methods (tus-js-client's
 * overridePatchMethod). */
void it_h_tus_override(it_req *req)
{
	const char *m = it_req_env(req, "HTTP_X_HTTP_METHOD_OVERRIDE");

	if (m != NULL && strcasecmp(m, "PATCH") == 0) {
		it_h_tus_patch(req);
	} else if (m != NULL && strcasecmp(m, "DELETE") == 0) {
		it_h_tus_delete(req);
	} else {
		version_header(req);
		it_resp_header(req, "Allow", "HEAD, PATCH, DELETE, OPTIONS");
		it_resp_problem(req, 405, "method-not-allowed",
				"POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE.");
	}
}

/* blob.c: immutable byte strings stored as chunk rows, written and read as streams. */
#include "config.h"

#include "db/blob.h"

#include "common/log.h"
#include "db/db.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Chunks are streamed with COPY ... (FORMAT binary): one round trip per
 * blob instead of one per chunk, binary bytes without escaping, and the
 * same path PostgreSQL's own bulk loading takes (docs/storage.md). A binary
 * COPY stream is a fixed header, tuples of
 *   int16 field count, then per field int32 length + bytes (network order),
 * and an int16 -1 trailer. Our tuples are (blob_id int8, n int4, data bytea). */
static const unsigned char copy_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n',
					      0,   0,	0,   0,	  0,   0,   0,	  0,	0};
#define ROW_HEAD (2 + 4 + 8 + 4 + 4 + 4)

enum { W_IDLE = 0, W_COPYING, W_DONE, W_FAILED };

static void put16(unsigned char *p, uint16_t v)
{
	v = htons(v);
	memcpy(p, &v, 2);
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int start_copy(it_blob_writer *w);

static void release(it_blob_writer *w)
{
	free(w->row);
	w->row = NULL;
	if (w->md)
		EVP_MD_CTX_free(w->md);
	w->md = NULL;
}

int it_blob_writer_open(it_blob_writer *w, PGconn *conn)
{
	char chunk[16];
	const char *params[1] = {chunk};
	PGresult *res;

	memset(w, 0, sizeof(*w));
	w->conn = conn;
	w->state = W_FAILED;
	if (conn == NULL)
		return 503;
	snprintf(chunk, sizeof(chunk), "%d", IT_BLOB_CHUNK);
	res = it_db_exec(&conn, 0, "INSERT INTO blobs (chunk_size) VALUES ($1::integer) RETURNING id", 1, params);
	if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1) {
		it_log_warn("blob insert failed: %s", PQerrorMessage(conn));
		PQclear(res);
		return 503;
	}
	w->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);

	w->row = malloc(ROW_HEAD + IT_BLOB_CHUNK);
	w->md = EVP_MD_CTX_new();
	if (w->row == NULL || w->md == NULL || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
		release(w);
		return 503;
	}
	return start_copy(w);
}

int it_blob_writer_resume(it_blob_writer *w, PGconn *conn, int64_t id, int64_t size)
{
	char ids[24], ns[24];
	const char *params[2] = {ids, ns};
	PGresult *res;
	int32_t n = (int32_t)(size / IT_BLOB_CHUNK);
	size_t tail = (size_t)(size % IT_BLOB_CHUNK);

	memset(w, 0, sizeof(*w));
	w->conn = conn;
	w->state = W_FAILED;
	w->id = id;
	w->size = size;
	w->next_n = n;
	w->resumed = 1;
	if (conn == NULL || size < 0 || (w->row = malloc(ROW_HEAD + IT_BLOB_CHUNK)) == NULL)
		return 503;
	snprintf(ids, sizeof(ids), "%" PRId64, id);
	snprintf(ns, sizeof(ns), "%" PRId32, n);
	if (tail > 0) {
		/* The short last chunk is taken back and written again, longer. */
		res = it_db_exec_bin(conn, "DELETE FROM blob_chunks WHERE blob_id = $1 AND n = $2 RETURNING data", 2,
				     params, NULL, NULL, 1);
		if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1 || (size_t)PQgetlength(res, 0, 0) != tail) {
			it_log_warn("blob %" PRId64 ": its last chunk is not the %zu bytes expected", id, tail);
			PQclear(res);
			release(w);
			return 503;
		}
		memcpy(w->row + ROW_HEAD, PQgetvalue(res, 0, 0), tail);
		w->fill = tail;
		PQclear(res);
	}
	return start_copy(w);
}

/* Puts conn into COPY mode for w's chunks. */
static int start_copy(it_blob_writer *w)
{
	PGconn *conn = w->conn;
	PGresult *res;

	res = PQexec(conn, "COPY blob_chunks (blob_id, n, data) FROM STDIN (FORMAT binary)");
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		it_log_warn("blob COPY failed: %s", PQerrorMessage(conn));
		PQclear(res);
		release(w);
		return 503;
	}
	PQclear(res);
	w->in_copy = 1;
	if (PQputCopyData(conn, (const char *)copy_header, sizeof(copy_header)) != 1) {
		it_blob_writer_abort(w);
		return 503;
	}
	w->state = W_COPYING;
	return 0;
}

/* Sends the buffered chunk as one tuple. */
static int flush_chunk(it_blob_writer *w)
{
	unsigned char *p = w->row;

	if (w->fill == 0)
		return 0;
	put16(p, 3);
	put32(p + 2, 8);
	put64(p + 6, (uint64_t)w->id);
	put32(p + 14, 4);
	put32(p + 18, (uint32_t)w->next_n);
	put32(p + 22, (uint32_t)w->fill);
	if (PQputCopyData(w->conn, (const char *)p, (int)(ROW_HEAD + w->fill)) != 1) {
		it_log_warn("blob chunk write failed: %s", PQerrorMessage(w->conn));
		return 503;
	}
	w->next_n++;
	w->fill = 0;
	return 0;
}

int it_blob_writer_append(it_blob_writer *w, const void *p, size_t n)
{
	const unsigned char *s = p;

	if (w->state != W_COPYING)
		return 503;
	if (w->md != NULL && EVP_DigestUpdate(w->md, p, n) != 1)
		goto fail;
	while (n > 0) {
		size_t room = IT_BLOB_CHUNK - w->fill, take = n < room ? n : room;
		memcpy(w->row + ROW_HEAD + w->fill, s, take);
		w->fill += take;
		w->size += (int64_t)take;
		s += take;
		n -= take;
		if (w->fill == IT_BLOB_CHUNK && flush_chunk(w) != 0)
			goto fail;
	}
	return 0;
fail:
	w->state = W_FAILED;
	return 503;
}

int it_blob_writer_finish(it_blob_writer *w)
{
	unsigned char digest[EVP_MAX_MD_SIZE], trailer[2];
	unsigned int dlen = 0;
	char ids[24], sizes[24];
	const char *params[3] = {ids, sizes, w->sha256};
	PGresult *res;
	int rc = 503;

	if (w->state != W_COPYING)
		goto out;
	if (flush_chunk(w) != 0)
		goto out;
	if (!w->resumed) {
		if (EVP_DigestFinal_ex(w->md, digest, &dlen) != 1)
			goto out;
		hex(digest, dlen, w->sha256);
	}
	put16(trailer, 0xffff);
	if (PQputCopyData(w->conn, (const char *)trailer, 2) != 1 || PQputCopyEnd(w->conn, NULL) != 1)
		goto out;
	w->in_copy = 0;
	w->state = W_DONE;
	/* The COPY's outcome, then nothing more. */
	res = PQgetResult(w->conn);
	rc = it_db_ok(res, PGRES_COMMAND_OK) ? 0 : 503;
	if (rc != 0)
		it_log_warn("blob COPY failed: %s", PQerrorMessage(w->conn));
	PQclear(res);
	while ((res = PQgetResult(w->conn)) != NULL)
		PQclear(res);
	if (rc != 0)
		goto out;
	snprintf(ids, sizeof(ids), "%" PRId64, w->id);
	snprintf(sizes, sizeof(sizes), "%" PRId64, w->size);
	if (w->resumed)
		params[2] = NULL;
	res = it_db_exec(&w->conn, 0, "UPDATE blobs SET size = $2, sha256 = $3 WHERE id = $1", 3, params);
	rc = it_db_ok(res, PGRES_COMMAND_OK) ? 0 : 503;
	PQclear(res);
out:
	if (rc != 0)
		it_blob_writer_abort(w);
	release(w);
	return rc;
}

void it_blob_writer_abort(it_blob_writer *w)
{
	PGresult *res;

	if (w->in_copy) {
		/* Ending the COPY with an error leaves the transaction failed
		 * (the caller rolls it back) but the connection in sync. */
		if (PQputCopyEnd(w->conn, "upload abandoned") == 1) {
			while ((res = PQgetResult(w->conn)) != NULL)
				PQclear(res);
		}
		w->in_copy = 0;
	}
	w->state = W_DONE;
	release(w);
}

int it_blob_set_sha256(PGconn *conn, int64_t id, const char *sha256_hex)
{
	char ids[24];
	const char *params[2] = {ids, sha256_hex};
	PGresult *res;
	int rc;

	snprintf(ids, sizeof(ids), "%" PRId64, id);
	res = it_db_exec(&conn, 0, "UPDATE blobs SET sha256 = $2 WHERE id = $1", 2, params);
	rc = it_db_ok(res, PGRES_COMMAND_OK) ? 0 : 503;
	PQclear(res);
	return rc;
}

int it_blob_put(PGconn *conn, const void *p, size_t n, int64_t *id, char *sha256_hex)
{
	it_blob_writer w;
	int rc = it_blob_writer_open(&w, conn);

	if (rc != 0)
		return rc;
	rc = it_blob_writer_append(&w, p, n);
	if (rc != 0) {
		it_blob_writer_abort(&w);
		return rc;
	}
	rc = it_blob_writer_finish(&w);
	if (rc == 0) {
		*id = w.id;
		if (sha256_hex)
			memcpy(sha256_hex, w.sha256, 65);
	}
	return rc;
}

int it_blob_stat(PGconn *conn, int64_t id, it_blob_info *out)
{
	char ids[24];
	const char *params[1] = {ids};
	PGresult *res;
	int rc = 503;

	snprintf(ids, sizeof(ids), "%" PRId64, id);
	res = it_db_exec(&conn, 0, "SELECT size, chunk_size, coalesce(sha256, '') FROM blobs WHERE id = $1", 1, params);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		if (PQntuples(res) == 1) {
			out->id = id;
			out->size = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			out->chunk_size = (int32_t)strtol(PQgetvalue(res, 0, 1), NULL, 10);
			snprintf(out->sha256, sizeof(out->sha256), "%s", PQgetvalue(res, 0, 2));
			rc = out->chunk_size > 0 ? 0 : 503;
		} else {
			rc = 404;
		}
	}
	PQclear(res);
	return rc;
}

int it_blob_reader_open(it_blob_reader *r, PGconn *conn, int64_t id, int64_t offset, int64_t length)
{
	int rc;

	memset(r, 0, sizeof(*r));
	r->conn = conn;
	rc = it_blob_stat(conn, id, &r->info);
	if (rc != 0)
		return rc;
	if (length < 0)
		length = r->info.size - (offset < 0 ? 0 : offset);
	if (offset < 0 || offset > r->info.size || length < 0 || length > r->info.size - offset)
		return 416;
	r->pos = offset;
	r->end = offset + length;
	return 0;
}

ssize_t it_blob_reader_next(it_blob_reader *r, const void **data)
{
	char ids[24], ns[24], froms[24], lens[24];
	const char *params[4] = {ids, ns, froms, lens};
	int64_t n, within, take;

	PQclear(r->res);
	r->res = NULL;
	if (r->pos >= r->end)
		return 0;
	n = r->pos / r->info.chunk_size;
	within = r->pos % r->info.chunk_size;
	take = r->info.chunk_size - within;
	if (take > r->end - r->pos)
		take = r->end - r->pos;
	snprintf(ids, sizeof(ids), "%" PRId64, r->info.id);
	snprintf(ns, sizeof(ns), "%" PRId64, n);
	snprintf(froms, sizeof(froms), "%" PRId64, within + 1); /* substring() counts from 1 */
	snprintf(lens, sizeof(lens), "%" PRId64, take);
	/* Binary results: the bytes arrive as they are stored, no hex
	 * decoding, and substring() reads only the TOAST slices it needs. */
	r->res = it_db_exec_bin(r->conn,
				"SELECT substring(data FROM $3::integer FOR $4::integer) FROM blob_chunks"
				" WHERE blob_id = $1 AND n = $2",
				4, params, NULL, NULL, 1);
	if (!it_db_ok(r->res, PGRES_TUPLES_OK))
		return -503;
	if (PQntuples(r->res) != 1 || PQgetlength(r->res, 0, 0) != take)
		return -404;
	*data = PQgetvalue(r->res, 0, 0);
	r->pos += take;
	return (ssize_t)take;
}

void it_blob_reader_close(it_blob_reader *r)
{
	PQclear(r->res);
	r->res = NULL;
}

int it_blob_export(PGconn *conn, int64_t id, int fd, char *sha256_hex)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *md = NULL;
	it_blob_reader r;
	const void *p;
	ssize_t n;
	int rc = it_blob_reader_open(&r, conn, id, 0, -1);

	if (rc != 0)
		return rc;
	if (sha256_hex != NULL && ((md = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)) {
		rc = 503;
		goto out;
	}
	while ((n = it_blob_reader_next(&r, &p)) > 0) {
		const char *c = p;
		if (md != NULL && EVP_DigestUpdate(md, p, (size_t)n) != 1) {
			rc = 503;
			goto out;
		}
		while (n > 0) {
			ssize_t w = write(fd, c, (size_t)n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = 500;
				goto out;
			}
			c += w;
			n -= w;
		}
	}
	if (n < 0) {
		rc = (int)-n;
		goto out;
	}
	if (md != NULL) {
		if (EVP_DigestFinal_ex(md, digest, &dlen) != 1) {
			rc = 503;
			goto out;
		}
		hex(digest, dlen, sha256_hex);
	}
out:
	if (md != NULL)
		EVP_MD_CTX_free(md);
	it_blob_reader_close(&r);
	return rc;
}

int it_blob_delete(PGconn *conn, int64_t id)
{
	char ids[24];
	const char *params[1] = {ids};
	PGresult *res;
	int rc = 503;

	snprintf(ids, sizeof(ids), "%" PRId64, id);
	res = it_db_exec(&conn, 0, "DELETE FROM blobs WHERE id = $1", 1, params);
	if (it_db_ok(res, PGRES_COMMAND_OK))
		rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : 404;
	PQclear(res);
	return rc;
}

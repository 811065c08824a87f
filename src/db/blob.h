/* blob.h: immutable byte strings stored as chunk rows, written and read as streams. */
#ifndef IT_DB_BLOB_H
#define IT_DB_BLOB_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes per chunk row of new blobs. Every chunk but the last is full, so the
 * chunk holding an offset is offset / chunk_size (docs/storage.md). */
#define IT_BLOB_CHUNK (256 * 1024)

/* Outcomes, as in the rest of the database layer: 0, or an HTTP status the
 * caller can pass on: 404 no such blob, 416 range outside the blob, 503
 * database error (the caller must then roll back its transaction). */

/* A blob being written. Everything happens inside the caller's open
 * transaction on conn: the blob and its chunks exist for others only once
 * that transaction commits, and vanish with a rollback. While a writer is
 * open (between open and finish/abort) conn is in COPY mode and must not be
 * used for anything else. Memory: one chunk buffer, whatever the blob size. */
typedef struct it_blob_writer {
	PGconn *conn;
	int64_t id;	 /* the new blob's id, set by open */
	int64_t size;	 /* bytes appended so far */
	char sha256[65]; /* lower-case hex, set by finish */
	/* private */
	int32_t next_n;
	size_t fill;
	unsigned char *row; /* one COPY tuple: header + up to IT_BLOB_CHUNK bytes */
	void *md;	    /* EVP_MD_CTX */
	int state;
	int in_copy; /* the connection is in COPY IN mode */
	int resumed; /* opened by it_blob_writer_resume: sha256 unknown */
} it_blob_writer;

/* Creates a blob row and starts streaming its chunks. Returns 0 or 503; on
 * failure nothing needs freeing but the transaction must be rolled back. */
int it_blob_writer_open(it_blob_writer *w, PGconn *conn);

/* Opens a writer that appends to blob id, which holds size bytes (a
 * resumable upload, whose bytes arrive over many transactions). A last chunk
 * shorter than IT_BLOB_CHUNK is read back into the writer and deleted, so
 * every chunk but the last stays full. Such a writer knows no hash of the
 * whole: finish records the size and leaves sha256 unset (see
 * it_blob_set_sha256). Same transaction rules and returns as open. */
int it_blob_writer_resume(it_blob_writer *w, PGconn *conn, int64_t id, int64_t size);

/* Appends n bytes. Returns 0 or 503 (the writer is then failed: abort it). */
int it_blob_writer_append(it_blob_writer *w, const void *p, size_t n);

/* Writes the last chunk, ends the stream and records size and sha256 in the
 * blob row. conn is usable again afterwards. Returns 0 or 503. Frees the
 * writer's memory either way; w->id, size and sha256 stay readable. */
int it_blob_writer_finish(it_blob_writer *w);

/* Gives up: ends the COPY with an error so that conn can still run ROLLBACK,
 * and frees the writer's memory. Safe after finish, after a failed open, and
 * more than once. The caller rolls back its transaction. */
void it_blob_writer_abort(it_blob_writer *w);

/* Records the hash (lower-case hex) of blob id, for blobs written by resumed
 * writers. Returns 0 or 503. */
int it_blob_set_sha256(PGconn *conn, int64_t id, const char *sha256_hex);

/* Stores p[0..n) as a new blob in one call (thumbnails). Returns 0 and sets
 * *id (and sha256_hex when not NULL, 65 bytes) or 503. */
int it_blob_put(PGconn *conn, const void *p, size_t n, int64_t *id, char *sha256_hex);

/* What a blob is, without its bytes. */
typedef struct it_blob_info {
	int64_t id;
	int64_t size;
	int32_t chunk_size;
	char sha256[65];
} it_blob_info;

/* Looks a blob up. Returns 0, 404 or 503. */
int it_blob_stat(PGconn *conn, int64_t id, it_blob_info *out);

/* Reads bytes [offset, offset + length) of a blob in bounded memory, one
 * chunk (or part of one) per query. Blobs never change once written, so
 * reading without a transaction is consistent; a blob deleted while it is
 * being read makes the next read fail with 404. */
typedef struct it_blob_reader {
	PGconn *conn;
	it_blob_info info;
	int64_t pos;   /* next offset to read */
	int64_t end;   /* one past the last offset to read */
	PGresult *res; /* holds the bytes last returned */
} it_blob_reader;

/* Opens a reader over [offset, offset + length) of blob id; length -1 means
 * to the end. Returns 0, 404, 416 (offset past the end, or offset + length
 * past the end) or 503. An empty range is allowed (offset == size). */
int it_blob_reader_open(it_blob_reader *r, PGconn *conn, int64_t id, int64_t offset, int64_t length);

/* Sets *data to the next bytes of the range and returns how many (at most
 * one chunk), 0 at the end of the range, or -404 / -503 on failure. *data
 * stays valid until the next call or close. */
ssize_t it_blob_reader_next(it_blob_reader *r, const void **data);

/* Frees what the reader holds. Safe to call twice. */
void it_blob_reader_close(it_blob_reader *r);

/* Copies a whole blob to fd (for libvips, which wants a file), and writes
 * the SHA-256 of the bytes (lower-case hex, 65 bytes with the NUL) to
 * sha256_hex unless it is NULL. Returns 0, 404, 503, or 500 when writing to
 * fd fails. */
int it_blob_export(PGconn *conn, int64_t id, int fd, char *sha256_hex);

/* Deletes a blob and its chunks inside the caller's transaction. Images
 * delete their blobs themselves (a trigger, sql/002_images.sql); this is
 * for blobs that never got attached. Returns 0, 404 or 503. */
int it_blob_delete(PGconn *conn, int64_t id);

#endif

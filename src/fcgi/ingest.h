/* ingest.h: what every upload shares, multipart or resumable: its first error and the answer to it, the sniffing of a
 * file's first bytes, and the last step, where a complete file becomes an image with its event. */
#ifndef IT_FCGI_INGEST_H
#define IT_FCGI_INGEST_H

#include "common/urlsign.h"
#include "db/images.h"
#include "fcgi/auth.h"
#include "image/sniff.h"

#include <libpq-fe.h>
#include <stdint.h>

/* Why a file or an upload request was refused: an HTTP status, a problem
 * slug (a static string) and a sentence for the client. status 0 means no
 * error. Both upload handlers keep their request's first error in one. */
typedef struct it_ingest_error {
	int status;
	const char *slug;
	char detail[256];
	int64_t retry_after; /* with status 429: the seconds for Retry-After */
} it_ingest_error;

/* Sets e (when no error is set yet) and returns -1. */
int it_ingest_fail(it_ingest_error *e, int status, const char *slug, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Takes a credential refused by it_auth_resolve as e's error (when no
 * error is set yet), sending its WWW-Authenticate on req and keeping its
 * Retry-After. A malformed credential (400) keeps the upload endpoints'
 * slug of old, invalid-session-id. Returns -1. */
int it_ingest_refused(it_req *req, it_ingest_error *e, const it_auth_refusal *why);

/* Counts one upload into session against rate_uploads (the
 * "uploads-session" bucket). Returns 0, or -1 with e set to 429
 * rate-limited when the session is over the limit. */
int it_ingest_session_rate(const char *session, it_ingest_error *e);

/* Answers the upload request with e: Retry-After with 503 (5 seconds) and
 * 429 (e->retry_after), counted in imagetools_upload_errors_total by
 * status; no error recorded (status 0) is answered 500 internal. The
 * caller adds its own headers first. Returns the status it answered with. */
int it_ingest_answer(it_req *req, const it_ingest_error *e);

/* Adds the first bytes of a file (n bytes at p) to head, which holds
 * *head_len of IT_SNIFF_MAGIC_BYTES so far, until it is full. Returns 1 when
 * the bytes so far show that the file is no image it_sniff_type knows, so
 * that the upload can be refused before the rest arrives, else 0. */
int it_ingest_sniff_head(unsigned char *head, size_t *head_len, const char *p, size_t n);

/* An unlinked temporary file (O_TMPFILE under $TMPDIR, else mkstemp and
 * unlink): it disappears with its descriptor, whatever happens to the
 * process. Returns the descriptor or -1 with errno set. */
int it_ingest_tmpfile(void);

/* Writes all n bytes of p to fd (the temporary file), going on after EINTR
 * and short writes. Returns 0, or -1 with errno set (ENOSPC, EIO ...). */
int it_ingest_write(int fd, const char *p, size_t n);

/* The file's bytes are complete in fd (size bytes) and in the blob
 * img->blob_id: walks its header (it_sniff_fd), judges it against the pixel
 * limits of the configuration, makes the thumbnail and stores it as a
 * second blob in conn's open transaction, and fills img's content_type,
 * width, height, thumb_blob_id, original_filename and filename (from
 * client_name, as the client sent it; may be ""). Returns 0, or -1 with e
 * set: 415 not-an-image, unsupported-format or corrupt-image, 413
 * too-many-pixels, 503 database-unavailable (roll back). */
int it_ingest_examine(PGconn *conn, int fd, int64_t size, const char *client_name, it_image *img, it_ingest_error *e);

/* Inserts img (all its fields set, session_id and source included) and
 * appends its image.uploaded event, with URLs signed by signer, in conn's
 * open transaction. The caller has checked the session's quota under its
 * row lock (it_images_session_bytes with lock) and commits. Returns 0, or
 * -1 with e set: 404 unknown-session, 503 database-unavailable. */
int it_ingest_record(PGconn *conn, it_image *img, const it_urlsign *signer, it_ingest_error *e);

#endif

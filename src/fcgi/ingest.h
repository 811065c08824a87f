/* ingest.h: the last step of every upload, multipart or resumable: a complete file becomes an image with its event. */
#ifndef IT_FCGI_INGEST_H
#define IT_FCGI_INGEST_H

#include "common/urlsign.h"
#include "db/images.h"

#include <libpq-fe.h>
#include <stdint.h>

/* Why a file was refused: an HTTP status, a problem slug (a static string)
 * and a sentence for the client. status 0 means no error. */
typedef struct it_ingest_error {
	int status;
	const char *slug;
	char detail[256];
} it_ingest_error;

/* Sets e (when no error is set yet) and returns -1. */
int it_ingest_fail(it_ingest_error *e, int status, const char *slug, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

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

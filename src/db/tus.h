/* tus.h: the rows of resumable (tus) uploads: created, advanced one committed step at a time, finished or removed. */
#ifndef IT_DB_TUS_H
#define IT_DB_TUS_H

#include "db/images.h"

#include <libpq-fe.h>
#include <stdint.h>

/* An upload id: 24 random bytes in unpadded base64url (common/id.h). */
#define IT_TUS_ID_LEN 32
/* Longest Upload-Metadata header kept, bytes. */
#define IT_TUS_METADATA_MAX 4096

/* Outcomes, as in the rest of the database layer: 0, or an HTTP status:
 * 404 unknown upload (or expired, or its session is), 423 another request
 * holds the upload, 503 database error (roll back). */

/* One upload row. Strings are NUL-terminated copies owned by the struct. */
typedef struct it_tus_upload {
	char id[IT_TUS_ID_LEN + 1]; /* the secret in the URL */
	char name[37];		    /* the public name (uuid), in events */
	char session_id[80];
	int64_t blob_id; /* 0 once the bytes belong to an image */
	int64_t length;	 /* -1 while deferred */
	int64_t offset;
	char metadata[IT_TUS_METADATA_MAX + 1]; /* Upload-Metadata as sent */
	char filename[IT_IMAGE_ORIG_MAX + 1];	/* as sent, may be "" */
	char display[IT_IMAGE_NAME_MAX + 1];	/* sanitised for display, in events */
	char source[16];
	char image_id[37];  /* "" until the upload became an image */
	int64_t expires;    /* Unix time */
	char device_id[24]; /* the device whose token created it; "" for a session id */
} it_tus_upload;

/* Creates the upload u describes (id, session_id, length, metadata,
 * filename, display, source, device_id set by the caller) with an empty blob, expiring ttl
 * seconds from now, and appends upload.started, in conn's open transaction.
 * Fills name, blob_id and expires. Returns 0, 404 (the session is unknown or
 * expired) or 503. */
int it_tus_create(PGconn *conn, it_tus_upload *u, int64_t ttl);

/* Reads upload id if it and its session are live. With lock, inside the
 * caller's transaction, the row is locked (FOR UPDATE NOWAIT: a request
 * that finds another one writing gets 423 at once rather than waiting for
 * it). Returns 0, 404, 423 or 503. */
int it_tus_get(PGconn **connp, const char *id, int lock, it_tus_upload *out);

/* Sets the length of an upload that deferred it. Returns 0 or 503. */
int it_tus_set_length(PGconn *conn, const char *id, int64_t length);

/* Records offset, moves the expiry ttl seconds ahead, and appends
 * upload.progress when it is due (at least one percent on, interval_ms
 * after the last one). Call it last in the transaction. Returns 0 or 503. */
int it_tus_advance(PGconn *conn, const char *id, int64_t offset, int64_t ttl, int64_t interval_ms);

/* Marks the upload as image image_id: the blob now belongs to the image.
 * Returns 0 or 503. */
int it_tus_done(PGconn *conn, const char *id, const char *image_id);

/* Deletes the upload (and, by trigger, its unfinished bytes) and, when it
 * had not become an image, appends upload.failed with reason (a problem
 * slug, "terminated", ...). Returns 0 or 503. */
int it_tus_remove(PGconn *conn, const it_tus_upload *u, const char *reason);

#endif

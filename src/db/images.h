/* images.h: the images table: metadata rows that point at their blobs. */
#ifndef IT_DB_IMAGES_H
#define IT_DB_IMAGES_H

#include "common/urlsign.h"

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* Longest sanitised display name, in bytes (UTF-8), NUL excluded. */
#define IT_IMAGE_NAME_MAX 255
/* Longest original filename kept, in bytes (UTF-8), NUL excluded. */
#define IT_IMAGE_ORIG_MAX 1023

/* One image row. Strings are NUL-terminated copies owned by the struct. */
typedef struct it_image {
	char id[37]; /* uuid, lower-case */
	char session_id[80];
	char filename[IT_IMAGE_NAME_MAX + 1];
	char original_filename[IT_IMAGE_ORIG_MAX + 1];
	char content_type[32]; /* sniffed: image/jpeg, image/png, ... */
	int64_t size;
	char sha256[65];
	int32_t width, height;
	char source[16];
	int32_t version;
	int64_t blob_id;
	int64_t thumb_blob_id; /* 0 when there is none */
	char created_at[40], updated_at[40];
	int64_t pos; /* listing order / pagination cursor */
} it_image;

/* Outcomes, as in the rest of the database layer: 0, or an HTTP status:
 * 400 malformed id, 404 unknown image (or its session expired), 503
 * database error (after which a transaction must be rolled back). */

/* Inserts img (filename, original_filename, content_type, size, sha256,
 * width, height, source, blob_id, thumb_blob_id, session_id) inside the
 * caller's transaction and fills in id, version, timestamps and pos.
 * Returns 0, 404 (session gone) or 503. */
int it_images_insert(PGconn *conn, it_image *img);

/* The bytes held by the images of a live session, in *bytes. With lock, inside
 * the caller's transaction, the session's row is locked first (FOR NO KEY
 * UPDATE, the lock an event append takes anyway) and the sum is read by a
 * second statement, which sees every upload that committed while this one
 * waited: concurrent uploads into one session count each other. Returns 0,
 * 400, 404 (no such session, or expired) or 503. */
int it_images_session_bytes(PGconn *conn, const char *session, int lock, int64_t *bytes);

/* Reads one image of a live session, whichever session it is: only for
 * callers that hold a capability for the image itself (a signed URL, a job
 * of the image's session). Returns 0, 400, 404 or 503. */
int it_images_get(PGconn **connp, const char *id, it_image *out);

/* Reads image id if it belongs to session (the credential the caller
 * presented) and that session is live: one statement on (id, session).
 * An image of another session answers 404 exactly like an unknown one, so
 * that no caller learns whether an id exists. Returns 0, 400 (id is not a
 * UUID), 404 or 503. */
int it_images_get_owned(PGconn **connp, const char *id, const char *session, it_image *out);

/* Like it_images_get but locks the row (FOR UPDATE) inside the caller's
 * transaction, for changes: rename, delete, a new version. */
int it_images_get_for_update(PGconn *conn, const char *id, it_image *out);

/* Calls fn for up to limit images of session, newest first, whose pos is
 * below before (0: from the newest). Returns the number passed to fn, or
 * -503 on a database error (or when memory runs out). Stops early when fn returns non-zero. */
int it_images_list(PGconn **connp, const char *session, int64_t before, int limit,
		   int (*fn)(const it_image *img, void *arg), void *arg);

/* Renames image id of session inside the caller's transaction (updated_at
 * moves, the version does not: the bytes are the same, and so the signed
 * URLs handed out stay valid). Fills out with the new row. Returns 0, 400,
 * 404 (unknown, or not of session) or 503. */
int it_images_rename(PGconn *conn, const char *id, const char *session, const char *filename, it_image *out);

/* Deletes image id of session inside the caller's transaction; its blobs go
 * with it (trigger). Fills out (when not NULL) with the row as it was.
 * Returns 0, 400, 404 (unknown, or not of session) or 503. */
int it_images_delete(PGconn *conn, const char *id, const char *session, it_image *out);

/* Swaps in a new version inside the caller's transaction: blob_id (and
 * thumb_blob_id, 0 for none), content_type, size, sha256, width, height and
 * filename (unless "": a new format brings the extension of its type) are
 * taken from v; version is bumped, updated_at moves, and the old blobs
 * are deleted (trigger). Fills out with the new row. Returns 0, 400, 404 or
 * 503. The caller then appends image.updated (it_images_event_data). */
int it_images_new_version(PGconn *conn, const char *id, const it_image *v, it_image *out);

/* Writes the signed URL of img's bytes named label ("file" or "thumbnail")
 * under url_prefix (NULL: none), signed by signer at time now (Unix), into
 * out: "<prefix>/api/v1/images/<id>/<label>?v=<version>&exp=<unix>&sig=<mac>".
 * Returns 0, or -ENOSPC when out (outlen bytes) is too small. A pure
 * helper: it follows the common rule, not the HTTP one. */
int it_images_url(const it_image *img, const char *label, const char *url_prefix, const it_urlsign *signer, int64_t now,
		  char *out, size_t outlen);

/* The image's API representation (docs/api.md), with file_url and
 * thumbnail_url signed by signer (not NULL) under url_prefix. It never
 * carries the session id. Returns a new object (json_object_put it). */
json_object *it_images_json(const it_image *img, const char *url_prefix, const it_urlsign *signer);

/* The data of an image.uploaded or image.updated event for img, with URLs
 * signed as in it_images_json. Returns a new object (json_object_put it). */
json_object *it_images_event_data(const it_image *img, const char *url_prefix, const it_urlsign *signer);

#endif

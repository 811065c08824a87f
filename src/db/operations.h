/* operations.h: the long-operation job queue of docs/worker.md, as the API and the worker use it.
 *
 * Two prefixes, split by what a call works on: it_op_* handle one
 * operation's type and parameters, pure validation and encoding that asks no
 * database (the common rule: 0 or a negative errno); it_ops_* work on the
 * table of operations, the queue, for a request (the database rule: 0 or an
 * HTTP status). The worker's side of the queue is worker/queue.h. */
#ifndef IT_DB_OPERATIONS_H
#define IT_DB_OPERATIONS_H

#include <json-c/json.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

/* The NOTIFY channel that wakes workers when a job is queued (payload: the
 * operation id). Separate from the event channel so that event traffic never
 * wakes a worker and job traffic never reaches event listeners. */
#define IT_JOBS_CHANNEL "imagetools_jobs"

/* Most images one operation may name. */
#define IT_OPS_MAX_IMAGES 1000

/* Largest width or height bulk_resize accepts, pixels. */
#define IT_OPS_MAX_DIMENSION 16384

/* A job claimed this many times without finishing (each claim ended by an
 * expired lease, i.e. a dead or hung worker) is failed as "abandoned". */
#define IT_OPS_MAX_ATTEMPTS 3

enum it_op_type { IT_OP_COMPRESS = 0, IT_OP_RESIZE, IT_OP_CONVERT, IT_OP_NTYPES };
enum it_op_format { IT_FMT_KEEP = 0, IT_FMT_JPEG, IT_FMT_PNG, IT_FMT_WEBP, IT_FMT_AVIF };

/* JPEG chroma subsampling: libvips' choice (4:2:0 below quality 90), always, never. */
enum it_op_subsample { IT_SUB_AUTO = 0, IT_SUB_ON, IT_SUB_OFF };

/* An operation's parameters after validation, with defaults filled in. */
typedef struct it_op_params {
	enum it_op_type type;
	enum it_op_format format; /* IT_FMT_KEEP: the image's own format where possible */
	int quality;		  /* 1-100, for JPEG, WebP and AVIF output and PNG palettes */
	int strip;		  /* drop EXIF, XMP, IPTC and comments (a non-sRGB ICC profile stays) */
	int palette;		  /* PNG output: quantise to a palette of at most 256 colours (lossy) */
	int progressive;	  /* JPEG output: progressive (interlaced) */
	enum it_op_subsample subsample;
	unsigned char background[3]; /* what alpha is flattened onto for a format without alpha */
	int width, height;	     /* bulk_resize: fit within (0 = unbounded side) */
	int enlarge;		     /* bulk_resize: also scale smaller images up */
} it_op_params;

/* Returns the type for its name ("bulk_compress", ...) or -EINVAL. Like
 * it_op_params_parse, a pure validation that asks no database: both follow
 * the common rule (0 or a negative errno), not the HTTP one. */
int it_op_type_parse(const char *name);
const char *it_op_type_name(enum it_op_type t);

/* The verb shown in progress messages ("Compressing"). */
const char *it_op_type_verb(enum it_op_type t);

/* Validates params (a JSON object, or NULL for {}) for type and fills out.
 * Unknown keys, wrong JSON types and out-of-range values are errors.
 * Returns 0, or -EINVAL with a sentence for the client in err. */
int it_op_params_parse(enum it_op_type type, json_object *params, it_op_params *out, char *err, size_t errlen);

/* Builds the normalised JSON form of p (stored in operations.params, so the
 * worker reads exactly what was validated). Returns a new object (put it). */
json_object *it_op_params_json(const it_op_params *p);

/* Queues an operation on images (n distinct uuids, validated by the caller)
 * of session, appends its operation.started event in the same transaction
 * and wakes a worker. *out receives the operation's JSON (put it).
 * missing (at least 37 bytes) is set to "" or, when an image is not in the
 * session, to that image's id. Returns 0, 404 (unknown or expired session
 * when missing is "", else an unknown image), or 503. */
int it_ops_enqueue(PGconn **connp, const char *session, const it_op_params *p, const char *const *image_ids, int n,
		   json_object **out, char *missing);

/* Reads operation id of session (the credential the caller presented); *out
 * receives its JSON, which does not carry the session id (put it). One
 * statement on (id, session): an operation of another session answers 404
 * like an unknown one. Returns 0, 404 when unknown, not of session, or its
 * session has expired, or 503. */
int it_ops_get(PGconn **connp, const char *id, const char *session, json_object **out);

/* Asks for operation id of session to stop. A queued one ends at once as
 * cancelled (with its operation.failed event, reason "cancelled"); a running
 * one is stopped by its worker before the next image. *out receives the
 * operation's JSON (put it). Returns 0, 404 unknown or not of session, 409
 * already finished, or 503. */
int it_ops_cancel(PGconn **connp, const char *id, const char *session, json_object **out);

#endif

/* queue.h: the worker's side of the job queue: claim, lease, record progress, finish (docs/worker.md). */
#ifndef IT_WORKER_QUEUE_H
#define IT_WORKER_QUEUE_H

#include "db/operations.h"

#include <json-c/json.h>
#include <libpq-fe.h>

/* A claimed job. Owned by the worker that claimed it; it_queue_job_free. */
typedef struct it_queue_job {
	char id[37];
	char session[80];
	it_op_params params;
	char (*image_ids)[37]; /* total entries */
	int total;
	int done;	     /* images already finished by earlier claims */
	int attempts;	     /* claims so far, this one included */
	json_object *result; /* {"images": [...]} as stored */
} it_queue_job;

/* Claims the oldest runnable job (queued, or running with an expired lease
 * and fewer than IT_OPS_MAX_ATTEMPTS claims) of a live session for owner,
 * with a lease of lease seconds. FOR UPDATE SKIP LOCKED: concurrent workers
 * never get the same job. Returns the number of jobs claimed, 1 with job
 * filled or 0 when there is none, or -1 on a database error. */
int it_queue_claim(PGconn *conn, const char *owner, int lease, it_queue_job *job);

/* The outcomes of a call on a claimed job that succeeded: the worker
 * layer's named, non-negative outcomes (errors stay -1). */
enum it_queue_rc {
	IT_QUEUE_OK = 0,	/* done; the job is still ours */
	IT_QUEUE_CANCELLED = 1, /* done, and the job's cancellation was requested */
	IT_QUEUE_LOST = 2	/* the job is no longer ours (lease lost, session gone) */
};

/* Extends the lease. Returns IT_QUEUE_OK, IT_QUEUE_CANCELLED when
 * cancellation was requested, IT_QUEUE_LOST when the job is no longer ours
 * (lease lost to another worker, session gone), or -1 on a database error. */
int it_queue_renew(PGconn *conn, const it_queue_job *job, const char *owner, int lease);

/* Inside the caller's transaction: records progress (current image,
 * progress percent, message, done count, result) and extends the lease, if
 * the job is still ours. Returns IT_QUEUE_OK, IT_QUEUE_LOST when it is not
 * ours any more (roll back), or -1. */
int it_queue_record(PGconn *conn, const it_queue_job *job, const char *owner, int lease, int current, int progress,
		    const char *message);

/* Inside the caller's transaction: ends the job with status ("completed",
 * "failed", "cancelled") and error (NULL for none). Returns IT_QUEUE_OK,
 * IT_QUEUE_LOST or -1 as it_queue_record. */
int it_queue_finish(PGconn *conn, const it_queue_job *job, const char *owner, const char *status, const char *error,
		    const char *message);

/* Gives the job back to the queue untouched (shutdown), without counting the
 * claim as an attempt, and wakes another worker. Returns 0 or -1. */
int it_queue_release(PGconn *conn, const it_queue_job *job, const char *owner);

void it_queue_job_free(it_queue_job *job);

#endif

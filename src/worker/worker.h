/* worker.h: runs one claimed operation image by image, with progress events, cancellation and shutdown.
 *
 * Return convention of the worker layer (src/worker/, docs/layout.md): 0 or
 * -1, logged or with a sentence in err or why (it_cmyk_jpeg's -1 also means
 * "take the ordinary path"). A call that can succeed in more than one way
 * returns a named, non-negative outcome and keeps -1 for errors
 * (it_queue_renew, _record, _finish: enum it_queue_rc); it_queue_claim
 * returns how many jobs it claimed (0 or 1) or -1. it_transform_can_write
 * and it_transform_can_read_heif are predicates. */
#ifndef IT_WORKER_WORKER_H
#define IT_WORKER_WORKER_H

#include "common/config.h"
#include "worker/queue.h"

#include <libpq-fe.h>
#include <signal.h>

typedef struct it_worker {
	PGconn *conn; /* owned by the caller */
	const it_config *cfg;
	char owner[128];		 /* lease owner: host:pid:random */
	int progress_interval_ms;	 /* least time between progress events of one job */
	int parallel;			 /* images transformed at once (threads), >= 1 */
	volatile sig_atomic_t *stopping; /* set by SIGTERM: release the job after the current image */
} it_worker;

/* Works through job (claimed by w->owner) from image job->done + 1 to the
 * end, then completes or fails it; stops early when cancellation is asked
 * (the job ends as cancelled), when *stopping is set (the job goes back to
 * the queue) or when the lease was lost (another worker has it now). Every
 * image's new version, its image.updated event and the job's progress
 * commit together. Returns 0, or -1 on a database error (the job is then
 * left to its lease). Does not free job. */
int it_worker_run(it_worker *w, it_queue_job *job);

#endif

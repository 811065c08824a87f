/* pool.h: the upload threads of imagetools.fcgi, fed by the accept threads through a bounded queue, with the count of
 * uploads in flight per client address. */
#ifndef IT_FCGI_POOL_H
#define IT_FCGI_POOL_H

#include "fcgi/request.h"
#include "fcgi/router.h"

#include <fcgiapp.h>

/* One accepted request on its way from the thread that accepted it to the
 * thread that serves it. Heap-allocated, with the FastCGI request inside:
 * req points into fcgx's parameters, and both move together. */
typedef struct it_pool_job {
	FCGX_Request fcgx;
	it_req req;
	const it_route *route; /* the route it_app_route found */
	struct it_pool_job *next;
} it_pool_job;

/* Serves a job on an upload thread and ends it: answers, finishes the
 * FastCGI request and frees the job. */
typedef void (*it_pool_fn)(it_pool_job *job);

typedef struct it_pool it_pool;

enum it_pool_rc {
	IT_POOL_QUEUED = 0,	    /* the pool owns the job now */
	IT_POOL_ADDRESS_BUSY = 429, /* its address has per_address jobs in flight */
	IT_POOL_FULL = 503	    /* every thread and queue slot is taken, or the pool is stopping */
};

/* Starts threads upload threads (each keeps its own database connection, as
 * every request thread does) that call serve for each job, oldest first. At
 * most threads + queue_max jobs are in flight (running or waiting), and at
 * most per_address of them from one client address (0: no limit). drop ends
 * the jobs still waiting when the pool stops (answering 503). Returns the
 * pool, or NULL when threads cannot be started or memory is short. */
it_pool *it_pool_start(unsigned threads, unsigned queue_max, unsigned per_address, it_pool_fn serve, it_pool_fn drop);

/* Hands job over to the pool. Never blocks for long: it takes the lock, no
 * more. Returns IT_POOL_QUEUED when the pool has taken the job (the caller
 * must not touch it again), else the refusal (the caller keeps the job). */
enum it_pool_rc it_pool_submit(it_pool *pool, it_pool_job *job);

/* Stops the pool: waiting jobs are dropped, threads serving a job are woken
 * with SIGUSR2 (the process must have a handler without SA_RESTART, so that
 * a read waiting for a client returns) until they end, for at most about five
 * seconds. Frees the pool unless a thread would not end. NULL is allowed. */
void it_pool_stop(it_pool *pool);

#endif

/* pool.c: the upload threads of imagetools.fcgi, fed by the accept threads through a bounded queue, with the count of
 * uploads in flight per client address. */
#include "config.h"

#include "fcgi/pool.h"

#include "common/log.h"
#include "db/db.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest client address kept: IPv6 text with a zone fits. */
#define ADDR_MAX 64

/* Jobs in flight from one address. There are never more distinct addresses
 * than jobs in flight, so a fixed table of threads + queue_max slots, searched
 * from end to end, is enough: it is short, and it allocates nothing. */
struct addr_count {
	char addr[ADDR_MAX];
	unsigned n; /* 0: the slot is free */
};

struct it_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	it_pool_job *head, *tail;
	unsigned threads, capacity, per_address;
	unsigned in_flight;
	int stopping;
	it_pool_fn serve, drop;
	struct addr_count *addrs; /* capacity slots */
	pthread_t *tids;
	unsigned started;
};

static struct addr_count *addr_find(it_pool *p, const char *addr, int create)
{
	struct addr_count *free_slot = NULL;

	for (unsigned i = 0; i < p->capacity; i++) {
		if (p->addrs[i].n == 0) {
			if (free_slot == NULL)
				free_slot = &p->addrs[i];
		} else if (strcmp(p->addrs[i].addr, addr) == 0) {
			return &p->addrs[i];
		}
	}
	if (create && free_slot)
		snprintf(free_slot->addr, sizeof(free_slot->addr), "%s", addr);
	return create ? free_slot : NULL;
}

static void *upload_thread(void *arg)
{
	it_pool *p = arg;

	for (;;) {
		char addr[ADDR_MAX];
		struct addr_count *a;
		it_pool_job *job;
		int stopping;

		pthread_mutex_lock(&p->lock);
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		job = p->head;
		if (job == NULL) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->head = job->next;
		if (p->head == NULL)
			p->tail = NULL;
		stopping = p->stopping;
		pthread_mutex_unlock(&p->lock);

		/* The job is freed by serve: its address is kept for the count. */
		snprintf(addr, sizeof(addr), "%s", job->req.remote_addr);
		(stopping ? p->drop : p->serve)(job);

		pthread_mutex_lock(&p->lock);
		p->in_flight--;
		if ((a = addr_find(p, addr, 0)) != NULL)
			a->n--;
		pthread_mutex_unlock(&p->lock);
	}
	it_db_thread_close();
	return NULL;
}

it_pool *it_pool_start(unsigned threads, unsigned queue_max, unsigned per_address, it_pool_fn serve, it_pool_fn drop)
{
	it_pool *p = calloc(1, sizeof(*p));

	if (p == NULL || threads == 0)
		goto fail;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->threads = threads;
	p->capacity = threads + queue_max;
	p->per_address = per_address;
	p->serve = serve;
	p->drop = drop;
	p->addrs = calloc(p->capacity, sizeof(*p->addrs));
	p->tids = calloc(threads, sizeof(*p->tids));
	if (p->addrs == NULL || p->tids == NULL)
		goto fail;
	for (; p->started < threads; p->started++) {
		if (pthread_create(&p->tids[p->started], NULL, upload_thread, p) != 0) {
			it_log_error("cannot start upload thread %u", p->started);
			it_pool_stop(p);
			return NULL;
		}
	}
	return p;
fail:
	if (p) {
		free(p->addrs);
		free(p->tids);
	}
	free(p);
	return NULL;
}

enum it_pool_rc it_pool_submit(it_pool *p, it_pool_job *job)
{
	enum it_pool_rc rc = IT_POOL_FULL;
	struct addr_count *a;

	pthread_mutex_lock(&p->lock);
	if (p->stopping || p->in_flight >= p->capacity)
		goto out;
	a = addr_find(p, job->req.remote_addr, 1);
	if (a == NULL)
		goto out; /* cannot happen: fewer addresses than jobs in flight */
	if (p->per_address > 0 && a->n >= p->per_address) {
		rc = IT_POOL_ADDRESS_BUSY;
		goto out;
	}
	a->n++;
	p->in_flight++;
	job->next = NULL;
	if (p->tail)
		p->tail->next = job;
	else
		p->head = job;
	p->tail = job;
	pthread_cond_signal(&p->wake);
	rc = IT_POOL_QUEUED;
out:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void it_pool_stop(it_pool *p)
{
	unsigned left;
	char *done;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = 1;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	/* A thread reading a slow body is woken by the signal (its read fails),
	 * ends that request, drops what still waits, and leaves. */
	left = p->started;
	done = calloc(p->started ? p->started : 1, 1);
	for (int round = 0; done && left > 0 && round < 100; round++) {
		for (unsigned i = 0; i < p->started; i++) {
			if (done[i])
				continue;
			if (pthread_tryjoin_np(p->tids[i], NULL) == 0) {
				done[i] = 1;
				left--;
			} else {
				pthread_kill(p->tids[i], SIGUSR2);
			}
		}
		if (left > 0)
			usleep(50 * 1000);
	}
	free(done);
	if (left > 0) {
		/* A thread still holds the pool: it goes with the process. */
		it_log_warn("%u upload threads did not end", left);
		return;
	}
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->addrs);
	free(p->tids);
	free(p);
}

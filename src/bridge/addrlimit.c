/* addrlimit.c: fixed-window counters per key (client address), for the bridge's connection rate limit. */
#include "config.h"

#include "bridge/addrlimit.h"

#include "common/list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct it_addrlimit_entry {
	it_hnode node; /* in it_addrlimit.keys, named by key */
	double start;
	unsigned count;
	char key[64];
};

void it_addrlimit_init(it_addrlimit *rl, unsigned limit, double window, size_t max_keys)
{
	memset(rl, 0, sizeof(*rl));
	rl->limit = limit;
	rl->window = window;
	rl->max_keys = max_keys;
	it_htab_init(&rl->keys);
}

/* Counts a hit in a window that started at *start; returns the wait. */
static unsigned count(const it_addrlimit *rl, double *start, unsigned *n, double now)
{
	if (now - *start >= rl->window) {
		*start = now;
		*n = 0;
	}
	if (*n >= rl->limit) {
		double left = *start + rl->window - now;
		unsigned s = (unsigned)left;
		if ((double)s < left)
			s++;
		return s ? s : 1;
	}
	(*n)++;
	return 0;
}

unsigned it_addrlimit_hit(it_addrlimit *rl, const char *key, double now)
{
	struct it_addrlimit_entry *e;
	it_hnode *n;
	char k[64];

	if (rl->limit == 0)
		return 0;
	snprintf(k, sizeof(k), "%s", key);
	n = it_htab_find(&rl->keys, k);
	if (n != NULL) {
		e = it_container_of(n, struct it_addrlimit_entry, node);
		return count(rl, &e->start, &e->count, now);
	}
	if (rl->keys.count >= rl->max_keys || (e = calloc(1, sizeof(*e))) == NULL)
		return count(rl, &rl->overflow_start, &rl->overflow_count, now);
	memcpy(e->key, k, sizeof(k));
	e->node.key = e->key;
	e->start = now;
	if (it_htab_add(&rl->keys, &e->node) < 0) {
		free(e);
		return count(rl, &rl->overflow_start, &rl->overflow_count, now);
	}
	return count(rl, &e->start, &e->count, now);
}

unsigned it_addrlimit_peek(const it_addrlimit *rl, const char *key, double now)
{
	const struct it_addrlimit_entry *e;
	const it_hnode *n;
	char k[64];
	double start;
	unsigned hits;

	if (rl->limit == 0)
		return 0;
	snprintf(k, sizeof(k), "%s", key);
	n = it_htab_find(&rl->keys, k);
	e = n ? it_container_of(n, const struct it_addrlimit_entry, node) : NULL;
	if (e == NULL && rl->keys.count < rl->max_keys)
		return 0;
	start = e ? e->start : rl->overflow_start;
	hits = e ? e->count : rl->overflow_count;
	if (now - start >= rl->window || hits < rl->limit)
		return 0;
	{
		double left = start + rl->window - now;
		unsigned s = (unsigned)left;
		if ((double)s < left)
			s++;
		return s ? s : 1;
	}
}

void it_addrlimit_prune(it_addrlimit *rl, double now)
{
	it_hnode *n, *next;
	size_t i;

	it_htab_foreach_safe (&rl->keys, i, n, next) {
		struct it_addrlimit_entry *e = it_container_of(n, struct it_addrlimit_entry, node);
		if (now - e->start >= rl->window) {
			it_htab_del(&rl->keys, n);
			free(e);
		}
	}
}

void it_addrlimit_free(it_addrlimit *rl)
{
	it_hnode *n, *next;
	size_t i;

	it_htab_foreach_safe (&rl->keys, i, n, next)
		free(it_container_of(n, struct it_addrlimit_entry, node));
	it_htab_free(&rl->keys);
}

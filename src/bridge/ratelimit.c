/* ratelimit.c: fixed-window counters per key (client address), for the bridge's connection rate limit. */
#include "config.h"

#include "bridge/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct it_rl_entry {
	struct it_rl_entry *next;
	double start;
	unsigned count;
	char key[64];
};

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

int it_rl_init(it_rl *rl, unsigned limit, double window, size_t max_keys)
{
	memset(rl, 0, sizeof(*rl));
	rl->limit = limit;
	rl->window = window;
	rl->max_keys = max_keys;
	rl->nbuckets = 1024;
	rl->buckets = calloc(rl->nbuckets, sizeof(*rl->buckets));
	return rl->buckets ? 0 : -1;
}

/* Counts a hit in a window that started at *start; returns the wait. */
static unsigned count(const it_rl *rl, double *start, unsigned *n, double now)
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

unsigned it_rl_hit(it_rl *rl, const char *key, double now)
{
	struct it_rl_entry *e, **head;
	char k[64];

	if (rl->limit == 0)
		return 0;
	snprintf(k, sizeof(k), "%s", key);
	head = &rl->buckets[hash(k) & (rl->nbuckets - 1)];
	for (e = *head; e; e = e->next)
		if (strcmp(e->key, k) == 0)
			return count(rl, &e->start, &e->count, now);
	if (rl->nkeys >= rl->max_keys || (e = calloc(1, sizeof(*e))) == NULL)
		return count(rl, &rl->overflow_start, &rl->overflow_count, now);
	memcpy(e->key, k, sizeof(k));
	e->start = now;
	e->next = *head;
	*head = e;
	rl->nkeys++;
	return count(rl, &e->start, &e->count, now);
}

unsigned it_rl_peek(const it_rl *rl, const char *key, double now)
{
	const struct it_rl_entry *e;
	char k[64];
	double start;
	unsigned n;

	if (rl->limit == 0)
		return 0;
	snprintf(k, sizeof(k), "%s", key);
	for (e = rl->buckets[hash(k) & (rl->nbuckets - 1)]; e; e = e->next)
		if (strcmp(e->key, k) == 0)
			break;
	if (e == NULL && rl->nkeys < rl->max_keys)
		return 0;
	start = e ? e->start : rl->overflow_start;
	n = e ? e->count : rl->overflow_count;
	if (now - start >= rl->window || n < rl->limit)
		return 0;
	{
		double left = start + rl->window - now;
		unsigned s = (unsigned)left;
		if ((double)s < left)
			s++;
		return s ? s : 1;
	}
}

void it_rl_prune(it_rl *rl, double now)
{
	size_t i;

	for (i = 0; i < rl->nbuckets; i++) {
		struct it_rl_entry **pp = &rl->buckets[i];
		while (*pp) {
			struct it_rl_entry *e = *pp;
			if (now - e->start >= rl->window) {
				*pp = e->next;
				free(e);
				rl->nkeys--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void it_rl_free(it_rl *rl)
{
	size_t i;

	if (rl->buckets == NULL)
		return;
	for (i = 0; i < rl->nbuckets; i++) {
		struct it_rl_entry *e = rl->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(rl->buckets);
	rl->buckets = NULL;
}

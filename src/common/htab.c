/* htab.c: an intrusive hash table of entries named by strings. */
#include "config.h"

#include "common/htab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_BUCKETS 16

size_t it_htab_hash(const char *s)
{
	size_t h = (size_t)0xcbf29ce484222325ULL; /* the FNV offset basis */

	while (*s)
		h = (h ^ (unsigned char)*s++) * (size_t)0x100000001b3ULL; /* the FNV prime */
	return h;
}

void it_htab_init(it_htab *t)
{
	t->buckets = NULL;
	t->nbuckets = 0;
	t->count = 0;
}

void it_htab_free(it_htab *t)
{
	free(t->buckets);
	it_htab_init(t);
}

it_hnode *it_htab_find(const it_htab *t, const char *key)
{
	size_t h;

	if (t->nbuckets == 0)
		return NULL;
	h = it_htab_hash(key);
	for (it_hnode *n = t->buckets[h & (t->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

/* Doubles the bucket array (or makes the first). Returns 0 or -ENOMEM, the
 * table unchanged then. */
static int grow(it_htab *t)
{
	size_t nb = t->nbuckets ? t->nbuckets * 2 : FIRST_BUCKETS;
	it_hnode **b = calloc(nb, sizeof(*b));

	if (b == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < t->nbuckets; i++) {
		it_hnode *n = t->buckets[i], *next;
		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

int it_htab_add(it_htab *t, it_hnode *n)
{
	it_hnode **head;

	if (t->count >= t->nbuckets && grow(t) < 0 && t->nbuckets == 0)
		return -ENOMEM;
	n->hash = it_htab_hash(n->key);
	head = &t->buckets[n->hash & (t->nbuckets - 1)];
	n->next = *head;
	*head = n;
	t->count++;
	return 0;
}

void it_htab_del(it_htab *t, it_hnode *n)
{
	it_hnode **pp = &t->buckets[n->hash & (t->nbuckets - 1)];

	while (*pp && *pp != n)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = n->next;
		n->next = NULL;
		t->count--;
	}
}

/* htab.h: an intrusive hash table of entries named by strings.
 *
 * The owner embeds an it_hnode in its entry, points node.key at the entry's
 * own NUL-terminated name, and adds it; the table owns only its bucket
 * array, never the entries (like it_list). Chained, power-of-two buckets,
 * doubled when the table holds as many entries as it has buckets, so a
 * lookup stays O(1) from a handful of entries to millions. Keys are
 * compared with strcmp; two entries with one key are the owner's mistake.
 * Not thread-safe: one owner thread, or the owner's lock. */
#ifndef IT_COMMON_HTAB_H
#define IT_COMMON_HTAB_H

#include <stddef.h>

typedef struct it_hnode {
	struct it_hnode *next; /* the bucket's chain; the table's */
	size_t hash;	       /* it_htab_hash(key), kept so growing rehashes nothing */
	const char *key;       /* set by the owner before it_htab_add; must not change while added */
} it_hnode;

typedef struct it_htab {
	it_hnode **buckets; /* nbuckets chains; NULL until the first add */
	size_t nbuckets;
	size_t count; /* entries added */
} it_htab;

/* FNV-1a over the bytes of s: fast, and spread well enough for short keys
 * such as ids and addresses. The same function everywhere a string is hashed. */
size_t it_htab_hash(const char *s);

/* An empty table (allocates nothing). */
void it_htab_init(it_htab *t);

/* Frees the bucket array; the entries are the owner's. The table is empty
 * and usable again afterwards. */
void it_htab_free(it_htab *t);

/* The entry named key, or NULL. */
it_hnode *it_htab_find(const it_htab *t, const char *key);

/* Adds n (n->key set, not already added). Returns 0, or -ENOMEM when the
 * first bucket array cannot be allocated (a failed doubling later is not an
 * error: the chains just grow longer). */
int it_htab_add(it_htab *t, it_hnode *n);

/* Removes n, which must have been added. */
void it_htab_del(it_htab *t, it_hnode *n);

/* Visits every entry; the current one may be removed (and freed) by the
 * body, others not. i is a size_t, n and next it_hnode pointers. */
#define it_htab_foreach_safe(t, i, n, next)       \
	for ((i) = 0; (i) < (t)->nbuckets; (i)++) \
		for ((n) = (t)->buckets[i]; (n) && ((next) = (n)->next, 1); (n) = (next))

#endif

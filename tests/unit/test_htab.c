/* test_htab.c: unit tests for the intrusive string hash table (common/htab). */
#include "config.h"

#include "common/htab.h"
#include "common/list.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	char name[24];
	int value;
	it_hnode node;
};

static struct entry *find(const it_htab *t, const char *key)
{
	it_hnode *n = it_htab_find(t, key);
	return n ? it_container_of(n, struct entry, node) : NULL;
}

int main(void)
{
	enum { N = 20000 };
	struct entry *e = calloc(N, sizeof(*e));
	it_htab t;
	it_hnode *n, *next;
	size_t i;
	int all = 1, seen = 0, gone = 1;

	/* The published FNV-1a test vectors (64-bit). */
	is_int((long long)it_htab_hash(""), (long long)0xcbf29ce484222325ULL, "FNV-1a of the empty string");
	is_int((long long)it_htab_hash("a"), (long long)0xaf63dc4c8601ec8cULL, "FNV-1a of \"a\"");
	is_int((long long)it_htab_hash("foobar"), (long long)0x85944171f73967e8ULL, "FNV-1a of \"foobar\"");

	it_htab_init(&t);
	ok(it_htab_find(&t, "x") == NULL, "an empty table finds nothing and allocates nothing");
	ok(t.buckets == NULL, "no bucket array before the first add");

	for (i = 0; i < N; i++) {
		snprintf(e[i].name, sizeof(e[i].name), "key-%zu", i);
		e[i].value = (int)i;
		e[i].node.key = e[i].name;
		if (it_htab_add(&t, &e[i].node) != 0)
			all = 0;
	}
	ok(all, "%d entries added", N);
	is_int((long long)t.count, N, "count");
	ok(t.nbuckets >= N && (t.nbuckets & (t.nbuckets - 1)) == 0, "buckets doubled to a power of two >= count");
	for (i = 0; i < N; i++) {
		char k[24];
		struct entry *f;
		snprintf(k, sizeof(k), "key-%zu", i);
		f = find(&t, k);
		if (f == NULL || f->value != (int)i)
			all = 0;
	}
	ok(all, "every entry found by a key equal to (not the same pointer as) its own");
	ok(find(&t, "key-") == NULL && find(&t, "key-20000") == NULL && find(&t, "") == NULL,
	   "absent keys are not found");

	/* Remove the odd ones while iterating. */
	it_htab_foreach_safe (&t, i, n, next) {
		struct entry *x = it_container_of(n, struct entry, node);
		seen++;
		if (x->value % 2)
			it_htab_del(&t, n);
	}
	is_int(seen, N, "iteration visits every entry once, deleting as it goes");
	is_int((long long)t.count, N / 2, "half left");
	for (i = 0; i < N; i++) {
		char k[24];
		struct entry *f;
		snprintf(k, sizeof(k), "key-%zu", i);
		f = find(&t, k);
		if ((i % 2 && f != NULL) || (!(i % 2) && (f == NULL || f->value != (int)i)))
			gone = 0;
	}
	ok(gone, "removed entries are gone, the others still found");
	it_htab_del(&t, &e[0].node);
	ok(find(&t, "key-0") == NULL, "removing the head of a chain");
	e[0].node.key = e[0].name;
	ok(it_htab_add(&t, &e[0].node) == 0 && find(&t, "key-0") == &e[0], "an entry can be added again");

	it_htab_free(&t);
	ok(t.buckets == NULL && t.count == 0 && it_htab_find(&t, "key-0") == NULL, "freed: empty and usable");
	free(e);
	return tap_done();
}

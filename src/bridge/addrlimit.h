/* addrlimit.h: fixed-window counters per key (client address), for the bridge's connection rate limit. */
#ifndef IT_BRIDGE_ADDRLIMIT_H
#define IT_BRIDGE_ADDRLIMIT_H

#include "common/htab.h"

#include <stddef.h>

/* Counts hits per key in windows of window seconds; a key may have limit
 * hits per window. Memory is one small entry per key seen in the current
 * window, and at most max_keys of them (a flood of distinct keys makes new
 * keys share one overflow counter rather than grow the table). */
typedef struct it_addrlimit {
	it_htab keys; /* of struct it_addrlimit_entry */
	size_t max_keys;
	unsigned limit;
	double window;
	double overflow_start;
	unsigned overflow_count;
} it_addrlimit;

/* Prepares a limiter; limit 0 means no limit (it_addrlimit_hit always allows).
 * It cannot fail: nothing is allocated before the first key. */
void it_addrlimit_init(it_addrlimit *rl, unsigned limit, double window, size_t max_keys);

/* Records one hit of key (copied, at most 63 bytes used) at time now
 * (seconds, monotonic). Returns 0 when allowed, or the number of whole
 * seconds until the key's window ends when over the limit. */
unsigned it_addrlimit_hit(it_addrlimit *rl, const char *key, double now);

/* Like it_addrlimit_hit without recording a hit: whether key's window is used up
 * (the wait in whole seconds) or not (0). For limits that count failures:
 * the request is refused before the thing that may fail is tried. */
unsigned it_addrlimit_peek(const it_addrlimit *rl, const char *key, double now);

/* Forgets keys whose window ended before now. Call it now and then. */
void it_addrlimit_prune(it_addrlimit *rl, double now);

/* Frees every entry; the limiter may be initialised again afterwards. */
void it_addrlimit_free(it_addrlimit *rl);

#endif

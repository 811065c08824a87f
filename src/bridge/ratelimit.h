/* ratelimit.h: fixed-window counters per key (client address), for the bridge's connection rate limit. */
#ifndef IT_RATELIMIT_H
#define IT_RATELIMIT_H

#include <stddef.h>

struct it_rl_entry;

/* Counts hits per key in windows of window seconds; a key may have limit
 * hits per window. Memory is one small entry per key seen in the current
 * window, and at most max_keys of them (a flood of distinct keys makes new
 * keys share one overflow counter rather than grow the table). */
typedef struct it_rl {
	struct it_rl_entry **buckets;
	size_t nbuckets, nkeys, max_keys;
	unsigned limit;
	double window;
	double overflow_start;
	unsigned overflow_count;
} it_rl;

/* Prepares a limiter; limit 0 means no limit (it_rl_hit always allows).
 * Returns 0, or -1 when out of memory. */
int it_rl_init(it_rl *rl, unsigned limit, double window, size_t max_keys);

/* Records one hit of key (copied, at most 63 bytes used) at time now
 * (seconds, monotonic). Returns 0 when allowed, or the number of whole
 * seconds until the key's window ends when over the limit. */
unsigned it_rl_hit(it_rl *rl, const char *key, double now);

/* Like it_rl_hit without recording a hit: whether key's window is used up
 * (the wait in whole seconds) or not (0). For limits that count failures:
 * the request is refused before the thing that may fail is tried. */
unsigned it_rl_peek(const it_rl *rl, const char *key, double now);

/* Forgets keys whose window ended before now. Call it now and then. */
void it_rl_prune(it_rl *rl, double now);

void it_rl_free(it_rl *rl);

#endif

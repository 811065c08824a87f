/* clock.h: the monotonic clock, read the two ways the code needs it.
 *
 * Timeouts, deadlines, intervals and durations are measured on
 * CLOCK_MONOTONIC, which neither jumps with the wall clock nor stops for a
 * settimeofday; wall time (time(), for expiry and timestamps shown to people)
 * is never used for them. Both readings are cheap (vDSO) and thread-safe. */
#ifndef IT_COMMON_CLOCK_H
#define IT_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds since an arbitrary fixed point (boot). */
static inline int64_t it_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The same in seconds, with the fraction: for loops that keep deadlines as
 * doubles. */
static inline double it_clock_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif

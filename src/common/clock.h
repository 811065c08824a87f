/* clock.h: the monotonic clock, read the ways the code needs it.
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

/* The moment ms milliseconds (>= 0) from now on the same clock, as the
 * deadline of a pthread_cond_timedwait on a condition variable set to
 * CLOCK_MONOTONIC (pthread_condattr_setclock). */
static inline struct timespec it_clock_deadline(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

#endif

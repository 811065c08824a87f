/* guard.h: test input placed right before an unmapped page, so any read past its end crashes. */
#ifndef IT_TESTS_UNIT_GUARD_H
#define IT_TESTS_UNIT_GUARD_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Returns a writable copy of the n bytes at p whose last byte is the last
 * byte before a PROT_NONE page; release it with guard_free. Aborts when the
 * mapping fails (a test cannot go on without it). */
static inline unsigned char *guard_copy(const void *p, size_t n, size_t *mapped)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = ((n + page - 1) / page + 1) * page;
	unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED || mprotect(m + len - page, page, PROT_NONE) != 0)
		abort();
	*mapped = len;
	if (n)
		memcpy(m + len - page - n, p, n);
	return m + len - page - n;
}

static inline void guard_free(unsigned char *p, size_t n, size_t mapped)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	munmap(p + n + page - mapped, mapped);
}

/* For a test that places many inputs: maps room for cap bytes followed by a
 * PROT_NONE page, once, and returns the first byte of that page (the region
 * lives until the process ends). Aborts when the mapping fails. */
static inline char *guard_area(size_t cap)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = ((cap + page - 1) / page + 1) * page;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED || mprotect(m + len - page, page, PROT_NONE) != 0)
		abort();
	return m + len - page;
}

/* Moves the n bytes at p (which may lie in the area) so that they end at
 * end, the value guard_area returned, and returns where they now start. */
static inline const char *guard_place(char *end, const void *p, size_t n)
{
	memmove(end - n, p, n);
	return end - n;
}

#endif

/* fuzz_multipart.c: libFuzzer target for parse/multipart; checks split parsing agrees with one-shot parsing. */
#include "config.h"

#include "parse/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Input layout: byte 0 picks the piece size of the incremental run, the
 * first line (up to CRLF) is the Content-Type header value, the rest is the
 * body. Without a usable Content-Type the boundary "fuzz" is used, so that
 * the body is still exercised. */

#define CAP (16 * 1024)

/* Folds every event into a small digest so two runs can be compared. */
typedef struct digest {
	uint64_t h;
	int err, done, parts;
} digest;

static void mix(digest *d, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		d->h = (d->h ^ s[i]) * 0x100000001b3ULL;
}

static void run(const char *boundary, const uint8_t *in, size_t len, size_t piece, digest *d)
{
	static char pend[CAP];
	size_t plen = 0, pos = 0;
	it_multipart mp;

	memset(d, 0, sizeof(*d));
	d->h = 0xcbf29ce484222325ULL;
	if (it_mp_init(&mp, boundary, 1024) < 0) {
		d->err = 1;
		return;
	}
	while (pos < len && !d->done) {
		size_t n = len - pos < piece ? len - pos : piece;
		if (n > CAP - plen)
			n = CAP - plen;
		if (n == 0)
			abort(); /* the parser held back more than it promised */
		/* A heap copy of exactly the bytes given, so ASan sees over-reads. */
		memcpy(pend + plen, in + pos, n);
		plen += n;
		pos += n;
		for (;;) {
			it_mp_event ev;
			char *b = malloc(plen ? plen : 1);
			memcpy(b, pend, plen);
			ssize_t used = it_mp_parse(&mp, b, plen, &ev);
			if (used < 0) {
				free(b);
				d->err = 1;
				return;
			}
			if ((size_t)used > plen)
				abort();
			if (ev.type == IT_MP_PART) {
				d->parts++;
				mix(d, "P", 1);
				mix(d, ev.part.name, strlen(ev.part.name) + 1);
				mix(d, ev.part.filename, strlen(ev.part.filename) + 1);
				if (strlen(ev.part.filename) > IT_MP_FILENAME_MAX)
					abort();
			} else if (ev.type == IT_MP_DATA) {
				if (ev.len == 0 || ev.data < b || ev.data + ev.len > b + plen)
					abort();
				mix(d, ev.data, ev.len);
			} else if (ev.type == IT_MP_PART_END) {
				mix(d, "E", 1);
			} else if (ev.type == IT_MP_END) {
				d->done = 1;
			}
			free(b);
			memmove(pend, pend + used, plen - (size_t)used);
			plen -= (size_t)used;
			if (ev.type == IT_MP_NEED_MORE || d->done)
				break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char ct[256], boundary[IT_MP_BOUNDARY_MAX + 1] = "fuzz";
	const uint8_t *body, *eol;
	size_t piece, blen;
	digest one, split;

	if (size < 1)
		return 0;
	piece = 1 + data[0] % 64;
	data++;
	size--;
	eol = memchr(data, '\n', size < sizeof(ct) ? size : sizeof(ct) - 1);
	if (eol) {
		memcpy(ct, data, (size_t)(eol - data));
		ct[eol - data] = '\0';
		if (it_mp_boundary(ct, boundary) < 0)
			strcpy(boundary, "fuzz");
		body = eol + 1;
	} else {
		body = data;
	}
	blen = size - (size_t)(body - data);
	run(boundary, body, blen, blen ? blen : 1, &one);
	run(boundary, body, blen, piece, &split);
	/* With a whole body at once the header limit may be hit where the
	 * split run is still waiting; only compare runs that both succeeded. */
	if (!one.err && !split.err && (one.h != split.h || one.done != split.done || one.parts != split.parts))
		abort();
	return 0;
}

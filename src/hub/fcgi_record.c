/* fcgi_record.c: FastCGI records for connections the hub writes itself, without libfcgi. */
#include "config.h"

#include "hub/fcgi_record.h"

#include <errno.h>

void it_fcgi_record_header(uint8_t h[IT_FCGI_RECORD_HEADER_LEN], uint8_t type, uint16_t id, uint16_t len)
{
	h[0] = 1; /* FCGI_VERSION_1 */
	h[1] = type;
	h[2] = (uint8_t)(id >> 8);
	h[3] = (uint8_t)id;
	h[4] = (uint8_t)(len >> 8);
	h[5] = (uint8_t)len;
	h[6] = 0; /* padding */
	h[7] = 0;
}

int it_fcgi_record_stdout(it_buf *out, uint16_t id, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t records = (n + 65534) / 65535, need = n + records * IT_FCGI_RECORD_HEADER_LEN;
	size_t before = out->len;

	if (need > out->max || out->len > out->max - need)
		return -ENOSPC;
	while (n > 0) {
		uint8_t h[IT_FCGI_RECORD_HEADER_LEN];
		uint16_t len = n > 65535 ? 65535 : (uint16_t)n;
		it_fcgi_record_header(h, IT_FCGI_RECORD_STDOUT, id, len);
		if (it_buf_append(out, h, sizeof(h)) < 0 || it_buf_append(out, p, len) < 0) {
			out->len = before;
			return -ENOMEM;
		}
		p += len;
		n -= len;
	}
	return 0;
}

int it_fcgi_record_end(it_buf *out, uint16_t id)
{
	uint8_t rec[3 * IT_FCGI_RECORD_HEADER_LEN];
	size_t max = out->max;
	int rc;

	it_fcgi_record_header(rec, IT_FCGI_RECORD_STDOUT, id, 0);
	it_fcgi_record_header(rec + 8, IT_FCGI_RECORD_END_REQUEST, id, 8);
	for (int i = 16; i < 24; i++)
		rec[i] = 0; /* appStatus 0, FCGI_REQUEST_COMPLETE, reserved */
	out->max = out->len + sizeof(rec) > max ? out->len + sizeof(rec) : max;
	rc = it_buf_append(out, rec, sizeof(rec));
	out->max = max;
	return rc;
}

int it_fcgi_record_scan_feed(it_fcgi_record_scan *s, uint16_t id, const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (s->skip > 0) {
			size_t k = n < s->skip ? n : s->skip;
			s->skip -= (uint32_t)k;
			p += k;
			n -= k;
			continue;
		}
		s->hdr[s->have++] = *p++;
		n--;
		if (s->have < IT_FCGI_RECORD_HEADER_LEN)
			continue;
		s->have = 0;
		uint16_t rid = (uint16_t)(s->hdr[2] << 8 | s->hdr[3]);
		if (s->hdr[1] == IT_FCGI_RECORD_ABORT_REQUEST && rid == id)
			return 1;
		s->skip = (uint32_t)(s->hdr[4] << 8 | s->hdr[5]) + s->hdr[6];
	}
	return 0;
}

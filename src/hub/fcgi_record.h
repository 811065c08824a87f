/* fcgi_record.h: FastCGI records for connections the hub writes itself, without libfcgi. */
#ifndef IT_HUB_FCGI_RECORD_H
#define IT_HUB_FCGI_RECORD_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

#define IT_FCGI_RECORD_HEADER_LEN 8
#define IT_FCGI_RECORD_ABORT_REQUEST 2
#define IT_FCGI_RECORD_END_REQUEST 3
#define IT_FCGI_RECORD_STDOUT 6

/* Writes the 8-byte header of a record of type for request id with len
 * content bytes and no padding. */
void it_fcgi_record_header(uint8_t h[IT_FCGI_RECORD_HEADER_LEN], uint8_t type, uint16_t id, uint16_t len);

/* Appends data as FCGI_STDOUT records of request id (split at 65535 bytes;
 * no padding). Returns 0, or -ENOSPC when out's ceiling would be passed
 * (out is then unchanged). n == 0 appends nothing (an empty record would end
 * the stream: use it_fcgi_record_end). */
int it_fcgi_record_stdout(it_buf *out, uint16_t id, const void *data, size_t n);

/* Appends the end of a response: an empty FCGI_STDOUT record and
 * FCGI_END_REQUEST (app status 0, FCGI_REQUEST_COMPLETE). 24 bytes; ignores
 * the ceiling of out so a full buffer can still be ended. Returns 0 or -ENOMEM. */
int it_fcgi_record_end(it_buf *out, uint16_t id);

/* Scans bytes the web server sends after the request body, record by record,
 * across reads. Feed every byte read; returns 1 once an FCGI_ABORT_REQUEST
 * for id has been seen, else 0. */
typedef struct it_fcgi_record_scan {
	uint8_t hdr[IT_FCGI_RECORD_HEADER_LEN];
	uint8_t have;  /* header bytes collected */
	uint32_t skip; /* content and padding bytes left in the current record */
} it_fcgi_record_scan;

int it_fcgi_record_scan_feed(it_fcgi_record_scan *s, uint16_t id, const uint8_t *p, size_t n);

#endif

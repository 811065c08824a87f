/* sseparse.c: an incremental, allocation-free parser for text/event-stream (WHATWG HTML, "Server-sent events"). */
#include "config.h"

#include "cli/sseparse.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

/* Where in a line the parser is. A line is "field", "field:value",
 * "field: value" or ":comment"; an empty line dispatches the event. */
enum { S_LINE_START, S_NAME, S_VALUE_FIRST, S_VALUE, S_COMMENT };

enum { F_UNKNOWN, F_EVENT, F_DATA, F_ID, F_RETRY };

static const unsigned char bom_bytes[3] = {0xEF, 0xBB, 0xBF};

/* The retry value saturates here (about 31 years), well inside a long. */
#define RETRY_CAP 999999999999ULL

void it_sseparse_init(it_sseparse_parser *p, char *data, size_t data_cap)
{
	memset(p, 0, sizeof(*p));
	p->data = data;
	p->data_cap = data_cap;
	p->retry_ms = -1;
	p->state = S_LINE_START;
	if (data_cap)
		data[0] = '\0';
}

static int field_of(const it_sseparse_parser *p)
{
	size_t n = p->name_len;

	if (n > sizeof(p->name))
		return F_UNKNOWN;
	if (n == 5 && memcmp(p->name, "event", 5) == 0)
		return F_EVENT;
	if (n == 4 && memcmp(p->name, "data", 4) == 0)
		return F_DATA;
	if (n == 2 && memcmp(p->name, "id", 2) == 0)
		return F_ID;
	if (n == 5 && memcmp(p->name, "retry", 5) == 0)
		return F_RETRY;
	return F_UNKNOWN;
}

static void begin_field(it_sseparse_parser *p)
{
	p->field = field_of(p);
	switch (p->field) {
	case F_EVENT: p->type_len = 0; break;
	case F_ID:
		p->pend_len = 0;
		p->pend_nul = 0;
		break;
	case F_RETRY:
		p->retry_acc = 0;
		p->retry_ok = 1;
		p->retry_digits = 0;
		break;
	default: break;
	}
}

/* Appends one byte to the data buffer, keeping room for the terminating NUL. */
static int data_put(it_sseparse_parser *p, char c)
{
	if (p->data_len + 1 >= p->data_cap)
		return -EMSGSIZE;
	p->data[p->data_len++] = c;
	return 0;
}

static int value_byte(it_sseparse_parser *p, unsigned char c)
{
	switch (p->field) {
	case F_DATA: return data_put(p, (char)c);
	case F_EVENT:
		if (p->type_len >= IT_SSEPARSE_TYPE_MAX)
			return -EMSGSIZE;
		p->type[p->type_len++] = (char)c;
		return 0;
	case F_ID:
		if (c == '\0')
			p->pend_nul = 1;
		if (p->pend_len >= IT_SSEPARSE_ID_MAX)
			return -EMSGSIZE;
		p->pend_id[p->pend_len++] = (char)c;
		return 0;
	case F_RETRY:
		if (c >= '0' && c <= '9') {
			p->retry_acc = p->retry_acc * 10 + (c - '0');
			if (p->retry_acc > RETRY_CAP)
				p->retry_acc = RETRY_CAP;
			p->retry_digits++;
		} else {
			p->retry_ok = 0;
		}
		return 0;
	default: return 0;
	}
}

/* The line ended: apply the field it carried. */
static int commit_field(it_sseparse_parser *p)
{
	switch (p->field) {
	case F_DATA: return data_put(p, '\n');
	case F_EVENT: p->type[p->type_len] = '\0'; return 0;
	case F_ID:
		/* The standard ignores an id containing NUL, so that a reconnect's
		 * Last-Event-ID header can always carry what was kept. */
		if (!p->pend_nul) {
			memcpy(p->last_id, p->pend_id, p->pend_len);
			p->last_id[p->pend_len] = '\0';
			p->block_has_id = 1;
		}
		return 0;
	case F_RETRY:
		if (p->retry_ok && p->retry_digits > 0)
			p->retry_ms = (long)p->retry_acc;
		return 0;
	default: return 0;
	}
}

/* An empty line: hand out the event if it has data, and start the next one. */
static int dispatch(it_sseparse_parser *p, it_sseparse_event *ev)
{
	int has_id = p->block_has_id;

	p->block_has_id = 0;
	if (p->data_len == 0) {
		p->type_len = 0;
		return 0;
	}
	p->data_len--; /* the newline after the last data line */
	p->data[p->data_len] = '\0';
	p->type[p->type_len] = '\0';
	ev->type = p->type_len ? p->type : "message";
	ev->type_len = p->type_len ? p->type_len : 7;
	ev->data = p->data;
	ev->data_len = p->data_len;
	ev->last_id = p->last_id;
	ev->has_id = has_id;
	p->data_len = 0;
	p->type_len = 0;
	return 1;
}

static int end_line(it_sseparse_parser *p, it_sseparse_event *ev)
{
	int rc = 0, state = p->state;

	p->state = S_LINE_START;
	switch (state) {
	case S_LINE_START: return dispatch(p, ev);
	case S_NAME:
		/* "field" alone: the whole line is the name and the value is empty. */
		begin_field(p);
		rc = commit_field(p);
		break;
	case S_VALUE_FIRST:
	case S_VALUE: rc = commit_field(p); break;
	default: break;
	}
	return rc;
}

/* Feeds one byte that is not part of a line end. */
static int line_byte(it_sseparse_parser *p, unsigned char c)
{
	switch (p->state) {
	case S_LINE_START:
		if (c == ':') {
			p->state = S_COMMENT;
			return 0;
		}
		p->name_len = 0;
		p->state = S_NAME;
		/* fall through */
	case S_NAME:
		if (c == ':') {
			begin_field(p);
			p->state = S_VALUE_FIRST;
			return 0;
		}
		if (p->name_len < sizeof(p->name))
			p->name[p->name_len] = (char)c;
		if (p->name_len <= sizeof(p->name))
			p->name_len++;
		return 0;
	case S_VALUE_FIRST:
		p->state = S_VALUE;
		if (c == ' ')
			return 0; /* one space after the colon is not part of the value */
				  /* fall through */
	case S_VALUE: return value_byte(p, c);
	default: return 0; /* comment */
	}
}

static int step(it_sseparse_parser *p, unsigned char c, it_sseparse_event *ev)
{
	if (c == '\n' && p->after_cr) {
		p->after_cr = 0;
		return 0;
	}
	p->after_cr = 0;
	if (c == '\r' || c == '\n') {
		p->after_cr = c == '\r';
		return end_line(p, ev);
	}
	return line_byte(p, c);
}

int it_sseparse_feed(it_sseparse_parser *p, const char *buf, size_t len, size_t *consumed, it_sseparse_event *ev)
{
	const unsigned char *s = (const unsigned char *)buf;
	size_t i;
	int rc;

	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (p->bom >= 0) {
			if (c == bom_bytes[p->bom]) {
				if (++p->bom == 3)
					p->bom = -1;
				continue;
			}
			/* Not a byte order mark after all: what matched is content. */
			for (int k = 0; k < p->bom; k++)
				line_byte(p, bom_bytes[k]);
			p->bom = -1;
		}
		rc = step(p, c, ev);
		if (rc != 0) {
			*consumed = i + 1;
			return rc < 0 ? rc : IT_SSEPARSE_EVENT;
		}
	}
	*consumed = len;
	return IT_SSEPARSE_NEED_MORE;
}

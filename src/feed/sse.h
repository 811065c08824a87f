/* sse.h: the text/event-stream wire format (WHATWG HTML, server-sent events). */
#ifndef IT_FEED_SSE_H
#define IT_FEED_SSE_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

/* Appends one stored event: "id: <seq>\nevent: <type>\ndata: <json>\n\n".
 * json must be one line (the event log's wire JSON is). Returns 0 or a
 * negative errno from it_buf (out unchanged on -ENOSPC). */
int it_sse_event(it_buf *out, int64_t seq, const char *type, const char *json, size_t json_len);

/* Appends an event that is not stored (connection.status, session.resync):
 * no "id:" line, so the browser's Last-Event-ID stays on the last stored one. */
int it_sse_transient(it_buf *out, const char *type, const char *json);

/* Appends the retry hint "retry: <ms>\n\n". */
int it_sse_retry(it_buf *out, int64_t ms);

/* Appends a comment line, which clients ignore: ": <text>\n\n". */
int it_sse_comment(it_buf *out, const char *text);

#endif

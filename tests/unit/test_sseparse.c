/* test_sseparse.c: unit tests for cli/sseparse, the text/event-stream parser. */
#include "config.h"

#include "cli/sseparse.h"
#include "guard.h"
#include "tap.h"

#include <errno.h>
#include <stdlib.h>

/* Parses input fed in pieces of the given sizes (0: all at once, 1: byte by
 * byte, -1: random sizes) and returns a transcript of the dispatched events,
 * one "type|data|last_id|has_id" line each, with "ERR<n>" on an error. */
static const char *transcript(const char *in, size_t len, int mode, size_t data_cap)
{
	static char out[8192];
	char *data = malloc(data_cap);
	it_sseparse_parser p;
	it_sseparse_event ev;
	size_t off = 0, used, n;
	int rc;

	out[0] = '\0';
	it_sseparse_init(&p, data, data_cap);
	while (off < len) {
		n = mode == 0 ? len - off : mode == 1 ? 1 : 1 + (size_t)rand() % 7;
		if (n > len - off)
			n = len - off;
		/* A piece may hold several events: feed it until it is used up. */
		while (n > 0) {
			rc = it_sseparse_feed(&p, in + off, n, &used, &ev);
			off += used;
			n -= used;
			if (rc < 0) {
				snprintf(out + strlen(out), sizeof(out) - strlen(out), "ERR%d\n", -rc);
				free(data);
				return out;
			}
			if (rc == IT_SSEPARSE_EVENT)
				snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s|%s|%s|%d\n", ev.type,
					 ev.data, ev.last_id, ev.has_id);
		}
	}
	free(data);
	return out;
}

/* Checks one input against its expected transcript, whole, byte by byte and
 * in many random splits, so no event depends on where reads happen to end. */
static void check(const char *name, const char *in, const char *want)
{
	size_t len = strlen(in);
	int same = 1;

	is_str(transcript(in, len, 0, 4096), want, "%s (one piece)", name);
	is_str(transcript(in, len, 1, 4096), want, "%s (byte by byte)", name);
	for (int i = 0; i < 200; i++)
		if (strcmp(transcript(in, len, -1, 4096), want) != 0)
			same = 0;
	ok(same, "%s (200 random splits)", name);
}

/* Places the input right before an unmapped page, so reading one byte past
 * the end crashes the test instead of passing unnoticed. */
static void check_guarded(const char *name, const char *in, const char *want)
{
	size_t len = strlen(in), mapped;
	unsigned char *at = guard_copy(in, len, &mapped);

	is_str(transcript((const char *)at, len, 0, 4096), want, "%s (before an unmapped page)", name);
	is_str(transcript((const char *)at, len, 1, 4096), want, "%s (byte by byte before an unmapped page)", name);
	guard_free(at, len, mapped);
}

int main(void)
{
	srand(12345);

	check("one event", "id: 1\nevent: image.uploaded\ndata: {\"id\":1}\n\n", "image.uploaded|{\"id\":1}|1|1\n");
	check("type defaults to message", "data: x\n\n", "message|x||0\n");
	check("multi-line data is joined with LF", "data: a\ndata: b\ndata\n\n", "message|a\nb\n||0\n");
	check("CR line ends", "id: 7\revent: t\rdata: x\r\r", "t|x|7|1\n");
	check("CRLF line ends", "id: 7\r\nevent: t\r\ndata: x\r\n\r\n", "t|x|7|1\n");
	check("mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", "message|a\nb\nc||0\n");
	check("CR then CRLF is two line ends", "data: a\r\r\n", "message|a||0\n");
	check("LF CR is two line ends", "data: a\n\rdata: b\n\n", "message|a||0\nmessage|b||0\n");
	check("only one space after the colon is dropped", "data:x\ndata:  y\n\n", "message|x\n y||0\n");
	check("comments are ignored", ": keepalive\n:\n: x\ndata: d\n: between\n\n", "message|d||0\n");
	check("a comment alone dispatches nothing", ": keepalive\n\n: again\n\n", "");
	check("unknown fields are ignored", "foo: bar\nDATA: no\nidentifier: 5\ndata: y\n\n", "message|y||0\n");
	check("an event without data is not dispatched", "event: x\nid: 3\n\ndata: z\n\n", "message|z|3|0\n");
	check("empty data line dispatches an empty event", "data\n\n", "message|||0\n");
	check("data: with nothing after it", "data:\n\n", "message|||0\n");
	check("last event id persists", "id: 5\ndata: a\n\ndata: b\n\n", "message|a|5|1\nmessage|b|5|0\n");
	check("empty id resets it", "id: 5\ndata: a\n\nid\ndata: b\n\n", "message|a|5|1\nmessage|b||1\n");
	check("id without a value after the colon", "id: 5\ndata: a\n\nid:\ndata: b\n\n",
	      "message|a|5|1\nmessage|b||1\n");
	check("an incomplete event at the end is dropped", "data: a\n\ndata: b\n", "message|a||0\n");
	check("an unterminated line is dropped", "data: a", "");
	check("the event type resets after each event", "event: t\ndata: a\n\ndata: b\n\n", "t|a||0\nmessage|b||0\n");
	check("the last event field wins", "event: a\nevent: b\ndata: x\n\n", "b|x||0\n");
	check("a leading byte order mark is dropped",
	      "\xEF\xBB\xBF"
	      "data: a\n\n",
	      "message|a||0\n");
	check("a second byte order mark is content",
	      "\xEF\xBB\xBF\xEF\xBB\xBF"
	      "data: a\n\n",
	      "");
	check("a partial byte order mark is content",
	      "\xEF\xBB"
	      "data: a\n\ndata: b\n\n",
	      "message|b||0\n");
	check("colons in the value are kept", "data: a:b: c\n\n", "message|a:b: c||0\n");
	check("long field names are unknown", "dataxxxxxxxxxxxx: a\ndata: b\n\n", "message|b||0\n");

	/* An id containing NUL is ignored: the previous one stays. */
	{
		static const char in[] = "id: 4\ndata: a\n\nid: 9\0x\ndata: b\n\n";
		is_str(transcript(in, sizeof(in) - 1, 0, 4096), "message|a|4|1\nmessage|b|4|0\n",
		       "an id with NUL is ignored");
		is_str(transcript(in, sizeof(in) - 1, 1, 4096), "message|a|4|1\nmessage|b|4|0\n",
		       "an id with NUL is ignored (byte by byte)");
	}

	/* retry: only all-digit values count. */
	{
		static const char *cases[][2] = {
			{"retry: 2500\n", "2500"}, {"retry: 25a\n", "-1"}, {"retry:\n", "-1"},
			{"retry: -5\n", "-1"},	   {"retry:  7\n", "-1"},  {"retry: 10\nretry: x\n", "10"},
			{"retry\n", "-1"},	   {"retry: 0\n", "0"},
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char data[64], got[32];
			it_sseparse_parser p;
			it_sseparse_event ev;
			size_t used;

			it_sseparse_init(&p, data, sizeof(data));
			it_sseparse_feed(&p, cases[i][0], strlen(cases[i][0]), &used, &ev);
			snprintf(got, sizeof(got), "%ld", it_sseparse_retry(&p));
			is_str(got, cases[i][1], "retry case %zu", i);
		}
		char data[64];
		it_sseparse_parser p;
		it_sseparse_event ev;
		size_t used;
		it_sseparse_init(&p, data, sizeof(data));
		it_sseparse_feed(&p, "retry: 99999999999999999999\n", 28, &used, &ev);
		ok(it_sseparse_retry(&p) > 0, "a huge retry saturates instead of wrapping");
	}

	/* Consumed counts stop right after the dispatching line end. */
	{
		char data[64];
		it_sseparse_parser p;
		it_sseparse_event ev;
		size_t used;
		const char *in = "data: a\n\ndata: b\n\n";

		it_sseparse_init(&p, data, sizeof(data));
		is_int(it_sseparse_feed(&p, in, strlen(in), &used, &ev), IT_SSEPARSE_EVENT, "first event");
		is_int(used, 9, "consumed up to the blank line");
		is_int(it_sseparse_feed(&p, in + used, strlen(in) - used, &used, &ev), IT_SSEPARSE_EVENT,
		       "second event");
		is_int(used, 9, "and again");
		is_int(it_sseparse_feed(&p, "", 0, &used, &ev), IT_SSEPARSE_NEED_MORE, "empty input needs more");
		is_int(used, 0, "consumes nothing");
	}

	/* Ceilings: data, type and id never overrun their storage. */
	is_str(transcript("data: 0123456789\n\n", 18, 0, 5), "ERR90\n", "data past its buffer is EMSGSIZE");
	is_str(transcript("data: 0123456789\n\n", 18, 1, 5), "ERR90\n", "same byte by byte");
	is_str(transcript("data: 0123456789\n\n", 18, 0, 11), "ERR90\n", "no room for the line end");
	is_str(transcript("data: 0123456789\n\n", 18, 0, 12), "message|0123456789||0\n", "exactly fits");
	{
		char big[400];
		memset(big, 'e', sizeof(big));
		memcpy(big, "event: ", 7);
		memcpy(big + sizeof(big) - 2, "\n\n", 2);
		is_str(transcript(big, sizeof(big), 0, 64), "ERR90\n", "an over-long event type is EMSGSIZE");
		memcpy(big, "id:    ", 7);
		is_str(transcript(big, sizeof(big), 0, 64), "ERR90\n", "an over-long id is EMSGSIZE");
	}
	ok(EMSGSIZE == 90, "EMSGSIZE is 90 here (the transcripts above print it)");

	check_guarded("guarded: complete event", "id: 3\nevent: e\ndata: v\n\n", "e|v|3|1\n");
	check_guarded("guarded: ends in CR", "data: v\r\r", "message|v||0\n");
	check_guarded("guarded: ends mid-field", "data: v\n\nretry: 12", "message|v||0\n");
	check_guarded("guarded: ends in a partial BOM", "\xEF\xBB", "");

	/* A realistic stream from the server, split at every position. */
	{
		const char *in = "retry: 3000\n\nevent: connection.status\ndata: {\"type\":\"connection.status\"}\n\n"
				 ": keepalive\n\nid: 1\nevent: image.uploaded\ndata: {\"id\":1}\n\n"
				 "id: 2\nevent: image.deleted\ndata: {\"id\":2}\n\n";
		const char *want = "connection.status|{\"type\":\"connection.status\"}||0\n"
				   "image.uploaded|{\"id\":1}|1|1\nimage.deleted|{\"id\":2}|2|1\n";
		size_t len = strlen(in);
		int all = 1;

		for (size_t cut = 0; cut <= len; cut++) {
			char data[256], got[1024] = "";
			it_sseparse_parser p;
			it_sseparse_event ev;
			size_t used, off = 0;
			int rc;

			it_sseparse_init(&p, data, sizeof(data));
			while (off < len) {
				size_t end = off < cut ? cut : len;
				rc = it_sseparse_feed(&p, in + off, end - off, &used, &ev);
				off += used;
				if (rc == IT_SSEPARSE_EVENT)
					snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s|%s|%s|%d\n", ev.type,
						 ev.data, ev.last_id, ev.has_id);
				else if (rc < 0)
					break;
			}
			if (strcmp(got, want) != 0 || it_sseparse_retry(&p) != 3000)
				all = 0;
		}
		ok(all, "a server stream split at every offset gives the same events");
	}
	return tap_done();
}

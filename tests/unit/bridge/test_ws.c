/* test_ws.c: unit tests of the bridge's WebSocket frame reader, UTF-8 validator, frame encoder and accept key. */
#include "config.h"

#include "bridge/ws.h"

#include "guard.h"
#include "tap.h"

#include <stdio.h>

/* Builds a masked client frame. Returns its length. */
static size_t frame(unsigned char *out, int b0, const void *payload, size_t len, int masked)
{
	static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
	size_t h = 0, i;

	out[h++] = (unsigned char)b0;
	if (len < 126) {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | len);
	} else if (len <= 0xFFFF) {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | 126);
		out[h++] = (unsigned char)(len >> 8);
		out[h++] = (unsigned char)len;
	} else {
		out[h++] = (unsigned char)((masked ? 0x80 : 0) | 127);
		for (i = 0; i < 8; i++)
			out[h++] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	if (masked) {
		memcpy(out + h, key, 4);
		h += 4;
	}
	for (i = 0; i < len; i++)
		out[h + i] = (unsigned char)(((const unsigned char *)payload)[i] ^ (masked ? key[i & 3] : 0));
	return h + len;
}

/* Feeds in to a fresh reader in pieces of chunk bytes (each piece right
 * before an unmapped page) and writes what came out into log, message by
 * message. Returns 0 or the negative close code. */
static int run(const unsigned char *in, size_t n, size_t chunk, uint64_t max, char *log, size_t logsz)
{
	static unsigned char msg[80000];
	it_ws_reader r;
	size_t off = 0, mlen = 0, l = 0;
	int rc = 0;

	it_ws_reader_init(&r, max);
	log[0] = '\0';
	while (off < n && rc == 0) {
		size_t take = n - off < chunk ? n - off : chunk, mapped, used = 0;
		unsigned char *g = guard_copy(in + off, take, &mapped);

		for (;;) {
			it_ws_event ev;
			ssize_t k = it_ws_read(&r, g + used, take - used, &ev);
			if (k < 0) {
				rc = (int)k;
				break;
			}
			used += (size_t)k;
			if (ev.kind == IT_WS_MORE) {
				if (used != take)
					l += (size_t)snprintf(log + l, logsz - l, "<MORE before end>");
				break;
			}
			if (ev.kind == IT_WS_DATA) {
				if (mlen + ev.len <= sizeof(msg))
					memcpy(msg + mlen, ev.data, ev.len);
				mlen += ev.len;
				if (ev.fin) {
					l += (size_t)snprintf(log + l, logsz - l, "%c%zu:%.*s;",
							      ev.opcode == IT_WS_OP_TEXT ? 'T' : 'B', mlen,
							      (int)(mlen < 40 ? mlen : 40), msg);
					mlen = 0;
				}
			} else if (ev.kind == IT_WS_PING || ev.kind == IT_WS_PONG) {
				l += (size_t)snprintf(log + l, logsz - l, "%s:%.*s;",
						      ev.kind == IT_WS_PING ? "ping" : "pong", (int)ev.len, ev.data);
			} else if (ev.kind == IT_WS_CLOSE) {
				l += (size_t)snprintf(log + l, logsz - l, "close:%d:%.*s;", ev.close_code,
						      ev.len > 2 ? (int)ev.len - 2 : 0, ev.data + 2);
			}
			if (l >= logsz)
				l = logsz - 1;
		}
		guard_free(g, take, mapped);
		off += take;
	}
	return rc;
}

static void diag_split(const char *name, size_t chunk, const char *log)
{
	printf("# %s: with pieces of %zu bytes: %s\n", name, chunk, log);
}

/* Checks that every way of splitting the stream gives the same outcome. */
static void check_stream(const unsigned char *in, size_t n, uint64_t max, int want_rc, const char *want_log,
			 const char *name)
{
	char log[4096];
	size_t chunk;
	int bad = 0, rc;

	rc = run(in, n, n ? n : 1, max, log, sizeof(log));
	is_int(rc, want_rc, "%s: whole: result", name);
	if (want_log)
		is_str(log, want_log, "%s: whole: events", name);
	for (chunk = 1; chunk < n && chunk <= 70; chunk++) {
		char log2[4096];
		int rc2 = run(in, n, chunk, max, log2, sizeof(log2));
		if (rc2 != rc || strcmp(log, log2) != 0) {
			diag_split(name, chunk, log2);
			bad++;
			break;
		}
	}
	ok(bad == 0, "%s: same outcome fed in pieces of 1..%zu bytes", name, n < 70 ? n : (size_t)70);
}

static void test_utf8(void)
{
	static const struct {
		const char *s;
		int valid;
		const char *name;
	} cases[] = {
		{"hello", 1, "ASCII"},
		{"h\xc3\xa9llo", 1, "two-byte"},
		{"\xe2\x82\xac", 1, "three-byte (euro)"},
		{"\xf0\x9f\x98\x80", 1, "four-byte (emoji)"},
		{"\xf4\x8f\xbf\xbf", 1, "U+10FFFF"},
		{"\xc0\x80", 0, "overlong NUL"},
		{"\xc1\xbf", 0, "overlong two-byte"},
		{"\xe0\x80\xaf", 0, "overlong three-byte"},
		{"\xf0\x80\x80\xaf", 0, "overlong four-byte"},
		{"\xed\xa0\x80", 0, "surrogate"},
		{"\xf4\x90\x80\x80", 0, "past U+10FFFF"},
		{"\xf5\x80\x80\x80", 0, "F5 lead byte"},
		{"\xff", 0, "FF"},
		{"\x80", 0, "lone continuation"},
		{"\xc3\x28", 0, "bad continuation"},
		{"\xe2\x82", 0, "truncated"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const unsigned char *s = (const unsigned char *)cases[i].s;
		size_t n = strlen(cases[i].s), k;
		uint32_t st = it_ws_utf8(0, s, n);
		int split_same = 1;

		is_int(st == 0, cases[i].valid, "utf8: %s", cases[i].name);
		/* Byte by byte must agree with all at once. */
		for (st = 0, k = 0; k < n; k++)
			st = it_ws_utf8(st, s + k, 1);
		if ((st == 0) != cases[i].valid)
			split_same = 0;
		ok(split_same, "utf8: %s, byte by byte", cases[i].name);
	}
	is_int(it_ws_utf8(IT_WS_UTF8_BAD, (const unsigned char *)"a", 1), IT_WS_UTF8_BAD, "utf8: bad state sticks");
}

static void test_frames(void)
{
	static unsigned char big[70000];
	unsigned char in[80000 + 64];
	char want[256];
	size_t n;

	n = frame(in, 0x81, "ping", 4, 1);
	check_stream(in, n, 1024, 0, "T4:ping;", "masked text");

	n = frame(in, 0x81, "", 0, 1);
	check_stream(in, n, 1024, 0, "T0:;", "empty text");

	n = frame(in, 0x82, "\x01\x02\x03", 3, 1);
	check_stream(in, n, 1024, 0, "B3:\x01\x02\x03;", "binary");

	/* Fragmented text with a Ping in the middle and a multi-byte
	 * character split across the fragments. */
	n = frame(in, 0x01, "caf\xc3", 4, 1);
	n += frame(in + n, 0x89, "hb", 2, 1);
	n += frame(in + n, 0x00, "", 0, 1);
	n += frame(in + n, 0x80, "\xa9!", 2, 1);
	n += frame(in + n, 0x8A, "", 0, 1);
	check_stream(in, n, 1024, 0, "ping:hb;T6:caf\xc3\xa9!;pong:;", "fragments, control in between");

	n = frame(in, 0x81, "a", 1, 1);
	n += frame(in + n, 0x88,
		   "\x03\xe8"
		   "bye",
		   5, 1);
	check_stream(in, n, 1024, 0, "T1:a;close:1000:bye;", "text then close with reason");

	n = frame(in, 0x88, "", 0, 1);
	check_stream(in, n, 1024, 0, "close:1005:;", "close without code");

	memset(big, 'x', 200);
	n = frame(in, 0x81, big, 200, 1);
	snprintf(want, sizeof(want), "T200:%.40s;", (const char *)big);
	check_stream(in, n, 1024, 0, want, "16-bit length");

	memset(big, 'y', sizeof(big));
	n = frame(in, 0x82, big, sizeof(big), 1);
	snprintf(want, sizeof(want), "B70000:%.40s;", (const char *)big);
	check_stream(in, n, 100000, 0, want, "64-bit length");
}

/* Feeds in to a fresh reader in pieces of chunk bytes (each right before an
 * unmapped page) and returns the frames it counted, -1 on an error; *events
 * gets the number of events it reported. */
static long count_frames(const unsigned char *in, size_t n, size_t chunk, long *events)
{
	it_ws_reader r;
	size_t off = 0;
	long frames = 0;

	*events = 0;
	it_ws_reader_init(&r, 1024);
	while (off < n) {
		size_t take = n - off < chunk ? n - off : chunk, mapped, used = 0;
		unsigned char *g = guard_copy(in + off, take, &mapped);
		int bad = 0;

		for (;;) {
			it_ws_event ev;
			ssize_t k = it_ws_read(&r, g + used, take - used, &ev);
			if (k < 0) {
				bad = 1;
				break;
			}
			used += (size_t)k;
			frames += r.frames;
			r.frames = 0;
			if (ev.kind == IT_WS_MORE)
				break;
			(*events)++;
		}
		guard_free(g, take, mapped);
		if (bad)
			return -1;
		off += take;
	}
	return frames;
}

/* Every frame is counted, also those the reader reports nothing for, so
 * that the bridge can hold each against ws_rate: a message that never ends
 * (endless empty continuation frames) is otherwise never counted at all. */
static void test_frame_count(void)
{
	static unsigned char in[1200 * 6 + 64];
	size_t n = 0, chunks[] = {1, 2, 5, 6, 7, 4096, sizeof(in)};
	long frames, events;
	int i, same = 1;

	n += frame(in + n, 0x01, "p", 1, 1);
	for (i = 0; i < 1200; i++)
		n += frame(in + n, 0x00, "", 0, 1);
	frames = count_frames(in, n, n, &events);
	is_int((int)frames, 1201, "frame count: a text frame and 1200 empty continuations are 1201 frames");
	is_int((int)events, 1, "frame count: of which only the first reports anything");
	for (i = 0; i < (int)(sizeof(chunks) / sizeof(chunks[0])); i++) {
		long e;
		if (count_frames(in, n, chunks[i], &e) != 1201)
			same = 0;
	}
	ok(same, "frame count: the same at every piece size");

	n = frame(in, 0x89, "", 0, 1);
	n += frame(in + n, 0x8A, "x", 1, 1);
	n += frame(in + n, 0x81, "", 0, 1);
	n += frame(in + n, 0x01, "a", 1, 1);
	n += frame(in + n, 0x80, "b", 1, 1);
	frames = count_frames(in, n, 3, &events);
	is_int((int)frames, 5, "frame count: control, empty and fragmented frames count one each");

	n = frame(in, 0x81, "ab", 2, 1);
	frames = count_frames(in, n - 1, 1, &events);
	is_int((int)frames, 1, "frame count: a frame counts once its header is in, before its payload");
}

static void test_errors(void)
{
	unsigned char in[512];
	size_t n;

	n = frame(in, 0x81, "ping", 4, 0);
	check_stream(in, n, 1024, -1002, NULL, "unmasked frame");
	n = frame(in, 0xC1, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "RSV1 set");
	n = frame(in, 0xA1, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "RSV2 set");
	n = frame(in, 0x83, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "reserved data opcode");
	n = frame(in, 0x8B, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "reserved control opcode");
	memset(in + 300, 'p', 126);
	n = frame(in, 0x89, in + 300, 126, 1);
	check_stream(in, n, 1024, -1002, NULL, "ping of 126 bytes");
	n = frame(in, 0x09, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "fragmented ping");
	n = frame(in, 0x80, "x", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "continuation without a message");
	n = frame(in, 0x01, "a", 1, 1);
	n += frame(in + n, 0x81, "b", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "new message inside a fragmented one");
	n = frame(in, 0x81, "\xc3\x28", 2, 1);
	check_stream(in, n, 1024, -1007, NULL, "invalid UTF-8");
	n = frame(in, 0x01, "\xe2\x82", 2, 1);
	n += frame(in + n, 0x80, "(", 1, 1);
	check_stream(in, n, 1024, -1007, NULL, "invalid UTF-8 across fragments");
	n = frame(in, 0x81, "ok\xe2\x82", 4, 1);
	check_stream(in, n, 1024, -1007, NULL, "text ending inside a character");
	n = frame(in, 0x81, "0123456789a", 11, 1);
	check_stream(in, n, 10, -1009, NULL, "message over the limit");
	n = frame(in, 0x01, "012345", 6, 1);
	n += frame(in + n, 0x80, "6789a", 5, 1);
	check_stream(in, n, 10, -1009, NULL, "fragments adding up over the limit");
	n = frame(in, 0x81, "0123456789", 10, 1);
	check_stream(in, n, 10, 0, "T10:0123456789;", "message at the limit");
	n = frame(in, 0x88, "\x03", 1, 1);
	check_stream(in, n, 1024, -1002, NULL, "close with a one-byte payload");
	n = frame(in, 0x88, "\x03\xe7", 2, 1);
	check_stream(in, n, 1024, -1002, NULL, "close code 999");
	n = frame(in, 0x88, "\x03\xed", 2, 1);
	check_stream(in, n, 1024, -1002, NULL, "close code 1005 sent on the wire");
	n = frame(in, 0x88, "\x03\xe8\xff", 3, 1);
	check_stream(in, n, 1024, -1007, NULL, "close reason not UTF-8");
	n = frame(in, 0x88, "\x0f\xa4", 2, 1);
	check_stream(in, n, 1024, 0, "close:4004:;", "close code 4004");
	/* 64-bit length with the most significant bit set. */
	memcpy(in, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03\x04", 14);
	check_stream(in, 14, (uint64_t)-1, -1002, NULL, "64-bit length with the top bit set");
}

static void test_truncated(void)
{
	unsigned char in[64];
	char log[256];
	size_t n = frame(in, 0x81, "hello", 5, 1), k;
	int all_more = 1;

	/* Every proper prefix of a frame is "need more", never an event. */
	for (k = 0; k < n; k++) {
		if (run(in, k, k ? k : 1, 1024, log, sizeof(log)) != 0 || log[0] != '\0')
			all_more = 0;
	}
	ok(all_more, "every truncation of a frame waits for more");
}

static void test_encode(void)
{
	unsigned char h[10];

	is_int(it_ws_frame_header(h, IT_WS_OP_TEXT, 0), 2, "header for 0 bytes: 2");
	ok(h[0] == 0x81 && h[1] == 0, "header for 0 bytes: FIN text, length 0");
	is_int(it_ws_frame_header(h, IT_WS_OP_TEXT, 125), 2, "header for 125 bytes: 2");
	is_int(it_ws_frame_header(h, IT_WS_OP_CLOSE, 126), 4, "header for 126 bytes: 4");
	ok(h[0] == 0x88 && h[1] == 126 && h[2] == 0 && h[3] == 126, "header for 126 bytes: bytes");
	is_int(it_ws_frame_header(h, IT_WS_OP_TEXT, 65535), 4, "header for 65535 bytes: 4");
	is_int(it_ws_frame_header(h, IT_WS_OP_TEXT, 65536), 10, "header for 65536 bytes: 10");
	ok(h[1] == 127 && h[7] == 1 && h[8] == 0 && h[9] == 0, "header for 65536 bytes: bytes");
}

static void test_accept(void)
{
	char out[32];

	/* The example of RFC 6455 section 1.3. */
	is_int(it_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out), 0, "accept key: sample accepted");
	is_str(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept key: RFC 6455 sample");
	is_int(it_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", 23, out), -1, "accept key: short key refused");
	is_int(it_ws_accept_key("dGhlIHNhbXBsZSBub25j\"Q==", 24, out), -1, "accept key: bad character refused");
}

int main(void)
{
	test_utf8();
	test_frames();
	test_frame_count();
	test_errors();
	test_truncated();
	test_encode();
	test_accept();
	return tap_done();
}

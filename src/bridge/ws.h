/* ws.h: the RFC 6455 frame layer of the bridge: an incremental, allocation-free reader, frame encoding, keys. */
#ifndef IT_BRIDGE_WS_H
#define IT_BRIDGE_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Opcodes (RFC 6455 section 5.2). */
enum {
	IT_WS_OP_CONT = 0x0,
	IT_WS_OP_TEXT = 0x1,
	IT_WS_OP_BINARY = 0x2,
	IT_WS_OP_CLOSE = 0x8,
	IT_WS_OP_PING = 0x9,
	IT_WS_OP_PONG = 0xA,
};

/* Close codes the bridge sends (RFC 6455 section 7.4.1, plus the
 * application's 4004). */
enum {
	IT_WS_CLOSE_NORMAL = 1000,
	IT_WS_CLOSE_GOING_AWAY = 1001,
	IT_WS_CLOSE_PROTOCOL = 1002,
	IT_WS_CLOSE_UNSUPPORTED = 1003,
	IT_WS_CLOSE_BAD_DATA = 1007,
	IT_WS_CLOSE_POLICY = 1008,
	IT_WS_CLOSE_TOO_BIG = 1009,
	IT_WS_CLOSE_INTERNAL = 1011,
	IT_WS_CLOSE_TRY_LATER = 1013,
	IT_WS_CLOSE_INVALID_SESSION = 4004,
};

/* What one call of it_ws_read produced. */
enum it_ws_kind {
	IT_WS_MORE = 0, /* all input consumed, nothing to report */
	IT_WS_DATA,	/* a chunk of a text or binary message (may be empty) */
	IT_WS_PING,	/* a complete Ping; payload in data/len */
	IT_WS_PONG,	/* a complete Pong */
	IT_WS_CLOSE,	/* a complete, valid Close; code 1005 when it had none */
};

typedef struct it_ws_event {
	enum it_ws_kind kind;
	int opcode;		   /* IT_WS_DATA: IT_WS_OP_TEXT or IT_WS_OP_BINARY */
	int fin;		   /* IT_WS_DATA: this chunk ends the message */
	const unsigned char *data; /* unmasked payload; valid until the next call */
	size_t len;
	int close_code; /* IT_WS_CLOSE */
} it_ws_event;

/* The state of one connection's incoming frame stream. Messages are never
 * assembled: payload is handed out chunk by chunk as it arrives (unmasked in
 * the caller's buffer), text is validated as UTF-8 across frame and chunk
 * boundaries, and only control payloads (at most 125 bytes) are kept. So a
 * connection costs this struct and nothing more, whatever a client sends. */
typedef struct it_ws_reader {
	uint64_t max_message; /* largest message, all fragments, in bytes */
	uint64_t remaining;   /* payload bytes left in the current frame */
	uint64_t msg_len;     /* bytes of the current data message so far */
	uint32_t utf8;	      /* UTF-8 validator state across chunks */
	uint8_t hdr[14];      /* header bytes collected so far */
	uint8_t hdr_len;      /* 0 while between frames */
	uint8_t hdr_need;     /* header length once known from the first two bytes */
	uint8_t in_payload;   /* header done, payload being read */
	uint8_t opcode;	      /* of the current frame */
	uint8_t fin;	      /* of the current frame */
	uint8_t mask[4];
	uint8_t mask_pos;   /* index into mask of the next payload byte */
	uint8_t msg_opcode; /* text/binary message in progress, or 0 */
	uint8_t ctl_len;
	uint8_t ctl[125]; /* control frame payload */
	uint32_t frames;  /* frames whose header was read: counted up here, read and reset by the caller */
} it_ws_reader;

/* Prepares a reader that accepts messages up to max_message bytes. */
void it_ws_reader_init(it_ws_reader *r, uint64_t max_message);

/* Consumes client-to-server bytes from buf (unmasking payload in place) and
 * describes in *ev the first thing that completed. Every frame whose header
 * it reads adds one to r->frames, including frames it reports nothing for
 * (an empty frame inside a fragmented message), so that the caller can hold
 * every frame against its rate limit; one call may read many such frames. Returns the number of
 * bytes consumed; call again with the rest until it returns with kind
 * IT_WS_MORE, which it does only once all of len is consumed. Returns a
 * negative close code instead when the stream breaks the protocol: -1002
 * (unmasked frame, reserved bits, unknown opcode, bad control frame, bad
 * fragmentation, bad close payload), -1007 (invalid UTF-8 in a text message
 * or close reason) or -1009 (message larger than max_message). After an
 * error the reader must not be used again. */
ssize_t it_ws_read(it_ws_reader *r, unsigned char *buf, size_t len, it_ws_event *ev);

/* Feeds n bytes to an incremental UTF-8 validator whose state starts at 0.
 * Returns the new state: 0 at a character boundary, a positive value inside
 * a character, or IT_WS_UTF8_BAD (sticky) once the input cannot be UTF-8.
 * Overlong forms, surrogates and code points past U+10FFFF are invalid. */
#define IT_WS_UTF8_BAD 0xFFFFFFFFu
uint32_t it_ws_utf8(uint32_t state, const unsigned char *p, size_t n);

/* Writes the header of an unmasked server frame (FIN set) carrying len bytes
 * with opcode into out (at least 10 bytes). Returns the header length. */
size_t it_ws_frame_header(unsigned char *out, int opcode, uint64_t len);

/* Computes Sec-WebSocket-Accept for a client's Sec-WebSocket-Key of keylen
 * bytes into out (at least 29 bytes, NUL-terminated). Returns 0, or -1 when
 * the key is not the base64 form of 16 bytes. */
int it_ws_accept_key(const char *key, size_t keylen, char *out);

#endif

/* ws.c: the RFC 6455 frame layer of the bridge: an incremental, allocation-free reader, frame encoding, keys. */
#include "config.h"

#include "bridge/ws.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

/* The UTF-8 validator keeps, between calls, how many continuation bytes are
 * still due and the range the next one must fall in (only the byte after a
 * lead byte has a range narrower than 80..BF: that is what excludes overlong
 * forms, surrogates and values past U+10FFFF). Packed: need << 16 | lo << 8 | hi. */
#define U8(need, lo, hi) (((uint32_t)(need) << 16) | ((uint32_t)(lo) << 8) | (uint32_t)(hi))

uint32_t it_ws_utf8(uint32_t state, const unsigned char *p, size_t n)
{
	size_t i;

	if (state == IT_WS_UTF8_BAD)
		return state;
	for (i = 0; i < n; i++) {
		unsigned c = p[i];

		if (state == 0) {
			if (c < 0x80)
				continue;
			if (c >= 0xC2 && c <= 0xDF)
				state = U8(1, 0x80, 0xBF);
			else if (c == 0xE0)
				state = U8(2, 0xA0, 0xBF);
			else if (c == 0xED)
				state = U8(2, 0x80, 0x9F);
			else if (c >= 0xE1 && c <= 0xEF)
				state = U8(2, 0x80, 0xBF);
			else if (c == 0xF0)
				state = U8(3, 0x90, 0xBF);
			else if (c >= 0xF1 && c <= 0xF3)
				state = U8(3, 0x80, 0xBF);
			else if (c == 0xF4)
				state = U8(3, 0x80, 0x8F);
			else
				return IT_WS_UTF8_BAD;
		} else {
			unsigned need = state >> 16, lo = (state >> 8) & 0xFF, hi = state & 0xFF;

			if (c < lo || c > hi)
				return IT_WS_UTF8_BAD;
			need--;
			state = need ? U8(need, 0x80, 0xBF) : 0;
		}
	}
	return state;
}

void it_ws_reader_init(it_ws_reader *r, uint64_t max_message)
{
	memset(r, 0, sizeof(*r));
	r->max_message = max_message;
}

static int valid_close_code(unsigned code)
{
	/* Codes a peer may send (RFC 6455 7.4 and the IANA registry): 1004,
	 * 1005, 1006 and 1015 are reserved for local use and never sent. */
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

/* Checks the first two header bytes and works out the header length. */
static int start_header(it_ws_reader *r)
{
	unsigned b0 = r->hdr[0], b1 = r->hdr[1], op = b0 & 0x0F, len7 = b1 & 0x7F;

	/* No extension is negotiated, so every reserved bit must be clear. */
	if (b0 & 0x70)
		return -IT_WS_CLOSE_PROTOCOL;
	/* A server must close on an unmasked client frame (section 5.1). */
	if (!(b1 & 0x80))
		return -IT_WS_CLOSE_PROTOCOL;
	switch (op) {
	case IT_WS_OP_CONT:
	case IT_WS_OP_TEXT:
	case IT_WS_OP_BINARY: break;
	case IT_WS_OP_CLOSE:
	case IT_WS_OP_PING:
	case IT_WS_OP_PONG:
		if (!(b0 & 0x80) || len7 > 125)
			return -IT_WS_CLOSE_PROTOCOL;
		break;
	default: return -IT_WS_CLOSE_PROTOCOL;
	}
	r->hdr_need = (uint8_t)(2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4);
	return 0;
}

/* The header is complete: decode it and check it against the message state. */
static int finish_header(it_ws_reader *r)
{
	unsigned op = r->hdr[0] & 0x0F, len7 = r->hdr[1] & 0x7F;
	uint64_t plen = len7;
	const uint8_t *m = r->hdr + r->hdr_need - 4;
	int i;

	if (len7 == 126) {
		plen = ((uint64_t)r->hdr[2] << 8) | r->hdr[3];
	} else if (len7 == 127) {
		plen = 0;
		for (i = 0; i < 8; i++)
			plen = (plen << 8) | r->hdr[2 + i];
		/* The most significant bit must be 0 (section 5.2). */
		if (plen >> 63)
			return -IT_WS_CLOSE_PROTOCOL;
	}
	if (op == IT_WS_OP_CONT) {
		if (!r->msg_opcode)
			return -IT_WS_CLOSE_PROTOCOL;
	} else if (op == IT_WS_OP_TEXT || op == IT_WS_OP_BINARY) {
		/* A new message may not start inside a fragmented one. */
		if (r->msg_opcode)
			return -IT_WS_CLOSE_PROTOCOL;
		r->msg_opcode = (uint8_t)op;
		r->msg_len = 0;
		r->utf8 = 0;
	}
	if (op < 8) {
		if (plen > r->max_message - r->msg_len)
			return -IT_WS_CLOSE_TOO_BIG;
		r->msg_len += plen;
	}
	memcpy(r->mask, m, 4);
	r->mask_pos = 0;
	r->opcode = (uint8_t)op;
	r->fin = (uint8_t)(r->hdr[0] >> 7);
	r->remaining = plen;
	r->ctl_len = 0;
	r->hdr_len = 0;
	r->hdr_need = 0;
	r->in_payload = 1;
	if (r->frames < UINT32_MAX)
		r->frames++;
	return 0;
}

static void unmask(it_ws_reader *r, unsigned char *p, size_t n)
{
	size_t i;
	unsigned k = r->mask_pos;

	for (i = 0; i < n; i++) {
		p[i] ^= r->mask[k];
		k = (k + 1) & 3;
	}
	r->mask_pos = (uint8_t)k;
}

static int finish_control(it_ws_reader *r, it_ws_event *ev)
{
	ev->data = r->ctl;
	ev->len = r->ctl_len;
	if (r->opcode == IT_WS_OP_PING) {
		ev->kind = IT_WS_PING;
	} else if (r->opcode == IT_WS_OP_PONG) {
		ev->kind = IT_WS_PONG;
	} else {
		ev->kind = IT_WS_CLOSE;
		if (r->ctl_len == 0) {
			ev->close_code = 1005;
		} else if (r->ctl_len == 1) {
			return -IT_WS_CLOSE_PROTOCOL;
		} else {
			ev->close_code = (r->ctl[0] << 8) | r->ctl[1];
			if (!valid_close_code((unsigned)ev->close_code))
				return -IT_WS_CLOSE_PROTOCOL;
			if (it_ws_utf8(0, r->ctl + 2, r->ctl_len - 2u) != 0)
				return -IT_WS_CLOSE_BAD_DATA;
		}
	}
	return 0;
}

ssize_t it_ws_read(it_ws_reader *r, unsigned char *buf, size_t len, it_ws_event *ev)
{
	size_t used = 0, n;
	int rc;

	memset(ev, 0, sizeof(*ev));
	for (;;) {
		while (!r->in_payload) {
			if (used == len)
				return (ssize_t)used;
			r->hdr[r->hdr_len++] = buf[used++];
			if (r->hdr_len == 2 && (rc = start_header(r)) < 0)
				return rc;
			if (r->hdr_len >= 2 && r->hdr_len == r->hdr_need && (rc = finish_header(r)) < 0)
				return rc;
		}
		n = len - used;
		if (n > r->remaining)
			n = (size_t)r->remaining;
		unmask(r, buf + used, n);
		if (r->opcode >= 8) {
			memcpy(r->ctl + r->ctl_len, buf + used, n);
			r->ctl_len = (uint8_t)(r->ctl_len + n);
			used += n;
			r->remaining -= n;
			if (r->remaining)
				return (ssize_t)used;
			r->in_payload = 0;
			if ((rc = finish_control(r, ev)) < 0)
				return rc;
			return (ssize_t)used;
		}
		if (r->msg_opcode == IT_WS_OP_TEXT) {
			r->utf8 = it_ws_utf8(r->utf8, buf + used, n);
			if (r->utf8 == IT_WS_UTF8_BAD)
				return -IT_WS_CLOSE_BAD_DATA;
		}
		ev->data = buf + used;
		ev->len = n;
		ev->opcode = r->msg_opcode;
		used += n;
		r->remaining -= n;
		if (r->remaining == 0) {
			r->in_payload = 0;
			if (r->fin) {
				/* A text message may not end inside a character. */
				if (r->msg_opcode == IT_WS_OP_TEXT && r->utf8 != 0)
					return -IT_WS_CLOSE_BAD_DATA;
				ev->fin = 1;
				r->msg_opcode = 0;
			}
		}
		if (n > 0 || ev->fin) {
			ev->kind = IT_WS_DATA;
			return (ssize_t)used;
		}
		/* An empty frame that does not end its message: nothing to say. */
		if (r->in_payload)
			return (ssize_t)used;
	}
}

size_t it_ws_frame_header(unsigned char *out, int opcode, uint64_t len)
{
	int i;

	out[0] = (unsigned char)(0x80 | (opcode & 0x0F));
	if (len < 126) {
		out[1] = (unsigned char)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (unsigned char)(len >> 8);
		out[3] = (unsigned char)len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

static int b64char(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int it_ws_accept_key(const char *key, size_t keylen, char *out)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char digest[SHA_DIGEST_LENGTH];
	char joined[24 + sizeof(guid)];
	size_t i;

	/* 16 random bytes in base64 are 22 characters and "==". */
	if (keylen != 24 || key[22] != '=' || key[23] != '=')
		return -1;
	for (i = 0; i < 22; i++)
		if (!b64char((unsigned char)key[i]))
			return -1;
	memcpy(joined, key, 24);
	memcpy(joined + 24, guid, sizeof(guid) - 1);
	SHA1((const unsigned char *)joined, 24 + sizeof(guid) - 1, digest);
	EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
	return 0;
}

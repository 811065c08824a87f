/* test_urlsign.c: unit tests for common/urlsign (HMAC vectors, keys, signing, verification). */
#include "config.h"

#include "common/config.h"
#include "common/id.h"
#include "common/urlsign.h"
#include "tap.h"

#include <errno.h>
#include <stdint.h>

static void tohex(const unsigned char *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* HMAC-SHA-256 of RFC 4231 section 4, the cases with untruncated output. */
static void rfc4231(void)
{
	unsigned char k[131], d[50], mac[IT_URLSIGN_MAC_LEN];
	char hex[2 * IT_URLSIGN_MAC_LEN + 1];

	memset(k, 0x0b, 20);
	it_urlsign_hmac(k, 20, "Hi There", 8, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "RFC 4231 test case 1");

	it_urlsign_hmac("Jefe", 4, "what do ya want for nothing?", 28, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
	       "RFC 4231 test case 2 (key shorter than the output)");

	memset(k, 0xaa, 20);
	memset(d, 0xdd, 50);
	it_urlsign_hmac(k, 20, d, 50, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", "RFC 4231 test case 3");

	for (int i = 0; i < 25; i++)
		k[i] = (unsigned char)(i + 1);
	memset(d, 0xcd, 50);
	it_urlsign_hmac(k, 25, d, 50, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", "RFC 4231 test case 4");

	memset(k, 0xaa, 131);
	it_urlsign_hmac(k, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
	       "RFC 4231 test case 6 (key longer than a block)");

	static const char t7[] = "This is a test using a larger than block-size key and a larger than block-size data."
				 " The key needs to be hashed before being used by the HMAC algorithm.";
	it_urlsign_hmac(k, 131, t7, sizeof(t7) - 1, mac);
	tohex(mac, sizeof(mac), hex);
	is_str(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
	       "RFC 4231 test case 7 (key and data longer than a block)");
}

/* Every form the configuration accepts is a key the signer takes, and the
 * other way round: both say the same about each sample. */
static void keys(void)
{
	static const struct {
		const char *text;
		int len; /* -1: refused */
	} cases[] = {
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 32},
		{"000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", 32},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
		 64},
		{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		 "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f00",
		 -1},						      /* 65 bytes */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 32}, /* base64 */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", 32},  /* unpadded */
		{"-_-_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", 32},  /* base64url */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh", -1},   /* 31 bytes */
		{"0001020304050607", -1},			      /* too short */
		{"secret", -1},
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBk aGxwdHh8=", -1}, /* a space */
		{"AAECAwQFBgcICQoLDA0ODxAREhMUFR=YXGBkaGxwdHh8", -1},  /* padding inside */
	};
	unsigned char key[IT_URLSIGN_KEY_MAX];
	char err[256];
	it_config cfg;

	it_config_defaults(&cfg);
	is_str(cfg.url_signing_key, "", "url_signing_key defaults to empty (a key made in the database)");
	is_int(cfg.signed_url_ttl, 7 * 86400, "signed_url_ttl defaults to 7 days");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = it_urlsign_key_parse(cases[i].text, key);
		int c = it_config_set(&cfg, "url_signing_key", cases[i].text, err, sizeof(err));
		is_int(n, cases[i].len < 0 ? -EINVAL : cases[i].len, "key %zu: %s", i,
		       cases[i].len < 0 ? "refused" : "decoded");
		is_int(c, cases[i].len < 0 ? -EINVAL : 0, "key %zu: the configuration says the same", i);
		if (c < 0)
			ok(strstr(err, cases[i].text) == NULL && strstr(err, "url_signing_key"),
			   "key %zu: the error names the setting, not the value", i);
	}
	is_int(it_urlsign_key_parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", key), 32,
	       "hex key");
	ok(key[0] == 0 && key[1] == 1 && key[31] == 0x1f, "hex key bytes");
	is_int(it_urlsign_key_parse("-_-_AwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", key), 32, "base64url key");
	ok(key[0] == 0xfb && key[1] == 0xff && key[2] == 0xbf && key[31] == 0x1f, "base64url key bytes");
	ok(it_config_set(&cfg, "url_signing_key", "", err, sizeof(err)) == 0, "an empty key is allowed");
	ok(it_config_set(&cfg, "signed_url_ttl", "60", err, sizeof(err)) < 0, "signed_url_ttl below 5 minutes refused");
	it_config_free(&cfg);
}

static void signing(void)
{
	static const char id[] = "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b";
	unsigned char k[32];
	it_urlsign s, other;
	char sig[IT_URLSIGN_SIG_LEN + 1], sig2[IT_URLSIGN_SIG_LEN + 1], q[IT_URLSIGN_QUERY_MAX], want[160];
	int64_t now = 1700000000, exp;

	for (int i = 0; i < 32; i++)
		k[i] = (unsigned char)i;
	is_int(it_urlsign_init(&s, k, 31, 3600), -EINVAL, "a 31-byte key is refused");
	is_int(it_urlsign_init(&s, k, 32, 0), -EINVAL, "a zero lifetime is refused");
	is_int(it_urlsign_init(&s, k, 32, 7 * 86400), 0, "a 32-byte key");

	is_int(it_urlsign_expiry(3600, 3600), 7200, "expiry on a whole hour stays");
	is_int(it_urlsign_expiry(3601, 3600), 10800, "expiry rounds up to the next hour");
	is_int(it_urlsign_expiry(0, 1), 3600, "a second rounds up to an hour");
	exp = it_urlsign_expiry(now, s.ttl);
	ok(exp >= now + s.ttl && exp < now + s.ttl + 3600 && exp % 3600 == 0, "expiry: ttl to ttl + 1 h, on the hour");
	ok(it_urlsign_expiry(now + 59, s.ttl) == exp || it_urlsign_expiry(now - 59, s.ttl) == exp,
	   "URLs signed a minute apart share their expiry");

	/* The message is pinned: a change to its layout would silently turn
	 * every URL already handed out into a 403. */
	it_urlsign_sig(&s, "file", id, 3, 1700003600, sig);
	{
		unsigned char mac[IT_URLSIGN_MAC_LEN];
		char b[IT_URLSIGN_SIG_LEN + 1];
		static const char msg[] = "imagetools-url-1\nfile\n0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b\n3\n1700003600";
		it_urlsign_hmac(k, 32, msg, sizeof(msg) - 1, mac);
		it_base64url(mac, sizeof(mac), b);
		is_str(sig, b, "the signature is base64url(HMAC(key, domain, label, id, version, exp))");
	}
	is_int(strlen(sig), IT_URLSIGN_SIG_LEN, "43 characters");

	is_int(it_urlsign_query(&s, "file", id, 3, now, q, sizeof(q)), 0, "query fits");
	it_urlsign_sig(&s, "file", id, 3, exp, sig);
	snprintf(want, sizeof(want), "v=3&exp=%lld&sig=%s", (long long)exp, sig);
	is_str(q, want, "query: v, exp, sig");
	is_int(it_urlsign_query(&s, "file", id, 3, now, q, 20), -ENOSPC, "query refuses a short buffer");

	is_int(it_urlsign_verify(&s, "file", id, 3, exp, sig, now), IT_URLSIGN_OK, "verifies");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, sig, exp), IT_URLSIGN_OK, "still good at exp");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, sig, exp + 1), IT_URLSIGN_EXPIRED, "expired after exp");
	is_int(it_urlsign_verify(&s, "thumbnail", id, 3, exp, sig, now), IT_URLSIGN_BAD, "other label: bad");
	is_int(it_urlsign_verify(&s, "file", "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6c", 3, exp, sig, now), IT_URLSIGN_BAD,
	       "other id: bad");
	is_int(it_urlsign_verify(&s, "file", id, 4, exp, sig, now), IT_URLSIGN_BAD, "other version: bad");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp + 3600, sig, now), IT_URLSIGN_BAD, "later expiry: bad");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp - 3600 * 24 * 30, sig, now), IT_URLSIGN_BAD,
	       "an earlier expiry is bad before it is expired");
	memcpy(sig2, sig, sizeof(sig));
	sig2[10] = sig2[10] == 'A' ? 'B' : 'A';
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, sig2, now), IT_URLSIGN_BAD, "one character changed: bad");
	sig2[10] = sig[10];
	sig2[42] = '\0';
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, sig2, now), IT_URLSIGN_BAD, "truncated: bad");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, "", now), IT_URLSIGN_BAD, "empty: bad");
	is_int(it_urlsign_verify(&s, "file", id, 3, exp, NULL, now), IT_URLSIGN_BAD, "none: bad");

	k[0] ^= 1;
	it_urlsign_init(&other, k, 32, s.ttl);
	is_int(it_urlsign_verify(&other, "file", id, 3, exp, sig, now), IT_URLSIGN_BAD, "another key: bad");
}

int main(void)
{
	rfc4231();
	keys();
	signing();
	return tap_done();
}

/* pairing.h: imagetools-upload --pair: a pairing code exchanged for a token (POST /api/v1/pair), kept in the user's
 * config file. */
#ifndef IT_CLI_PAIRING_H
#define IT_CLI_PAIRING_H

#include <curl/curl.h>
#include <stddef.h>

/* Splits what a user gives to --pair: a bare code ("itp." and 22 URL-safe
 * base64 characters), or the pairing link the ImageTools page shows as text
 * and QR code, "<site>/#pair=<code>" (the site may end in a page name such as
 * index.html, which is dropped). Writes the site into server (serverlen
 * bytes; "" for a bare code) and the code into code (codelen bytes, at least
 * 27). Returns 0, or -1 when arg is neither. */
int it_pairing_parse(const char *arg, char *server, size_t serverlen, char *code, size_t codelen);

/* What the server answers to an exchange. */
typedef struct it_pairing_result {
	char token[48];	     /* "itk." + 32 characters: shown once, never printed */
	char device_id[32];  /* "dev_" + 16 characters: the device's public name */
	char scope[16];	     /* upload, view or full */
	char label[80];	     /* sanitised for printing */
	char expires_at[40]; /* ISO 8601, sanitised */
} it_pairing_result;

/* Exchanges code at server (a site as it_cli_url takes it) for a token of
 * its own, naming the device label and source. h is an easy handle the call
 * configures as it needs (the caller may reuse it afterwards with
 * curl_easy_reset). Returns IT_EXIT_OK with *out filled, or an IT_EXIT_* code
 * (IT_EXIT_TOKEN for a code that is unknown, used or expired) after writing a
 * sentence for the user into msg (msglen bytes). */
int it_pairing_exchange(CURL *h, const char *server, const char *code, const char *label, const char *source,
			it_pairing_result *out, char *msg, size_t msglen);

/* Keeps server and token in the key = value file at path: its server,
 * session and token lines are replaced, every other line (source, comments)
 * kept. The directory is created (mode 0700) when missing; the file is
 * written whole or not at all (a temporary file, flushed, renamed over it)
 * with mode 0600, since a token is a credential. Returns 0, or -1 with a
 * sentence in err (errlen bytes). */
int it_pairing_save(const char *path, const char *server, const char *token, char *err, size_t errlen);

/* The label a device pairs under: "<program> on <hostname>", cut to the 64
 * bytes the server takes. out holds at least 65 bytes. */
void it_pairing_label(const char *program, char *out, size_t outlen);

#endif

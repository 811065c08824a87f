/* filename.h: client-supplied file names made safe to store, display and send back in headers. */
#ifndef IT_IMAGE_FILENAME_H
#define IT_IMAGE_FILENAME_H

#include <stddef.h>

/* A file name is only ever shown and offered for saving, never used as a
 * path on this server: these functions make it harmless wherever it goes. */

/* Copies in to out (outlen bytes, NUL-terminated) as valid UTF-8: every byte
 * that is not part of a well-formed UTF-8 sequence becomes U+FFFD, NUL ends
 * the name. Cut at a character boundary to fit. Returns the length. */
size_t it_filename_utf8(const char *in, char *out, size_t outlen);

/* The display name: valid UTF-8; only the last path component (after the
 * last '/' or '\'); control characters (C0, DEL, C1) and bidirectional
 * overrides removed, tabs and line breaks turned into spaces; leading and
 * trailing spaces and dots trimmed; at most outlen - 1 bytes, cut inside the
 * stem so that the extension survives.
 *
 * ext (may be NULL) is the extension of the content as sniffed ("jpg",
 * "png", "gif", "webp", "heic", "avif"): the name then ends in an extension of that type,
 * because the extension decides what opens a saved file and a client's
 * "x.html" holding a JPEG/HTML polyglot must not be saved as HTML. A
 * matching extension is kept as written ("IMG.JPEG"); a wrong one (1 to 8
 * letters or digits after the last dot) is replaced ("x.html" -> "x.jpg",
 * "a.jpg.html" -> "a.jpg"); a name without one gets it ("scan" ->
 * "scan.jpg"); inner extensions stay ("a.html.jpg"), since only the last
 * one counts. When nothing is left the name is "image" (plus the extension).
 * Returns the length. */
size_t it_filename_sanitize(const char *in, const char *ext, char *out, size_t outlen);

/* The extension it_filename_sanitize wants for a stored content type
 * ("image/jpeg" -> "jpg"), or NULL for a type that is not one of ours (or
 * NULL). The returned string is static. For renames: the new name keeps
 * the extension of what the image is. */
const char *it_filename_ext_for_type(const char *content_type);

/* Writes a Content-Disposition value for name (already sanitised):
 * `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>`
 * (RFC 6266). The fallback replaces non-ASCII, '"', '\' and '%' with '_'.
 * Returns 0, or -ENOSPC when out is too small. */
int it_filename_disposition(const char *name, char *out, size_t outlen);

#endif

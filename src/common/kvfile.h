/* kvfile.h: the "key = value" file format shared by the server's configuration
 * file and the command-line clients' cli.conf. */
#ifndef IT_COMMON_KVFILE_H
#define IT_COMMON_KVFILE_H

#include <stddef.h>

/* Called once per pair. Returns 0 to go on, or a negative errno (-EINVAL for
 * a bad key or value) after writing the reason (without file and line,
 * which the reader adds) into why. */
typedef int (*it_kvfile_cb)(void *ud, const char *key, const char *val, char *why, size_t whylen);

/* Reads path line by line: blank lines and lines starting with '#' are
 * skipped, spaces around keys and values are dropped, and a value in double
 * quotes keeps its inner spaces. Lines are at most 4 KiB. Returns 0, or a
 * negative errno with "path:line: reason" (or "path: strerror") in err:
 * that of opening the file, -EINVAL for a malformed line, or the callback's.
 * A file that does not exist is not an error when missing_ok is set. */
int it_kvfile_read(const char *path, int missing_ok, it_kvfile_cb cb, void *ud, char *err, size_t errlen);

#endif

/* log.h: one-line log records on stderr, shared by every program. */
#ifndef IT_COMMON_LOG_H
#define IT_COMMON_LOG_H

#include <stdarg.h>

enum it_log_level { IT_LOG_ERROR = 0, IT_LOG_WARN, IT_LOG_INFO, IT_LOG_DEBUG };

/* Sets the program name printed in each record (not copied: pass a literal)
 * and the most verbose level that is still printed. */
void it_log_init(const char *progname, enum it_log_level max_level);

/* Writes one record "<time> <prog>[pid] <level>: <message>\n" with a single
 * write(2), so records from several threads or processes never interleave. */
void it_log(enum it_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void it_logv(enum it_log_level level, const char *fmt, va_list ap);

/* Parses "error", "warn", "info" or "debug"; returns -EINVAL for anything else. */
int it_log_level_parse(const char *s);

/* Length of a session id (common/id.h). Every record is scanned for runs of
 * exactly this many URL-safe characters, which are cut to a short prefix, so
 * a session id inside a database error message never reaches the log whole. */
#define IT_LOG_SECRET_LEN 32

/* Returns a short, log-safe prefix of a secret such as a session id: the first
 * six characters followed by an ellipsis. Writes into out (at least 16 bytes). */
const char *it_log_redact(const char *secret, char *out, unsigned outlen);

#define it_log_error(...) it_log(IT_LOG_ERROR, __VA_ARGS__)
#define it_log_warn(...) it_log(IT_LOG_WARN, __VA_ARGS__)
#define it_log_info(...) it_log(IT_LOG_INFO, __VA_ARGS__)
#define it_log_debug(...) it_log(IT_LOG_DEBUG, __VA_ARGS__)

#endif

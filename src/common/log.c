/* log.c: one-line log records on stderr. */
#include "config.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *progname = "imagetools";
static enum it_log_level max_level = IT_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void it_log_init(const char *name, enum it_log_level level)
{
	progname = name;
	max_level = level;
}

int it_log_level_parse(const char *s)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

static int id_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Whether s[0..i) ends with a credential's type prefix, "itk." (a scoped
 * token) or "itp." (a pairing code), standing at the start of s or after a
 * character that cannot be part of an id. redact_ids asks this of what it
 * has already written, which holds the prefix as it came. */
static int after_cred_prefix(const char *s, int i)
{
	if (i < 4 || s[i - 1] != '.' || s[i - 4] != 'i' || s[i - 3] != 't' || (s[i - 2] != 'k' && s[i - 2] != 'p'))
		return 0;
	return i == 4 || !id_char((unsigned char)s[i - 5]);
}

/* Shortens every run of exactly IT_LOG_SECRET_LEN URL-safe characters (the
 * shape of a session id, and of the random part of a token after its "itk.")
 * in s[0..n) to its first six and "...", in place, and returns the new
 * length. A run of any length over nine after "itk." or "itp." is cut the
 * same way: a pairing code's random part is 22 characters, and a token
 * truncated or padded by a client is still most of a secret. (Nine, so that
 * the text never grows: the compaction in place relies on it.) Callers redact
 * the ids they log themselves; this catches the ones that arrive inside text
 * they pass on, such as a database error's "Key (session_id)=(...)" detail.
 * UUIDs (36 characters with dashes) and SHA-256 digests (64) are left alone. */
static int redact_ids(char *s, int n)
{
	int in = 0, out = 0;

	while (in < n) {
		int run = 0;
		while (in + run < n && id_char((unsigned char)s[in + run]))
			run++;
		if (run == IT_LOG_SECRET_LEN || (run > 9 && after_cred_prefix(s, out))) {
			memmove(s + out, s + in, 6);
			memcpy(s + out + 6, "...", 3);
			out += 9;
			in += run;
		} else if (run > 0) {
			memmove(s + out, s + in, (size_t)run);
			out += run;
			in += run;
		} else {
			s[out++] = s[in++];
		}
	}
	return out;
}

void it_logv(enum it_log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	int n, m;

	if (level > max_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d] %s: ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), progname,
		     (int)getpid(), level_names[level]);
	if (n < 0)
		return;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	n = redact_ids(line, n);
	/* Control characters from client input must not forge extra records. */
	for (int i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20)
			line[i] = ' ';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report it. */
	}
}

void it_log(enum it_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	it_logv(level, fmt, ap);
	va_end(ap);
}

const char *it_log_redact(const char *secret, char *out, unsigned outlen)
{
	if (outlen < 16) {
		if (outlen)
			out[0] = '\0';
		return out;
	}
	if (secret == NULL || *secret == '\0') {
		snprintf(out, outlen, "-");
		return out;
	}
	/* A token or pairing code keeps its type prefix, so that a message
	 * still says which kind of credential it was. */
	if ((strncmp(secret, "itk.", 4) == 0 || strncmp(secret, "itp.", 4) == 0) && strlen(secret) > 10)
		snprintf(out, outlen, "%.10s...", secret);
	else
		snprintf(out, outlen, "%.6s...", secret);
	return out;
}

/* listen.c: the Unix socket imagetools.fcgi listens on with --socket, taken only when no other server holds it and
 * removed only when it is still ours. */
#include "config.h"

#include "fcgi/listen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int fill_addr(const char *path, struct sockaddr_un *sa)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

/* 1 when a server accepts connections at sa, 0 when the file is a socket
 * nobody listens on, negative errno when that cannot be told. A listener
 * whose backlog is full answers EAGAIN: it is alive. */
static int someone_listens(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		rc = 1;
	else if (errno == EAGAIN || errno == EINPROGRESS)
		rc = 1;
	else if (errno == ECONNREFUSED)
		rc = 0;
	else
		rc = -errno;
	close(fd);
	return rc;
}

int it_listen_unix(const char *path, int backlog, it_listen_ident *ident, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd = -1, rc;

	ident->valid = 0;
	rc = fill_addr(path, &sa);
	if (rc < 0) {
		snprintf(err, errlen, "%s: a socket path must be 1 to %zu bytes long", path, sizeof(sa.sun_path) - 1);
		goto out;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			rc = -EEXIST;
			snprintf(err, errlen, "%s exists and is not a socket; it is left alone", path);
			goto out;
		}
		rc = someone_listens(&sa);
		if (rc == 1) {
			rc = -EADDRINUSE;
			snprintf(err, errlen,
				 "%s is in use: a server is listening on it (stop it first, or use another path)",
				 path);
			goto out;
		}
		if (rc < 0) {
			snprintf(err, errlen, "%s: cannot tell whether a server listens on it: %s", path,
				 strerror(-rc));
			goto out;
		}
		/* Left behind by a server that is gone. */
		if (unlink(path) < 0 && errno != ENOENT) {
			rc = -errno;
			snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
			goto out;
		}
	} else if (errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto out;
	}
	/* bind() fails with EADDRINUSE rather than replace a file that another
	 * server created in the meantime. */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		goto out;
	}
	if (stat(path, &st) == 0) {
		ident->dev = st.st_dev;
		ident->ino = st.st_ino;
		ident->valid = 1;
	}
	rc = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		errno = -rc;
		return -1;
	}
	return rc;
}

int it_listen_release(const char *path, const it_listen_ident *ident)
{
	struct stat st;

	if (ident == NULL || !ident->valid || path == NULL)
		return 0;
	if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || st.st_dev != ident->dev || st.st_ino != ident->ino)
		return 0;
	return unlink(path) == 0;
}

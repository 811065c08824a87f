/* test_listen.c: unit tests for fcgi/listen: a live socket is never taken over, a stale one is replaced, a file that is
 * not a socket is left alone, and only the socket a process created is removed. */
#include "config.h"

#include "fcgi/listen.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int accepts(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), rc;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return rc;
}

static ino_t inode(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_ino : 0;
}

int main(void)
{
	char path[108], err[256];
	it_listen_ident a, b, other;
	int fd1, fd2, fd3;

	snprintf(path, sizeof(path), "/tmp/it-listen-%d.sock", (int)getpid());
	unlink(path);

	fd1 = it_listen_unix(path, 16, &a, err, sizeof(err));
	ok(fd1 >= 0 && a.valid, "a new socket is created and listens");
	ok(accepts(path), "connections reach it");

	fd2 = it_listen_unix(path, 16, &b, err, sizeof(err));
	ok(fd2 == -1 && errno == EADDRINUSE, "a second server on a live socket is refused (EADDRINUSE)");
	ok(strstr(err, path) && strstr(err, "in use"), "the error names the path: %s", err);
	ok(!b.valid, "and it owns nothing");
	is_int(inode(path), a.ino, "the first server's socket file is untouched");
	ok(accepts(path), "and still reaches the first server");

	other = a;
	other.ino++;
	is_int(it_listen_release(path, &other), 0, "a socket file that is not ours is not removed");
	is_int(it_listen_release(path, &b), 0, "nor by a process that created none");
	ok(inode(path) == a.ino, "the file is still there");

	/* Someone removes the live socket's file by hand and starts another
	 * server there: the first one's exit must leave that one alone. */
	unlink(path);
	fd3 = it_listen_unix(path, 16, &b, err, sizeof(err));
	ok(fd3 >= 0 && b.valid, "a server starts where the file was removed: %s", fd3 < 0 ? err : "ok");
	is_int(it_listen_release(path, &a), 0, "the first server's exit leaves the replacement alone");
	ok(accepts(path), "which still accepts");
	is_int(it_listen_release(path, &b), 1, "its owner removes it");
	is_int(inode(path), 0, "it is gone");
	close(fd3);
	close(fd1);

	/* A server that died leaves its socket file behind: nobody listens. */
	fd1 = it_listen_unix(path, 16, &a, err, sizeof(err));
	close(fd1);
	ok(inode(path) != 0 && !accepts(path), "a stale socket file, nobody listening");
	fd3 = it_listen_unix(path, 16, &b, err, sizeof(err));
	ok(fd3 >= 0 && b.valid, "is replaced: %s", fd3 < 0 ? err : "ok");
	ok(accepts(path), "the new server accepts");
	is_int(it_listen_release(path, &b), 1, "and removes it at exit");
	close(fd3);

	/* Something else at the path: never deleted. */
	{
		int f = open(path, O_CREAT | O_WRONLY | O_EXCL, 0600);
		ok(f >= 0 && write(f, "data\n", 5) == 5, "a regular file at the path");
		close(f);
	}
	is_int(it_listen_unix(path, 16, &b, err, sizeof(err)), -1, "is refused");
	is_int(errno, EEXIST, "with EEXIST");
	ok(strstr(err, "not a socket") != NULL, "with a reason: %s", err);
	{
		struct stat st;
		ok(lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 5, "and left as it was");
	}
	unlink(path);

	{
		char longp[200];
		memset(longp, 'x', sizeof(longp) - 1);
		longp[0] = '/';
		longp[sizeof(longp) - 1] = '\0';
		ok(it_listen_unix(longp, 16, &b, err, sizeof(err)) < 0, "a path too long for a socket is refused");
	}
	return tap_done();
}

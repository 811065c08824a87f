/* listen.h: the Unix socket imagetools.fcgi listens on with --socket, taken only when no other server holds it and
 * removed only when it is still ours. */
#ifndef IT_FCGI_LISTEN_H
#define IT_FCGI_LISTEN_H

#include <stddef.h>
#include <sys/types.h>

/* Which socket file a process created: the file at the path is that socket
 * as long as device and inode are the same. That holds while the process
 * keeps the listening socket open: the socket holds on to its file, so the
 * kernel cannot give the inode to another file, even after an unlink. */
typedef struct it_listen_ident {
	dev_t dev;
	ino_t ino;
	int valid; /* 0: nothing was created (nothing to remove) */
} it_listen_ident;

/* Creates a listening Unix stream socket at path (backlog as for listen(2))
 * and fills *ident with the file it created. A socket file already at path
 * is first tried with connect(): when a server accepts there, nothing is
 * touched and the call fails with EADDRINUSE (a second server would otherwise
 * take the path over, and delete it under the first when it exits); when
 * nobody listens (ECONNREFUSED: left behind by a server that died) it is
 * removed and replaced. Anything at path that is not a socket is never
 * removed: EEXIST. Returns the descriptor (blocking, close-on-exec not
 * set, as libfcgi expects), or -1 with errno set and a sentence naming path
 * in err (errlen bytes, NUL-terminated). path must not be NULL. */
int it_listen_unix(const char *path, int backlog, it_listen_ident *ident, char *err, size_t errlen);

/* Removes the socket file at path if it is still the one ident names
 * (call it before closing the listening socket, see it_listen_ident)
 * (another server may have replaced it since, e.g. after this one was
 * declared dead). Returns 1 when removed, 0 when left alone (not ours, gone,
 * or ident->valid is 0). ident may be NULL (0). Never fails otherwise. */
int it_listen_release(const char *path, const it_listen_ident *ident);

#endif

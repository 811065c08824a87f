/* proc.h: process-wide settings every daemon makes at start. */
#ifndef IT_COMMON_PROC_H
#define IT_COMMON_PROC_H

/* Raises the soft limit on open descriptors to the hard one: every client of
 * a server is a descriptor (a socket, and for FastCGI its database
 * connection too), and the soft limit's usual 1024 is far below what one
 * process serves. Failure is not an error: the process runs with what it has. */
void it_proc_raise_fd_limit(void);

#endif

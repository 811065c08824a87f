/* proc.c: process-wide settings every daemon makes at start. */
#include "config.h"

#include "common/proc.h"

#include <sys/resource.h>

void it_proc_raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

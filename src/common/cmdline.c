/* cmdline.c: the command line of every program, read one way. */
#include "config.h"

#include "common/cmdline.h"

#include <errno.h>
#include <stdlib.h>

int it_cmdline_next(it_cmdline *cl, int argc, char **argv)
{
	int c = getopt_long(argc, argv, cl->shortopts, cl->longopts, NULL);

	switch (c) {
	case -1:
		if (cl->operands || optind == argc)
			return -1;
		break;
	case 'h':
		cl->usage(stdout);
		cl->status = 0;
		return IT_CMDLINE_EXIT;
	case 'V':
		printf("%s %s\n", cl->prog, cl->version);
		cl->status = 0;
		return IT_CMDLINE_EXIT;
	case '?':
	case ':': break;
	default: return c;
	}
	cl->usage(stderr);
	cl->status = 2;
	return IT_CMDLINE_EXIT;
}

int it_cmdline_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

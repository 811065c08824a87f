/* cmdline.h: the command line of every program, read one way: getopt_long
 * with --help, --version and usage errors answered alike, and numbers
 * checked against their range.
 *
 * The common layer's return rule holds (0 or a negative errno), except for
 * it_cmdline_next, which returns getopt_long's values. */
#ifndef IT_COMMON_CMDLINE_H
#define IT_COMMON_CMDLINE_H

#include <getopt.h>
#include <stdio.h>

/* One program's command line, set up by its main. The option characters
 * 'h' and 'V' mean --help and --version in every program that lists them. */
typedef struct it_cmdline {
	const char *prog;	       /* the program's name, as --version prints it */
	const char *version;	       /* what --version prints after it (PACKAGE_VERSION) */
	void (*usage)(FILE *f);	       /* writes the program's usage text to f */
	const char *shortopts;	       /* as getopt_long takes them */
	const struct option *longopts; /* as getopt_long takes them */
	int operands;		       /* 1: the program takes arguments after the options */
	int status;		       /* the exit status, once it_cmdline_next said IT_CMDLINE_EXIT */
} it_cmdline;

/* What it_cmdline_next returns when the program ends with cl->status. */
#define IT_CMDLINE_EXIT (-2)

/* Reads the next option from argv (getopt_long's globals move on as they
 * do for getopt_long). Returns an option that is the program's to handle
 * (getopt_long's value, its argument in optarg), -1 after the last one, or
 * IT_CMDLINE_EXIT when the program ends here with cl->status: 0 after
 * --help (the usage on stdout) or --version (prog and the version on
 * stdout); 2 after an unknown option or a missing argument, which
 * getopt_long has named, or, unless cl->operands, an argument after the
 * options (the usage on stderr). */
int it_cmdline_next(it_cmdline *cl, int argc, char **argv);

/* Parses s (not NULL) as a whole decimal number within [lo, hi] into *out.
 * Returns 0, or -EINVAL with *out unchanged when it is not one. */
int it_cmdline_long(const char *s, long lo, long hi, long *out);

#endif

/* test_cmdline.c: unit tests for the command line every program reads (common/cmdline). */
#include "config.h"

#include "common/cmdline.h"
#include "tap.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>

static FILE *usage_to;
static int usage_calls;

static void usage(FILE *f)
{
	usage_to = f;
	usage_calls++;
}

static const struct option opts[] = {
	{"config", required_argument, NULL, 'c'},
	{"once", no_argument, NULL, 'o'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* Reads argv (NULL-terminated) as a program would: the options it is given
 * go into seen (as their characters), and the last value of
 * it_cmdline_next is returned. */
static int read_all(it_cmdline *cl, char **argv, char *seen, size_t seenlen)
{
	int argc = 0, c;
	size_t n = 0;

	while (argv[argc])
		argc++;
	optind = 0; /* glibc: start afresh */
	opterr = 0;
	usage_to = NULL;
	usage_calls = 0;
	while ((c = it_cmdline_next(cl, argc, argv)) >= 0)
		if (n + 1 < seenlen)
			seen[n++] = (char)c;
	seen[n] = '\0';
	return c;
}

int main(void)
{
	/* "# " makes the --version line a TAP comment. */
	it_cmdline cl = {
		.prog = "# test-cmdline", .version = "1.0", .usage = usage, .shortopts = "c:ohV", .longopts = opts};
	char seen[16];
	long v = 7;

	is_int(it_cmdline_long("42", 0, 100, &v), 0, "a number in range");
	is_int(v, 42, "is stored");
	is_int(it_cmdline_long("0", 0, 100, &v), 0, "the lower bound is allowed");
	is_int(it_cmdline_long("100", 0, 100, &v), 0, "so is the upper one");
	v = 7;
	is_int(it_cmdline_long("101", 0, 100, &v), -EINVAL, "above the range");
	is_int(it_cmdline_long("-1", 0, 100, &v), -EINVAL, "below it");
	is_int(it_cmdline_long("", 0, 100, &v), -EINVAL, "the empty string");
	is_int(it_cmdline_long("12x", 0, 100, &v), -EINVAL, "trailing garbage");
	is_int(it_cmdline_long("x", 0, 100, &v), -EINVAL, "no digits");
	is_int(it_cmdline_long("99999999999999999999999", 0, LONG_MAX, &v), -EINVAL, "overflow");
	is_int(v, 7, "a refused value leaves *out alone");

	{
		char *argv[] = {"prog", "--config", "x.conf", "-o", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), -1, "the program's options, then the end");
		is_str(seen, "co", "each option is the program's to handle");
		ok(usage_calls == 0, "no usage printed");
	}
	{
		char *argv[] = {"prog", "-o", "extra", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), IT_CMDLINE_EXIT, "an operand where none is taken");
		is_int(cl.status, 2, "exits 2");
		ok(usage_calls == 1 && usage_to == stderr, "with the usage on stderr");
	}
	cl.operands = 1;
	{
		char *argv[] = {"prog", "-o", "extra", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), -1, "an operand where operands are taken");
		is_int(optind, 2, "optind points at it");
	}
	{
		char *argv[] = {"prog", "--nonsense", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), IT_CMDLINE_EXIT, "an unknown option");
		is_int(cl.status, 2, "exits 2");
		ok(usage_calls == 1 && usage_to == stderr, "with the usage on stderr");
	}
	{
		char *argv[] = {"prog", "--config", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), IT_CMDLINE_EXIT, "a missing argument");
		is_int(cl.status, 2, "exits 2");
	}
	{
		char *argv[] = {"prog", "-o", "--help", "-c", "x", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), IT_CMDLINE_EXIT, "--help ends the reading");
		is_str(seen, "o", "after the options before it");
		is_int(cl.status, 0, "exits 0");
		ok(usage_calls == 1 && usage_to == stdout, "with the usage on stdout");
	}
	{
		char *argv[] = {"prog", "-V", NULL};
		is_int(read_all(&cl, argv, seen, sizeof(seen)), IT_CMDLINE_EXIT, "--version");
		is_int(cl.status, 0, "exits 0");
		ok(usage_calls == 0, "without the usage");
	}
	return tap_done();
}

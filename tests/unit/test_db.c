/* test_db.c: unit tests for db/db's check of database_url: well-formed strings and URIs pass, a malformed one is named
 * without repeating its value. */
#include "config.h"

#include "db/db.h"
#include "tap.h"

#include <errno.h>
#include <string.h>

int main(void)
{
	char err[512];

	is_int(it_db_check_conninfo(NULL, err, sizeof(err)), 0, "no database_url: the PG* environment");
	is_int(it_db_check_conninfo("", err, sizeof(err)), 0, "an empty one too");
	is_int(it_db_check_conninfo("host=/run/postgresql dbname=imagetools user=imagetools", err, sizeof(err)), 0,
	       "key=value pairs");
	is_int(it_db_check_conninfo("postgresql://it:s3cret@localhost:5432/imagetools?sslmode=disable", err,
				    sizeof(err)),
	       0, "a URI");

	/* A space inside an unquoted password: libpq reads its second half as
	 * an option name and quotes it in its message. */
	is_int(it_db_check_conninfo("host=/tmp dbname=it password=pass hunter2secret", err, sizeof(err)), -EINVAL,
	       "a malformed string is refused");
	ok(strstr(err, "database_url") != NULL, "the error names the setting: %s", err);
	ok(strstr(err, "hunter2") == NULL, "and does not repeat the password");

	is_int(it_db_check_conninfo("host=/tmp passwrd=topsecret", err, sizeof(err)), -EINVAL, "an unknown option");
	ok(strstr(err, "database_url") && !strstr(err, "topsecret") && !strstr(err, "passwrd"),
	   "named without its words: %s", err);

	is_int(it_db_check_conninfo("postgresql://it:pw@localhost/db?bogus=zzsecret", err, sizeof(err)), -EINVAL,
	       "a URI with an unknown parameter");
	ok(strstr(err, "database_url") && !strstr(err, "zzsecret"), "named without its value: %s", err);

	is_int(it_db_check_conninfo("host='/tmp dbname=it", err, sizeof(err)), -EINVAL, "an unterminated quote");
	ok(strstr(err, "database_url") != NULL, "is named: %s", err);

	/* A short buffer is filled, never overrun. */
	{
		char small[24];
		memset(small, 'Z', sizeof(small));
		is_int(it_db_check_conninfo("a b c", small, 16), -EINVAL, "a malformed string, short buffer");
		ok(memchr(small, '\0', 16) != NULL && small[16] == 'Z', "the message fits in the buffer");
	}
	return tap_done();
}

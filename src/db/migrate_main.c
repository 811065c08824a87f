/* migrate_main.c: imagetools-migrate, the command that brings a database's schema up to date. */
#include "config.h"

#include "common/cmdline.h"
#include "common/config.h"
#include "common/log.h"
#include "db/db.h"
#include "db/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: imagetools-migrate [--dir DIR] [--database CONNINFO] [--status] [--quiet]\n"
		"Applies the schema migrations in DIR (default %s) that the database\n"
		"has not seen yet. Safe to run any number of times, also concurrently.\n"
		"The database comes from --database, IMAGETOOLS_DATABASE_URL, the config\n"
		"file, or libpq's PG* environment variables.\n",
		IT_SQLDIR);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"database", required_argument, NULL, 'D'},
		{"status", no_argument, NULL, 's'},
		{"quiet", no_argument, NULL, 'q'},
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	it_cmdline cl = {.prog = "imagetools-migrate", .usage = usage, .shortopts = "d:D:sqc:h", .longopts = opts};
	const char *dir = IT_SQLDIR, *database = NULL, *config_path = IT_CONFIG_PATH;
	int status = 0, verbose = 1, c, rc;
	it_config cfg;
	char err[512];
	PGconn *conn;

	it_log_init("imagetools-migrate", IT_LOG_INFO);
	while ((c = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'D': database = optarg; break;
		case 's': status = 1; break;
		case 'q': verbose = 0; break;
		case 'c': config_path = optarg; break;
		}
	}
	if (c == IT_CMDLINE_EXIT)
		return cl.status;
	if (it_db_startup("imagetools-migrate", config_path, database, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "imagetools-migrate: %s\n", err);
		return 2;
	}
	it_config_free(&cfg);
	conn = it_db_connect();
	if (conn == NULL) {
		fprintf(stderr, "imagetools-migrate: cannot connect to the database\n");
		return 1;
	}
	if (status) {
		rc = it_migrate_version(conn);
		if (rc < 0)
			printf("no migrations applied\n");
		else
			printf("schema version %d\n", rc);
		PQfinish(conn);
		return 0;
	}
	rc = it_migrate(conn, dir, verbose);
	PQfinish(conn);
	if (rc < 0)
		return 1;
	if (verbose && rc == 0)
		it_log_info("schema is up to date (version in %s)", dir);
	return 0;
}

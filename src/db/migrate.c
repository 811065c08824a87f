/* migrate.c: applies the ordered schema migrations in sql/ exactly once each. */
#include "config.h"

#include "db/migrate.h"

#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MIGRATIONS 512
#define MAX_SQL_BYTES (4 * 1024 * 1024)

struct migration {
	int version;
	char name[256];
};

static int cmp_migration(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

/* Accepts "NNN_name.sql" with NNN one or more digits. */
static int parse_name(const char *name, int *version)
{
	size_t n = strlen(name);
	int v = 0, digits = 0;

	if (n < 6 || strcmp(name + n - 4, ".sql") != 0)
		return -1;
	for (; name[digits] >= '0' && name[digits] <= '9'; digits++) {
		if (v > 100000)
			return -1;
		v = v * 10 + (name[digits] - '0');
	}
	if (digits == 0 || name[digits] != '_' || v == 0)
		return -1;
	*version = v;
	return 0;
}

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	for (;;) {
		if (cap - len < 8192) {
			char *p;
			cap = cap ? cap * 2 : 16384;
			if (cap > MAX_SQL_BYTES || (p = realloc(buf, cap + 1)) == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = p;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static int exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		it_log_error("%s", PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -1;
}

int it_migrate_version(PGconn *conn)
{
	PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	int v = -EIO;

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		v = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/* Applies the migration m from dir and records it, in one transaction.
 * Returns 0, or -EIO (logged) with nothing of it applied. */
static int apply_one(PGconn *conn, const char *dir, const struct migration *m)
{
	char path[4096], ver[16];
	const char *params[2];
	PGresult *res;
	char *sql;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, m->name);
	sql = read_file(path);
	if (sql == NULL) {
		it_log_error("cannot read %s", path);
		return -EIO;
	}
	if (exec_ok(conn, "BEGIN") < 0) {
		free(sql);
		return -EIO;
	}
	ok = exec_ok(conn, sql) == 0;
	free(sql);
	if (!ok) {
		it_log_error("migration %s failed; nothing of it was applied", m->name);
		PQclear(PQexec(conn, "ROLLBACK"));
		return -EIO;
	}
	snprintf(ver, sizeof(ver), "%d", m->version);
	params[0] = ver;
	params[1] = m->name;
	res = PQexecParams(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", 2, NULL, params, NULL,
			   NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		it_log_error("%s", PQerrorMessage(conn));
		PQclear(res);
		PQclear(PQexec(conn, "ROLLBACK"));
		return -EIO;
	}
	PQclear(res);
	return exec_ok(conn, "COMMIT") < 0 ? -EIO : 0;
}

int it_migrate(PGconn *conn, const char *dir, int verbose)
{
	struct migration *list = NULL;
	size_t count = 0;
	int applied = 0, rc = -EIO, current;
	DIR *d = NULL;
	struct dirent *de;

	if (exec_ok(conn, "SET client_min_messages = warning") < 0 ||
	    exec_ok(conn, "SELECT pg_advisory_lock(7324001)") < 0)
		return -EIO;
	if (exec_ok(conn,
		    "CREATE TABLE IF NOT EXISTS schema_migrations ("
		    " version integer PRIMARY KEY,"
		    " name text NOT NULL,"
		    " applied_at timestamptz NOT NULL DEFAULT now())") < 0)
		goto out;
	current = it_migrate_version(conn);
	if (current < 0) {
		rc = current;
		goto out;
	}

	d = opendir(dir);
	if (d == NULL) {
		rc = -errno;
		it_log_error("cannot open migrations directory %s: %s", dir, strerror(-rc));
		goto out;
	}
	list = calloc(MAX_MIGRATIONS, sizeof(*list));
	if (list == NULL)
		goto out;
	while ((de = readdir(d)) != NULL) {
		int v;
		if (parse_name(de->d_name, &v) < 0)
			continue;
		if (count == MAX_MIGRATIONS || strlen(de->d_name) >= sizeof(list[0].name)) {
			it_log_error("too many or oddly named migrations in %s", dir);
			goto out;
		}
		list[count].version = v;
		snprintf(list[count].name, sizeof(list[count].name), "%s", de->d_name);
		count++;
	}
	qsort(list, count, sizeof(*list), cmp_migration);
	for (size_t i = 1; i < count; i++)
		if (list[i].version == list[i - 1].version) {
			it_log_error("two migrations share version %d", list[i].version);
			goto out;
		}

	for (size_t i = 0; i < count; i++) {
		if (list[i].version <= current)
			continue;
		if (apply_one(conn, dir, &list[i]) < 0)
			goto out;
		if (verbose)
			it_log_info("applied %s", list[i].name);
		applied++;
	}
	rc = applied;
out:
	if (d)
		closedir(d);
	free(list);
	PQclear(PQexec(conn, "SELECT pg_advisory_unlock(7324001)"));
	return rc;
}

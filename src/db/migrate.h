/* migrate.h: applies the ordered schema migrations in sql/ exactly once each. */
#ifndef IT_DB_MIGRATE_H
#define IT_DB_MIGRATE_H

#include <libpq-fe.h>

/* Applies every NNN_name.sql file of dir whose version is not yet recorded in
 * schema_migrations, in version order, each in its own transaction, under an
 * advisory lock so concurrent runs wait for each other. Idempotent.
 * Returns the number applied (0 when up to date), or a negative errno
 * (logged): that of opening dir, else -EIO. */
int it_migrate(PGconn *conn, const char *dir, int verbose);

/* Returns the highest applied version, 0 for none, or -EIO on error. */
int it_migrate_version(PGconn *conn);

#endif

/* operations.c: the long-operation job queue of docs/worker.md, as the API and the worker use it. */
#include "config.h"

#include "db/operations.h"

#include "common/log.h"
#include "db/db.h"
#include "db/event.h"
#include "db/sessions.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[IT_OP_NTYPES] = {"bulk_compress", "bulk_resize", "bulk_convert"};
static const char *const type_verbs[IT_OP_NTYPES] = {"Compressing", "Resizing", "Converting"};
static const char *const format_names[] = {"keep", "jpeg", "png", "webp", "avif"};
static const char *const subsample_names[] = {"auto", "on", "off"};

int it_op_type_parse(const char *name)
{
	for (int i = 0; i < IT_OP_NTYPES; i++)
		if (name && strcmp(name, type_names[i]) == 0)
			return i;
	return -EINVAL;
}

const char *it_op_type_name(enum it_op_type t)
{
	return (unsigned)t < IT_OP_NTYPES ? type_names[t] : "unknown";
}

const char *it_op_type_verb(enum it_op_type t)
{
	return (unsigned)t < IT_OP_NTYPES ? type_verbs[t] : "Processing";
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Reads an integer member in [lo, hi]. Returns 0 (value set or absent), -EINVAL. */
static int get_int(json_object *v, const char *key, int lo, int hi, int *out, char *err, size_t errlen)
{
	int64_t x;

	if (!json_object_is_type(v, json_type_int))
		return fail(err, errlen, "params.%s must be an integer.", key);
	x = json_object_get_int64(v);
	if (x < lo || x > hi)
		return fail(err, errlen, "params.%s must be between %d and %d.", key, lo, hi);
	*out = (int)x;
	return 0;
}

static int get_bool(json_object *v, const char *key, int *out, char *err, size_t errlen)
{
	if (!json_object_is_type(v, json_type_boolean))
		return fail(err, errlen, "params.%s must be true or false.", key);
	*out = json_object_get_boolean(v);
	return 0;
}

/* Reads "#rrggbb" into rgb. Returns 0 or -1. */
static int get_colour(json_object *v, const char *key, unsigned char rgb[3], char *err, size_t errlen)
{
	const char *c = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
	unsigned x[3];

	if (strlen(c) != 7 || c[0] != '#' || strspn(c + 1, "0123456789abcdefABCDEF") != 6 ||
	    sscanf(c + 1, "%2x%2x%2x", &x[0], &x[1], &x[2]) != 3)
		return fail(err, errlen, "params.%s must be a colour written \"#rrggbb\".", key);
	for (int i = 0; i < 3; i++)
		rgb[i] = (unsigned char)x[i];
	return 0;
}

/* Reads params.format: keep (not for convert), jpeg, png (not for compress:
 * PNG output is lossless, use keep), webp, avif. */
static int get_format(enum it_op_type type, json_object *v, enum it_op_format *out, char *err, size_t errlen)
{
	const char *f = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";

	if (strcmp(f, "keep") == 0 && type != IT_OP_CONVERT)
		*out = IT_FMT_KEEP;
	else if (strcmp(f, "jpeg") == 0 || strcmp(f, "jpg") == 0)
		*out = IT_FMT_JPEG;
	else if (strcmp(f, "webp") == 0)
		*out = IT_FMT_WEBP;
	else if (strcmp(f, "avif") == 0)
		*out = IT_FMT_AVIF;
	else if (strcmp(f, "png") == 0 && type != IT_OP_COMPRESS)
		*out = IT_FMT_PNG;
	else
		return fail(err, errlen, "params.format must be %s.",
			    type == IT_OP_COMPRESS	   ? "\"keep\", \"jpeg\", \"webp\" or \"avif\""
				    : type == IT_OP_RESIZE ? "\"keep\", \"jpeg\", \"png\", \"webp\" or \"avif\""
							   : "\"jpeg\", \"png\", \"webp\" or \"avif\"");
	return 0;
}

int it_op_params_parse(enum it_op_type type, json_object *params, it_op_params *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->type = type;
	out->format = IT_FMT_KEEP;
	out->quality = type == IT_OP_COMPRESS ? 75 : 85;
	/* Metadata goes only when asked: it may be what the owner wants kept
	 * (copyright, camera, date), and dropping it is not undone. */
	out->strip = 0;
	/* Baseline: a progressive JPEG is 1-2 % smaller but costs libjpeg-turbo
	 * about 1.6 times the CPU (docs/performance.md). */
	out->progressive = 0;
	out->subsample = IT_SUB_AUTO;
	memset(out->background, 255, sizeof(out->background));

	if (params != NULL && !json_object_is_type(params, json_type_object))
		return fail(err, errlen, "params must be a JSON object.");

	if (params) {
		json_object_object_foreach(params, key, v)
		{
			int rc = 0;
			if (strcmp(key, "quality") == 0) {
				rc = get_int(v, key, 1, 100, &out->quality, err, errlen);
			} else if (strcmp(key, "strip") == 0) {
				rc = get_bool(v, key, &out->strip, err, errlen);
			} else if (strcmp(key, "palette") == 0) {
				rc = get_bool(v, key, &out->palette, err, errlen);
			} else if (strcmp(key, "progressive") == 0) {
				rc = get_bool(v, key, &out->progressive, err, errlen);
			} else if (strcmp(key, "subsample") == 0) {
				const char *s =
					json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
				int k;
				for (k = 0; k < 3 && strcmp(s, subsample_names[k]) != 0; k++)
					;
				if (k < 3)
					out->subsample = (enum it_op_subsample)k;
				else
					rc = fail(err, errlen, "params.subsample must be \"auto\", \"on\" or \"off\".");
			} else if (strcmp(key, "background") == 0) {
				rc = get_colour(v, key, out->background, err, errlen);
			} else if (strcmp(key, "format") == 0) {
				rc = get_format(type, v, &out->format, err, errlen);
			} else if (type == IT_OP_RESIZE && strcmp(key, "width") == 0) {
				rc = get_int(v, key, 1, IT_OPS_MAX_DIMENSION, &out->width, err, errlen);
			} else if (type == IT_OP_RESIZE && strcmp(key, "height") == 0) {
				rc = get_int(v, key, 1, IT_OPS_MAX_DIMENSION, &out->height, err, errlen);
			} else if (type == IT_OP_RESIZE && strcmp(key, "enlarge") == 0) {
				rc = get_bool(v, key, &out->enlarge, err, errlen);
			} else {
				/* A misspelt parameter must not silently fall back to a default. */
				rc = fail(err, errlen, "params.%.40s is not a parameter of %s.", key, type_names[type]);
			}
			if (rc < 0)
				return -EINVAL;
		}
	}
	if (type == IT_OP_RESIZE && out->width == 0 && out->height == 0)
		return fail(err, errlen, "bulk_resize needs params.width, params.height or both.");
	if (type == IT_OP_CONVERT && out->format == IT_FMT_KEEP)
		return fail(err, errlen, "bulk_convert needs params.format: \"jpeg\", \"png\", \"webp\" or \"avif\".");
	return 0;
}

json_object *it_op_params_json(const it_op_params *p)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "format", json_object_new_string(format_names[p->format]));
	json_object_object_add(o, "quality", json_object_new_int(p->quality));
	json_object_object_add(o, "strip", json_object_new_boolean(p->strip));
	json_object_object_add(o, "palette", json_object_new_boolean(p->palette));
	json_object_object_add(o, "progressive", json_object_new_boolean(p->progressive));
	json_object_object_add(o, "subsample", json_object_new_string(subsample_names[p->subsample]));
	{
		char c[8];
		snprintf(c, sizeof(c), "#%02x%02x%02x", p->background[0], p->background[1], p->background[2]);
		json_object_object_add(o, "background", json_object_new_string(c));
	}
	if (p->type == IT_OP_RESIZE) {
		if (p->width)
			json_object_object_add(o, "width", json_object_new_int(p->width));
		if (p->height)
			json_object_object_add(o, "height", json_object_new_int(p->height));
		json_object_object_add(o, "enlarge", json_object_new_boolean(p->enlarge));
	}
	return o;
}

/* Parses the single text column of a one-row result as JSON. */
static json_object *row_json(const PGresult *res)
{
	return json_tokener_parse(PQgetvalue(res, 0, 0));
}

/* Builds a PostgreSQL array literal of uuids; they were validated as
 * canonical uuids, so no quoting is needed. Returns a heap string. */
static char *uuid_array(const char *const *ids, int n)
{
	size_t len = 3 + (size_t)n * 37;
	char *s = malloc(len), *p = s;

	if (s == NULL)
		return NULL;
	*p++ = '{';
	for (int i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		memcpy(p, ids[i], 36);
		p += 36;
	}
	*p++ = '}';
	*p = '\0';
	return s;
}

int it_ops_enqueue(PGconn **connp, const char *session, const it_op_params *p, const char *const *image_ids, int n,
		   json_object **out, char *missing)
{
	char *ids = NULL, totals[16], opid[40];
	json_object *params = NULL, *data = NULL;
	PGresult *res = NULL;
	int rc = 503;

	*out = NULL;
	missing[0] = '\0';
	if (it_db_begin(connp) < 0)
		return 503;
	ids = uuid_array(image_ids, n);
	if (ids == NULL)
		goto out;

	/* The session row first: two enqueues on one session queue up here. */
	if ((rc = it_sessions_lock(*connp, session)) != 0)
		goto out;
	rc = 503;
	{
		const char *pv[2] = {session, ids};
		res = it_db_exec(connp, 0,
				 "SELECT x::text FROM unnest($2::uuid[]) WITH ORDINALITY AS u (x, i)"
				 " WHERE NOT EXISTS (SELECT 1 FROM images m WHERE m.id = u.x AND m.session_id = $1)"
				 " ORDER BY i LIMIT 1",
				 2, pv);
		if (!it_db_ok(res, PGRES_TUPLES_OK))
			goto out;
		if (PQntuples(res) == 1) {
			snprintf(missing, 37, "%s", PQgetvalue(res, 0, 0));
			rc = 404;
			goto out;
		}
		PQclear(res);
	}
	{
		params = it_op_params_json(p);
		snprintf(totals, sizeof(totals), "%d", n);
		const char *pv[5] = {session, it_op_type_name(p->type),
				     json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN), ids, totals};
		res = it_db_exec(connp, 0,
				 "INSERT INTO operations (session_id, type, params, image_ids, total, message)"
				 " VALUES ($1, $2, $3::jsonb, $4::uuid[], $5::integer, 'Queued') RETURNING id::text",
				 5, pv);
		if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1) {
			it_log_warn("operation insert failed: %s", PQerrorMessage(*connp));
			goto out;
		}
		snprintf(opid, sizeof(opid), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		res = NULL;
	}
	{
		const char *pv[1] = {opid};
		res = it_db_exec(connp, 0, "SELECT pg_notify('" IT_JOBS_CHANNEL "', $1)", 1, pv);
		if (!it_db_ok(res, PGRES_TUPLES_OK))
			goto out;
		PQclear(res);
		res = it_db_exec(connp, 0, "SELECT it_operation_json(o)::text FROM operations o WHERE o.id = $1", 1,
				 pv);
		if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1)
			goto out;
		*out = row_json(res);
		PQclear(res);
		res = NULL;
	}
	data = json_object_new_object();
	json_object_object_add(data, "operation_id", json_object_new_string(opid));
	json_object_object_add(data, "operation_type", json_object_new_string(it_op_type_name(p->type)));
	json_object_object_add(data, "total", json_object_new_int(n));
	rc = it_event_append(*connp, session, "operation.started", data, NULL);
	if (rc == 0 && (*out == NULL || it_db_commit(*connp) < 0))
		rc = 503;
out:
	if (rc != 0) {
		it_db_rollback(*connp);
		json_object_put(*out);
		*out = NULL;
	}
	PQclear(res);
	json_object_put(params);
	json_object_put(data);
	free(ids);
	return rc;
}

int it_ops_get(PGconn **connp, const char *id, const char *session, json_object **out)
{
	const char *pv[2] = {id, session};
	PGresult *res;
	int rc = 503;

	*out = NULL;
	res = it_db_exec(connp, 1,
			 "SELECT it_operation_json(o)::text FROM operations o JOIN sessions s ON s.id = o.session_id"
			 " WHERE o.id = $1::uuid AND o.session_id = $2 AND s.expires_at > now()",
			 2, pv);
	if (it_db_ok(res, PGRES_TUPLES_OK)) {
		if (PQntuples(res) == 1) {
			*out = row_json(res);
			rc = *out ? 0 : 503;
		} else {
			rc = 404;
		}
	}
	PQclear(res);
	return rc;
}

int it_ops_cancel(PGconn **connp, const char *id, const char *session, json_object **out)
{
	const char *pv[2] = {id, session};
	PGresult *res;
	char status[16], type[32];
	json_object *data = NULL;
	int rc = 503;

	*out = NULL;
	if (it_db_begin(connp) < 0)
		return 503;
	res = it_db_exec(connp, 0,
			 "SELECT o.status, o.type, o.result::text FROM operations o"
			 " JOIN sessions s ON s.id = o.session_id"
			 " WHERE o.id = $1::uuid AND o.session_id = $2 AND s.expires_at > now() FOR UPDATE OF o",
			 2, pv);
	if (!it_db_ok(res, PGRES_TUPLES_OK))
		goto out;
	if (PQntuples(res) == 0) {
		rc = 404;
		goto out;
	}
	snprintf(status, sizeof(status), "%s", PQgetvalue(res, 0, 0));
	snprintf(type, sizeof(type), "%s", PQgetvalue(res, 0, 1));
	if (strcmp(status, "queued") == 0) {
		data = json_object_new_object();
		json_object_object_add(data, "result", json_tokener_parse(PQgetvalue(res, 0, 2)));
	}
	PQclear(res);
	res = NULL;

	if (strcmp(status, "queued") != 0 && strcmp(status, "running") != 0) {
		rc = 409;
		goto out;
	}
	if (data) {
		/* No worker holds it: it ends here, in this transaction. */
		res = it_db_exec(
			connp, 0,
			"UPDATE operations SET status = 'cancelled', cancel_requested = true, error = 'cancelled',"
			" message = 'Cancelled', updated_at = now(), finished_at = now() WHERE id = $1::uuid",
			1, pv);
	} else {
		/* The worker sees the flag when it renews its lease before the next image. */
		res = it_db_exec(
			connp, 0,
			"UPDATE operations SET cancel_requested = true, updated_at = now() WHERE id = $1::uuid", 1, pv);
	}
	if (!it_db_ok(res, PGRES_COMMAND_OK))
		goto out;
	PQclear(res);
	res = it_db_exec(connp, 0, "SELECT it_operation_json(o)::text FROM operations o WHERE o.id = $1::uuid", 1, pv);
	if (!it_db_ok(res, PGRES_TUPLES_OK) || PQntuples(res) != 1 || (*out = row_json(res)) == NULL)
		goto out;
	if (data) {
		json_object_object_add(data, "operation_id", json_object_new_string(id));
		json_object_object_add(data, "operation_type", json_object_new_string(type));
		json_object_object_add(data, "reason", json_object_new_string("cancelled"));
		rc = it_event_append(*connp, session, "operation.failed", data, NULL);
		if (rc != 0)
			goto out;
	}
	rc = it_db_commit(*connp) < 0 ? 503 : 0;
out:
	if (rc != 0) {
		it_db_rollback(*connp);
		json_object_put(*out);
		*out = NULL;
	}
	PQclear(res);
	json_object_put(data);
	return rc;
}

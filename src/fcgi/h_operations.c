/* h_operations.c: POST /operations, GET /operations/{id}, POST /operations/{id}/cancel. */
#include "config.h"

#include "common/buf.h"
#include "common/id.h"
#include "common/token.h"
#include "db/db.h"
#include "db/operations.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "image/thumb.h"

#include <string.h>

/* A request naming IT_OPS_MAX_IMAGES uuids with their quotes and commas is
 * about 40 KB; anything beyond this is not a valid operation request. */
#define MAX_BODY (64 * 1024)

/* Reads the operation out of a request body: its type, its image ids (n
 * of them, pointing into body, no id twice), its params, and no other
 * field but session_id. Returns 0, or 400 once it answered with that status. */
static int parse_operation(it_req *req, json_object *body, const char **ids, int *n, it_op_params *p)
{
	json_object *v, *arr;
	char err[160];
	int type;

	if (!json_object_object_get_ex(body, "type", &v) || !json_object_is_type(v, json_type_string) ||
	    (type = it_op_type_parse(json_object_get_string(v))) < 0) {
		it_resp_problem(req, 400, "unknown-operation-type",
				"type must be \"bulk_compress\", \"bulk_resize\" or \"bulk_convert\".");
		return 400;
	}
	if (!json_object_object_get_ex(body, "image_ids", &arr) || !json_object_is_type(arr, json_type_array) ||
	    (*n = (int)json_object_array_length(arr)) < 1 || *n > IT_OPS_MAX_IMAGES) {
		it_resp_problem(req, 400, "invalid-image-ids", "image_ids must be an array of 1 to %d image ids.",
				IT_OPS_MAX_IMAGES);
		return 400;
	}
	for (int i = 0; i < *n; i++) {
		json_object *e = json_object_array_get_idx(arr, (size_t)i);
		if (!json_object_is_type(e, json_type_string) || !it_id_uuid_valid(json_object_get_string(e))) {
			it_resp_problem(req, 400, "invalid-image-ids", "image_ids[%d] is not an image id.", i);
			return 400;
		}
		ids[i] = json_object_get_string(e);
		/* Quadratic, but n is at most IT_OPS_MAX_IMAGES and this is cheap next to the work queued. */
		for (int j = 0; j < i; j++) {
			if (strcmp(ids[j], ids[i]) == 0) {
				it_resp_problem(req, 400, "invalid-image-ids", "image_ids names %s twice.", ids[i]);
				return 400;
			}
		}
	}
	json_object_object_get_ex(body, "params", &v);
	if (it_op_params_parse((enum it_op_type)type, v, p, err, sizeof(err)) < 0) {
		it_resp_problem(req, 400, "invalid-params", "%s", err);
		return 400;
	}
	json_object_object_foreach(body, key, val)
	{
		(void)val;
		if (strcmp(key, "session_id") && strcmp(key, "type") && strcmp(key, "image_ids") &&
		    strcmp(key, "params")) {
			it_resp_problem(req, 400, "unknown-field", "%.40s is not a field of an operation request.",
					key);
			return 400;
		}
	}
	return 0;
}

void it_h_operation_create(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	const char *ids[IT_OPS_MAX_IMAGES];
	json_object *body = NULL, *v, *op = NULL;
	char missing[40];
	const char *session, *cred = NULL;
	it_principal pr;
	it_op_params p;
	int n, rc;
	int64_t retry;

	/* An operation costs a worker seconds of CPU per image: the address is
	 * checked before the body is read, the session once it is known. */
	if (it_guard_rate(req, "operations", req->remote_addr, it_g.cfg.rate_operations))
		return;
	/* A build without libvips has no worker: a queued operation would
	 * never run. */
	if (!it_thumb_available()) {
		it_resp_problem(req, 501, "operations-unavailable",
				"This server was built without libvips (configure --without-vips) and runs no image "
				"operations.");
		return;
	}
	/* A shallow depth limit: a valid request nests three levels deep. */
	body = it_req_read_json(req, MAX_BODY, 8);
	if (body == NULL)
		goto out;

	/* The credential is the body's session_id (a session id or a token),
	 * or else the one the request presents (Authorization: Bearer), as for
	 * the other calls. */
	if (json_object_object_get_ex(body, "session_id", &v)) {
		cred = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
		if (!it_id_session_valid(cred) && !it_token_is(cred)) {
			it_resp_problem(req, 400, "invalid-session-id", "session_id is malformed.");
			goto out;
		}
	}
	if (it_auth_principal(req, cred, IT_SCOPE_FULL | IT_AUTH_SESSION_UNCHECKED, &pr) != 0)
		goto out;
	session = pr.session_id;
	if (it_guard_rate_check("operations-session", session, it_g.cfg.rate_operations, &retry)) {
		it_guard_rate_refuse(req, retry, "Too many operations in this session");
		goto out;
	}
	if (parse_operation(req, body, ids, &n, &p) != 0)
		goto out;
	rc = it_ops_enqueue(&conn, session, &p, ids, n, &op, missing);
	if (rc == 404 && missing[0]) {
		it_resp_problem(req, 404, "unknown-image", "Image %s is not in this session.", missing);
		goto out;
	}
	if (it_app_session_problem(req, rc))
		goto out;
	it_resp_header(req, "Location", "%s/api/v1/operations/%s", it_g.cfg.url_prefix,
		       json_object_get_string(json_object_object_get(op, "id")));
	it_resp_json(req, 202, op);
out:
	json_object_put(op);
	json_object_put(body);
}

static int op_problem(it_req *req, int rc)
{
	switch (rc) {
	case 0: return 0;
	case 404: it_resp_problem(req, 404, "unknown-operation", "No such operation."); return 1;
	case 409: it_resp_problem(req, 409, "operation-finished", "The operation has already finished."); return 1;
	default: return it_app_session_problem(req, 503);
	}
}

/* Answers GET or POST .../cancel on the operation the path names: its id
 * must be a UUID and the credential must hold need; run reads or cancels
 * the operation of the credential's session, answered with status. */
static void op_answer(it_req *req, unsigned need, int (*run)(PGconn **, const char *, const char *, json_object **),
		      int status)
{
	PGconn *conn = it_db_thread_conn();
	json_object *op = NULL;
	it_principal p;

	if (!it_id_uuid_valid(req->params[0])) {
		it_resp_problem(req, 404, "unknown-operation", "No such operation.");
		return;
	}
	if (it_auth_principal(req, NULL, need | IT_AUTH_SESSION_UNCHECKED, &p) != 0)
		return;
	if (op_problem(req, run(&conn, req->params[0], p.session_id, &op)))
		return;
	it_resp_json(req, status, op);
	json_object_put(op);
}

void it_h_operation_get(it_req *req)
{
	op_answer(req, IT_SCOPE_VIEW, it_ops_get, 200);
}

void it_h_operation_cancel(it_req *req)
{
	if (it_req_drain(req, MAX_BODY) < 0) {
		it_resp_problem(req, 413, "body-too-large", "The request body is larger than %d bytes.", MAX_BODY);
		return;
	}
	op_answer(req, IT_SCOPE_FULL, it_ops_cancel, 202);
}

/* h_presence.c: GET, POST and DELETE /api/v1/presence: who is connected to a session (docs/presence.md). */
#include "config.h"

#include "common/buf.h"
#include "db/db.h"
#include "db/presence.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/handlers.h"
#include "feed/ident.h"

#include <stdio.h>
#include <string.h>

/* A heartbeat is a handful of short strings. */
#define MAX_BODY 4096

/* Resolves the request's credential into *w (its session, and its token's
 * device, "" for a session id) and checks it holds need (IT_SCOPE_* bits;
 * 0: any scope). Answers (401/400/403/404/429/503) and returns that
 * status, or returns 0. A session id is not looked up here: every statement below
 * checks that the session is live (404). */
static int who_asks(it_req *req, unsigned need, it_principal *w)
{
	memset(w, 0, sizeof(*w));
	return it_auth_principal(req, NULL, need | IT_AUTH_SESSION_UNCHECKED, w);
}

void it_h_presence_get(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	json_object *list = NULL, *o;
	int64_t last = 0;
	it_principal w;

	if (who_asks(req, IT_SCOPE_VIEW, &w) != 0)
		return;
	if (it_app_session_problem(req, it_presence_db_list(&conn, w.session_id, &list, &last)))
		return;
	o = json_object_new_object();
	json_object_object_add(o, "presence", list);
	json_object_object_add(o, "last_event_id", json_object_new_int64(last));
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_json(req, 200, o);
	json_object_put(o);
}

/* The string member key of o, or NULL when absent; *bad is set when it is
 * present but not a string. */
static const char *member(json_object *o, const char *key, int *bad)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		*bad = 1;
		return NULL;
	}
	return json_object_get_string(v);
}

void it_h_presence_post(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	json_object *body = NULL;
	const char *cid, *label, *source, *state;
	it_ident id;
	it_principal w;
	int bad = 0;

	if (who_asks(req, 0, &w) != 0)
		return;
	if ((body = it_req_read_json(req, MAX_BODY, 4)) == NULL)
		return;
	cid = member(body, "client_id", &bad);
	label = member(body, "label", &bad);
	source = member(body, "source", &bad);
	state = member(body, "state", &bad);
	json_object_object_foreach(body, key, val)
	{
		(void)val;
		if (strcmp(key, "client_id") && strcmp(key, "label") && strcmp(key, "source") && strcmp(key, "state")) {
			it_resp_problem(req, 400, "unknown-field", "%.40s is not a field of a presence heartbeat.",
					key);
			goto out;
		}
	}
	memset(&id, 0, sizeof(id));
	if (!bad && cid && it_ident_client_id_valid(cid, strlen(cid)))
		snprintf(id.client_id, sizeof(id.client_id), "%s", cid);
	else if (cid)
		bad = 1;
	if (!bad && label && it_ident_label_valid(label, strlen(label)))
		snprintf(id.label, sizeof(id.label), "%s", label);
	else if (label)
		bad = 1;
	if (!bad && source && it_ident_source_valid(source, strlen(source)))
		snprintf(id.source, sizeof(id.source), "%s", source);
	else if (source)
		bad = 1;
	it_ident_set_device(&id, w.device_id, w.label, w.source);
	if (bad || !it_ident_announces(&id)) {
		it_resp_problem(req, 400, "invalid-client-identity",
				"client_id (1-64 of A-Z a-z 0-9 _ -) is required; label (1-64 characters, no control "
				"characters) and source (1-32 of A-Z a-z 0-9 _ . -) are optional strings.");
		goto out;
	}
	if (state == NULL)
		state = "idle";
	if (strcmp(state, "idle") != 0 && strcmp(state, "uploading") != 0) {
		it_resp_problem(req, 400, "invalid-state", "state must be \"idle\" or \"uploading\".");
		goto out;
	}
	/* Any process may sweep: a site without a worker or a hub (CGI)
	 * still sees its clients leave. */
	it_presence_db_sweep(&conn);
	if (it_app_session_problem(
		    req,
		    it_presence_db_join(&conn, w.session_id, &id, "http", state, "http", it_g.cfg.presence_http_ttl)))
		goto out;
	it_resp_begin(req, 204, NULL);
out:
	json_object_put(body);
}

void it_h_presence_delete(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char cid[72];
	it_principal w;
	int n;

	if (who_asks(req, 0, &w) != 0)
		return;
	n = it_req_query(req->query, "client_id", cid, sizeof(cid));
	if (n < 0 || !it_ident_client_id_valid(cid, (size_t)n)) {
		it_resp_problem(req, 400, "invalid-client-identity",
				"client_id (1-64 of A-Z a-z 0-9 _ -) is required.");
		return;
	}
	/* A device's token lets only its own entries go. */
	if (it_app_session_problem(req,
				   it_presence_db_leave(&conn, w.session_id, cid, w.device_id[0] ? w.device_id : NULL)))
		return;
	it_resp_begin(req, 204, NULL);
}

/* h_sessions.c: POST /sessions, GET and DELETE /sessions/{id}, GET /session. */
#include "config.h"

#include "common/token.h"
#include "db/db.h"
#include "db/sessions.h"
#include "fcgi/app.h"
#include "fcgi/auth.h"
#include "fcgi/guard.h"
#include "fcgi/handlers.h"
#include "hub/hub.h"

#include <stdio.h>
#include <string.h>

static json_object *session_json(const it_session *s)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "session_id", json_object_new_string(s->id));
	json_object_object_add(o, "created_at", json_object_new_string(s->created_at));
	json_object_object_add(o, "expires_at", json_object_new_string(s->expires_at));
	json_object_object_add(o, "last_event_id", json_object_new_int64(s->last_event_seq));
	/* The page's pairing link and QR code: the address of the page as a
	 * phone on the network reaches it, which the page cannot know when it
	 * was opened as http://127.0.0.1 or behind a proxy. Without public_url
	 * the page builds the link from its own address. */
	if (it_g.cfg.public_url[0]) {
		/* public_url is at most 1024 characters (config.c), an id 64. */
		char link[1200];
		const char *u = it_g.cfg.public_url;
		size_t n = strlen(u);

		while (n > 0 && u[n - 1] == '/')
			n--;
		snprintf(link, sizeof(link), "%.*s/#s=%s", (int)n, u, s->id);
		json_object_object_add(o, "join_url", json_object_new_string(link));
	}
	return o;
}

void it_h_session_create(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_session s;
	int rc;

	if (it_req_drain(req, 64 * 1024) < 0) {
		it_resp_problem(req, 413, "body-too-large", "POST /sessions takes no body");
		return;
	}
	if (it_guard_rate(req, "sessions", req->remote_addr, it_g.cfg.rate_sessions))
		return;
	rc = it_sessions_create(&conn, it_g.cfg.session_ttl, &s);
	if (it_app_session_problem(req, rc))
		return;
	json_object *o = session_json(&s);
	it_resp_header(req, "Location", "%s/api/v1/sessions/%s", it_g.cfg.url_prefix, s.id);
	it_resp_json(req, 201, o);
	json_object_put(o);
}

void it_h_session_get(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_session s;

	/* A path names a session by its id only: a token there would land in
	 * access logs, and is answered as an unknown session. */
	if (it_token_is(req->params[0])) {
		it_app_session_problem(req, 404);
		return;
	}
	if (it_app_session_problem(req, it_sessions_get(&conn, req->params[0], &s)))
		return;
	json_object *o = session_json(&s);
	it_resp_json(req, 200, o);
	json_object_put(o);
}

/* GET /session: the credential's own session, without its id in the URL.
 * Any scope may ask (an upload-only device learns what it may do and until
 * when). For a token the answer names neither the session id nor the join
 * link that carries it, and says the device's scope, id and label; for the
 * session id it is GET /sessions/{id}'s answer with scope "full". */
void it_h_session_self(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	it_principal p;
	it_session s;
	json_object *o;

	if (it_auth_principal(req, NULL, IT_AUTH_SESSION_UNCHECKED, &p) != 0)
		return;
	if (it_app_session_problem(req, it_sessions_get(&conn, p.session_id, &s)))
		return;
	o = session_json(&s);
	json_object_object_add(o, "scope",
			       json_object_new_string(it_scope_name(p.scope) ? it_scope_name(p.scope) : "full"));
	if (p.device_id[0]) {
		json_object_object_del(o, "session_id");
		json_object_object_del(o, "join_url");
		json_object_object_add(o, "device_id", json_object_new_string(p.device_id));
		json_object_object_add(o, "label", json_object_new_string(p.label));
		json_object_object_add(o, "source", json_object_new_string(p.source));
	}
	it_resp_json(req, 200, o);
	json_object_put(o);
}

/* The path's session id is the owner's capability and enough by itself. A
 * request that also presents a credential (a full-scope token of the
 * session, say) must present one of this session with scope full: a
 * token of another session is answered as an unknown session, a smaller
 * scope 403. */
void it_h_session_delete(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char cred[IT_AUTH_CRED_MAX + 1];
	it_principal p;

	if (it_token_is(req->params[0])) {
		it_app_session_problem(req, 404);
		return;
	}
	if (it_auth_credential(req, cred, sizeof(cred)) != 0) {
		if (it_auth_principal(req, NULL, IT_SCOPE_FULL | IT_AUTH_SESSION_UNCHECKED, &p) != 0)
			return;
		if (strcmp(p.session_id, req->params[0]) != 0) {
			it_app_session_problem(req, 404);
			return;
		}
	}
	if (it_app_session_problem(req, it_sessions_delete(&conn, req->params[0])))
		return;
	/* This process's next poll of the session must not be answered from
	 * the hub's registry before the "<session>:0" notification arrives. */
	if (it_g.hub != NULL)
		it_hub_forget(it_g.hub, req->params[0]);
	it_resp_begin(req, 204, NULL);
}

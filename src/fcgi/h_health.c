/* h_health.c: GET /api/v1/health, liveness plus a database round trip. */
#include "config.h"

#include "db/db.h"
#include "fcgi/app.h"
#include "fcgi/handlers.h"
#include "hub/hub.h"
#include "image/thumb.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

void it_h_health(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	PGresult *res = it_db_exec(&conn, 1, "SELECT 1", 0, NULL);
	int db_ok = it_db_ok(res, PGRES_TUPLES_OK);
	json_object *o = json_object_new_object();

	PQclear(res);
	json_object_object_add(o, "status", json_object_new_string(db_ok ? "ok" : "unavailable"));
	json_object_object_add(o, "database", json_object_new_string(db_ok ? "ok" : "unavailable"));
	json_object_object_add(o, "mode", json_object_new_string(it_g.cgi ? "cgi" : "fastcgi"));
	json_object_object_add(o, "version", json_object_new_string(PACKAGE_VERSION));
	json_object_object_add(o, "uptime_seconds", json_object_new_int64((int64_t)(time(NULL) - it_g.started)));
	if (db_ok) {
		/* Whether a WebSocket bridge of this deployment is running (it
		 * writes its metrics row every few seconds), so that a page does
		 * not open a WebSocket that can only fail, and 404, on a site
		 * without one (plain CGI on shared hosting). Absent when the
		 * table cannot be read: clients then simply try. */
		res = it_db_exec(&conn, 1,
				 "SELECT EXISTS (SELECT 1 FROM process_metrics WHERE program = 'imagetools-wsbridge'"
				 " AND pid <> 0 AND updated > now() - interval '30 seconds')",
				 0, NULL);
		if (it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1)
			json_object_object_add(o, "websocket",
					       json_object_new_boolean(strcmp(PQgetvalue(res, 0, 0), "t") == 0));
		PQclear(res);
	}
	if (it_g.hub) {
		it_hub_stats hs;
		json_object *h = json_object_new_object();
		it_hub_stats_get(it_g.hub, &hs);
		json_object_object_add(h, "listening", json_object_new_boolean(hs.db_up));
		json_object_object_add(h, "sse_streams", json_object_new_int64(hs.open_sse));
		json_object_object_add(h, "longpoll_waiters", json_object_new_int64(hs.open_longpoll));
		json_object_object_add(h, "released", json_object_new_int64(hs.released));
		json_object_object_add(h, "dropped_slow", json_object_new_int64(hs.dropped_slow));
		json_object_object_add(h, "reads", json_object_new_int64(hs.fetches));
		json_object_object_add(h, "checks", json_object_new_int64(hs.checks));
		json_object_object_add(h, "lookups", json_object_new_int64(hs.lookups));
		json_object_object_add(h, "process", json_object_new_int64((int64_t)getpid()));
		json_object_object_add(o, "hub", h);
	}
	{
		/* The image formats uploads and operations take here: a page
		 * offers AVIF only where this libvips can write it. */
		json_object *f = json_object_new_object(), *rd = json_object_new_array(), *wr = json_object_new_array();
		static const char *const always[] = {"jpeg", "png", "gif", "webp"};
		for (size_t i = 0; i < 4; i++)
			json_object_array_add(rd, json_object_new_string(always[i]));
		if (it_thumb_heif_readable()) {
			json_object_array_add(rd, json_object_new_string("heic"));
			json_object_array_add(rd, json_object_new_string("avif"));
		}
		/* A build without libvips runs no operations: it writes nothing. */
		for (size_t i = 0; i < 4 && it_thumb_available(); i++)
			if (i != 2) /* operations write GIF only by keeping it */
				json_object_array_add(wr, json_object_new_string(always[i]));
		if (it_thumb_avif_writable())
			json_object_array_add(wr, json_object_new_string("avif"));
		json_object_object_add(f, "read", rd);
		json_object_object_add(f, "write", wr);
		json_object_object_add(o, "formats", f);
	}
	if (!db_ok)
		it_resp_header(req, "Retry-After", "5");
	it_resp_json(req, db_ok ? 200 : 503, o);
	json_object_put(o);
}

/* h_metrics.c: GET /api/v1/metrics, Prometheus text for the whole deployment (docs/metrics.md). */
#include "config.h"

#include "common/buf.h"
#include "common/log.h"
#include "db/db.h"
#include "db/metrics.h"
#include "fcgi/app.h"
#include "fcgi/handlers.h"
#include "hub/hub.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The answer is a few hundred lines at most; a runaway label set elsewhere
 * must not make it unbounded. */
#define METRICS_MAX (4 * 1024 * 1024)

struct family {
	const char *name, *type, *help;
};

/* Every metric the project writes, with its help text (docs/metrics.md has
 * the same list). Families not listed here (a newer program's) are still
 * printed, typed by where they were stored. */
static const struct family families[] = {
	{"imagetools_connections_open", "gauge", "Open event connections, by transport (sse, longpoll, websocket)."},
	{"imagetools_events_delivered_total", "counter", "Events written to clients, by transport."},
	{"imagetools_resumes_total", "counter", "Stream connections that resumed from a last event id, by transport."},
	{"imagetools_resyncs_total", "counter",
	 "session.resync events sent (cursor older than the log, or ahead of it)."},
	{"imagetools_streams_dropped_total", "counter", "Streams closed because the client read too slowly."},
	{"imagetools_streams_released_total", "counter", "Streams ended because the client went away."},
	{"imagetools_hub_reconnects_total", "counter",
	 "Times a hub re-established its LISTEN connection after losing it."},
	{"imagetools_hub_listening", "gauge", "FastCGI processes whose hub is connected and listening."},
	{"imagetools_feed_queries_total", "counter",
	 "Queries the event-delivery core made, by kind (read: the event log; check: sessions)."},
	{"imagetools_feed_lookups_total", "counter",
	 "Long-polls and SSE resumes a hub served from its registry without a session query."},
	{"imagetools_presence_entries", "gauge",
	 "Presence entries the hubs and bridges hold and renew for their connections."},
	{"imagetools_presence_joins_total", "counter", "Presence entries that joined (presence.joined appended)."},
	{"imagetools_presence_leaves_total", "counter",
	 "Presence entries that left (presence.left appended), by reason (closed, expired)."},
	{"imagetools_presence_renew_failures_total", "counter",
	 "Presence heartbeat statements that failed or got no answer."},
	{"imagetools_uploads_total", "counter", "Images stored by uploads, by source."},
	{"imagetools_upload_bytes_total", "counter", "Bytes of images stored by uploads."},
	{"imagetools_upload_errors_total", "counter", "Upload requests refused or failed, by HTTP status."},
	{"imagetools_http_responses_total", "counter", "API responses of imagetools.fcgi, by route and status."},
	{"imagetools_rate_limited_total", "counter",
	 "Requests refused with 429, by limit (sessions, streams, uploads)."},
	{"imagetools_origin_refused_total", "counter", "Requests refused because of their Origin."},
	{"imagetools_metrics_dropped_total", "counter", "Metric samples dropped because a process's table was full."},
	{"imagetools_operations_finished_total", "counter", "Operations the workers finished, by type and status."},
	{"imagetools_operation_images_total", "counter", "Images the workers processed in operations, by result."},
	{"imagetools_processes", "gauge", "Processes that flushed metrics recently, by program."},
	{"imagetools_sessions_active", "gauge", "Sessions that have not expired."},
	{"imagetools_images_stored", "gauge", "Images stored."},
	{"imagetools_image_bytes_stored", "gauge", "Bytes of original images stored."},
	{"imagetools_operations", "gauge",
	 "Operations in the queue table, by status (queued and running: the queue depth)."},
	{"imagetools_operation_duration_seconds", "summary",
	 "Run time of operations finished in the last hour, by type (quantiles, sum, count)."},
};

/* ------------------------------------------------------------------ this process's values */

static pthread_mutex_t collect_lock = PTHREAD_MUTEX_INITIALIZER;

/* Copies the hub's statistics into the metrics table. The hub counts on its
 * own; what it counted since the last call is added, so the long-poll and
 * SSE answers the request threads write themselves land in the same
 * counters. */
static void collect(void *arg)
{
	static it_hub_stats prev;
	it_hub_stats hs;

	(void)arg;
	if (it_g.hub == NULL)
		return;
	pthread_mutex_lock(&collect_lock);
	it_hub_stats_get(it_g.hub, &hs);
	it_metrics_gauge_set("imagetools_connections_open", "transport=\"sse\"", hs.open_sse);
	it_metrics_gauge_set("imagetools_connections_open", "transport=\"longpoll\"", hs.open_longpoll);
	it_metrics_gauge_set("imagetools_hub_listening", NULL, hs.db_up);
	it_metrics_inc("imagetools_events_delivered_total", "transport=\"sse\"", hs.events_sse - prev.events_sse);
	it_metrics_inc("imagetools_events_delivered_total", "transport=\"longpoll\"",
		       hs.events_longpoll - prev.events_longpoll);
	it_metrics_inc("imagetools_resyncs_total", NULL, hs.resyncs - prev.resyncs);
	it_metrics_inc("imagetools_streams_dropped_total", NULL, hs.dropped_slow - prev.dropped_slow);
	it_metrics_inc("imagetools_streams_released_total", NULL, hs.released - prev.released);
	/* The hub's first connection is not a reconnect. */
	it_metrics_counter_store("imagetools_hub_reconnects_total", NULL, hs.reconnects > 1 ? hs.reconnects - 1 : 0);
	it_metrics_counter_store("imagetools_feed_queries_total", "kind=\"read\"", hs.fetches);
	it_metrics_counter_store("imagetools_feed_queries_total", "kind=\"check\"", hs.checks);
	it_metrics_counter_store("imagetools_feed_lookups_total", NULL, hs.lookups);
	prev = hs;
	pthread_mutex_unlock(&collect_lock);
}

void it_h_metrics_start(void)
{
	if (it_metrics_start("imagetools.fcgi", 5, collect, NULL) < 0)
		it_log_warn("metrics flush thread did not start: /metrics will miss this process");
}

void it_h_metrics_stop(void)
{
	it_metrics_stop();
}

/* ------------------------------------------------------------------ the answer */

static const struct family *find_family(const char *name)
{
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
		if (strcmp(families[i].name, name) == 0)
			return &families[i];
	return NULL;
}

/* Writes HELP and TYPE the first time a family shows up. */
static void family_head(it_buf *out, const char *name, const char *fallback_type, char *last, size_t lastlen)
{
	const struct family *f;

	if (strcmp(last, name) == 0)
		return;
	snprintf(last, lastlen, "%s", name);
	f = find_family(name);
	if (f)
		it_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, f->help, name, f->type);
	else
		it_buf_printf(out, "# TYPE %s %s\n", name, fallback_type);
}

/* Appends every row of res as samples: columns family, sample (name with
 * labels), type ("counter"/"gauge"), value. */
static void add_rows(it_buf *out, PGresult *res, char *last, size_t lastlen)
{
	for (int i = 0; i < PQntuples(res); i++) {
		family_head(out, PQgetvalue(res, i, 0), PQgetvalue(res, i, 2), last, lastlen);
		it_buf_printf(out, "%s %s\n", PQgetvalue(res, i, 1), PQgetvalue(res, i, 3));
	}
}

/* Sums of what every process flushed: counters of all rows (the retired row
 * included), gauges of the rows that are still being refreshed. */
static const char sql_processes[] =
	"SELECT split_part(key, '{', 1) AS family, key, kind, total::text FROM ("
	"  SELECT key, 'counter' AS kind, sum(value::numeric) AS total"
	"    FROM process_metrics, jsonb_each_text(counters) GROUP BY key"
	"  UNION ALL"
	"  SELECT key, 'gauge', sum(value::numeric)"
	"    FROM process_metrics, jsonb_each_text(gauges)"
	"   WHERE updated > now() - make_interval(secs => $1::int) GROUP BY key"
	"  UNION ALL"
	"  SELECT format('imagetools_processes{program=%s}', to_json(program)), 'gauge', count(*)"
	"    FROM process_metrics WHERE updated > now() - make_interval(secs => $1::int) AND pid <> 0"
	"   GROUP BY program"
	") s ORDER BY 1, 2";

/* Gauges computed from the tables themselves. Tables another migration adds
 * are looked up first, so the answer works on any schema version. */
static const char sql_state[] =
	"SELECT 'imagetools_sessions_active', 'imagetools_sessions_active', 'gauge', count(*)::text"
	"  FROM sessions WHERE expires_at > now()";

static const char sql_images[] =
	"SELECT 'imagetools_images_stored', 'imagetools_images_stored', 'gauge', count(*)::text FROM images"
	" UNION ALL "
	"SELECT 'imagetools_image_bytes_stored', 'imagetools_image_bytes_stored', 'gauge', coalesce(sum(size), 0)::text"
	"  FROM images";

static const char sql_operations[] =
	"SELECT 'imagetools_operations', format('imagetools_operations{status=%s}', to_json(st)), 'gauge',"
	"       count(o.id)::text"
	"  FROM unnest(ARRAY['queued', 'running', 'completed', 'failed', 'cancelled']) st"
	"  LEFT JOIN operations o ON o.status = st GROUP BY st ORDER BY st";

static const char sql_durations[] =
	"WITH d AS (SELECT type, extract(epoch FROM finished_at - started_at)::float8 AS s FROM operations"
	"            WHERE finished_at > now() - interval '1 hour' AND started_at IS NOT NULL),"
	"     q AS (SELECT type, unnest(ARRAY['0.5', '0.9', '0.99']) AS q,"
	"                  unnest(percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY s)) AS v"
	"             FROM d GROUP BY type)"
	" SELECT 'imagetools_operation_duration_seconds',"
	"        format('imagetools_operation_duration_seconds{type=%s,quantile=\"%s\"}', to_json(type), q),"
	"        'summary', round(v::numeric, 3)::text FROM q"
	" UNION ALL SELECT 'imagetools_operation_duration_seconds',"
	"        format('imagetools_operation_duration_seconds_sum{type=%s}', to_json(type)), 'summary',"
	"        round(sum(s)::numeric, 3)::text FROM d GROUP BY type"
	" UNION ALL SELECT 'imagetools_operation_duration_seconds',"
	"        format('imagetools_operation_duration_seconds_count{type=%s}', to_json(type)), 'summary',"
	"        count(*)::text FROM d GROUP BY type"
	" ORDER BY 2";

static int table_exists(PGconn **conn, const char *name)
{
	const char *params[1] = {name};
	PGresult *res = it_db_exec(conn, 1, "SELECT to_regclass($1) IS NOT NULL", 1, params);
	int yes = it_db_ok(res, PGRES_TUPLES_OK) && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;

	PQclear(res);
	return yes;
}

/* Compares in time independent of where the strings differ, so the token
 * cannot be guessed byte by byte from response times. */
static int token_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char d = (unsigned char)(la != lb);

	for (size_t i = 0; i < la; i++)
		d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return d == 0;
}

void it_h_metrics(it_req *req)
{
	PGconn *conn = it_db_thread_conn();
	char live[16], last[128] = "";
	const char *params[1] = {live};
	struct {
		const char *sql, *table;
		int nparams;
	} parts[] = {
		{sql_processes, NULL, 1},	  {sql_state, NULL, 0},
		{sql_images, "images", 0},	  {sql_operations, "operations", 0},
		{sql_durations, "operations", 0},
	};
	it_buf out;

	if (it_g.cfg.metrics_token[0]) {
		const char *auth = it_req_env(req, "HTTP_AUTHORIZATION");
		if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0 ||
		    !token_equal(auth + 7, it_g.cfg.metrics_token)) {
			it_resp_header(req, "WWW-Authenticate", "Bearer realm=\"imagetools-metrics\"");
			it_resp_problem(req, 401, "unauthorized",
					"GET /metrics needs Authorization: Bearer <metrics_token>.");
			return;
		}
	}
	if (conn == NULL) {
		it_app_session_problem(req, 503);
		return;
	}
	/* This process's own numbers, current to the request. */
	collect(NULL);
	it_metrics_flush(&conn);

	snprintf(live, sizeof(live), "%d", IT_METRICS_LIVE_S);
	it_buf_init(&out, METRICS_MAX);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		PGresult *res;
		if (parts[i].table && !table_exists(&conn, parts[i].table))
			continue;
		res = it_db_exec(&conn, 1, parts[i].sql, parts[i].nparams, parts[i].nparams ? params : NULL);
		if (!it_db_ok(res, PGRES_TUPLES_OK)) {
			if (res)
				it_log_warn("metrics query failed: %s", PQresultErrorMessage(res));
			PQclear(res);
			it_buf_free(&out);
			it_app_session_problem(req, 503);
			return;
		}
		add_rows(&out, res, last, sizeof(last));
		PQclear(res);
	}
	it_resp_header(req, "Cache-Control", "no-store");
	it_resp_header(req, "Content-Length", "%zu", out.len);
	it_resp_begin(req, 200, "text/plain; version=0.0.4; charset=utf-8");
	it_resp_write(req, out.data, out.len);
	it_buf_free(&out);
}

/* test_presence.c: the presence of one loop counts its metrics from what the database answers (a stand-in). */
#include "config.h"

#include "db/metrics.h"
#include "db/pgl.h"
#include "db/presence.h"
#include "feed/feed.h"
#include "feed/presence.h"

#include "tap.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stand-in: holds the one statement in flight until the test answers it. */
struct stand {
	int busy, sent;
	char *sql;
};

static int st_idle(void *impl)
{
	return !((struct stand *)impl)->busy;
}

static int st_send(void *impl, const char *sql, int nparams, const char *const *params)
{
	struct stand *s = impl;

	(void)nparams;
	(void)params;
	if (s->busy)
		return -EBUSY;
	s->busy = 1;
	s->sent++;
	free(s->sql);
	s->sql = strdup(sql);
	return 0;
}

static const it_feed_db_ops stand_ops = {st_idle, st_send, NULL, NULL, NULL};

static struct stand S;
static it_pgl_hooks H;
static it_presence *P;

/* Whether the statement in flight calls fn. */
static int pending(const char *fn)
{
	return S.busy && S.sql && strstr(S.sql, fn) != NULL;
}

/* Answers the statement in flight with one text value (NULL: SQL NULL), or
 * an error when fail is set, then lets the presence send what is next. */
static void answer(const char *value, int fail)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, fail ? PGRES_FATAL_ERROR : PGRES_TUPLES_OK);

	if (!fail) {
		PGresAttDesc col = {.name = (char *)"v", .typid = 25, .typlen = -1, .atttypmod = -1};
		PQsetResultAttrs(res, 1, &col);
		PQsetvalue(res, 0, 0, (char *)value, value ? (int)strlen(value) : -1);
	}
	S.busy = 0;
	H.result(P, res);
	PQclear(res);
	it_presence_handle_pg(P, 0);
}

static void ident(it_ident *id, const char *client)
{
	memset(id, 0, sizeof(*id));
	memset(id->session_id, 'S', 32);
	snprintf(id->client_id, sizeof(id->client_id), "%s", client);
}

#define ENTRIES() it_metrics_get(IT_PRESENCE_M_ENTRIES, NULL)
#define JOINS() it_metrics_get(IT_PRESENCE_M_JOINS, NULL)
#define FAILURES() it_metrics_get(IT_PRESENCE_M_RENEW_FAILURES, NULL)
#define LEFT(r) it_metrics_get(IT_PRESENCE_M_LEAVES, "reason=\"" r "\"")

int main(void)
{
	it_presence_opts o = {.app_name = "test", .ttl = 6};
	it_presence_entry *a, *a2, *b;
	it_presence_stats ps;
	it_ident id;
	int sent;

	is_int(it_presence_new_db(&P, &o, &stand_ops, &S, &H), 0, "a presence over a stand-in database");
	it_presence_tick(P, 1000);
	H.ready(P);
	is_int(S.sent, 0, "nothing is sent before anyone connects");

	ident(&id, "tab-1");
	a = it_presence_join(P, &id, "sse");
	ok(a && pending("it_presence_join"), "a client that announces itself is joined");
	is_int(ENTRIES(), 0, "it is not held before the database answered");
	answer("joined", 0);
	is_int(JOINS(), 1, "an answer \"joined\" counts one join");
	is_int(ENTRIES(), 1, "and one held entry");

	ident(&id, "tab-2");
	b = it_presence_join(P, &id, "websocket");
	ok(b && pending("it_presence_join"), "a second client is joined");
	answer("kept", 0);
	is_int(JOINS(), 1, "an answer \"kept\" (the entry was there: a reconnect in its grace) counts no join");
	is_int(ENTRIES(), 2, "but the entry is held");

	sent = S.sent;
	ident(&id, "tab-1");
	a2 = it_presence_join(P, &id, "sse");
	ok(a2 == a && S.sent == sent, "a second connection of a client sends nothing");
	is_int(ENTRIES(), 2, "and holds no second entry");

	it_presence_tick(P, 3000);
	ok(pending("it_presence_beat"), "the heartbeat is due after presence_ttl / 3");
	answer(NULL, 1);
	is_int(FAILURES(), 1, "a heartbeat statement that fails counts one renewal failure");
	is_int(ENTRIES(), 2, "its entries are still held (the next heartbeat tries again)");

	it_presence_tick(P, 3500);
	ok(pending("it_presence_sweep_reasons"), "the sweep is due, and asks for its counts by reason");
	answer("{\"closed\": 2, \"expired\": 1}", 0);
	is_int(LEFT("closed"), 2, "the sweep's closed entries are counted by reason");
	is_int(LEFT("expired"), 1, "and its expired ones");
	it_presence_stats_get(P, &ps);
	is_int(ps.swept, 3, "the statistics have the total");

	it_presence_leave(P, a, 0);
	is_int(ENTRIES(), 2, "a client with a connection left is still held");
	it_presence_leave(P, a2, 0);
	ok(pending("it_presence_leave"), "its last connection gone, the entry is let go");
	is_int(ENTRIES(), 1, "and no longer held");
	answer("t", 0);
	is_int(LEFT("closed"), 2, "letting go starts the grace: no leave is counted before the sweep does");

	it_presence_tick(P, 5000);
	ok(pending("it_presence_beat"), "the next heartbeat");
	S.busy = 0;
	H.lost(P);
	is_int(FAILURES(), 2, "a heartbeat whose connection was lost counts as a failure too");
	H.ready(P);
	is_int(ENTRIES(), 0, "with the connection back, nothing is held until it is joined again");
	ok(pending("it_presence_join"), "so the live entry is joined again");
	answer("kept", 0);
	is_int(ENTRIES(), 1, "held again");
	is_int(JOINS(), 1, "a rejoin that found the entry is no join");

	it_presence_free(P);
	is_int(ENTRIES(), 0, "a presence freed holds nothing");
	is_int(LEFT("revoked") + LEFT("other"), 0, "no other reason was counted");
	free(S.sql);
	return tap_done();
}

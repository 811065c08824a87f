/* fakedb.h: an in-memory stand-in for PostgreSQL behind it_feed (it_feed_db_ops), for the feed's unit tests.
 *
 * It keeps sessions and their events, answers the feed's two statements
 * (session check, batched read) from them when the test calls fake_step, and
 * counts what it was asked. Results are real PGresults, built with libpq's
 * PQmakeEmptyPGresult/PQsetvalue, so the core parses exactly what it would
 * get from a server. */
#ifndef IT_TESTS_UNIT_FEED_FAKEDB_H
#define IT_TESTS_UNIT_FEED_FAKEDB_H

#include "db/event.h"
#include "feed/feed.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_SESSIONS 8
#define FAKE_EVENTS 1200

struct fake_sess {
	char id[72];
	int exists;
	int64_t last, first_kept, expires;
	int64_t seq[FAKE_EVENTS];
	int nev;
};

/* A token as it_credential_check sees it, by the hex of its hash. */
struct fake_token {
	char hex[65];
	int status; /* what the function answers */
	char session[72];
	char device[24];
	int64_t until;
	int wrong_hash; /* the row's stored hash differs from the one asked for */
};

struct fake {
	it_feed *feed;
	int up, busy;
	char *sql; /* statement waiting for fake_step */
	char *params[3];
	int nparams;
	int checks, reads; /* statements answered */
	int last_batch;	   /* sessions in the last statement */
	struct fake_sess s[FAKE_SESSIONS];
	int ns;
	struct fake_token tok[8];
	int ntok;
	int creds; /* token-check statements answered */
};

static int fake_idle(void *impl)
{
	struct fake *fk = impl;
	return fk->up && !fk->busy;
}

static int fake_send(void *impl, const char *sql, int nparams, const char *const *params)
{
	struct fake *fk = impl;

	if (!fk->up || fk->busy)
		return fk->up ? -EBUSY : -ENOTCONN;
	fk->busy = 1;
	fk->sql = strdup(sql);
	fk->nparams = nparams;
	for (int i = 0; i < nparams; i++)
		fk->params[i] = strdup(params[i]);
	return 0;
}

static void fake_clear(struct fake *fk)
{
	free(fk->sql);
	fk->sql = NULL;
	for (int i = 0; i < fk->nparams; i++)
		free(fk->params[i]);
	fk->nparams = 0;
	fk->busy = 0;
}

static const it_feed_db_ops fake_ops = {fake_idle, fake_send, NULL, NULL, NULL};

static struct fake_sess *fake_session(struct fake *fk, const char *id)
{
	for (int i = 0; i < fk->ns; i++)
		if (strcmp(fk->s[i].id, id) == 0)
			return &fk->s[i];
	return NULL;
}

/* A new live session "<c> x 32" with no events, expiring at expires. */
static struct fake_sess *fake_add(struct fake *fk, char c, int64_t expires)
{
	struct fake_sess *s = &fk->s[fk->ns++];
	memset(s, 0, sizeof(*s));
	memset(s->id, c, 32);
	s->exists = 1;
	s->first_kept = 1;
	s->expires = expires;
	return s;
}

/* Commits n events (no notification: the test sends it). */
static void fake_append(struct fake_sess *s, int n)
{
	while (n-- > 0) {
		s->last++;
		s->seq[s->nev++] = s->last;
	}
}

/* Prunes events up to and including seq. */
static void fake_prune(struct fake_sess *s, int64_t seq)
{
	int k = 0;
	for (int i = 0; i < s->nev; i++)
		if (s->seq[i] > seq)
			s->seq[k++] = s->seq[i];
	s->nev = k;
	s->first_kept = seq + 1;
}

static void fake_notify(struct fake *fk, struct fake_sess *s, int64_t seq)
{
	char p[96];
	snprintf(p, sizeof(p), "%s:%lld", s->id, (long long)seq);
	it_feed_db_notify(fk->feed, p);
	it_feed_run(fk->feed);
}

/* The notification of event seq carrying the event, as it_append_event
 * sends it: the same JSON a read returns. */
static void fake_carry(struct fake *fk, struct fake_sess *s, int64_t seq)
{
	char p[160];
	snprintf(p, sizeof(p), "%s:%lld:image.uploaded\n{\"id\":%lld,\"type\":\"image.uploaded\"}", s->id,
		 (long long)seq, (long long)seq);
	it_feed_db_notify(fk->feed, p);
	it_feed_run(fk->feed);
}

/* Splits a PostgreSQL array literal {a,"b",...} in place. */
static int fake_array(char *lit, char **items, int max)
{
	int n = 0;
	char *p = lit + 1, *tok;

	lit[strlen(lit) - 1] = '\0';
	while (n < max && (tok = strsep(&p, ",")) != NULL) {
		if (*tok == '"') {
			tok++;
			tok[strlen(tok) - 1] = '\0';
		}
		if (*tok)
			items[n++] = tok;
	}
	return n;
}

static void fake_set(PGresult *res, int row, int col, const char *fmt, long long v, const char *s)
{
	char b[128];
	if (s == NULL)
		snprintf(b, sizeof(b), fmt, v);
	PQsetvalue(res, row, col, s ? (char *)s : b, (int)strlen(s ? s : b));
}

/* Answers a token check: one row per hash, in the order asked, with the
 * columns of it_feed_cred_sql. */
static PGresult *fake_creds(struct fake *fk)
{
	PGresAttDesc cols[9];
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	char *hex[128];
	int n;

	memset(cols, 0, sizeof(cols));
	for (int i = 0; i < 9; i++) {
		cols[i].name = (char *)"c";
		cols[i].typid = 25;
		cols[i].typlen = -1;
		cols[i].atttypmod = -1;
	}
	PQsetResultAttrs(res, 9, cols);
	n = fake_array(fk->params[0], hex, 128);
	fk->last_batch = n;
	fk->creds++;
	for (int i = 0; i < n; i++) {
		struct fake_token *t = NULL;
		for (int k = 0; k < fk->ntok; k++)
			if (strcmp(fk->tok[k].hex, hex[i]) == 0)
				t = &fk->tok[k];
		fake_set(res, i, 0, "%lld", i + 1, NULL);
		fake_set(res, i, 1, "%lld", t ? t->status : 401, NULL);
		if (t && t->status == 200) {
			char stored[65];
			snprintf(stored, sizeof(stored), "%s", t->hex);
			if (t->wrong_hash)
				stored[0] = stored[0] == '0' ? '1' : '0';
			fake_set(res, i, 2, NULL, 0, t->session);
			fake_set(res, i, 3, NULL, 0, "view");
			fake_set(res, i, 4, NULL, 0, t->device);
			fake_set(res, i, 5, NULL, 0, "Phone");
			fake_set(res, i, 6, NULL, 0, "android_app");
			fake_set(res, i, 7, "%lld", t->until, NULL);
			fake_set(res, i, 8, NULL, 0, stored);
		}
	}
	return res;
}

/* Answers the statement in flight, if any. Returns 1 when one was answered. */
static int fake_step(struct fake *fk)
{
	PGresAttDesc cols[4];
	PGresult *res;
	char *ids[128], *afters[128];
	int n, row = 0;

	if (!fk->busy)
		return 0;
	if (strcmp(fk->sql, it_feed_cred_sql) == 0) {
		res = fake_creds(fk);
		fake_clear(fk);
		it_feed_db_result(fk->feed, res);
		PQclear(res);
		it_feed_run(fk->feed);
		return 1;
	}
	memset(cols, 0, sizeof(cols));
	for (int i = 0; i < 4; i++) {
		cols[i].name = (char *)"c";
		cols[i].format = 0;
		cols[i].typid = 25;
		cols[i].typlen = -1;
		cols[i].atttypmod = -1;
	}
	res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PQsetResultAttrs(res, 4, cols);
	n = fake_array(fk->params[0], ids, 128);
	fk->last_batch = n;
	if (strcmp(fk->sql, it_feed_check_sql) == 0) {
		fk->checks++;
		for (int i = 0; i < n; i++) {
			struct fake_sess *s = fake_session(fk, ids[i]);
			if (s == NULL || !s->exists)
				continue;
			fake_set(res, row, 0, NULL, 0, s->id);
			fake_set(res, row, 1, "%lld", s->last, NULL);
			fake_set(res, row, 2, "%lld", s->first_kept, NULL);
			fake_set(res, row, 3, "%lld", s->expires, NULL);
			row++;
		}
	} else {
		int limit = atoi(fk->params[2]);
		fk->reads++;
		fake_array(fk->params[1], afters, 128);
		for (int i = 0; i < n; i++) {
			struct fake_sess *s = fake_session(fk, ids[i]);
			int64_t after = strtoll(afters[i], NULL, 10);
			int k = 0;
			if (s == NULL || !s->exists)
				continue;
			for (int e = 0; e < s->nev && k < limit; e++) {
				char json[96];
				if (s->seq[e] <= after)
					continue;
				snprintf(json, sizeof(json), "{\"id\":%lld,\"type\":\"image.uploaded\"}",
					 (long long)s->seq[e]);
				fake_set(res, row, 0, NULL, 0, s->id);
				fake_set(res, row, 1, "%lld", s->seq[e], NULL);
				fake_set(res, row, 2, NULL, 0, "image.uploaded");
				fake_set(res, row, 3, NULL, 0, json);
				row++;
				k++;
			}
		}
	}
	fake_clear(fk);
	it_feed_db_result(fk->feed, res);
	PQclear(res);
	it_feed_run(fk->feed);
	return 1;
}

/* Answers statements until none is in flight (bounded). */
static void fake_settle(struct fake *fk)
{
	for (int i = 0; i < 50 && fake_step(fk); i++)
		;
}

static void fake_up(struct fake *fk)
{
	fk->up = 1;
	it_feed_db_ready(fk->feed);
	it_feed_run(fk->feed);
}

static void fake_down(struct fake *fk)
{
	fk->up = 0;
	fake_clear(fk);
	it_feed_db_lost(fk->feed);
	it_feed_run(fk->feed);
}

#endif

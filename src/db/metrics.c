/* metrics.c: in-process counters and gauges, flushed to PostgreSQL so /metrics covers every process. */
#include "config.h"

#include "db/metrics.h"

#include "common/htab.h"
#include "common/log.h"
#include "db/db.h"

#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SLOT_EMPTY = 0, SLOT_WRITING, SLOT_READY };
enum { KIND_COUNTER = 0, KIND_GAUGE };

/* One name+labels pair. A slot is claimed once (EMPTY -> WRITING -> READY)
 * and never freed, so readers that see READY may use key without a lock. */
struct slot {
	_Atomic int state;
	int kind;
	_Atomic int64_t value;
	int64_t flushed; /* CGI mode: the part already added to the shared row */
	char key[IT_METRICS_KEY_MAX];
};

static struct slot slots[IT_METRICS_SLOTS];
static _Atomic int64_t dropped;

static struct {
	const char *program;
	int interval_s;
	it_metrics_collect_fn collect;
	void *arg;
	pthread_t tid;
	int running;
	int stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char host[128];
	char started[40];	    /* the process's start, ISO 8601, part of its row's key */
	pthread_mutex_t flush_lock; /* one flush at a time per process */
} m = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .flush_lock = PTHREAD_MUTEX_INITIALIZER};

static int make_key(char *out, const char *name, const char *labels)
{
	int n = labels && *labels ? snprintf(out, IT_METRICS_KEY_MAX, "%s{%s}", name, labels)
				  : snprintf(out, IT_METRICS_KEY_MAX, "%s", name);
	return n > 0 && n < IT_METRICS_KEY_MAX ? 0 : -1;
}

/* Finds the slot of key, claiming a free one when create is set. Returns
 * NULL when the key is absent (create unset) or the table is full. */
static struct slot *lookup(const char *name, const char *labels, int kind, int create)
{
	char key[IT_METRICS_KEY_MAX];
	size_t h;

	if (make_key(key, name, labels) < 0) {
		atomic_fetch_add(&dropped, 1);
		return NULL;
	}
	h = it_htab_hash(key);
	for (unsigned i = 0; i < IT_METRICS_SLOTS; i++) {
		struct slot *s = &slots[(h + i) % IT_METRICS_SLOTS];
		int st = atomic_load_explicit(&s->state, memory_order_acquire);

		if (st == SLOT_EMPTY) {
			if (!create)
				return NULL;
			int expect = SLOT_EMPTY;
			if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_WRITING)) {
				memcpy(s->key, key, sizeof(key));
				s->kind = kind;
				atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
				return s;
			}
			st = expect;
		}
		/* Another thread is filling this slot in: its key is a few
		 * bytes away from being readable. */
		while (st == SLOT_WRITING)
			st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (strcmp(s->key, key) == 0)
			return s;
	}
	if (create)
		atomic_fetch_add(&dropped, 1);
	return NULL;
}

void it_metrics_inc(const char *name, const char *labels, int64_t n)
{
	struct slot *s = lookup(name, labels, KIND_COUNTER, 1);

	if (s && n > 0)
		atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void it_metrics_counter_store(const char *name, const char *labels, int64_t total)
{
	struct slot *s = lookup(name, labels, KIND_COUNTER, 1);

	if (s)
		atomic_store_explicit(&s->value, total, memory_order_relaxed);
}

void it_metrics_gauge_set(const char *name, const char *labels, int64_t v)
{
	struct slot *s = lookup(name, labels, KIND_GAUGE, 1);

	if (s)
		atomic_store_explicit(&s->value, v, memory_order_relaxed);
}

void it_metrics_gauge_add(const char *name, const char *labels, int64_t d)
{
	struct slot *s = lookup(name, labels, KIND_GAUGE, 1);

	if (s)
		atomic_fetch_add_explicit(&s->value, d, memory_order_relaxed);
}

int64_t it_metrics_get(const char *name, const char *labels)
{
	struct slot *s = lookup(name, labels, KIND_COUNTER, 0);

	return s ? atomic_load_explicit(&s->value, memory_order_relaxed) : 0;
}

/* Serialises the table: counters (totals, or in delta mode what is new since
 * the last delta flush) and gauges, as two JSON objects. In delta mode the
 * flushed marks are advanced only by commit_delta() once the row is written. */
static void snapshot(int delta, char **counters, char **gauges, int64_t *marks)
{
	json_object *c = json_object_new_object(), *g = json_object_new_object();
	int64_t d = atomic_load(&dropped);

	for (unsigned i = 0; i < IT_METRICS_SLOTS; i++) {
		struct slot *s = &slots[i];
		int64_t v;

		if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
			continue;
		v = atomic_load_explicit(&s->value, memory_order_relaxed);
		marks[i] = v;
		if (s->kind == KIND_GAUGE) {
			if (!delta)
				json_object_object_add(g, s->key, json_object_new_int64(v));
			continue;
		}
		if (delta)
			v -= s->flushed;
		if (v != 0 || !delta)
			json_object_object_add(c, s->key, json_object_new_int64(v));
	}
	if (d)
		json_object_object_add(c, "imagetools_metrics_dropped_total", json_object_new_int64(d));
	*counters = strdup(json_object_to_json_string_ext(c, JSON_C_TO_STRING_PLAIN));
	*gauges = strdup(json_object_to_json_string_ext(g, JSON_C_TO_STRING_PLAIN));
	json_object_put(c);
	json_object_put(g);
}

static void identity(void)
{
	if (m.host[0])
		return;
	if (gethostname(m.host, sizeof(m.host) - 1) != 0)
		snprintf(m.host, sizeof(m.host), "localhost");
	{
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(m.started, sizeof(m.started), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(m.started + strlen(m.started), sizeof(m.started) - strlen(m.started), ".%06ldZ",
			 ts.tv_nsec / 1000);
	}
}

static int flush_on(PGconn **connp)
{
	static int64_t marks[IT_METRICS_SLOTS];
	char pid[16], *counters = NULL, *gauges = NULL;
	int delta = !m.running, rc = -EIO;
	PGresult *res;

	pthread_mutex_lock(&m.flush_lock);
	identity();
	snprintf(pid, sizeof(pid), "%d", delta ? 0 : (int)getpid());
	snapshot(delta, &counters, &gauges, marks);
	if (counters == NULL || gauges == NULL)
		goto out;
	if (delta) {
		/* One row per host and program for every short-lived process:
		 * counts are added, and there are no gauges to speak of. */
		const char *params[4] = {m.host, m.program ? m.program : "imagetools.fcgi", counters, pid};
		if (strcmp(counters, "{}") == 0) {
			rc = 0;
			goto out;
		}
		res = it_db_exec(connp, 0,
				 "INSERT INTO process_metrics AS p (host, program, pid, started, counters)"
				 " VALUES ($1, $2, $4::int, 'epoch', $3::jsonb)"
				 " ON CONFLICT (host, program, pid, started) DO UPDATE"
				 " SET counters = it_metrics_add(p.counters, EXCLUDED.counters), updated = now()",
				 4, params);
	} else {
		const char *params[6] = {m.host, m.program, pid, m.started, counters, gauges};
		/* Totals, not increments: writing the same row twice (a flush
		 * whose commit was lost, say) can never count anything twice. */
		res = it_db_exec(connp, 0,
				 "INSERT INTO process_metrics (host, program, pid, started, counters, gauges)"
				 " VALUES ($1, $2, $3::int, $4::timestamptz, $5::jsonb, $6::jsonb)"
				 " ON CONFLICT (host, program, pid, started) DO UPDATE"
				 " SET counters = EXCLUDED.counters, gauges = EXCLUDED.gauges, updated = now()",
				 6, params);
	}
	if (it_db_ok(res, PGRES_COMMAND_OK)) {
		rc = 0;
		if (delta)
			for (unsigned i = 0; i < IT_METRICS_SLOTS; i++)
				if (atomic_load(&slots[i].state) == SLOT_READY && slots[i].kind == KIND_COUNTER)
					slots[i].flushed = marks[i];
	} else if (res) {
		it_log_debug("metrics flush failed: %s", PQresultErrorMessage(res));
	}
	PQclear(res);
out:
	pthread_mutex_unlock(&m.flush_lock);
	free(counters);
	free(gauges);
	return rc;
}

int it_metrics_flush(PGconn **connp)
{
	return flush_on(connp);
}

static void *flush_thread(void *arg)
{
	PGconn *conn = NULL;
	time_t next_retire = 0;

	(void)arg;
	pthread_mutex_lock(&m.lock);
	for (;;) {
		int stopping = m.stopping;
		pthread_mutex_unlock(&m.lock);

		if (m.collect)
			m.collect(m.arg);
		if (conn == NULL || it_db_broken(conn)) {
			if (conn)
				PQfinish(conn);
			conn = it_db_connect();
		}
		if (conn) {
			flush_on(&conn);
			/* Rows of processes silent for an hour are folded into
			 * the 'retired' row, by whichever process gets there. */
			if (time(NULL) >= next_retire) {
				PGresult *res = it_db_exec(&conn, 0, "SELECT it_metrics_retire(3600)", 0, NULL);
				PQclear(res);
				next_retire = time(NULL) + 60;
			}
		}
		if (stopping)
			break;

		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += m.interval_s;
		pthread_mutex_lock(&m.lock);
		while (!m.stopping && pthread_cond_timedwait(&m.cond, &m.lock, &until) != ETIMEDOUT)
			;
	}
	if (conn)
		PQfinish(conn);
	return NULL;
}

int it_metrics_start(const char *program, int interval_s, it_metrics_collect_fn collect, void *arg)
{
	int rc;

	if (m.running)
		return -EALREADY;
	identity();
	m.program = program;
	m.interval_s = interval_s > 0 ? interval_s : 5;
	m.collect = collect;
	m.arg = arg;
	m.stopping = 0;
	m.running = 1;
	{
		/* The thread takes no signals: programs that wait for SIGTERM
		 * with sigwait or a signalfd block it only in their own thread,
		 * possibly after this one has started. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		rc = pthread_create(&m.tid, NULL, flush_thread, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (rc != 0) {
		m.running = 0;
		return -rc;
	}
	return 0;
}

void it_metrics_stop(void)
{
	if (!m.running)
		return;
	pthread_mutex_lock(&m.lock);
	m.stopping = 1;
	pthread_cond_signal(&m.cond);
	pthread_mutex_unlock(&m.lock);
	pthread_join(m.tid, NULL);
	m.running = 0;
}

void it_metrics_program(const char *program)
{
	m.program = program;
}

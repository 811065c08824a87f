/* test_metrics.c: unit tests for db/metrics: the lock-free table under concurrent writers. */
#include "config.h"

#include "db/metrics.h"
#include "tap.h"

#include <pthread.h>
#include <stdio.h>

#define THREADS 8
#define ROUNDS 20000

static void *writer(void *arg)
{
	char labels[32];

	snprintf(labels, sizeof(labels), "t=\"%d\"", (int)(long)arg % 4);
	for (int i = 0; i < ROUNDS; i++) {
		it_metrics_inc("test_shared_total", NULL, 1);
		it_metrics_inc("test_labelled_total", labels, 2);
		it_metrics_gauge_add("test_gauge", NULL, i % 2 ? -1 : 1);
	}
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	char name[64];
	int64_t sum = 0;
	int kept = 0;

	is_int(it_metrics_get("test_shared_total", NULL), 0, "an unknown counter reads 0");
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	is_int(it_metrics_get("test_shared_total", NULL), THREADS * ROUNDS, "no increment lost among %d threads",
	       THREADS);
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "t=\"%d\"", i);
		sum += it_metrics_get("test_labelled_total", name);
	}
	is_int(sum, 2LL * THREADS * ROUNDS, "labelled counters are separate keys and add up");
	is_int(it_metrics_get("test_labelled_total", "t=\"0\""), 2LL * 2 * ROUNDS, "one label value has its own share");
	is_int(it_metrics_get("test_gauge", NULL), 0, "a gauge goes up and down");

	it_metrics_counter_store("test_stored_total", NULL, 42);
	it_metrics_counter_store("test_stored_total", NULL, 40 + 3);
	is_int(it_metrics_get("test_stored_total", NULL), 43, "a stored counter takes the latest total");
	it_metrics_inc("test_shared_total", NULL, -5);
	is_int(it_metrics_get("test_shared_total", NULL), THREADS * ROUNDS, "a negative increment is ignored");

	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	it_metrics_inc(longname, NULL, 1);
	is_int(it_metrics_get(longname, NULL), 0, "an over-long key is dropped, not truncated into another");

	/* The table is fixed: past its size new keys are dropped, old ones keep counting. */
	for (int i = 0; i < IT_METRICS_SLOTS + 50; i++) {
		snprintf(name, sizeof(name), "test_many_%d", i);
		it_metrics_inc(name, NULL, 1);
	}
	for (int i = 0; i < IT_METRICS_SLOTS + 50; i++) {
		snprintf(name, sizeof(name), "test_many_%d", i);
		kept += it_metrics_get(name, NULL) == 1;
	}
	ok(kept > 0 && kept < IT_METRICS_SLOTS, "a full table drops new keys (%d kept)", kept);
	it_metrics_inc("test_shared_total", NULL, 1);
	is_int(it_metrics_get("test_shared_total", NULL), THREADS * ROUNDS + 1, "existing keys still count when full");

	return tap_done();
}

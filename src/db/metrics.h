/* metrics.h: in-process counters and gauges, flushed to PostgreSQL so /metrics covers every process (docs/metrics.md).
 *
 * Any thread calls it_metrics_inc() and friends: a lookup in a fixed table
 * and one atomic add, no lock and no allocation. A flush thread (started with
 * it_metrics_start) writes the whole table as one row of process_metrics
 * every few seconds and at exit; GET /api/v1/metrics sums the rows of every
 * process of the deployment. Plain CGI processes, which live for one request,
 * add their counts to a shared row of their host instead (it_metrics_flush). */
#ifndef IT_DB_METRICS_H
#define IT_DB_METRICS_H

#include <libpq-fe.h>
#include <stdint.h>

/* Distinct name+labels pairs one process can hold; further ones are dropped
 * (and counted in imagetools_metrics_dropped_total). */
#define IT_METRICS_SLOTS 512
/* Longest "name{labels}" key, NUL included. */
#define IT_METRICS_KEY_MAX 160

/* name is a Prometheus metric name ("imagetools_uploads_total"); labels is
 * NULL or the inside of the braces, already escaped ("transport=\"sse\"").
 * Neither is kept: they are copied on first use. Keys that do not fit
 * IT_METRICS_KEY_MAX are dropped. */

/* Adds n to a counter (monotonic: n >= 0). */
void it_metrics_inc(const char *name, const char *labels, int64_t n);

/* Sets a counter that is kept elsewhere (another module's own atomic
 * counter) to its current total. */
void it_metrics_counter_store(const char *name, const char *labels, int64_t total);

/* Sets a gauge (open connections...) to v, or adds d to it. Gauges of a
 * process count in /metrics only while the process keeps flushing. */
void it_metrics_gauge_set(const char *name, const char *labels, int64_t v);
void it_metrics_gauge_add(const char *name, const char *labels, int64_t d);

/* Reads one value back (0 when absent): for tests and for the process's own
 * health output. */
int64_t it_metrics_get(const char *name, const char *labels);

/* Called on the flush thread before every flush, to copy values kept
 * elsewhere (the hub's statistics) with it_metrics_counter_store and
 * it_metrics_gauge_set. */
typedef void (*it_metrics_collect_fn)(void *arg);

/* Starts the flush thread of a long-running process: program is its name
 * ("imagetools.fcgi", "imagetools-wsbridge", not copied: pass a literal),
 * interval_s the seconds between flushes, collect may be NULL. The thread
 * has its own database connection, made with it_db_connect(). Returns 0 or
 * a negative errno. */
int it_metrics_start(const char *program, int interval_s, it_metrics_collect_fn collect, void *arg);

/* Flushes once more and stops the thread (nothing happens when it was never
 * started). */
void it_metrics_stop(void);

/* Names the program in the rows this process writes when it never starts
 * the thread (plain CGI): a literal, not copied. */
void it_metrics_program(const char *program);

/* Flushes the calling process's values now on conn, for /metrics to see the
 * answering process up to date, or for a CGI process at its end. With the
 * thread running, writes the process's row like the thread does; without it
 * (plain CGI), adds what was counted since the last call to the shared row of
 * this host's CGI processes. Returns 0 or -EIO (logged at debug level). */
int it_metrics_flush(PGconn **connp);

/* Seconds after which a process that stopped flushing no longer counts for
 * gauges in /metrics. */
#define IT_METRICS_LIVE_S 30

#endif

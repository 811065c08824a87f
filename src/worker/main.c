/* main.c: imagetools-worker, the daemon that runs long operations from the job queue and does housekeeping. */
#include "config.h"

#include "common/clock.h"
#include "common/cmdline.h"
#include "common/config.h"
#include "common/id.h"
#include "common/log.h"
#include "db/db.h"
#include "db/metrics.h"
#include "db/operations.h"
#include "worker/housekeeping.h"
#include "worker/queue.h"
#include "worker/transform.h"
#include "worker/worker.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Seconds between housekeeping rounds: each is a handful of indexed queries,
 * and session.expiring should arrive close to expiry_warning. */
#define HK_INTERVAL 1
/* Seconds between scans for orphaned blobs (a full scan of the blobs table). */
#define GC_INTERVAL 600
/* Longest wait between reconnection attempts, seconds. */
#define MAX_BACKOFF 30

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: imagetools-worker [--config FILE] [--once] [--progress-interval MS] [--parallel N]\n"
		"Runs long operations (bulk compress, resize, convert) from the job queue\n"
		"and the housekeeping of sessions and events. Any number may run at once,\n"
		"on one machine or many. --once drains the queue and exits (for cron).\n"
		"SIGTERM finishes the current image, returns the job to the queue, exits.\n"
		"--progress-interval: least time between progress events of a job (250).\n"
		"--parallel: images transformed at once (default: one per CPU, at most 8).\n");
}

/* Connects and LISTENs on the jobs channel. Returns the connection or NULL. */
static PGconn *connect_listen(void)
{
	PGconn *c = it_db_connect();
	PGresult *res;

	if (c == NULL)
		return NULL;
	res = PQexec(c, "LISTEN " IT_JOBS_CHANNEL);
	if (!it_db_ok(res, PGRES_COMMAND_OK)) {
		it_log_warn("LISTEN failed: %s", PQerrorMessage(c));
		PQclear(res);
		PQfinish(c);
		return NULL;
	}
	PQclear(res);
	return c;
}

/* Sleeps until a job is announced, timeout seconds pass, or a signal comes. */
static void wait_for_work(PGconn *conn, int timeout_ms)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
	PGnotify *n;

	if (pfd.fd >= 0 && poll(&pfd, 1, timeout_ms) > 0)
		PQconsumeInput(conn);
	/* The notifications only wake us: the queue itself says what to do. */
	while ((n = PQnotifies(conn)) != NULL)
		PQfreemem(n);
}

/* What the command line asks for. */
struct options {
	const char *config_path;
	int once;
	long interval; /* --progress-interval, ms */
	long parallel; /* --parallel; 0 until defaulted */
};

/* Reads the command line into o. Returns -1 to go on, or the exit status
 * (0 after --help, 2 after a usage error, which it has reported). */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"once", no_argument, NULL, 'o'},
		{"progress-interval", required_argument, NULL, 'p'},
		{"parallel", required_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	it_cmdline cl = {.prog = "imagetools-worker", .usage = usage, .shortopts = "c:op:j:h", .longopts = opts};
	int c;

	o->config_path = IT_CONFIG_PATH;
	o->once = 0;
	o->interval = 250;
	o->parallel = 0;
	while ((c = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (c) {
		case 'c': o->config_path = optarg; break;
		case 'o': o->once = 1; break;
		case 'p':
			if (it_cmdline_long(optarg, 0, 60000, &o->interval) < 0) {
				fprintf(stderr, "imagetools-worker: --progress-interval takes 0 to 60000 ms\n");
				return 2;
			}
			break;
		case 'j':
			if (it_cmdline_long(optarg, 1, 64, &o->parallel) < 0) {
				fprintf(stderr, "imagetools-worker: --parallel takes 1 to 64\n");
				return 2;
			}
			break;
		}
	}
	if (c == IT_CMDLINE_EXIT)
		return cl.status;
	if (o->parallel == 0) {
		/* One image per core: JPEG decoding and encoding are serial, so
		 * a single image keeps one core busy. */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		o->parallel = cpus < 1 ? 1 : cpus > 8 ? 8 : cpus;
	}
	return -1;
}

/* Names this worker in the leases it takes: host, pid, and a random part
 * that keeps owners unique even when a pid is reused. */
static void make_owner(char *out, size_t outlen)
{
	char host[64], rnd[12];
	unsigned char raw[6];

	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	if (it_id_random(raw, sizeof(raw)) < 0)
		memset(raw, 0, sizeof(raw));
	it_base64url(raw, sizeof(raw), rnd);
	snprintf(out, outlen, "%s:%d:%s", host, (int)getpid(), rnd);
}

/* The worker's loop: keeps a LISTEN connection, runs housekeeping every
 * HK_INTERVAL seconds, claims and runs jobs, and sleeps until one is
 * announced. Returns when a signal asks it to stop (0), or with once set
 * when the queue is empty (0) or the database fails (1). */
static int serve(it_worker *w, const it_config *cfg, int once)
{
	int64_t next_hk = 0, next_gc = 0;
	int backoff = 1;

	while (!stopping) {
		it_queue_job job;
		int claimed;

		/* Broken also covers a connection whose session answered that
		 * it cannot be trusted (read-only after a failover, or the
		 * server shutting down): only a new session recovers. */
		if (it_db_broken(w->conn)) {
			if (w->conn)
				PQfinish(w->conn);
			w->conn = connect_listen();
			if (w->conn == NULL) {
				if (once)
					return 1;
				sleep((unsigned)backoff);
				backoff = backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : backoff * 2;
				continue;
			}
			backoff = 1;
		}
		if (it_clock_ms() >= next_hk) {
			it_housekeeping_stats st;
			int gc = it_clock_ms() >= next_gc;
			if (it_housekeeping_run(w->conn, cfg, gc, &st) == 0 && gc)
				next_gc = it_clock_ms() + GC_INTERVAL * 1000;
			next_hk = it_clock_ms() + HK_INTERVAL * 1000;
		}
		claimed = it_queue_claim(w->conn, w->owner, (int)cfg->worker_lease, &job);
		if (claimed == 1) {
			if (it_worker_run(w, &job) < 0)
				it_log_warn("operation %s interrupted by a database error; its lease will expire",
					    job.id);
			it_queue_job_free(&job);
			continue;
		}
		if (claimed < 0) {
			/* A broken connection is replaced at the top of the loop,
			 * after a pause: a new session can fail the same way (a
			 * database still read-only), and neither that nor any
			 * other failure may spin the loop. */
			if (once)
				return 1;
			sleep(1);
			continue;
		}
		if (once)
			break;
		wait_for_work(w->conn, HK_INTERVAL * 1000);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	int rc;
	it_config cfg;
	it_worker w;
	char err[512];
	struct sigaction sa;

	it_log_init("imagetools-worker", IT_LOG_INFO);
	rc = parse_options(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (it_db_startup("imagetools-worker", o.config_path, NULL, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "imagetools-worker: %s\n", err);
		return 2;
	}
	if (it_transform_init(argv[0]) < 0) {
		it_log_error("libvips failed to start");
		return 1;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	/* No SA_RESTART: a signal must cut a wait short. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	memset(&w, 0, sizeof(w));
	w.cfg = &cfg;
	w.progress_interval_ms = (int)o.interval;
	w.parallel = (int)o.parallel;
	w.stopping = &stopping;
	make_owner(w.owner, sizeof(w.owner));
	it_log_info("started as %s (lease %lld s, %d images at once%s)", w.owner, (long long)cfg.worker_lease,
		    w.parallel, o.once ? ", once" : "");

	/* Counters reach /metrics through the database, on a thread of their own. */
	it_metrics_start("imagetools-worker", 5, NULL, NULL);
	rc = serve(&w, &cfg, o.once);
	if (w.conn)
		PQfinish(w.conn);
	it_metrics_stop();
	it_log_info("stopped");
	it_config_free(&cfg);
	it_transform_shutdown();
	return rc;
}

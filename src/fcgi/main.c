/* main.c: imagetools.fcgi — the REST API as a multi-threaded FastCGI server, or one plain CGI request. */
#include "config.h"

#include "common/cmdline.h"
#include "common/log.h"
#include "common/proc.h"
#include "db/db.h"
#include "db/metrics.h"
#include "fcgi/acceptor.h"
#include "fcgi/app.h"
#include "fcgi/handlers.h"
#include "fcgi/listen.h"
#include "fcgi/pool.h"
#include "fcgi/request.h"
#include "hub/hub.h"

#include <errno.h>
#include <fcgiapp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* The thread that accepts FastCGI connections for the request threads. */
static it_acceptor *acceptor;

/* The upload threads (FastCGI mode only). */
static it_pool *upload_pool;

/* Listen backlog of a socket created here (--socket, `listen`): the kernel
 * caps it at net.core.somaxconn. The accepting thread keeps it nearly empty;
 * it only has to hold what arrives while the process starts or while it is
 * out of descriptors. */
#define LISTEN_BACKLOG 4096

/* How long a request thread waits for the first bytes of a connection it
 * took (the web server writes its request right after connecting), in ms.
 * A peer that connected and sends nothing would otherwise hold the thread
 * for good; libfcgi's own accept drops such a peer after 2 s. */
#define FIRST_BYTES_MS 5000

/* The FastCGI requests of the request threads have no listening socket:
 * they are given connections the accepting thread took (request_thread). */
#define NO_LISTEN_FD (-1)

/* Retry-After of an upload refused because the server or the address is
 * busy: uploads in flight end, or are cut by the body deadline, within
 * seconds to minutes; a client that waits a few seconds finds a slot. */
#define BUSY_RETRY_AFTER 5

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: imagetools.fcgi [--config FILE] [--socket PATH] [--threads N]\n"
		"The ImageTools API. Spawned by a web server with a FastCGI socket on fd 0\n"
		"(lighttpd mod_fastcgi, mod_fcgid), given a socket to listen on (--socket,\n"
		"for Apache mod_proxy_fcgi), handed one by systemd (LISTEN_FDS, fd 3), or\n"
		"run as plain CGI (mod_cgi).\n"
		"Settings: %s, IMAGETOOLS_CONFIG, IMAGETOOLS_<KEY> variables.\n",
		IT_CONFIG_PATH);
}

/* A handler that wrote nothing is a bug; the client gets a 500 all the same. */
static void answer_check(it_req *req)
{
	if (!req->headers_sent)
		it_resp_problem(req, 500, "internal", "The handler gave no answer.");
}

static void serve(it_req *req)
{
	int rc = it_req_init(req, req->fcgx, it_g.cfg.url_prefix);

	if (rc != 0)
		it_resp_problem(req, rc, "bad-request", "The request line cannot be handled.");
	else
		it_app_dispatch(req);
	answer_check(req);
}

/* A job with a fresh FastCGI request for request_thread, or NULL. */
static it_pool_job *job_new(void)
{
	it_pool_job *job = calloc(1, sizeof(*job));

	if (job && FCGX_InitRequest(&job->fcgx, NO_LISTEN_FD, 0) != 0) {
		free(job);
		job = NULL;
	}
	return job;
}

/* Serves an accepted request on the accepting thread, or hands it to the
 * upload threads. Returns 1 when the pool took the job, 0 when the request
 * has its answer. Guard and routing run here: they are cheap, and the
 * refusals of a busy pool need no more than them. */
static int serve_accepted(it_pool_job *job)
{
	it_req *req = &job->req;
	const it_route *route;
	int rc = it_req_init(req, &job->fcgx, it_g.cfg.url_prefix);

	if (rc != 0) {
		it_resp_problem(req, rc, "bad-request", "The request line cannot be handled.");
		goto out;
	}
	route = it_app_route(req);
	if (route == NULL)
		goto out;
	if (!(route->flags & IT_ROUTE_LONG_BODY) || upload_pool == NULL) {
		it_app_run(req, route);
		goto out;
	}
	job->route = route;
	switch (it_pool_submit(upload_pool, job)) {
	case IT_POOL_QUEUED: return 1;
	case IT_POOL_ADDRESS_BUSY: it_app_refuse_busy(req, 429, BUSY_RETRY_AFTER); break;
	default: it_app_refuse_busy(req, 503, BUSY_RETRY_AFTER); break;
	}
out:
	answer_check(req);
	return 0;
}

/* Runs on an upload thread: the request is complete when this returns. A
 * connection the web server would keep open for further requests is closed
 * all the same: no thread would read them. */
static void upload_serve(it_pool_job *job)
{
	it_app_run(&job->req, job->route);
	answer_check(&job->req);
	it_req_finish(&job->req);
	job->fcgx.keepConnection = 0;
	FCGX_Finish_r(&job->fcgx);
	free(job);
}

/* Ends a job that waited while the process stops. */
static void upload_drop(it_pool_job *job)
{
	it_app_refuse_busy(&job->req, 503, BUSY_RETRY_AFTER);
	it_req_finish(&job->req);
	job->fcgx.keepConnection = 0;
	FCGX_Finish_r(&job->fcgx);
	free(job);
}

/* Whether the peer of a connection just taken has sent something (or
 * closed it) within FIRST_BYTES_MS. */
static int first_bytes(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	int n;

	do {
		n = poll(&p, 1, FIRST_BYTES_MS);
	} while (n < 0 && errno == EINTR && !it_g.stopping);
	return n > 0;
}

/* Gives libfcgi the next request: the next one on a connection the web
 * server keeps open (FCGI_KEEP_CONN), else the first one of a connection
 * from the accepting thread. Returns 0 with a request, -1 when the process
 * stops. */
static int next_request(FCGX_Request *fcgx)
{
	while (!it_g.stopping) {
		int fd;

		if (fcgx->ipcFd < 0) {
			fd = it_acceptor_take(acceptor);
			if (fd < 0)
				return -1;
			if (!first_bytes(fd)) {
				close(fd);
				continue;
			}
			/* libfcgi then reads the request from this connection as
			 * from one it kept open after an earlier request, instead
			 * of accepting one itself. Should the connection carry no
			 * valid request, libfcgi closes it and falls back to its
			 * own accept() on NO_LISTEN_FD, which fails at once. */
			fcgx->ipcFd = fd;
			fcgx->keepConnection = 1;
		}
		if (FCGX_Accept_r(fcgx) == 0)
			return 0;
		if (fcgx->ipcFd >= 0) {
			close(fcgx->ipcFd);
			fcgx->ipcFd = -1;
		}
	}
	return -1;
}

static void *request_thread(void *arg)
{
	it_pool_job *job = job_new();

	(void)arg;
	if (job == NULL)
		return NULL;
	while (next_request(&job->fcgx) == 0) {
		if (serve_accepted(job)) {
			/* The upload threads own that request now; serving
			 * goes on with a new one. */
			job = job_new();
			if (job == NULL) {
				it_log_error("out of memory: a request thread ends");
				return NULL;
			}
			continue;
		}
		/* Logged before libfcgi frees the parameters the request points into. */
		it_req_finish(&job->req);
		if (job->req.detached) {
			/* The hub owns the connection now: free libfcgi's buffers
			 * and parameters but leave the socket open. */
			FCGX_Free(&job->fcgx, 0);
			FCGX_InitRequest(&job->fcgx, NO_LISTEN_FD, 0);
		} else {
			FCGX_Finish_r(&job->fcgx);
		}
	}
	job->fcgx.keepConnection = 0;
	FCGX_Finish_r(&job->fcgx);
	free(job);
	it_db_thread_close();
	return NULL;
}

/* Connections that may wait for a request thread: a quarter of the
 * descriptor limit, so that parked streams and database connections keep
 * the rest. */
static unsigned accept_queue_max(void)
{
	struct rlimit rl;
	rlim_t q = 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		q = rl.rlim_cur / 4;
	if (q < 64)
		q = 64;
	if (q > 65536)
		q = 65536;
	return (unsigned)q;
}

static void on_wake(int sig)
{
	(void)sig;
}

/* Returns the listening socket systemd passed (socket activation), or -1.
 * systemd puts the first socket on fd 3 and names the receiving process in
 * LISTEN_PID; a value meant for another process (inherited by accident) is
 * ignored. The variables are removed so nothing started later inherits them. */
static int systemd_listen_fd(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int64_t p, n;

	if (pid == NULL || fds == NULL)
		return -1;
	if (it_parse_uint(pid, INT32_MAX, &p) < 0 || p != (int64_t)getpid() || it_parse_uint(fds, 1024, &n) < 0 ||
	    n < 1) {
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
		return -1;
	}
	if (n > 1)
		it_log_warn("systemd passed %lld sockets; serving the first only", (long long)n);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return 3;
}

static int run_cgi(void)
{
	it_req req;

	req.fcgx = NULL;
	serve(&req);
	fflush(stdout);
	it_req_finish(&req);
	/* A CGI process lives for one request: what it counted is added to
	 * this host's shared row now, after the client has its answer. */
	{
		PGconn *conn = it_db_thread_conn();
		it_metrics_program("imagetools.fcgi");
		if (conn)
			it_metrics_flush(&conn);
	}
	it_db_thread_close();
	return 0;
}

/* Sets it_g.listen_fd: the socket systemd passed (activated_fd >= 0), the
 * one libfcgi was given on fd 0, or one opened on *sock, a [host]:port (then
 * *sock becomes NULL: there is no file to remove on exit) or a path (its
 * identity goes to *ident). Returns 0, or -1 after logging why. */
static int open_listener(int activated_fd, const char **sock, it_listen_ident *ident)
{
	char err[512];

	it_g.listen_fd = activated_fd >= 0 ? activated_fd : 0;
	if (*sock && strchr(*sock, '/') == NULL && strchr(*sock, ':') != NULL) {
		/* libfcgi's [host]:port form, a TCP socket: bind() itself refuses
		 * a port in use, and there is no file to remove. */
		it_g.listen_fd = FCGX_OpenSocket(*sock, LISTEN_BACKLOG);
		if (it_g.listen_fd < 0) {
			it_log_error("cannot listen on %s", *sock);
			return -1;
		}
		*sock = NULL;
	} else if (*sock) {
		/* Never over a live socket: a second server started on the same
		 * path would take it over, and delete it under the first on exit. */
		it_g.listen_fd = it_listen_unix(*sock, LISTEN_BACKLOG, ident, err, sizeof(err));
		if (it_g.listen_fd < 0) {
			it_log_error("%s", err);
			return -1;
		}
	}
	return 0;
}

/* Starts what a FastCGI server runs: the event hub, the metrics thread, the
 * upload threads, the accepting thread and the request threads (their ids
 * in *tids, it_g.cfg.threads of them). Returns 0, or -1 after logging. */
static int start_threads(pthread_t **tids)
{
	it_proc_raise_fd_limit();
	if (it_hub_start(&it_g.hub, &it_g.cfg) < 0) {
		it_log_error("cannot start the event hub");
		return -1;
	}
	it_h_metrics_start();
	upload_pool = it_pool_start((unsigned)it_g.cfg.upload_threads, (unsigned)it_g.cfg.upload_queue,
				    (unsigned)it_g.cfg.max_uploads_per_address, upload_serve, upload_drop);
	if (upload_pool == NULL) {
		it_log_error("cannot start the upload threads");
		return -1;
	}
	acceptor = it_acceptor_start(it_g.listen_fd, accept_queue_max());
	if (acceptor == NULL) {
		it_log_error("cannot start the accepting thread");
		return -1;
	}
	*tids = calloc((size_t)it_g.cfg.threads, sizeof(**tids));
	if (*tids == NULL)
		return -1;
	for (int64_t i = 0; i < it_g.cfg.threads; i++)
		if (pthread_create(&(*tids)[i], NULL, request_thread, NULL) != 0) {
			it_log_error("cannot start thread %lld", (long long)i);
			return -1;
		}
	it_log_info("serving FastCGI with %lld threads and %lld upload threads", (long long)it_g.cfg.threads,
		    (long long)it_g.cfg.upload_threads);
	return 0;
}

/* Stops accepting and ends what start_threads started, in the order that
 * loses no request: the request threads waiting for a connection get none
 * and end, and the connections not yet served are closed (the web server
 * tries them again elsewhere or on the next process). */
static void stop_threads(pthread_t *tids)
{
	int64_t left = it_g.cfg.threads;
	char *done = calloc((size_t)it_g.cfg.threads, 1);

	it_g.stopping = 1;
	FCGX_ShutdownPending();
	it_acceptor_stop(acceptor);
	/* A thread reading a request is woken by a signal; every round wakes
	 * again those that have not finished (one may be just about to block). */
	for (int round = 0; left > 0 && done && round < 100; round++) {
		for (int64_t i = 0; i < it_g.cfg.threads; i++) {
			if (done[i])
				continue;
			if (pthread_tryjoin_np(tids[i], NULL) == 0) {
				done[i] = 1;
				left--;
			} else {
				pthread_kill(tids[i], SIGUSR2);
			}
		}
		if (left > 0)
			usleep(50 * 1000);
	}
	free(done);
	it_acceptor_free(acceptor);
	acceptor = NULL;
	/* No request thread hands over uploads any more: the upload threads end
	 * theirs, and uploads still waiting get a 503 to retry elsewhere. */
	it_pool_stop(upload_pool);
	upload_pool = NULL;
	/* Open streams are ended properly, so clients reconnect at once. */
	it_h_metrics_stop();
	it_hub_stop(it_g.hub);
	it_g.hub = NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"socket", required_argument, NULL, 's'},
		{"threads", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	/* Arguments after the options are ignored. */
	it_cmdline cl = {
		.prog = "imagetools.fcgi", .usage = usage, .shortopts = "c:s:t:h", .longopts = opts, .operands = 1};
	const char *config_path = IT_CONFIG_PATH, *sock = NULL;
	it_listen_ident sock_ident = {0};
	long threads = 0;
	int activated_fd, sig = 0;
	char err[512];
	sigset_t stop_set;
	pthread_t *tids = NULL;
	struct sigaction sa;
	int c;

	while ((c = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (c) {
		case 'c': config_path = optarg; break;
		case 's': sock = optarg; break;
		case 't': threads = strtol(optarg, NULL, 10); break;
		}
	}
	if (c == IT_CMDLINE_EXIT)
		return cl.status;
	it_log_init("imagetools.fcgi", IT_LOG_INFO);
	if (it_db_startup("imagetools.fcgi", config_path, NULL, &it_g.cfg, err, sizeof(err)) < 0) {
		it_log_error("configuration: %s", err);
		if (sock == NULL && FCGX_IsCGI()) {
			printf("Status: 500 Internal Server Error\r\nContent-Type: application/problem+json\r\n\r\n"
			       "{\"type\":\"urn:imagetools:problem:configuration\",\"title\":\"Internal Server "
			       "Error\",\"status\":500,\"detail\":\"The server is misconfigured.\"}\n");
		}
		return 1;
	}
	if (threads > 0)
		it_g.cfg.threads = threads;
	if (sock == NULL && it_g.cfg.listen[0])
		sock = it_g.cfg.listen;
	it_g.started = time(NULL);

	/* Our own handlers go in before FCGX_Init: libfcgi only installs its
	 * SIGTERM/SIGUSR1 handlers over the default disposition. */
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wake; /* no SA_RESTART: wakes a thread out of accept() */
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_set, NULL);

	if (FCGX_Init() != 0) {
		it_log_error("FCGX_Init failed");
		return 1;
	}
	/* Socket activation comes before the CGI test: under systemd fd 0 is
	 * /dev/null, which libfcgi would take for plain CGI. */
	activated_fd = sock == NULL ? systemd_listen_fd() : -1;
	if (sock == NULL && activated_fd < 0 && FCGX_IsCGI()) {
		/* A CGI process has nothing to shut down gracefully: when the web
		 * server ends it (lighttpd's tcp-fin-propagate sends SIGTERM as soon
		 * as the client of a stream leaves) it must end at once, and
		 * PostgreSQL rolls back whatever it had not committed. */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		pthread_sigmask(SIG_UNBLOCK, &stop_set, NULL);
		it_g.cgi = 1;
		return run_cgi();
	}
	if (open_listener(activated_fd, &sock, &sock_ident) < 0 || start_threads(&tids) < 0)
		return 1;

	/* The main thread waits for a stop signal. */
	sigwait(&stop_set, &sig);
	it_log_info("signal %d: shutting down", sig);
	stop_threads(tids);
	free(tids);
	/* Only the socket this process created: another server may have
	 * replaced it by now. */
	if (sock)
		it_listen_release(sock, &sock_ident);
	it_config_free(&it_g.cfg);
	return 0;
}

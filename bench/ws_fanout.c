/* ws_fanout.c: WebSocket bridge fan-out benchmark: many clients, events committed in PostgreSQL, latency and cost. */
/*
 * Usage: ws_fanout --bridge HOST:PORT --db CONNINFO --pid BRIDGE_PID
 *                  [--clients N] [--sessions S] [--events E] [--rate PER_SECOND]
 *
 * Opens N WebSocket connections straight to the bridge (not through the web
 * server), spread evenly over S new sessions, then commits E events (one
 * transaction each, round-robin over the sessions, at most PER_SECOND per
 * second) with it_append_event. Every event carries the monotonic time at
 * which its committing statement was issued; each client computes the
 * latency when the frame arrives. A first phase with one client on its own
 * session gives the baseline latency of the same machine in the same run.
 *
 * Prints delivered/expected (must be equal), latency p50/p99 (and their
 * ratio to the baseline), the bridge's RSS per connection and its CPU time
 * per 1,000 delivered frames (from /proc/PID). Exits 1 when a frame is lost.
 * Bounded: at most 19,000 clients, 100,000 events, 120 s of waiting.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 19000
#define MAX_EVENTS 100000

typedef struct bclient {
	int fd;
	int session;
	int upgraded; /* 101 seen */
	int ready;    /* connection.status seen */
	size_t len;
	unsigned char buf[2048];
} bclient;

static struct {
	struct sockaddr_in addr;
	int epfd;
	bclient *clients;
	int nclients;
	long long ready, delivered;
	double *lat;
	size_t nlat, caplat;
	PGconn *db;
	char (*sids)[40];
	int nsessions;
} G;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "ws_fanout: %s\n", what);
	exit(2);
}

static void sql(const char *q, int n, const char *const *p)
{
	PGresult *r = PQexecParams(G.db, q, n, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		fprintf(stderr, "ws_fanout: %s: %s", q, PQerrorMessage(G.db));
		exit(2);
	}
	PQclear(r);
}

static void new_session(char *out)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *p[1] = {out};
	int i;

	for (i = 0; i < 32; i++)
		out[i] = al[rand() & 63];
	out[32] = '\0';
	sql("INSERT INTO sessions (id, expires_at) VALUES ($1, now() + interval '1 hour')", 1, p);
}

static void open_client(bclient *c, int session)
{
	char req[512];
	int n, one = 1;
	struct epoll_event e;

	c->session = session;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		die("socket (raise the descriptor limit)");
	if (connect(c->fd, (struct sockaddr *)&G.addr, sizeof(G.addr)) < 0)
		die("connect to the bridge");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	n = snprintf(req, sizeof(req),
		     "GET /api/v1/ws/%s?last_event_id=0 HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		     "Sec-WebSocket-Version: 13\r\n\r\n",
		     G.sids[session]);
	if (write(c->fd, req, (size_t)n) != n)
		die("write handshake");
	e.events = EPOLLIN;
	e.data.ptr = c;
	epoll_ctl(G.epfd, EPOLL_CTL_ADD, c->fd, &e);
}

static void on_text(bclient *c, const unsigned char *p, size_t n, double now)
{
	const char *t;
	char tmp[2048];

	if (n >= sizeof(tmp))
		n = sizeof(tmp) - 1;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	if (strstr(tmp, "\"connection.status\"")) {
		if (!c->ready) {
			c->ready = 1;
			G.ready++;
		}
		return;
	}
	t = strstr(tmp, "\"t\": ");
	if (t == NULL)
		return;
	G.delivered++;
	if (G.nlat == G.caplat) {
		G.caplat = G.caplat ? G.caplat * 2 : 65536;
		G.lat = realloc(G.lat, G.caplat * sizeof(double));
		if (G.lat == NULL)
			die("out of memory");
	}
	G.lat[G.nlat++] = now - strtod(t + 5, NULL);
}

static void on_readable(bclient *c, double now)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	size_t off = 0;

	if (n <= 0) {
		fprintf(stderr, "ws_fanout: a client lost its connection\n");
		epoll_ctl(G.epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		return;
	}
	c->len += (size_t)n;
	if (!c->upgraded) {
		unsigned char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
		if (e == NULL)
			return;
		if (memcmp(c->buf, "HTTP/1.1 101", 12) != 0)
			die("upgrade refused");
		c->upgraded = 1;
		off = (size_t)(e + 4 - c->buf);
	}
	for (;;) {
		size_t avail = c->len - off, hl = 2;
		uint64_t plen;
		unsigned op;

		if (avail < 2)
			break;
		op = c->buf[off] & 0x0F;
		plen = c->buf[off + 1] & 0x7F;
		if (plen == 126) {
			if (avail < 4)
				break;
			plen = ((uint64_t)c->buf[off + 2] << 8) | c->buf[off + 3];
			hl = 4;
		} else if (plen == 127) {
			die("frame too large for the benchmark");
		}
		if (plen > sizeof(c->buf) - 16)
			die("frame too large for the benchmark");
		if (avail < hl + plen)
			break;
		if (op == 1) {
			on_text(c, c->buf + off + hl, (size_t)plen, now);
		} else if (op == 9) {
			/* Answer the bridge's keepalive Ping (masked, zero key). */
			unsigned char pong[6 + 125] = {0x8A, (unsigned char)(0x80 | plen), 0, 0, 0, 0};
			memcpy(pong + 6, c->buf + off + hl, (size_t)plen);
			if (write(c->fd, pong, 6 + (size_t)plen) < 0)
				perror("pong");
		} else if (op == 8) {
			die("the bridge closed a client");
		}
		off += hl + (size_t)plen;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
}

static void pump(double until, long long *counter, long long target)
{
	struct epoll_event evs[512];

	while (*counter < target) {
		double now = mono();
		int n, i, ms = (int)((until - now) * 1000);
		if (ms <= 0)
			return;
		n = epoll_wait(G.epfd, evs, 512, ms > 50 ? 50 : ms);
		now = mono();
		for (i = 0; i < n; i++)
			on_readable(evs[i].data.ptr, now);
	}
}

/* Polls without a target until until, for events still in flight. */
static void drain_for(double seconds)
{
	long long never = 0;
	pump(mono() + seconds, &never, 1);
}

static void proc_stat(int pid, double *cpu, long *rss_kb)
{
	char path[64], buf[2048];
	FILE *f;
	unsigned long ut = 0, st = 0;
	long pages = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	if (f == NULL || fgets(buf, sizeof(buf), f) == NULL)
		die("cannot read the bridge's /proc/PID/stat");
	fclose(f);
	/* Fields after the command name (which may hold spaces): utime is
	 * field 14, stime 15, rss 24. */
	{
		char *p = strrchr(buf, ')');
		int field = 3;
		for (p = p + 2; p && *p; field++) {
			if (field == 14)
				ut = strtoul(p, NULL, 10);
			else if (field == 15)
				st = strtoul(p, NULL, 10);
			else if (field == 24)
				pages = strtol(p, NULL, 10);
			p = strchr(p, ' ');
			if (p)
				p++;
		}
	}
	*cpu = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
	*rss_kb = pages * (sysconf(_SC_PAGESIZE) / 1024);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void percentiles(double *p50, double *p99)
{
	qsort(G.lat, G.nlat, sizeof(double), cmp);
	*p50 = G.nlat ? G.lat[G.nlat / 2] * 1000 : 0;
	*p99 = G.nlat ? G.lat[(size_t)((double)G.nlat * 0.99)] * 1000 : 0;
}

/* Commits events round-robin over sessions [first, first+count) at rate. */
static void send_events(int first, int count, int events, double rate, long long expected_total)
{
	double start = mono();
	int i;

	for (i = 0; i < events; i++) {
		char data[64];
		const char *p[2];
		double due = start + i / rate;

		while (mono() < due)
			pump(due, &G.delivered, expected_total);
		snprintf(data, sizeof(data), "{\"t\": %.9f}", mono());
		p[0] = G.sids[first + i % count];
		p[1] = data;
		sql("SELECT it_append_event($1, 'bench', $2::jsonb)", 2, p);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bridge", 1, NULL, 'b'},   {"db", 1, NULL, 'd'},     {"pid", 1, NULL, 'p'},  {"clients", 1, NULL, 'n'},
		{"sessions", 1, NULL, 's'}, {"events", 1, NULL, 'e'}, {"rate", 1, NULL, 'r'}, {NULL, 0, NULL, 0}};
	const char *bridge = NULL, *db = NULL;
	int pid = 0, nclients = 1000, nsessions = 1, nevents = 100, opt, i;
	double rate = 200, cpu0, cpu1, base50, base99, p50, p99, t0, t1;
	long rss0, rss1;
	long long expected, expected_base;
	struct rlimit rl;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'b': bridge = optarg; break;
		case 'd': db = optarg; break;
		case 'p': pid = atoi(optarg); break;
		case 'n': nclients = atoi(optarg); break;
		case 's': nsessions = atoi(optarg); break;
		case 'e': nevents = atoi(optarg); break;
		case 'r': rate = atof(optarg); break;
		default: return 2;
		}
	}
	if (!bridge || !db || pid <= 0 || nclients < 1 || nclients > MAX_CLIENTS || nsessions < 1 ||
	    nsessions > nclients || nevents < 1 || nevents > MAX_EVENTS || rate <= 0)
		die("usage: ws_fanout --bridge 127.0.0.1:PORT --db CONNINFO --pid PID [--clients N<=19000] "
		    "[--sessions S] [--events E<=100000] [--rate R]");
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	{
		const char *colon = strrchr(bridge, ':');
		char host[64];
		if (colon == NULL || (size_t)(colon - bridge) >= sizeof(host))
			die("--bridge HOST:PORT");
		memcpy(host, bridge, (size_t)(colon - bridge));
		host[colon - bridge] = '\0';
		G.addr.sin_family = AF_INET;
		G.addr.sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &G.addr.sin_addr) != 1 || G.addr.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
			die("the benchmark only targets 127.0.0.1");
	}
	G.db = PQconnectdb(db);
	if (PQstatus(G.db) != CONNECTION_OK)
		die(PQerrorMessage(G.db));
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	G.epfd = epoll_create1(0);
	G.nsessions = nsessions + 1;
	G.sids = calloc((size_t)G.nsessions, sizeof(*G.sids));
	G.clients = calloc((size_t)nclients + 1, sizeof(bclient));
	for (i = 0; i < G.nsessions; i++)
		new_session(G.sids[i]);

	/* Baseline: one client, its own session. */
	open_client(&G.clients[nclients], nsessions);
	pump(mono() + 10, &G.ready, 1);
	if (G.ready != 1)
		die("the baseline client did not get connection.status");
	expected_base = 100;
	send_events(nsessions, 1, 100, rate, expected_base);
	pump(mono() + 10, &G.delivered, expected_base);
	if (G.delivered != expected_base)
		die("baseline events lost");
	percentiles(&base50, &base99);
	G.nlat = 0;
	G.delivered = 0;
	G.ready = 0;

	proc_stat(pid, &cpu0, &rss0);
	t0 = mono();
	for (i = 0; i < nclients; i++) {
		open_client(&G.clients[i], i % nsessions);
		/* Keep the accept backlog from overflowing. */
		if (i % 500 == 499)
			pump(mono() + 10, &G.ready, i + 1 - 250);
	}
	pump(mono() + 60, &G.ready, nclients);
	t1 = mono();
	if (G.ready != nclients) {
		fprintf(stderr, "ws_fanout: only %lld of %d clients got connection.status\n", G.ready, nclients);
		return 1;
	}
	drain_for(0.5);
	proc_stat(pid, &cpu1, &rss1);
	printf("clients %d on %d session(s): connected in %.2f s; bridge RSS %+.0f KiB = %.2f KiB per connection\n",
	       nclients, nsessions, t1 - t0, (double)(rss1 - rss0), (double)(rss1 - rss0) / nclients);

	/* Every session has nclients/nsessions clients (the first ones one more). */
	expected = 0;
	for (i = 0; i < nevents; i++) {
		int s = i % nsessions;
		expected += nclients / nsessions + (s < nclients % nsessions);
	}
	proc_stat(pid, &cpu0, &rss0);
	t0 = mono();
	send_events(0, nsessions, nevents, rate, expected);
	pump(mono() + 120, &G.delivered, expected);
	t1 = mono();
	drain_for(0.3); /* anything extra would be a duplicate */
	proc_stat(pid, &cpu1, &rss1);
	percentiles(&p50, &p99);
	printf("events %d at %.0f/s: delivered %lld / expected %lld in %.2f s\n", nevents, rate, G.delivered, expected,
	       t1 - t0);
	printf("latency commit->receipt: p50 %.2f ms, p99 %.2f ms (baseline 1 client: p50 %.2f ms, p99 %.2f ms; "
	       "ratio p50 %.1fx, p99 %.1fx)\n",
	       p50, p99, base50, base99, base50 > 0 ? p50 / base50 : 0, base99 > 0 ? p99 / base99 : 0);
	printf("bridge CPU %.2f s = %.1f ms per 1,000 delivered frames\n", cpu1 - cpu0,
	       G.delivered ? (cpu1 - cpu0) * 1000.0 / ((double)G.delivered / 1000.0) : 0);
	for (i = 0; i <= nclients; i++)
		if (G.clients[i].fd > 0)
			close(G.clients[i].fd);
	PQfinish(G.db);
	return G.delivered == expected ? 0 : 1;
}

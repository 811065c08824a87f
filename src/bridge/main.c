/* main.c: imagetools-wsbridge — the optional WebSocket daemon that pushes session events to browsers. */
#include "config.h"

#include "bridge/bridge.h"
#include "common/cmdline.h"
#include "common/config.h"
#include "common/log.h"
#include "db/db.h"
#include "db/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: imagetools-wsbridge [--config FILE] [--listen HOST:PORT]\n"
		"Serves GET /api/v1/ws/{session_id} WebSocket upgrades (proxied by the web\n"
		"server) and pushes every event of the session as a JSON text frame.\n"
		"--listen defaults to the bridge_listen setting. Settings: %s,\n"
		"IMAGETOOLS_CONFIG, IMAGETOOLS_<KEY> variables. SIGTERM closes every socket\n"
		"with 1001 and exits.\n",
		IT_CONFIG_PATH);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"listen", required_argument, NULL, 'l'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	it_cmdline cl = {.prog = "imagetools-wsbridge", .usage = usage, .shortopts = "c:l:h", .longopts = opts};
	const char *config_path = IT_CONFIG_PATH, *listen_addr = NULL;
	it_config cfg;
	char err[512];
	int opt, rc;

	while ((opt = it_cmdline_next(&cl, argc, argv)) >= 0) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'l': listen_addr = optarg; break;
		}
	}
	if (opt == IT_CMDLINE_EXIT)
		return cl.status;
	it_log_init("imagetools-wsbridge", IT_LOG_INFO);
	if (it_db_startup("imagetools-wsbridge", config_path, NULL, &cfg, err, sizeof(err)) < 0) {
		it_log_error("%s", err);
		return 1;
	}
	/* Counters reach /metrics through the database, on a thread of their own. */
	it_metrics_start("imagetools-wsbridge", 5, NULL, NULL);
	rc = it_bridge_run(&cfg, listen_addr ? listen_addr : cfg.bridge_listen);
	it_metrics_stop();
	it_config_free(&cfg);
	return rc == 0 ? 0 : 1;
}

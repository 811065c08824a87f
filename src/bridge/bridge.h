/* bridge.h: the WebSocket bridge's event loop: clients, the session registry and event fan-out. */
#ifndef IT_BRIDGE_BRIDGE_H
#define IT_BRIDGE_BRIDGE_H

#include "common/config.h"

/* Runs the bridge until SIGTERM or SIGINT: listens on listen_addr
 * ("HOST:PORT"), serves GET /api/v1/ws/{session} upgrades and pushes each
 * session's events to its sockets. cfg is borrowed for the whole run.
 * Returns 0 after a graceful shutdown (every socket closed with 1001), or -1
 * when it cannot start (logged). */
int it_bridge_run(const it_config *cfg, const char *listen_addr);

#endif

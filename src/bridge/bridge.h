/* bridge.h: the WebSocket bridge's event loop: clients, the session registry and event fan-out.
 *
 * Return convention of the bridge layer (src/bridge/, docs/layout.md): 0 or
 * -1 (logged). The protocol parsers return the bytes consumed or a negative
 * code named in their header: it_http_parse_request -2 incomplete and -1
 * malformed (as picohttpparser), it_ws_read minus the RFC 6455 close code.
 * it_addrlimit_hit and it_addrlimit_peek return the seconds to wait (0:
 * allowed). it_http_has_token is a predicate,
 * it_http_find returns a pointer or NULL. */
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

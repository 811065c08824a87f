// client.mjs: a WebSocket client on the npm "ws" package, driven line by line by test_bridge_node.py.
//
// Reads JSON commands on stdin, one per line:
//   {"cmd": "connect", "url": "ws://...", "origin": "http://..."}   open a socket
//   {"cmd": "connect", "url": "wss://...", "origin": "https://...", "ca": "/path/cert.pem"}
//                                                     over TLS, trusting that certificate only
//   {"cmd": "send", "text": "ping"}                                  send a text message
//   {"cmd": "ping", "data": "abc"}                                   send a protocol Ping
//   {"cmd": "close"}                                                 close with 1000
// and writes one JSON line per thing that happens:
//   {"open": true} {"msg": <parsed frame or text>} {"pong": "abc"} {"close": code, "reason": "..."}
//   {"error": "..."}
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

let ws = null;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function connect(url, origin, ca) {
  const opts = {};
  if (origin) opts.origin = origin;
  if (ca) opts.ca = readFileSync(ca);
  ws = new WebSocket(url, opts);
  ws.on('open', () => out({ open: true }));
  ws.on('message', (data, isBinary) => {
    const text = data.toString('utf8');
    let msg = text;
    if (!isBinary) {
      try {
        msg = JSON.parse(text);
      } catch {
        msg = text;
      }
    }
    out({ msg });
  });
  ws.on('pong', (data) => out({ pong: data.toString('utf8') }));
  ws.on('close', (code, reason) => out({ close: code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => out({ error: String(err.message || err) }));
  ws.on('unexpected-response', (req, res) => {
    out({ status: res.statusCode });
    req.destroy();
  });
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const c = JSON.parse(line);
  if (c.cmd === 'connect') connect(c.url, c.origin, c.ca);
  else if (c.cmd === 'send') ws.send(c.text);
  else if (c.cmd === 'ping') ws.ping(c.data);
  else if (c.cmd === 'close') ws.close(1000);
});
rl.on('close', () => process.exit(0));

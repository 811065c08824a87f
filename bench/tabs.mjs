// bench/tabs.mjs: what sharing one connection among tabs costs and saves (run by bench/tabs.py,
// numbers in docs/performance.md).
//
// 1. In Chromium, ten tabs of the ImageTools page on one session, shared mode (the default)
//    against one connection per tab (?shared=0), first over SSE (no bridge, HTTP/1.1), then
//    over WebSocket (the bridge started): the time from an upload in the tenth tab to its
//    image.uploaded event in the last of the ten tabs to get it, the upload's own time, and
//    the streams the server holds. Ratios against the shared mode of the same transport.
// 2. In Node, 1,000 simulated browsers with 5 tabs each, on 1,000 sessions: 1,000 SSE streams
//    (shared mode: one per browser) against 5,000 (one per tab), to imagetools.fcgi behind
//    lighttpd and to the bridge: established connections, server RSS, and the time from the
//    commit of one event per session to its arrival on every stream.
//
// Loopback only; every wait is bounded.

import net from 'node:net';
import { BASE, ctl, diag, ok, openPage, run, sleep, until } from '../tests/browser/lib.mjs';

const TABS = 10;
const UPLOADS = Number(process.env.IT_BENCH_UPLOADS || 8);
const BROWSERS = Number(process.env.IT_BENCH_BROWSERS || 1000);
const PER_BROWSER = Number(process.env.IT_BENCH_TABS || 5);
const HTTP_PORT = Number(process.env.IT_HTTP_PORT);
const BRIDGE_PORT = Number(process.env.IT_BRIDGE_PORT);
const STALL_MS = 20000;
const ROUNDS = Number(process.env.IT_BENCH_ROUNDS || 3);
const PUBLISHES = 5; // events per session in each simulated round, a second apart

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–');

// A small PNG made in the page, so the upload is what the page itself sends.
async function uploadFromTab(page, sid, name) {
  return page.evaluate(async ({ sid, name, stall }) => {
    const c = document.createElement('canvas');
    c.width = 64;
    c.height = 48;
    const g = c.getContext('2d');
    g.fillStyle = '#' + Math.floor(Math.random() * 0xffffff).toString(16).padStart(6, '0');
    g.fillRect(0, 0, 64, 48);
    const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
    const form = new FormData();
    form.append('session_id', sid);
    form.append('source', 'web');
    form.append('file', blob, name);
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), stall);
    const t0 = performance.timeOrigin + performance.now();
    try {
      const r = await fetch(new URL('api/v1/images', document.baseURI), { method: 'POST', body: form, signal: ctl.signal });
      return { t0, t1: performance.timeOrigin + performance.now(), status: r.status };
    } catch (e) {
      return { t0, t1: null, status: 0 };
    } finally {
      clearTimeout(timer);
    }
  }, { sid, name, stall: STALL_MS });
}

async function browserRound(context, transport, shared) {
  const sid = await ctl('new_session');
  const pages = [];
  for (let i = 0; i < TABS; i++) {
    const p = await openPage(context, BASE + '/' + (shared ? '' : '?shared=0') + '#s=' + sid);
    await p.evaluate(async () => {
      const { realtime } = await import(new URL('js/imagetools-shared.js', document.baseURI).href);
      window.__rt = realtime;
      window.__got = {};
      realtime.on('image.uploaded', (d) => {
        window.__got[d.filename] = performance.timeOrigin + performance.now();
      });
    });
    pages.push(p);
  }
  const liveCount = async () => (await Promise.all(pages.map((p) => p.getAttribute('#conn', 'data-status'))))
    .filter((s) => s === 'connected').length;
  await until(async () => (await liveCount()) === TABS, 15000);
  const live = await liveCount();
  const tr = await pages[0].getAttribute('#conn', 'data-transport');
  await sleep(500);
  const streams = await ctl('streams');
  const lat = [];
  const up = [];
  let missing = 0;
  let stalled = 0;
  const tenth = pages[TABS - 1];
  // With connections stuck behind six streams one upload shows it; more would only wait longer.
  const n = live === TABS ? UPLOADS : 1;
  for (let i = 0; i < n; i++) {
    const name = `b${transport}-${shared ? 's' : 'o'}-${i}.png`;
    const u = await uploadFromTab(tenth, sid, name);
    if (u.status !== 201) {
      stalled++;
      continue;
    }
    up.push(u.t1 - u.t0);
    const times = await until(async () => {
      const t = await Promise.all(pages.map((p) => p.evaluate((nm) => window.__got[nm] || null, name)));
      return t.every((x) => x) ? t : null;
    }, 10000, 5);
    if (!times) {
      missing++;
      continue;
    }
    lat.push(Math.max(...times) - u.t0);
    await sleep(100);
  }
  for (const p of pages) await p.close();
  await sleep(1500);
  return { transport, shared, tr, live, streams, lat: lat.sort((a, b) => a - b), up: up.sort((a, b) => a - b), missing, stalled, n };
}

// ------------------------------------------------------------------ simulated browsers

class Stream {
  constructor(port, session, from, onEvent) {
    this.buf = '';
    this.ok = false;
    this.events = 0;
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setEncoding('utf8');
    this.sock.on('connect', () => {
      this.sock.write(`GET /api/v1/events/stream?session_id=${session}&last_event_id=${from} HTTP/1.0\r\n` +
        'Host: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
    });
    this.sock.on('data', (d) => {
      this.buf += d;
      if (!this.ok) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        this.ok = /^HTTP\/1\.[01] 200/.test(this.buf);
        this.buf = this.buf.slice(end + 4);
      }
      // HTTP/1.0: the body is the raw stream, no chunking; a data: line carries one JSON object.
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).replace(/\r$/, '');
        this.buf = this.buf.slice(i + 1);
        if (line.startsWith('data:')) {
          try {
            const m = JSON.parse(line.slice(5));
            if (m.id !== undefined) {
              this.events++;
              onEvent(m);
            }
          } catch (e) {
            // not an event
          }
        }
      }
    });
    this.sock.on('error', () => {});
  }
  close() {
    this.sock.destroy();
  }
}

// from: the events each session holds already (one per earlier round); a stream starts after them.
async function simRound(target, port, sessions, perBrowser, from) {
  // A fresh server process for every round: memory freed by an earlier round stays in the
  // process and would hide what this one costs.
  await ctl(target === 'bridge' ? 'restart_bridge' : 'restart_lighttpd');
  await sleep(1000);
  const idle = await ctl('rss');
  const conns = await ctl('conns', { port });
  const streams = [];
  const lat = [];
  const t0 = Date.now();
  for (let b = 0; b < sessions.length; b++) {
    for (let t = 0; t < perBrowser; t++) {
      // In shared mode a browser's one stream hands each event to its tabs (BroadcastChannel in
      // a real browser, measured above); here it counts each event once per tab.
      streams.push(new Stream(port, sessions[b], from, (m) => {
        const now = Date.now();
        if (m.data && m.data.t) lat.push(now - m.data.t);
      }));
    }
    if (b % 50 === 49) await sleep(20);
  }
  const want = sessions.length * perBrowser; // per publish
  await until(() => streams.every((s) => s.ok), 60000, 50);
  const openMs = Date.now() - t0;
  const okCount = streams.filter((s) => s.ok).length;
  await sleep(1500);
  const rss = await ctl('rss');
  const est = await ctl('conns', { port });
  for (let i = 0; i < PUBLISHES; i++) {
    const before = lat.length;
    await ctl('publish_each', { sessions });
    await until(() => lat.length >= before + want, 60000, 50);
    await sleep(1000);
  }
  const sorted = lat.sort((a, b) => a - b);
  for (const s of streams) s.close();
  await until(async () => (await ctl('conns', { port })) <= conns, 30000, 200);
  await sleep(1000);
  const grow = (k) => (rss[k] !== undefined && idle[k] !== undefined ? rss[k] - idle[k] : NaN);
  return { target, perBrowser, want, okCount, openMs, est: est - conns, rss, grow: { fcgi: grow('fcgi'), lighttpd: grow('lighttpd'), bridge: grow('bridge') },
    delivered: sorted.length, p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1] };
}

run(async (context) => {
  // ---------------------------------------------------------------- Chromium, ten tabs
  // Rounds of the two modes alternate, ROUNDS of each, so that whatever else the machine does
  // falls on both alike. One connection per tab over SSE stalls (that is the point) and is run once.
  const rounds = [];
  for (const transport of ['sse', 'websocket']) {
    if (transport === 'websocket') {
      await ctl('bridge_start');
      await ctl('wait_websocket');
    }
    for (let i = 0; i < ROUNDS; i++) {
      for (const shared of [true, false]) {
        if (transport === 'sse' && !shared && i > 0) continue;
        rounds.push(await browserRound(context, transport, shared));
      }
    }
  }
  // One row per transport and mode, over all its rounds.
  const rows = [];
  for (const r of rounds) {
    let row = rows.find((x) => x.transport === r.transport && x.shared === r.shared);
    if (!row) {
      row = { ...r, lat: [], up: [], live: TABS, missing: 0, stalled: 0, n: 0, rounds: 0 };
      rows.push(row);
    }
    row.lat.push(...r.lat);
    row.up.push(...r.up);
    row.live = Math.min(row.live, r.live);
    row.missing += r.missing;
    row.stalled += r.stalled;
    row.n += r.n;
    row.rounds++;
  }
  for (const row of rows) {
    row.lat.sort((a, b) => a - b);
    row.up.sort((a, b) => a - b);
  }
  diag('');
  diag(`Ten tabs of one session in Chromium, ${UPLOADS} uploads from the tenth tab (each a 64x48 PNG) per round:`);
  diag('| transport | mode | rounds | tabs live | streams at the server | upload ms p50 | upload → event in the last tab, ms: p50 | p90 | max | p50 / shared |');
  diag('|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const base = rows.find((x) => x.transport === r.transport && x.shared);
    const p50 = pct(r.lat, 50);
    const srv = r.transport === 'sse' ? `${r.streams.sse} SSE` : `${r.streams.ws} WebSocket`;
    const lastCol = r.lat.length ? `${f1(p50)} | ${f1(pct(r.lat, 90))} | ${f1(r.lat.at(-1))} | ${f2(p50 / pct(base.lat, 50))}`
      : `stalled: ${r.stalled} of ${r.n} uploads not answered within ${STALL_MS / 1000} s | – | – | –`;
    diag(`| ${r.transport} (${r.tr || 'none'}) | ${r.shared ? 'shared' : 'one per tab'} | ${r.rounds} | ${r.live}/${TABS} | ${srv} | `
      + `${f1(pct(r.up, 50))} | ${lastCol} |`);
  }
  const sh = rows.filter((r) => r.shared);
  ok(sh.every((r) => r.live === TABS && r.lat.length === r.n && !r.missing), 'shared mode: every upload reached all ten tabs');

  // ---------------------------------------------------------------- simulated browsers
  const sessions = await ctl('new_sessions', { count: BROWSERS });
  const sims = [];
  for (const [target, port] of [['imagetools.fcgi via lighttpd', HTTP_PORT], ['bridge', BRIDGE_PORT]]) {
    for (const per of [1, PER_BROWSER]) sims.push(await simRound(target, port, sessions, per, sims.length * PUBLISHES));
  }
  diag('');
  diag(`${BROWSERS} simulated browsers with ${PER_BROWSER} tabs each (one session each), ${PUBLISHES} times one event per session:`);
  diag('| server | mode | streams opened | established | open all, s | RSS growth MB (fcgi / lighttpd / bridge) | delivered | p50 ms | p99 ms | max ms |');
  diag('|---|---|---|---|---|---|---|---|---|---|');
  const mb = (x) => (Number.isFinite(x) ? (x / 1024).toFixed(1) : '–');
  for (const s of sims) {
    const mode = s.perBrowser === 1 ? 'shared (1 per browser)' : `one per tab (${s.perBrowser} per browser)`;
    const g = s.target === 'bridge' ? `– / – / ${mb(s.grow.bridge)}` : `${mb(s.grow.fcgi)} / ${mb(s.grow.lighttpd)} / –`;
    diag(`| ${s.target} | ${mode} | ${s.okCount}/${s.want} | ${s.est} | ${(s.openMs / 1000).toFixed(2)} | ${g} | ${s.delivered}/${s.want * PUBLISHES} | `
      + `${f1(s.p50)} | ${f1(s.p99)} | ${f1(s.max)} |`);
  }
  ok(sims.every((s) => s.okCount === s.want && s.delivered === s.want * PUBLISHES), 'every simulated stream opened and got its events');
});

// bench-transports.mjs: what each transport costs a browser: connect time, and the latency from an
// event's commit to a handler in Chromium, WebSocket vs SSE vs long-poll side by side on one
// session (run by bench/browser_transports.py; numbers in docs/performance.md).

import { BASE, FEATURES, ctl, diag, ok, openPage, run } from './lib.mjs';

const N = Number(process.env.IT_BENCH_EVENTS || 100);
const INTERVAL = Number(process.env.IT_BENCH_INTERVAL_MS || 50);

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

run(async (context) => {
  const page = await openPage(context, BASE + '/');
  const sid = await ctl('new_session');
  const kinds = (FEATURES.bridge ? ['websocket'] : []).concat(['sse', 'longpoll']);
  await page.evaluate(async ({ sid, kinds }) => {
    const { RealtimeClient } = await import(new URL('js/imagetools-realtime.js', document.baseURI).href);
    window.__bench = {};
    for (const k of kinds) {
      const b = { lat: [], ids: [], t0: performance.now(), connectMs: null };
      const c = new RealtimeClient({ transports: [k] });
      c.on('connection.status', (d) => {
        if (d.status === 'connected' && b.connectMs === null) b.connectMs = performance.now() - b.t0;
      });
      c.on('image.deleted', (d, m) => {
        b.lat.push(performance.timeOrigin + performance.now() - d.t);
        b.ids.push(m.id);
      });
      window.__bench[k] = b;
      c.connect(sid);
    }
  }, { sid, kinds });
  await page.waitForFunction((ks) => ks.every((k) => window.__bench[k].connectMs !== null), kinds, { timeout: 20000 });
  const ids = await ctl('append_timed', { session: sid, count: N, interval_ms: INTERVAL });
  const last = ids[ids.length - 1];
  await page.waitForFunction(({ ks, last }) => ks.every((k) => window.__bench[k].ids.at(-1) === last), { ks: kinds, last },
    { timeout: 60000 }).catch(() => {});
  const res = await page.evaluate(() => window.__bench);
  const base = kinds[0];
  const p50base = pct([...res[base].lat].sort((a, b) => a - b), 50);
  diag(`| transport | delivered | connect ms | p50 ms | p95 ms | max ms | p50 / ${base} |`);
  diag('|---|---|---|---|---|---|---|');
  for (const k of kinds) {
    const r = res[k];
    const s = [...r.lat].sort((a, b) => a - b);
    const exact = r.ids.length === N && r.ids.every((id, i) => id === ids[i]);
    ok(exact, `${k}: every event once, in order`);
    diag(`| ${k} | ${r.ids.length}/${N} | ${r.connectMs.toFixed(0)} | ${pct(s, 50).toFixed(1)} | ${pct(s, 95).toFixed(1)} | `
      + `${s[s.length - 1].toFixed(1)} | ${(pct(s, 50) / p50base).toFixed(2)} |`);
  }

  // Failover with the default timings: the bridge goes away under a connected client; how long
  // until an event committed at that moment reaches the handler (over SSE)?
  if (FEATURES.bridge) {
    await page.evaluate(async (sid) => {
      const { RealtimeClient } = await import(new URL('js/imagetools-realtime.js', document.baseURI).href);
      const c = new RealtimeClient();
      window.__fo = { c, got: new Map() };
      c.on('image.deleted', (d, m) => window.__fo.got.set(m.id, performance.timeOrigin + performance.now()));
      c.connect(sid);
    }, sid);
    await page.waitForFunction(() => window.__fo.c.transport === 'websocket', null, { timeout: 20000 });
    await page.waitForFunction((last) => window.__fo.c.lastEventId === last, last, { timeout: 20000 });
    const t0 = Date.now();
    await ctl('bridge_stop');
    const [id] = await ctl('append', { session: sid, count: 1 });
    await page.waitForFunction((id) => window.__fo.got.has(id), id, { timeout: 30000 });
    const ms = (await page.evaluate((id) => window.__fo.got.get(id), id)) - t0;
    const tr = await page.evaluate(() => window.__fo.c.transport);
    ok(tr === 'sse', 'failover: the client is on SSE');
    diag(`failover WebSocket -> SSE (bridge stopped, default timings): event delivered ${ms.toFixed(0)} ms after the stop`);
  }
});

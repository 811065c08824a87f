// h2streams.mjs: the page over https with HTTP/2 (test_deploy_h2.py), with IT_STREAMS (10) EventSource
// streams to its session open at once, more than the six HTTP/1.1 connections Chromium opens per host:
// over HTTP/2 they are streams of one connection, so an upload from the same page still goes
// through, and every stream gets its image.uploaded event and a published event, each once.
//
// Environment: IT_STREAMS, the number of EventSource streams; IT_IGNORE_HTTPS_ERRORS (lib.mjs).

import { BASE, FEATURES, ctl, diag, is, makePng, ok, openPage, run, until } from './lib.mjs';

const STREAMS = Number(process.env.IT_STREAMS || 10);
const SID_RE = /^[A-Za-z0-9_-]{22,64}$/;

run(async (context) => {
  const wsUrls = [];
  context.on('page', (p) => p.on('websocket', (ws) => wsUrls.push(ws.url())));
  const page = await openPage(context, BASE + '/');
  const proto = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
  is(proto, 'h2', 'the page is loaded over HTTP/2');
  const sid = await until(async () => {
    const id = await page.textContent('#session-id');
    return SID_RE.test(id) ? id : null;
  });
  ok(sid, 'the page has its session');
  if (FEATURES.bridge) {
    // The page's own connection: a WebSocket to the bridge through the same TLS front (wss:).
    const via = await until(async () => ((await page.getAttribute('#conn', 'data-transport')) === 'websocket' ? 'websocket' : null));
    is(via, 'websocket', "the page's own connection is a WebSocket through the TLS front");
    is(wsUrls.length > 0 && wsUrls.every((u) => u.startsWith('wss://')), true, 'opened as wss:');
  }

  // The streams, each keeping every event it receives (by type, with its id).
  await page.evaluate(({ n, sid }) => {
    window.__streams = [];
    for (let i = 0; i < n; i++) {
      const s = { status: 0, events: [], es: null };
      s.es = new EventSource('/api/v1/events/stream?session_id=' + encodeURIComponent(sid));
      s.es.addEventListener('connection.status', () => s.status++);
      for (const t of ['image.uploaded', 'image.deleted']) {
        s.es.addEventListener(t, (e) => s.events.push({ id: Number(e.lastEventId), type: t, data: JSON.parse(e.data) }));
      }
      window.__streams.push(s);
    }
  }, { n: STREAMS, sid });
  const open = await until(() => page.evaluate(() => window.__streams.every((s) => s.status > 0 && s.es.readyState === 1)),
    20000);
  ok(open, `${STREAMS} EventSource streams to one session are open at once`);

  // An upload from the same page while all of them stay open.
  const png = makePng(200, 150, 3).toString('base64');
  const up = await page.evaluate(async ({ png, sid }) => {
    const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
    const fd = new FormData();
    fd.append('session_id', sid);
    fd.append('source', 'web');
    fd.append('file', new Blob([bytes], { type: 'image/png' }), 'h2.png');
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 30000);
    try {
      const r = await fetch('/api/v1/images', { method: 'POST', body: fd, signal: ctrl.signal });
      const body = await r.json();
      return { status: r.status, id: body.images && body.images[0] && body.images[0].id };
    } catch (e) {
      return { status: 0, error: String(e) };
    } finally {
      clearTimeout(timer);
    }
  }, { png, sid });
  is(up.status, 201, 'an upload from the page completes while the streams stay open' + (up.error ? ' (' + up.error + ')' : ''));
  const upProto = await page.evaluate(() => {
    const e = performance.getEntriesByType('resource').filter((x) => x.name.endsWith('/api/v1/images')).pop();
    return e ? e.nextHopProtocol : null;
  });
  is(upProto, 'h2', 'the upload went over HTTP/2');

  const [eid] = await ctl('append', { session: sid, type: 'image.deleted', data: { image_id: 'h2-browser' } });
  const want = (s) => s.events.filter((e) => e.type === 'image.uploaded' && (e.data.data || {}).image_id === up.id).length === 1
    && s.events.filter((e) => e.id === eid).length === 1;
  const all = await until(() => page.evaluate(() => window.__streams.map((s) => s.events)).then((evs) =>
    evs.every((list) => want({ events: list }))), 20000);
  ok(all, `each of the ${STREAMS} streams got the upload's event and the published one, once each`);
  if (!all) diag(JSON.stringify(await page.evaluate(() => window.__streams.map((s) => s.events.map((e) => e.id)))));
  const ordered = await page.evaluate(() => window.__streams.every((s) => s.events.every((e, i, a) => i === 0 || a[i - 1].id < e.id)));
  ok(ordered, 'in order on every stream');
  await page.evaluate(() => window.__streams.forEach((s) => s.es.close()));
  is(page.report.errors, [], 'no errors on the page');
});

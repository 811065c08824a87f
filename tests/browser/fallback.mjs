// fallback.mjs: the client falls back WebSocket -> SSE -> long-poll when the better transport is
// missing, broken or refused, moves back up when it returns, and across every switch its '*'
// handler sees each event exactly once and in order.
//
// The client under test is a RealtimeClient made inside the real page (so the page's CSP holds)
// with short timers; events are written by the wrapper through it_append_event, some of them
// while a switch is under way.

import { BASE, FEATURES, ctl, diag, is, ok, openPage, run, skip, sleep, until } from './lib.mjs';

const STREAM = '**/api/v1/events/stream**';

async function makeClient(page, sid, name, options = {}) {
  await page.evaluate(async ({ sid, name, options }) => {
    const { RealtimeClient } = await import(new URL('js/imagetools-realtime.js', document.baseURI).href);
    const c = new RealtimeClient({
      upgradeInterval: 1500, backoffBase: 200, backoffCap: 2000, healthInterval: 1000,
      connectTimeout: 4000, pingInterval: 1000, pongTimeout: 2000, longpollTimeout: 5, ...options,
    });
    const rec = { ids: [], types: [], transports: [], statuses: [] };
    c.on('*', (m) => {
      if (m.type === 'connection.status') {
        rec.statuses.push(m.data.status + '/' + m.data.transport);
        if (m.data.transport && rec.transports[rec.transports.length - 1] !== m.data.transport) {
          rec.transports.push(m.data.transport);
        }
        return;
      }
      rec.types.push(m.type);
      if (m.id !== undefined) rec.ids.push(m.id);
    });
    window.__clients = window.__clients || {};
    window.__clients[name] = { c, rec };
    c.connect(sid);
  }, { sid, name, options });
}

const rec = (page, name) => page.evaluate((n) => window.__clients[n].rec, name);
const transport = (page, name) => page.evaluate((n) => window.__clients[n].c.transport, name);

async function waitTransport(page, name, want, timeout = 20000) {
  return until(async () => ((await transport(page, name)) === want ? want : null), timeout);
}

async function waitIds(page, name, last, timeout = 20000) {
  return until(async () => {
    const r = await rec(page, name);
    return r.ids.length && r.ids[r.ids.length - 1] >= last ? r : null;
  }, timeout);
}

function range(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}

run(async (context) => {
  if (!FEATURES.longpoll || !FEATURES.sse) {
    skip('transport fallback', 'the server has no long-poll or SSE yet');
    return;
  }
  const page = await openPage(context, BASE + '/');
  const sid = await ctl('new_session');
  const events = (count) => ctl('append', { session: sid, count });

  // ---------------------------------------------------------------- the best transport first
  await makeClient(page, sid, 'main');
  const first = FEATURES.bridge ? 'websocket' : 'sse';
  is(await waitTransport(page, 'main', first), first,
    `with everything up the client uses ${first}` + (FEATURES.bridge ? '' : ' (no bridge built yet)'));
  let last = (await events(5)).pop();
  ok(await waitIds(page, 'main', last), 'events arrive');

  // ---------------------------------------------------------------- WebSocket away: SSE
  if (FEATURES.bridge) {
    await ctl('bridge_stop');
    // Events written while the client notices and switches must not be lost.
    last = (await events(3)).pop();
    is(await waitTransport(page, 'main', 'sse'), 'sse', 'with the bridge stopped the client ends on SSE');
    last = (await events(3)).pop();
    ok(await waitIds(page, 'main', last), 'events keep arriving over SSE');
  } else {
    skip('bridge stopped: the client ends on SSE', 'no bridge binary yet');
  }

  // ---------------------------------------------------------------- SSE refused too: long-poll
  await page.route(STREAM, (r) => r.abort('connectionrefused'));
  // Drop the open stream the way a web server restart does.
  await ctl('restart_lighttpd');
  last = (await events(3)).pop();
  is(await waitTransport(page, 'main', 'longpoll'), 'longpoll', 'with the stream route refused too, the client ends on long-poll');
  last = (await events(3)).pop();
  ok(await waitIds(page, 'main', last), 'events keep arriving over long-poll');

  // ---------------------------------------------------------------- and back up
  await page.unroute(STREAM);
  is(await waitTransport(page, 'main', 'sse'), 'sse', 'when the stream route works again the client moves up to SSE');
  last = (await events(3)).pop();
  ok(await waitIds(page, 'main', last), 'events arrive over SSE again');
  if (FEATURES.bridge) {
    await ctl('bridge_start');
    is(await waitTransport(page, 'main', 'websocket'), 'websocket', 'when the bridge returns the client moves back to WebSocket');
    last = (await events(3)).pop();
    ok(await waitIds(page, 'main', last), 'events arrive over WebSocket again');
  }

  // ---------------------------------------------------------------- events written during switches
  // A burst written while the client is forced off its transport and back.
  const burst = ctl('append', { session: sid, count: 40 });
  await page.route(STREAM, (r) => r.abort('connectionrefused'));
  await ctl('restart_lighttpd');
  await page.unroute(STREAM);
  last = (await burst).pop();
  last = (await events(2)).pop();
  ok(await waitIds(page, 'main', last, 30000), 'a burst written during a restart and switch arrives');

  const r = await rec(page, 'main');
  is(r.ids, range(1, last), `the '*' handler saw ids 1..${last} exactly once each, in order`);
  diag('transports in order: ' + r.transports.join(' -> '));
  const want = FEATURES.bridge
    ? ['websocket', 'sse', 'longpoll', 'sse', 'websocket'] : ['sse', 'longpoll', 'sse'];
  is(r.transports.slice(0, want.length), want, 'the transports went ' + want.join(' -> '));
  is(await page.evaluate(() => window.__clients.main.c.lastEventId), last, 'lastEventId is the last id handled');

  // ---------------------------------------------------------------- session.resync on every transport
  // A position the log cannot serve (newer than the session's last event, as after a database
  // restore) gets session.resync; the client takes its last_event_id and goes on from there.
  const kinds = (FEATURES.bridge ? ['websocket'] : []).concat(['sse', 'longpoll']);
  for (const k of kinds) {
    const [now] = await events(1);
    const name = 'resync-' + k;
    await page.evaluate(async ({ sid, name, k }) => {
      const { RealtimeClient } = await import(new URL('js/imagetools-realtime.js', document.baseURI).href);
      const c = new RealtimeClient({ transports: [k], longpollTimeout: 5 });
      const rec = { seen: [] };
      c.on('*', (m) => {
        if (m.type === 'session.resync') rec.seen.push('resync:' + m.data.last_event_id);
        else if (m.id !== undefined) rec.seen.push(m.id);
      });
      window.__clients[name] = { c, rec };
      c.connect(sid, { lastEventId: 1000000 });
    }, { sid, name, k });
    const got = await until(async () => {
      const r = await rec(page, name);
      return r.seen.length ? r.seen : null;
    });
    is(got && got[0], 'resync:' + now, `${k}: a position beyond the log gets session.resync to the last id`);
    const more = await events(2);
    const r = await until(async () => {
      const x = await rec(page, name);
      return x.seen.length >= 3 ? x.seen : null;
    });
    is(r, ['resync:' + now, ...more], `${k}: after the resync the client receives the new events`);
    await page.evaluate((n) => window.__clients[n].c.disconnect(), name);
  }

  // ---------------------------------------------------------------- a WebSocket that closes before delivering
  // What a proxy that strips the Upgrade header does: the socket opens (or not) and closes
  // without a single frame. The client must not stay on it.
  await page.routeWebSocket(/\/api\/v1\/ws(\/|\?|$)/, (ws) => ws.close({ code: 1011, reason: 'no upgrade' }));
  await makeClient(page, sid, 'stripped');
  is(await waitTransport(page, 'stripped', 'sse'), 'sse', 'a WebSocket closed before any frame falls back to SSE');
  last = (await events(2)).pop();
  const r2 = await waitIds(page, 'stripped', last);
  ok(r2 && r2.ids[0] === 1 && r2.ids.length === last, 'a new client on the session receives its whole log, once');

  // ---------------------------------------------------------------- resume after disconnect/connect
  await page.evaluate(() => window.__clients.main.c.disconnect());
  const missed = await events(3);
  await page.evaluate((s) => window.__clients.main.c.connect(s), sid);
  const r3 = await waitIds(page, 'main', missed[missed.length - 1]);
  ok(r3, 'after disconnect and connect the client resumes');
  const rr = await rec(page, 'main');
  is(rr.ids, range(1, missed[missed.length - 1]), 'resuming from lastEventId repeats and skips nothing');

  // ---------------------------------------------------------------- online and visibility cut the wait short
  // With every route refused the client waits out a long backoff (20 s here); the browser's
  // "online" event, or the tab becoming visible, must make it try again at once.
  const EVENTS = '**/api/v1/events**';
  for (const trigger of ['online', 'visibilitychange']) {
    const name = 'wake-' + trigger;
    await page.route(EVENTS, (r) => r.abort('internetdisconnected'));
    await makeClient(page, sid, name, { transports: ['sse', 'longpoll'], backoffBase: 20000, backoffCap: 30000 });
    const offline = await until(() => page.evaluate((n) => window.__clients[n].c.status === 'offline', name), 10000);
    ok(offline, `${trigger}: with the event routes refused the client is offline, waiting to retry`);
    await page.unroute(EVENTS);
    const t0 = Date.now();
    await page.evaluate((ev) => {
      if (ev === 'online') window.dispatchEvent(new Event('online'));
      else document.dispatchEvent(new Event('visibilitychange'));
    }, trigger);
    const back = await waitTransport(page, name, 'sse', 8000);
    ok(back, `${trigger}: the client reconnects at once instead of after the backoff (${Date.now() - t0} ms)`);
    await page.evaluate((n) => window.__clients[n].c.disconnect(), name);
  }

  // ---------------------------------------------------------------- an unknown session
  await page.evaluate(async () => {
    const { RealtimeClient } = await import(new URL('js/imagetools-realtime.js', document.baseURI).href);
    const c = new RealtimeClient({ backoffBase: 100, backoffCap: 500, connectTimeout: 2000 });
    window.__invalid = null;
    c.on('session.invalid', (d) => { window.__invalid = d.session_id; });
    c.connect('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
  });
  is(await until(() => page.evaluate(() => window.__invalid), 20000), 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    'an unknown session ends in session.invalid instead of retrying forever');

  is(await page.evaluate(() => window.__csp), [], 'no Content-Security-Policy violations');
  void sleep;
});

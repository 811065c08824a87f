// restart.mjs: a page stays open while PostgreSQL and then lighttpd restart; events written
// before, between and after resume with nothing lost or repeated, health polling reports the
// outage, and the page's own indicator comes back to live.

import { BASE, FEATURES, ctl, diag, is, ok, openPage, run, skip, until } from './lib.mjs';

run(async (context) => {
  if (!FEATURES.longpoll && !FEATURES.sse && !FEATURES.bridge) {
    skip('events resume after restarts', 'no event transport on the server yet');
    return;
  }
  const page = await openPage(context, BASE + '/');
  const sid = await until(async () => {
    const id = await page.textContent('#session-id');
    return /^[A-Za-z0-9_-]{16,}$/.test(id) ? id : null;
  });
  ok(sid, 'the page has a session');
  ok(await until(async () => (await page.getAttribute('#conn', 'data-status')) === 'connected' || null, 20000),
    'the page is live');

  // A recorder on the page's own client (the module's shared instance), plus a client with
  // short health polling to watch the outage.
  await page.evaluate(async () => {
    const { realtime, RealtimeClient } = await import(new URL('js/imagetools-shared.js', document.baseURI).href);
    window.__rec = { ids: [], online: [], page: [] };
    // The presence.* events the page's own connection causes are the server's; the test
    // counts the events it writes.
    realtime.on('*', (m) => {
      if (m.id !== undefined && !String(m.type).startsWith('presence.')) window.__rec.ids.push(m.id);
    });
    realtime.on('connection.status', (d) => window.__rec.page.push(d.status + '/' + d.transport));
    const watcher = new RealtimeClient({ healthInterval: 500, backoffBase: 200, backoffCap: 1000 });
    watcher.on('connection.status', (d) => {
      const r = window.__rec.online;
      if (r[r.length - 1] !== d.online) r.push(d.online);
    });
    watcher.connect(document.getElementById('session-id').textContent);
    window.__watcher = watcher;
  });
  const ids = () => page.evaluate(() => window.__rec.ids);
  const waitLast = (last, t = 30000) => until(async () => {
    const v = await ids();
    return v[v.length - 1] >= last ? v : null;
  }, t);
  const written = [];
  const append = async (count) => {
    const got = await ctl('append', { session: sid, count });
    written.push(...got);
    return got;
  };

  let last = (await append(3)).pop();
  ok(await waitLast(last), 'events arrive before the restarts');

  // ---------------------------------------------------------------- PostgreSQL restart
  await ctl('pg_stop');
  const wentOffline = await until(() => page.evaluate(() => window.__rec.online.includes(false)), 10000);
  ok(wentOffline, 'health polling reports the database outage (online = false)');
  const pageSaw = await until(() => page.evaluate(() => window.__rec.page.some((s) => /^(degraded|offline)/.test(s))), 20000);
  ok(pageSaw, 'the page\'s own client reports the outage (degraded or offline) while the database is away');
  await ctl('pg_start');
  last = (await append(3)).pop();
  ok(await waitLast(last, 45000), 'events written after the database restart arrive');
  ok(await until(() => page.evaluate(() => window.__watcher.online), 10000),
    'health polling reports the server back (online = true)');

  // ---------------------------------------------------------------- lighttpd restart
  await ctl('restart_lighttpd');
  last = (await append(3)).pop();
  ok(await waitLast(last, 45000), 'events written across a web server restart arrive');
  is(await ids(), written, `the page saw the ${written.length} events written, up to id ${last}, exactly once each, in order`);

  const status = await until(async () => {
    const s = await page.getAttribute('#conn', 'data-status');
    return s === 'connected' ? s : null;
  }, 20000);
  is(status, 'connected', 'the indicator shows the page live again');
  diag('indicator: ' + (await page.textContent('#conn-text')));
  diag('page statuses: ' + (await page.evaluate(() => window.__rec.page.join(', '))));

  if (FEATURES.uploads) {
    const up = await ctl('curl_upload', { session: sid, filename: 'after-restarts.png', source: 'android_app' });
    is(up.status, 201, 'an upload after the restarts is accepted');
    ok(await until(async () => (await page.$$eval('#gallery .name', (e) => e.map((x) => x.textContent)))
      .includes('after-restarts.png') || null), 'and appears in the gallery');
  } else {
    skip('an upload after the restarts appears in the gallery', 'uploads not on the server yet');
  }
  is(await page.evaluate(() => window.__csp), [], 'no Content-Security-Policy violations');
});

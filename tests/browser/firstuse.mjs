// firstuse.mjs: the first minutes with the page, on a site with public_url set and no WebSocket
// bridge: the pairing QR code names public_url; no 404 on load (favicon, a WebSocket to a bridge
// that is not there); an unknown session is said and the person chooses; a device joining late
// does not see old operations; the indicator says Live / Offline / Reconnecting and recovers within
// seconds of the server's return; a failed upload is retried on its own; the phone layout; Delete
// asks first.
//
// Environment: IT_PUBLIC_URL, the public_url the stack was started with.

import path from 'node:path';
import { ARTIFACTS, BASE, LABEL, ctl, diag, is, makePng, ok, openPage, run, sleep, until } from './lib.mjs';

const PUBLIC_URL = process.env.IT_PUBLIC_URL;
const SID_RE = /^[A-Za-z0-9_-]{22,64}$/;

async function sessionOf(page) {
  return until(async () => {
    const id = await page.textContent('#session-id');
    return SID_RE.test(id) ? id : null;
  });
}

// Element state that does not throw when the element is missing (so that every check reports).
const isHidden = (page, sel) => page.$eval(sel, (e) => e.hidden).catch(() => null);
const clickIf = (page, sel) => page.click(sel, { timeout: 3000, force: true }).then(() => true, () => false);

const connState = (page) => page.getAttribute('#conn', 'data-state');
const connText = (page) => page.textContent('#conn-text');

async function waitState(page, want, timeout) {
  return until(async () => ((await connState(page)) === want ? want : null), timeout, 50);
}

// Records every response of a page with its status, and every WebSocket it opens.
function recordNetwork(page) {
  const rec = { responses: [], websockets: [], posts: [] };
  page.on('response', (r) => rec.responses.push({ url: r.url(), status: r.status() }));
  page.on('websocket', (ws) => rec.websockets.push(ws.url()));
  page.on('request', (r) => {
    if (r.method() === 'POST') rec.posts.push(new URL(r.url()).pathname);
  });
  return rec;
}

async function openRecorded(context, url) {
  const page = await context.newPage();
  const rec = recordNetwork(page);
  const report = { errors: [] };
  page.on('pageerror', (e) => report.errors.push(String(e)));
  await page.goto(url);
  page.report = report;
  return { page, rec };
}

run(async (context) => {
  // ---------------------------------------------------------------- pairing link and QR code
  const { page: a, rec: ra } = await openRecorded(context, BASE + '/');
  const sid = await sessionOf(a);
  ok(sid, 'the page creates a session');
  // The link carries a single-use pairing code, never the session id.
  await until(async () => (await a.getAttribute('#qr', 'data-state')) === 'ready' || null);
  const want = await a.getAttribute('#join-link', 'href');
  ok(want.startsWith(PUBLIC_URL.replace(/\/+$/, '') + '/#pair=itp.') && !want.includes(sid),
    'the pairing link is public_url + #pair=<code>: ' + want);
  const qrPath = path.join(ARTIFACTS, LABEL + 'firstuse-qr.png');
  await a.locator('#qr').screenshot({ path: qrPath });
  const decoded = await ctl('zbar', { path: qrPath });
  if (decoded && decoded.skip) {
    console.log('skip - the QR code names public_url # ' + decoded.skip);
  } else {
    is(decoded && decoded.text, want, 'the QR code decodes (zbarimg) to the public_url link');
  }
  ok((await isHidden(a, '#loopback-warning')) === true, 'no loopback warning: public_url is a network address');

  // ---------------------------------------------------------------- no 404 on load, no WebSocket without a bridge
  ok(await waitState(a, 'live', 20000), 'the page is live');
  is(await a.getAttribute('#conn', 'data-transport'), 'sse', 'it uses SSE (this site runs no bridge)');
  await sleep(500);
  is(ra.websockets, [], 'no WebSocket is opened on a site without a bridge (/health said so)');
  is(ra.responses.filter((r) => r.status === 404).map((r) => r.url), [], 'no request of the page load answers 404');
  const icon = await a.evaluate(async () => {
    const href = document.querySelector('link[rel~="icon"]')?.href;
    if (!href) return null;
    const r = await fetch(href);
    return { status: r.status, type: r.headers.get('Content-Type') };
  });
  ok(icon && icon.status === 200 && /^image\//.test(icon.type || ''),
    'the page names a favicon that the server has (' + JSON.stringify(icon) + ')');

  // ---------------------------------------------------------------- unknown session: said, and the person chooses
  {
    const unknown = 'Q'.repeat(32);
    const { page: u, rec } = await openRecorded(context, BASE + '/#s=' + unknown);
    const shown = await until(async () => (await isHidden(u, '#session-missing')) === false || null, 5000);
    ok(shown, 'opening an unknown session says it does not exist or has expired');
    ok(/does not exist or has expired/.test(await u.textContent('#session-missing', { timeout: 1000 }).catch(() => '')), '... in plain words');
    await sleep(500);
    is(rec.posts.filter((p) => p.endsWith('/api/v1/sessions')), [], 'no new session was created behind the person\'s back');
    ok(!u.url().includes(unknown), 'the id asked for left the address (it is a credential)');
    ok(!SID_RE.test(await u.textContent('#session-id')), 'no session id is shown as if it were open');
    ok(await u.$eval('#dropzone', (e) => e.offsetParent === null), 'the upload area is not offered (nothing would reach anyone)');
    await clickIf(u, '#enter-other');
    is(await u.evaluate(() => document.activeElement && document.activeElement.id), 'join-input',
      '"Enter another session" takes the person to the join field');
    await clickIf(u, '#start-new');
    const fresh = await sessionOf(u);
    ok(fresh && fresh !== unknown && !u.url().includes(fresh), '"Start a new session" opens a new one');
    ok((await isHidden(u, '#session-missing')) === true, 'and the notice goes away');
    await u.close();
  }

  // ---------------------------------------------------------------- a device joining late sees no old operation
  {
    const old = await ctl('new_session');
    const op = '00000000-0000-4000-8000-0000000000aa';
    await ctl('append', { session: old, type: 'operation.started', data: { operation_id: op, operation_type: 'bulk_compress', total: 3 } });
    await ctl('append', { session: old, type: 'operation.progress', data: { operation_id: op, operation_type: 'bulk_compress', progress: 0, current: 0, total: 3 } });
    await ctl('append', { session: old, type: 'operation.failed', data: { operation_id: op, operation_type: 'bulk_compress', reason: 'cancelled' } });
    const j = await openPage(context, BASE + '/#s=' + old);
    ok(await waitState(j, 'live', 20000), 'a device joining an older session is live');
    await sleep(1500);
    ok((await isHidden(j, '#operation')) === true, 'it shows no panel of an operation that ended before it joined');
    is(await j.$$eval('#toasts .toast', (els) => els.map((e) => e.textContent)), [], 'and no old notifications');
    // New events still arrive.
    await ctl('append', { session: old, type: 'operation.started', data: { operation_id: op.replace('aa', 'bb'), operation_type: 'bulk_compress', total: 2 } });
    ok(await until(async () => (await isHidden(j, '#operation')) === false || null),
      'an operation started after it joined does show');
    await j.close();
  }

  // ---------------------------------------------------------------- Live / Offline / Reconnecting
  is(await connText(a), 'Live', 'the indicator says "Live"');
  is(await a.textContent('#conn-detail', { timeout: 1000 }).catch(() => null), 'SSE', 'with the transport as detail');
  await context.setOffline(true);
  ok(await waitState(a, 'offline', 10000), 'with the browser offline the indicator says "Offline" (' + await connText(a) + ')');
  is(await connText(a), 'Offline', '... in that word');

  // An upload while offline fails, waits, and goes through by itself once the network is back.
  await a.setInputFiles('#file-input', { name: 'while-offline.png', mimeType: 'image/png', buffer: makePng(64, 48, 3) });
  ok(await until(async () => (await a.$$('#uploads .upload.retrying')).length === 1 || null, 10000),
    'an upload that fails for lack of network waits to be retried: ' + (await a.textContent('#uploads')));
  await context.setOffline(false);
  ok(await waitState(a, 'live', 10000), 'back online, the indicator says "Live" again');
  const stored = await until(async () => {
    const names = await a.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent));
    return names.includes('while-offline.png') ? names : null;
  }, 20000);
  ok(stored, 'the upload was retried on its own and its image is in the gallery');
  is(await ctl('image_count', { session: sid }), 1, 'stored exactly once');

  // The web server away long enough for the backoff to grow, then back: live within seconds.
  // What the page's client and network did, for the diagnosis should this fail.
  await a.evaluate(async () => {
    const { realtime } = await import(new URL('js/imagetools-shared.js', document.baseURI).href);
    window.__st = [];
    realtime.on('connection.status', (d) => window.__st.push([Date.now(), d.status, d.transport, d.online, d.retry_in]));
  });
  const netlog = [];
  a.on('requestfinished', (r) => netlog.push([Date.now(), 'done', new URL(r.url()).pathname]));
  a.on('requestfailed', (r) => netlog.push([Date.now(), 'failed', new URL(r.url()).pathname, r.failure()?.errorText]));
  a.on('request', (r) => netlog.push([Date.now(), 'start', new URL(r.url()).pathname]));
  await ctl('stop_lighttpd');
  ok(await until(async () => ['offline', 'reconnecting'].includes(await connState(a)) || null, 20000),
    'with the web server down the indicator leaves "Live" (' + await connText(a) + ')');
  await sleep(15000);
  diag('indicator while the server is away: ' + (await connText(a)));
  await ctl('start_lighttpd');
  const back = Date.now();
  const live = await waitState(a, 'live', 20000);
  const took = Date.now() - back;
  if (!ok(live && took <= 8000, `live again within 8 s of the server's return (took ${took} ms)`)) {
    diag('server back at ' + back);
    diag('statuses: ' + JSON.stringify(await a.evaluate(() => window.__st)));
    diag('network: ' + JSON.stringify(netlog.filter((e) => e[0] > back - 8000)));
  }

  // ---------------------------------------------------------------- Delete asks first
  {
    const card = '#gallery .card:has(.name:text-is("while-offline.png"))';
    await clickIf(a, card + ' .delete');
    ok(await a.$(card + ' .confirm-delete'), 'Delete asks for confirmation on the card');
    await sleep(300);
    is(await ctl('image_count', { session: sid }), 1, 'nothing is deleted before the answer');
    await clickIf(a, card + ' .confirm-no');
    ok(!(await a.$(card + ' .confirm-delete')) && (await a.$(card)), '"Keep" keeps the image');
    await clickIf(a, card + ' .delete');
    await clickIf(a, card + ' .confirm-yes');
    ok(await until(async () => !(await a.$(card)) || null), '"Delete" deletes it');
    is(await ctl('image_count', { session: sid }), 0, 'and it is gone from the server');
  }

  // ---------------------------------------------------------------- phone layout
  {
    const p = await context.newPage();
    await p.setViewportSize({ width: 390, height: 844 });
    await p.goto(BASE + '/#s=' + sid);
    ok(await waitState(p, 'live', 20000), 'the phone page is live');
    for (let i = 0; i < 4; i++) {
      await ctl('curl_upload', { session: sid, filename: 'from-the-app-' + i + '.png', seed: i, source: 'android_app' });
    }
    await until(async () => (await p.$$('#gallery .card')).length >= 4 || null);
    await sleep(400);
    const shot = path.join(ARTIFACTS, LABEL + 'firstuse-phone.png');
    await p.screenshot({ path: shot });
    const m = await p.evaluate(() => {
      const box = (sel) => {
        const e = document.querySelector(sel);
        if (!e) return null;
        const r = e.getBoundingClientRect();
        return { top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right, height: r.height };
      };
      const toasts = [...document.querySelectorAll('#toasts .toast')].map((t) => t.getBoundingClientRect());
      return {
        session: box('.panel.session'), device: box('.device'), upload: box('#dropzone'), gallery: box('#gallery'),
        overflow: document.documentElement.scrollWidth - innerWidth,
        toasts: toasts.length, toastHeight: toasts.reduce((s, r) => s + r.height, 0),
        viewport: innerHeight,
      };
    });
    diag('phone layout: ' + JSON.stringify(m));
    ok(m.overflow <= 0, 'nothing is wider than the phone (overflow ' + m.overflow + ' px)');
    ok(m.device && m.session && m.upload && m.device.top >= m.session.bottom && m.device.bottom <= m.upload.top,
      'the pairing panel comes right after the session, before the upload area');
    const panels = [m.session, m.device, m.upload, m.gallery];
    let overlap = false;
    for (let i = 0; i < panels.length; i++) {
      for (let k = i + 1; k < panels.length; k++) {
        if (panels[i].top < panels[k].bottom - 1 && panels[k].top < panels[i].bottom - 1) overlap = true;
      }
    }
    ok(!overlap, 'the session, pairing, upload and gallery areas do not overlap');
    ok(m.toasts >= 1 && m.toasts <= 2, 'at most two notifications are stacked (' + m.toasts + ')');
    ok(m.toastHeight <= m.viewport * 0.12, `they take at most an eighth of the screen (${Math.round(m.toastHeight)} of ${m.viewport} px)`);
    await p.close();
  }
  is(a.report.errors, [], 'no script errors');
});

// devices.mjs: pairing, scopes, presence and revocation with real browsers. A desktop owns a
// session; a phone (its own browser context: its own storage) pairs by the QR code as zbarimg
// reads it, uploads, and the desktop sees the phone's presence ("Phone connected · uploading")
// and its image; a tablet pairs with a view-only code and follows the gallery over its own
// stream. The desktop revokes both: the tablet's open stream is closed and its page says so, the
// phone's next upload is refused and nothing of it is stored; an upload-only token cannot list or
// download. Through all of it no request URL any page makes carries the session id or a token.

import crypto from 'node:crypto';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS, BASE, FEATURES, ctl, diag, is, makePng, ok, openPage, run, skip, until, encodePng } from './lib.mjs';

const SID_RE = /^[A-Za-z0-9_-]{22,64}$/;
const PHONE_UA = 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) ' +
  'Chrome/120.0 Mobile Safari/537.36';

// Every URL a context asks for: requests (fetch, XHR, images, navigation) and WebSockets.
function recordUrls(context, into) {
  context.on('request', (r) => into.push(r.url()));
  context.on('page', (p) => p.on('websocket', (ws) => into.push(ws.url())));
  for (const p of context.pages()) p.on('websocket', (ws) => into.push(ws.url()));
}

// A PNG that does not compress (noise), so that a throttled upload of it lasts a few seconds.
function noisePng(w, h) {
  const raw = crypto.randomBytes((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) raw[y * (w * 3 + 1)] = 0; // filter type None on every row
  return encodePng(w, h, raw);
}

async function credentialOf(page) {
  return page.evaluate(() => {
    try {
      return JSON.parse(localStorage.getItem('imagetools.credential') || 'null');
    } catch (e) {
      return null;
    }
  });
}

async function decodeQr(page, name) {
  const qrPath = path.join(ARTIFACTS, name);
  await page.locator('#qr').screenshot({ path: qrPath });
  const r = await ctl('zbar', { path: qrPath });
  if (r && r.skip) return { skip: r.skip };
  return { text: r && r.text };
}

async function presenceTexts(page) {
  return page.$$eval('#presence .presence-item', (els) => els.map((e) => e.textContent)).catch(() => []);
}

async function api(pathname, token, init = {}) {
  const r = await fetch(BASE + '/api/v1' + pathname, {
    ...init, headers: { ...(init.headers || {}), Authorization: 'Bearer ' + token },
  });
  let body = null;
  try {
    body = await r.json();
  } catch (e) {
    body = null;
  }
  return { status: r.status, body, challenge: r.headers.get('www-authenticate') || '' };
}

run(async (desktopCtx) => {
  // The server side of devices, landed or not: the test says what it could not check.
  const probe = await fetch(BASE + '/api/v1/pairings', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
  if (probe.status === 404) {
    skip('pairing, presence and revocation in the browser', 'the server has no /api/v1/pairings yet');
    return;
  }
  const urls = [];
  recordUrls(desktopCtx, urls);
  const browser = await chromium.launch({
    executablePath: process.env.IT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const phoneCtx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true,
      userAgent: PHONE_UA });
    const tabletCtx = await browser.newContext({ viewport: { width: 820, height: 1180 } });
    recordUrls(phoneCtx, urls);
    recordUrls(tabletCtx, urls);
    await scenario(desktopCtx, phoneCtx, tabletCtx, urls);
  } finally {
    await browser.close().catch(() => {});
  }
});

async function scenario(desktopCtx, phoneCtx, tabletCtx, urls) {
  // ---------------------------------------------------------------- the owner's page
  const desk = await openPage(desktopCtx, BASE + '/');
  const sid = await until(async () => {
    const t = await desk.textContent('#session-id');
    return SID_RE.test(t) ? t : null;
  });
  ok(sid, 'the desktop page creates a session');
  ok(!desk.url().includes(sid), 'the session id is not in the page address: ' + desk.url());
  const kept = await credentialOf(desk);
  ok(kept && kept.cred === sid && kept.kind === 'session', 'the page keeps the session id in localStorage');
  ok(await until(async () => (await desk.getAttribute('#qr', 'data-state')) === 'ready' || null, 15000),
    'the device panel shows a pairing QR code');
  const link1 = await desk.getAttribute('#join-link', 'href');
  ok(/#pair=itp\.[A-Za-z0-9_-]{22}$/.test(link1) && !link1.includes(sid), 'the pairing link carries a code, not the session: ' + link1);
  is(await desk.getAttribute('#qr', 'data-scope'), 'upload', 'the default pairing scope is upload');

  // ---------------------------------------------------------------- the phone pairs by the QR code
  const qr = await decodeQr(desk, 'devices-qr-upload.png');
  let pairUrl = link1;
  if (qr.skip) skip('the QR code decodes to the pairing link', qr.skip);
  else {
    is(qr.text, link1, 'the QR code decodes (zbarimg) to the pairing link');
    pairUrl = qr.text || link1;
  }
  const phone = await openPage(phoneCtx, pairUrl);
  const paired = await until(async () => (await phone.evaluate(() => document.body.dataset.kind + '/' +
    document.body.dataset.scope + '/' + document.body.dataset.session)) === 'token/upload/open' || null, 15000);
  ok(paired, 'the phone exchanged the code and is a device of the session with scope upload');
  ok(!phone.url().includes('#pair='), 'the pairing code left the phone\'s address: ' + phone.url());
  const phoneRec = await credentialOf(phone);
  const phoneToken = phoneRec && phoneRec.cred;
  ok(/^itk\.[A-Za-z0-9_-]{32}$/.test(phoneToken || ''), 'the phone keeps its own token in localStorage');
  ok(await phone.isVisible('#upload-panel') && !(await phone.isVisible('#gallery-panel')),
    'an upload-only device shows the upload area, not the gallery');
  ok(!(await phone.isVisible('#qr')), 'a device does not offer pairing further devices');

  // GET /session tells the device what it may do, and never which session it is.
  const self = await api('/session', phoneToken);
  ok(self.status === 200 && self.body && self.body.scope === 'upload' && !('session_id' in self.body) &&
    !JSON.stringify(self.body).includes(sid), 'GET /session with the token: scope upload, no session id: ' + JSON.stringify(self.body));

  // The code is single use: a second exchange is refused.
  const again = await fetch(BASE + '/api/v1/pair', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code: pairUrl.split('#pair=')[1] }) });
  is(again.status, 410, 'the same code a second time: 410');

  // The desktop lists the phone and shows a fresh code in place of the spent one.
  const row = await until(async () => (await desk.$$eval('#device-list .device-row', (els) => els.map((e) => ({
    id: e.dataset.deviceId, scope: e.dataset.scope, text: e.textContent }))))
    .find((d) => d.id === phoneRec.device_id) || null, 15000);
  ok(row && /Phone/.test(row.text) && row.scope === 'upload' && /last seen|not seen since/.test(row.text),
    'the desktop\'s device list shows the phone (label, scope, last seen): ' + (row && row.text));
  ok(await until(async () => {
    const h = await desk.getAttribute('#join-link', 'href');
    return h !== link1 && /#pair=itp\./.test(h) ? h : null;
  }, 15000), 'the used code is replaced by a new one');

  // ---------------------------------------------------------------- presence and an upload from the phone
  const presenceOn = (await api('/presence', sid)).status === 200;
  const live = await until(async () => {
    const s = await desk.getAttribute('#conn', 'data-status');
    return s === 'connected' || s === 'degraded' ? s : null;
  }, 20000);
  ok(live, 'the desktop is live (transport ' + (await desk.getAttribute('#conn', 'data-transport')) + ')');
  if (!presenceOn) skip('the desktop sees the phone connected', 'the server has no /api/v1/presence yet');
  else {
    ok(await until(async () => (await presenceTexts(desk)).some((t) => /^Phone connected/.test(t)) || null, 20000),
      'the desktop shows "Phone connected" next to the gallery: ' + JSON.stringify(await presenceTexts(desk)));
  }
  // A slow upload link, so that "uploading" lasts long enough to be seen.
  const cdp = await phoneCtx.newCDPSession(phone);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1,
    uploadThroughput: 96 * 1024 });
  const photo = noisePng(400, 300);
  diag('phone upload: ' + photo.length + ' bytes at 96 KB/s');
  await phone.setInputFiles('#file-input', { name: 'phone-photo.png', mimeType: 'image/png', buffer: photo });
  if (presenceOn) {
    const seen = await until(async () => (await presenceTexts(desk)).find((t) => /^Phone connected · uploading/.test(t)) || null, 20000);
    ok(seen, 'while it sends, the desktop shows "Phone connected · uploading": ' + seen);
  }
  const arrived = await until(async () => (await desk.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent)))
    .includes('phone-photo.png') || null, 60000);
  ok(arrived, 'the phone\'s upload appears in the desktop\'s gallery');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  is(await ctl('image_count', { session: sid }), 1, 'one image stored');
  if (presenceOn) {
    ok(await until(async () => (await presenceTexts(desk)).some((t) => t === 'Phone connected') || null, 30000),
      'after the upload the phone is shown connected, no longer uploading');
  }

  // ---------------------------------------------------------------- what an upload-only token may not do
  const img = (await api('/images', sid)).body;
  const imageId = img && img.images && img.images[0] && img.images[0].id;
  const list = await api('/images', phoneToken);
  is(list.status, 403, 'the upload-only token cannot list the images (403)');
  ok(/insufficient_scope/.test(list.challenge), 'the answer names the missing scope: ' + list.challenge);
  is((await api('/images/' + imageId, phoneToken)).status, 403, 'nor read an image\'s metadata (403)');
  is((await api('/images/' + imageId + '/file', phoneToken)).status, 403, 'nor download it (403)');
  is((await api('/images/' + imageId, phoneToken, { method: 'DELETE' })).status, 403, 'nor delete it (403)');
  is(await ctl('image_count', { session: sid }), 1, 'the image is still there');

  // ---------------------------------------------------------------- a view-only device with a stream
  await desk.selectOption('#pair-scope', 'view');
  const viewLink = await until(async () => ((await desk.getAttribute('#qr', 'data-scope')) === 'view' &&
    (await desk.getAttribute('#qr', 'data-state')) === 'ready' ? desk.getAttribute('#join-link', 'href') : null), 15000);
  ok(viewLink, 'choosing "view only" makes a new code');
  const qr2 = await decodeQr(desk, 'devices-qr-view.png');
  const tablet = await openPage(tabletCtx, (qr2.text || viewLink));
  const tabletWs = [];
  tablet.on('websocket', (ws) => {
    const w = { url: ws.url(), closed: false };
    ws.on('close', () => { w.closed = true; });
    tabletWs.push(w);
  });
  ok(await until(async () => (await tablet.evaluate(() => document.body.dataset.scope)) === 'view' || null, 15000),
    'the tablet paired with scope view');
  const tabletToken = (await credentialOf(tablet) || {}).cred;
  ok(await until(async () => (await tablet.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent)))
    .includes('phone-photo.png') || null, 15000), 'the view-only device sees the gallery');
  ok(!(await tablet.isVisible('#upload-panel')) && !(await tablet.isVisible('#gallery .card .delete')),
    'but no upload area and no delete buttons');
  const tabletLive = await until(async () => (await tablet.getAttribute('#conn', 'data-status')) === 'connected' || null, 20000);
  ok(tabletLive, 'the tablet follows the session live over ' + (await tablet.getAttribute('#conn', 'data-transport')));

  // ---------------------------------------------------------------- revoke
  const tabletDevice = (await credentialOf(tablet) || {}).device_id;
  for (const [dev, name] of [[tabletDevice, 'tablet'], [phoneRec.device_id, 'phone']]) {
    const btn = '#device-list .device-row[data-device-id="' + dev + '"] .revoke';
    ok(await until(async () => (await desk.$(btn)) || null, 15000), 'the ' + name + ' is in the device list');
    await desk.click(btn);
    ok(await until(async () => !(await desk.$(btn)) || null, 10000), 'Revoke removes the ' + name + ' from the list');
  }
  const tabletEnd = await until(async () => (await tablet.evaluate(() => document.body.dataset.session)) === 'revoked' || null, 10000);
  ok(tabletEnd, 'the tablet\'s open stream is ended and its page says it was disconnected');
  ok(await tablet.isVisible('#revoked') && !(await tablet.isVisible('#gallery-panel')), 'the tablet no longer shows the gallery');
  if (tabletWs.length) ok(await until(() => tabletWs.every((w) => w.closed) || null, 5000), 'its WebSocket is closed');
  is(await credentialOf(tablet), null, 'the revoked token is forgotten');
  is((await api('/images', tabletToken)).status, 401, 'the tablet\'s token is refused from now on (401)');

  await phone.setInputFiles('#file-input', { name: 'after-revoke.png', mimeType: 'image/png', buffer: makePng(60, 40, 5) });
  ok(await until(async () => (await phone.evaluate(() => document.body.dataset.session)) === 'revoked' || null, 15000),
    'the phone\'s next upload is refused and the phone says it was disconnected');
  is(await ctl('image_count', { session: sid }), 1, 'nothing of it is stored');
  ok(!(await desk.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent))).includes('after-revoke.png'),
    'and nothing reaches the desktop');
  if (presenceOn) {
    ok(await until(async () => !(await presenceTexts(desk)).some((t) => /^Phone/.test(t)) || null, 60000),
      'the phone leaves the desktop\'s presence list');
  }

  // ---------------------------------------------------------------- old links
  const old = await openPage(desktopCtx, BASE + '/#s=' + sid);
  ok(await until(async () => (await old.textContent('#session-id')) === sid || null, 10000), 'an old #s= link still opens the session');
  ok(!old.url().includes(sid), 'and the id leaves the address at once: ' + old.url());

  // ---------------------------------------------------------------- no credential in any URL
  const tokens = [sid, phoneToken, tabletToken].filter(Boolean);
  const leaks = urls.filter((u) => tokens.some((t) => u.includes(t)));
  is(leaks, [], 'no request URL of any page carries the session id or a token (' + urls.length + ' requests)');
  ok(urls.some((u) => /\/api\/v1\/(events|ws)/.test(u)), 'the record includes the event streams');
  is(desk.report.errors.filter((e) => !/Failed to load resource|WebSocket connection to|net::ERR_/.test(e)), [],
    'no script errors on the desktop');
  is(await desk.evaluate(() => window.__csp), [], 'no CSP violations on the desktop');
  await desk.screenshot({ path: path.join(ARTIFACTS, 'devices-desktop.png') });
  await phone.screenshot({ path: path.join(ARTIFACTS, 'devices-phone.png') });
  void FEATURES;
}

// gallery.mjs: two tabs on one session: uploads from the page and from curl appear live in both,
// with notifications; hostile file names render as text; bulk compress progress and cancel;
// the QR code decodes to the pairing link; screenshots at desktop and phone widths.

import path from 'node:path';
import { ARTIFACTS, BASE, FEATURES, LABEL, ctl, diag, is, makePng, ok, openPage, run, skip, until } from './lib.mjs';

// Chromium logs failed requests and WebSocket handshakes to the console; during fallback those
// are expected and are not script errors.
const NETWORK_NOISE = /Failed to load resource|WebSocket connection to|net::ERR_|EventSource/;
const XSS_NAME = '<img src=x onerror=alert(1)>.png';

async function galleryNames(page) {
  return page.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent));
}

async function toasts(page) {
  return page.$$eval('#toasts .toast', (els) => els.map((e) => e.textContent));
}

async function injected(page) {
  // An element built from a file name would be an <img src="x">; none may exist.
  return page.evaluate(() => document.querySelectorAll('img[src="x"], img[onerror]').length);
}

run(async (context) => {
  // ---------------------------------------------------------------- one session, two tabs
  const a = await openPage(context, BASE + '/');
  const sid = await until(async () => {
    const id = await a.textContent('#session-id');
    return /^[A-Za-z0-9_-]{16,}$/.test(id) ? id : null;
  });
  ok(sid, 'the page creates a session when none is given');
  ok(!a.url().includes(sid), 'the session id is kept out of the URL (a second tab finds it in storage)');
  const b = await openPage(context, BASE + '/#s=' + sid);
  is(await until(() => b.textContent('#session-id').then((t) => (t === sid ? t : null))), sid,
    'a second tab joins the session from the link');

  await until(async () => (await a.getAttribute('#qr', 'data-state')) === 'ready' || null);
  const joinHref = await a.getAttribute('#join-link', 'href');
  ok(joinHref.startsWith(BASE + '/#pair=itp.') && !joinHref.includes(sid),
    'the device panel shows a pairing link with a code, not the session id: ' + joinHref);
  // Without public_url the link is the address the page was opened at: 127.0.0.1 here, which
  // a phone cannot reach, and the page says so.
  ok(!(await a.$eval('#loopback-warning', (e) => e.hidden)) &&
    /only this computer can open/.test(await a.textContent('#loopback-warning')),
    'the device panel warns that a loopback link cannot be opened from a phone');

  // ---------------------------------------------------------------- QR code
  const qrPath = path.join(ARTIFACTS, LABEL + 'qr.png');
  await a.locator('#qr').screenshot({ path: qrPath });
  const decoded = await ctl('zbar', { path: qrPath });
  if (decoded && decoded.skip) skip('the QR code decodes to the pairing link', decoded.skip);
  else is(decoded && decoded.text, joinHref, 'the QR code decodes (zbarimg) to the pairing link');

  // ---------------------------------------------------------------- live connection
  const streaming = FEATURES.longpoll || FEATURES.sse || FEATURES.bridge;
  if (!streaming) {
    skip('both tabs connect', 'no event transport on the server yet');
  } else {
    for (const [p, tab] of [[a, 'first'], [b, 'second']]) {
      const st = await until(async () => {
        const s = await p.getAttribute('#conn', 'data-status');
        return s === 'connected' || s === 'degraded' ? s : null;
      }, 20000);
      const tr = await p.getAttribute('#conn', 'data-transport');
      ok(st && tr, `the ${tab} tab is live (indicator: ${st}, transport ${tr})`);
    }
    const want = FEATURES.bridge ? 'websocket' : FEATURES.sse ? 'sse' : 'longpoll';
    is(await a.getAttribute('#conn', 'data-transport'), want, 'the best transport the server offers is used');
  }

  // ---------------------------------------------------------------- hostile names through the event log
  if (streaming) {
    // Straight into the log, whatever the upload code makes of names: the page must escape
    // what any producer writes.
    await ctl('append', {
      session: sid, type: 'image.uploaded',
      data: { image_id: '00000000-0000-4000-8000-000000000001', filename: XSS_NAME, source: 'android_app',
        thumbnail_url: '/api/v1/images/00000000-0000-4000-8000-000000000001/thumbnail' },
    });
    const shown = await until(async () => ((await galleryNames(b)).includes(XSS_NAME) ? true : null));
    ok(shown, 'a hostile file name arrives in the gallery as the literal text');
    ok((await toasts(b)).some((t) => t === 'New image from Android app: ' + XSS_NAME),
      'the notification shows the hostile name as text, naming the source');
    is(await injected(b), 0, 'no element was built from the hostile name');
    // That image has no bytes; an image.deleted event takes it away again, in both tabs.
    await ctl('append', { session: sid, type: 'image.deleted', data: { image_id: '00000000-0000-4000-8000-000000000001' } });
    ok(await until(async () => !(await galleryNames(a)).includes(XSS_NAME) && !(await galleryNames(b)).includes(XSS_NAME)),
      'an image.deleted event removes the card from both tabs');
  } else {
    skip('hostile file names render as text', 'no event transport on the server yet');
  }

  // ---------------------------------------------------------------- uploads
  if (!FEATURES.uploads || !streaming) {
    skip('uploads appear live in the other tab', 'uploads or event transports not on the server yet');
  } else {
    await a.setInputFiles('#file-input', [
      { name: 'sunset.png', mimeType: 'image/png', buffer: makePng(320, 200, 1) },
      { name: 'forest.png', mimeType: 'image/png', buffer: makePng(200, 320, 2) },
    ]);
    const done = await until(async () => (await a.$$('#uploads .upload.done')).length === 2 || null, 20000);
    ok(done, 'both uploads from the file picker finish');
    is(await a.$$eval('#uploads .upload.done progress', (els) => els.map((e) => e.value)), [100, 100],
      'their progress bars are at 100 %');
    for (const name of ['sunset.png', 'forest.png']) {
      ok(await until(async () => (await galleryNames(b)).includes(name) || null),
        `${name} appears in the second tab without a reload`);
      ok(await until(async () => (await toasts(b)).some((t) => t.endsWith(': ' + name)) || null),
        `the second tab notifies about ${name}`);
      ok(!(await toasts(a)).some((t) => t.endsWith(': ' + name)), `the uploading tab does not notify about its own ${name}`);
    }
    const loaded = () => a.$$eval('#gallery .card img', (els) => els.filter((e) => e.complete && e.naturalWidth > 0).length);
    const imgs = await until(async () => ((await loaded()) >= 2 ? loaded() : null), 15000);
    ok(imgs >= 2, `thumbnails load in the gallery (${imgs || await loaded()} shown)`);
    const srcs = await a.$$eval('#gallery .card img', (els) => els.map((e) => e.getAttribute('src') || ''));
    ok(srcs.length >= 2 && srcs.every((s) => /\/thumbnail\?v=\d+&exp=\d+&sig=[\w-]{43}$/.test(s)),
      'the thumbnails are the signed URLs the server handed out');

    const up = await ctl('curl_upload', { session: sid, filename: 'photo.png', source: 'android_app', seed: 3 });
    is(up.status, 201, 'curl uploads as the Android app');
    for (const [p, tab] of [[a, 'first'], [b, 'second']]) {
      ok(await until(async () => (await galleryNames(p)).includes('photo.png') || null),
        `the curl upload appears in the ${tab} tab`);
      ok(await until(async () => (await toasts(p)).includes('New image from Android app: photo.png') || null),
        `the ${tab} tab shows "New image from Android app: photo.png"`);
    }

    const hostile = await ctl('curl_upload', { session: sid, filename: XSS_NAME, source: 'cli', seed: 4 });
    is(hostile.status, 201, 'an upload with a hostile file name is accepted');
    const stored = hostile.body && hostile.body.images && hostile.body.images[0];
    if (stored) {
      ok(await until(async () => (await galleryNames(b)).filter((n) => n === stored.filename).length >= 1 || null),
        'the uploaded hostile name is shown as the server stored it: ' + stored.filename);
      is(await injected(b), 0, 'still no element built from a file name');
    }

    // Drag and drop: a real drop event carrying a file, as the browser makes it.
    const dropped = makePng(90, 90, 5).toString('base64');
    await a.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' }));
      document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, dropped);
    ok(await until(async () => (await galleryNames(b)).includes('dropped.png') || null),
      'a file dropped on the drop zone is uploaded and appears in the other tab');

    // Not an image: the server's problem detail is shown on that file's row, nothing stored.
    await a.setInputFiles('#file-input', [{ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just text, not a PNG\n') }]);
    const failed = await until(async () => {
      const t = await a.$$eval('#uploads .upload.failed .status', (els) => els.map((e) => e.textContent));
      return t.length ? t[0] : null;
    }, 15000);
    ok(failed && failed.length > 10 && !/^failed \(HTTP/.test(failed), 'a refused upload shows the server\'s explanation: ' + failed);
    ok(!(await galleryNames(a)).includes('notes.png') && !(await galleryNames(b)).includes('notes.png'),
      'and no card appears for it');

    // Rename in place in one tab: the other tab follows from the image.updated event.
    const sunsetId = await a.$eval('#gallery .card:has(.name:text-is("sunset.png"))', (e) => e.dataset.id).catch(() => null);
    ok(sunsetId, 'the card of sunset.png is found');
    const card = a.locator(`#gallery .card[data-id="${sunsetId}"]`);
    await card.locator('.rename').click();
    const field = card.locator('.rename-input');
    ok(await field.isVisible(), 'Rename turns the name into a text field');
    await field.fill('dusk.png');
    await field.press('Enter');
    ok(await until(async () => (await galleryNames(b)).includes('dusk.png') || null),
      'a rename in one tab shows in the other');
    // The renaming tab follows from its PATCH answer and from the event, whichever comes first.
    ok(await until(async () => {
      const [na, nb] = [await galleryNames(a), await galleryNames(b)];
      return (na.includes('dusk.png') && !na.includes('sunset.png') && !nb.includes('sunset.png') &&
        (await card.locator('.rename-input').count()) === 0) || null;
    }), 'under the new name only, in both tabs, and the field is gone');
    await card.locator('.rename').click();
    await card.locator('.rename-input').press('Escape');
    is(await card.locator('.rename-input').count(), 0, 'Escape leaves the name as it was');

    // Download: the link fetches the stored bytes under the new name.
    const href = await card.locator('.download').getAttribute('href');
    const got = await a.evaluate(async (u) => {
      const r = await fetch(u);
      return { status: r.status, disposition: r.headers.get('Content-Disposition'), size: (await r.arrayBuffer()).byteLength };
    }, href);
    ok(/\/file\?v=\d+&exp=\d+&sig=/.test(href || ''), 'the Download link is a signed URL: ' + href);
    is(got.status, 200, 'the Download link answers 200');
    ok(/dusk\.png/.test(got.disposition || ''), 'named by the server after the rename: ' + got.disposition);
    is(got.size, makePng(320, 200, 1).length, 'with the bytes that were uploaded');

    // A link whose signature has run out (a page left open past signed_url_ttl) is refreshed with
    // the session credential when it is clicked, and the download still happens.
    const expired = await a.evaluate((id) => {
      const link = document.querySelector(`#gallery .card[data-id="${id}"] .download`);
      link.setAttribute('href', link.getAttribute('href').replace(/exp=\d+/, 'exp=1000'));
      return link.getAttribute('href');
    }, sunsetId);
    is(await a.evaluate(async (u) => (await fetch(u)).status, expired), 403, 'an expired signed URL is refused (403)');
    const [download] = await Promise.all([
      a.waitForEvent('download', { timeout: 15000 }).catch(() => null),
      card.locator('.download').click(),
    ]);
    const fresh = await card.locator('.download').getAttribute('href');
    ok(download && /dusk\.png$/.test(download.suggestedFilename()),
      'clicking an expired Download link still downloads: ' + (download && download.suggestedFilename()));
    ok(fresh !== expired && /exp=\d{10}/.test(fresh || ''), 'after the page fetched a fresh signed URL');

    // Deleting in one tab removes the card in the other.
    const before = (await galleryNames(b)).filter((n) => n === 'forest.png').length;
    await a.click('#gallery .card:has(.name:text-is("forest.png")) .delete', { force: true });
    // Delete asks first, on the card.
    await a.click('#gallery .card:has(.name:text-is("forest.png")) .confirm-yes');
    ok(before === 1 && await until(async () => !(await galleryNames(b)).includes('forest.png') || null),
      'a deletion in one tab removes the image from the other');
  }

  // ---------------------------------------------------------------- bulk compress
  if (!FEATURES.uploads || !FEATURES.operations || !FEATURES.worker || !streaming) {
    skip('bulk compress progress reaches 100 % and cancel works', 'uploads, operations or the worker not there yet');
  } else {
    await a.check('#select-all');
    await a.click('#compress');
    const finished = await until(async () => {
      const s = await a.getAttribute('#operation', 'data-status');
      return s === 'completed' || s === 'failed' ? s : null;
    }, 60000);
    is(finished, 'completed', 'bulk compress completes');
    is(await a.$eval('#op-progress', (e) => e.value), 100, 'its progress bar reaches 100 %');
    is(await b.getAttribute('#operation', 'data-status'), 'completed', 'the other tab followed the progress too');

    // Cancel, deterministically: with the worker stopped the job waits in the queue, is
    // cancelled there, and the worker started again must not run it.
    await ctl('worker_stop');
    await a.check('#select-all');
    await a.click('#compress');
    const queued = await until(async () => (await a.getAttribute('#operation', 'data-status')) === 'queued'
      || (await a.getAttribute('#operation', 'data-status')) === 'running' || null);
    ok(queued, 'a second operation is queued');
    await a.click('#op-cancel');
    // The click only sends the request: the worker comes back once the queued
    // operation is cancelled, or it could claim the job before the cancel lands.
    await until(async () => (await a.getAttribute('#operation', 'data-status')) === 'cancelled' || null, 30000);
    await ctl('worker_start');
    const end = await until(async () => {
      const s = await a.getAttribute('#operation', 'data-status');
      return s === 'cancelled' || s === 'completed' || s === 'failed' ? s : null;
    }, 30000);
    is(end, 'cancelled', 'cancel stops the operation');
    ok(await a.$eval('#op-progress', (e) => e.value) < 100, 'a cancelled operation does not show 100 %');
    await a.waitForTimeout(300);
    is(await a.textContent('#op-message'), 'Cancelled', 'the panel says it was cancelled');
    ok(await a.$eval('#op-cancel', (e) => e.hidden), 'and offers no Cancel button any more');
  }

  // ---------------------------------------------------------------- a tab opened later
  if (FEATURES.uploads) {
    const c = await openPage(context, BASE + '/#s=' + sid);
    const want = (await galleryNames(a)).sort();
    const got = await until(async () => {
      const n = (await galleryNames(c)).sort();
      return n.length === want.length ? n : null;
    });
    is(got, want, 'a tab opened later lists the same images (GET /images)');
    await c.close();
  }

  // ---------------------------------------------------------------- new session, join by link, expiry warning
  {
    const c = await openPage(context, BASE + '/#s=' + sid);
    await until(async () => (await c.textContent('#session-id')) === sid || null);
    await c.click('#new-session');
    const other = await until(async () => {
      const id = await c.textContent('#session-id');
      return id !== sid && /^[A-Za-z0-9_-]{16,}$/.test(id) ? id : null;
    });
    ok(other && !c.url().includes(other), '"New session" starts another session (kept out of the URL)');
    is(await galleryNames(c), [], 'its gallery is empty');
    await c.fill('#join-input', BASE + '/#s=' + sid);
    await c.click('#join-form button[type=submit]');
    is(await until(async () => ((await c.textContent('#session-id')) === sid ? sid : null)), sid,
      'pasting a session link into Join goes back to that session');
    if (streaming) {
      await ctl('append', { session: sid, type: 'session.expiring', data: { expires_at: '2030-01-01T00:00:00.000Z', seconds_left: 300 } });
      ok(await until(async () => (await toasts(c)).some((t) => /expires in about 5 min/.test(t)) || null),
        'a session.expiring event warns in a notification');
    }
    await c.fill('#join-input', 'not a session');
    await c.click('#join-form button[type=submit]');
    ok(!(await c.$eval('#session-error', (e) => e.hidden)), 'a malformed link is refused with a message');
    await c.close();
  }

  // ---------------------------------------------------------------- screenshots
  await a.setViewportSize({ width: 1280, height: 860 });
  await a.screenshot({ path: path.join(ARTIFACTS, LABEL + 'page-desktop.png'), fullPage: true });
  await a.setViewportSize({ width: 390, height: 844 });
  await a.waitForTimeout(200);
  await a.screenshot({ path: path.join(ARTIFACTS, LABEL + 'page-phone.png'), fullPage: true });
  const overflow = await a.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  ok(overflow <= 0, `nothing is wider than a phone screen (overflow ${overflow}px)`);
  diag('screenshots in ' + ARTIFACTS);

  // ---------------------------------------------------------------- the page kept to its policy
  for (const [p, tab] of [[a, 'first'], [b, 'second']]) {
    is(await p.evaluate(() => window.__csp), [], `no Content-Security-Policy violations in the ${tab} tab`);
    is(p.report.dialogs, [], `no dialog opened in the ${tab} tab (no injected script ran)`);
    is(p.report.errors.filter((e) => !NETWORK_NOISE.test(e)), [], `no script errors in the ${tab} tab`);
  }
  // And the policy is really in force (so the checks above mean something): an inline script
  // added to the page is refused.
  const refused = await b.evaluate(() => new Promise((resolve) => {
    window.__inlineRan = false;
    document.addEventListener('securitypolicyviolation', () => resolve(!window.__inlineRan), { once: true });
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true;';
    document.body.append(s);
    setTimeout(() => resolve(false), 3000);
  }));
  ok(refused, 'the Content-Security-Policy is in force: an inline script is refused');
});

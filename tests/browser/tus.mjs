// tus.mjs: resumable uploads in Chromium, for tests/integration/test_browser_tus.py.
//
// 1. The page uploads a ~30 MB photo with tus; the test cuts the tab's network midway (DevTools
//    offline emulation, with the upload slowed down first so that "midway" exists on loopback).
//    The page retries, resumes at the server's offset and completes: one tus upload, one
//    image.uploaded, the stored bytes identical. A second tab of the session shows the upload
//    arriving with its progress, then the image.
// 2. A reload in the middle of an upload: the same file chosen again goes on at the kept URL.
// 3. Uppy (@uppy/core + @uppy/tus from npm, bundled with esbuild) uploads from a test page.
// 4. tus-js-client (npm, bundled with esbuild) uploads from a test page.
// 5. A server without resumable uploads gets the large file as multipart.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { run, openPage, ok, is, diag, ctl, until, sleep, BASE, encodePng } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// A PNG stored without compression (deflate level 0), so that its size is w * h * 3 and the
// upload really is that large.
function rawPng(w, h, seed) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) {
      raw[row + 1 + x * 3] = (x + seed * 7) & 255;
      raw[row + 2 + x * 3] = (y * 3 + seed) & 255;
      raw[row + 3 + x * 3] = (x ^ y) & 255;
    }
  }
  return encodePng(w, h, raw, { level: 0 });
}

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

async function throttle(cdp, bytesPerSecond, offline = false) {
  await cdp.send('Network.emulateNetworkConditions', {
    offline, latency: 0, downloadThroughput: -1, uploadThroughput: bytesPerSecond,
  });
}

async function rowOf(page, name) {
  return page.locator(`#uploads li.upload:has(.name:text-is("${name}"))`);
}

run(async (context) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'it-tus-'));
  try {
    // ---------------------------------------------------------------- 1. cut midway, resume
    const sid = await ctl('new_session');
    const big = rawPng(3200, 3200, 1);
    const bigPath = path.join(dir, 'big-photo.png');
    fs.writeFileSync(bigPath, big);
    diag(`file of ${big.length} bytes`);

    const page = await openPage(context, BASE + '/#s=' + sid);
    const other = await openPage(context, BASE + '/#s=' + sid);
    for (const p of [page, other]) {
      await until(async () => (await p.getAttribute('#conn', 'data-status')) === 'connected', 30000);
    }
    const cdp = await context.newCDPSession(page);
    await throttle(cdp, 3 * 1024 * 1024);
    await page.setInputFiles('#file-input', bigPath);
    const row = await rowOf(page, 'big-photo.png');
    const before = await until(async () => {
      const off = Number(await row.getAttribute('data-offset'));
      return off >= 9 * 1024 * 1024 ? off : null;
    }, 60000, 50);
    ok(before, `the upload is under way with tus (${before} bytes held)`);
    is(await row.getAttribute('data-via'), 'tus', 'a file of 30 MB goes through tus');

    // The other tab sees it arriving, with progress.
    const seen = await until(async () => {
      const p = await other.getAttribute('#gallery .card.arriving', 'data-progress');
      return p !== null && Number(p) > 0 ? Number(p) : null;
    }, 30000);
    ok(seen, `the second tab shows the upload arriving (${seen} %)`);
    const info = (await other.textContent('#gallery .card.arriving .info').catch(() => '')) || '';
    ok(/^arriving from a web browser · \d+ % of 29\.3 MB$/.test(info),
      'with where it comes from, its progress and its size: ' + info);
    is(await page.locator('#gallery .card.arriving').count(), 0, 'the uploading tab has no arriving card for its own upload');

    await throttle(cdp, -1, true);
    const broken = await until(async () => /network error/.test(await row.locator('.status').textContent()), 30000);
    ok(broken, 'cut off: the row says network error and that it retries: ' + await row.locator('.status').textContent());
    const cutAt = Number(await row.getAttribute('data-offset'));
    ok(cutAt < big.length, `the cut came before the end (${cutAt} of ${big.length})`);
    await sleep(1500);
    await throttle(cdp, -1, false);
    const done = await until(async () => (await row.locator('.status').textContent()) === 'done'
      || (await row.count()) === 0, 120000, 100);
    ok(done, 'after the connection comes back the upload resumes and completes');
    const card = page.locator('#gallery .card:not(.arriving):has(.name:text-is("big-photo.png"))');
    ok(await until(async () => (await card.count()) === 1, 30000), 'the image is in the gallery');
    const otherCard = other.locator('#gallery .card:not(.arriving):has(.name:text-is("big-photo.png"))');
    ok(await until(async () => (await otherCard.count()) === 1, 30000), 'and in the second tab');
    ok(await until(async () => (await other.locator('#gallery .card.arriving').count()) === 0, 15000),
      'where the arriving card made way for it');
    const facts = await ctl('tus_facts', { session: sid });
    is(facts.uploads, 1, 'one tus upload: it resumed rather than starting over');
    is(facts.uploaded.length, 1, 'exactly one image.uploaded');
    is(facts.uploaded.map((e) => e.sha256), [sha256(big)], 'the stored bytes are the file\'s');
    ok(facts.progress >= 1, `upload.progress events were sent (${facts.progress})`);
    await cdp.detach();
    await other.close();

    // ---------------------------------------------------------------- 2. reload, choose again
    const sid2 = await ctl('new_session');
    const mid = rawPng(2400, 2400, 2);
    const midPath = path.join(dir, 'reloaded.png');
    fs.writeFileSync(midPath, mid);
    await page.goto(BASE + '/#s=' + sid2);
    await page.reload();
    await until(async () => (await page.getAttribute('#conn', 'data-status')) === 'connected', 30000);
    const cdp2 = await context.newCDPSession(page);
    await throttle(cdp2, 2 * 1024 * 1024);
    await page.setInputFiles('#file-input', midPath);
    const row2 = await rowOf(page, 'reloaded.png');
    const held = await until(async () => {
      const off = Number(await row2.getAttribute('data-offset'));
      return off >= 5 * 1024 * 1024 ? off : null;
    }, 60000, 50);
    ok(held, `under way (${held} bytes)`);
    await page.reload();
    await throttle(cdp2, -1);
    await until(async () => (await page.getAttribute('#conn', 'data-status')) === 'connected', 30000);
    await page.setInputFiles('#file-input', midPath);
    const row3 = await rowOf(page, 'reloaded.png');
    const resumedFrom = await until(async () => Number(await row3.getAttribute('data-offset')) || null, 30000, 20);
    ok(resumedFrom >= 4 * 1024 * 1024, `chosen again after the reload, it goes on from ${resumedFrom} bytes`);
    // The tab that resumes the upload shows it in its upload list, not as arriving from elsewhere.
    ok(await until(async () => (await page.locator('#gallery .card.arriving').count()) === 0, 15000),
      'no arriving card for the upload this tab goes on with');
    ok(await until(async () => (await row3.locator('.status').textContent()) === 'done' || (await row3.count()) === 0, 60000),
      'and completes');
    ok(await until(async () => (await page.locator('#gallery .card:not(.arriving):has(.name:text-is("reloaded.png"))').count()) === 1, 30000),
      'the image is in the gallery');
    const facts2 = await ctl('tus_facts', { session: sid2 });
    if (!is([facts2.uploads, facts2.uploaded.length], [1, 1], 'one upload, one image.uploaded')) diag(JSON.stringify(facts2));
    is(facts2.uploaded.map((e) => e.sha256), [sha256(mid)], 'byte-identical');
    await cdp2.detach();

    // ---------------------------------------------------------------- 3 and 4: Uppy and tus-js-client
    const small = rawPng(1200, 900, 3);
    const bundle = await esbuild.build({
      stdin: {
        contents: "import Uppy from '@uppy/core'; import Tus from '@uppy/tus'; import * as tus from 'tus-js-client';" +
          'window.Uppy = Uppy; window.UppyTus = Tus; window.tus = tus;',
        resolveDir: HERE,
      },
      bundle: true, write: false, format: 'iife', platform: 'browser', logLevel: 'error',
    });
    const js = bundle.outputFiles[0].text;
    // A test page on the server's own origin, given by the browser's request interception.
    await page.route(BASE + '/__test/**', (route) => {
      const u = new URL(route.request().url());
      if (u.pathname.endsWith('/client.js')) return route.fulfill({ body: js, contentType: 'text/javascript' });
      if (u.pathname.endsWith('/photo.png')) return route.fulfill({ body: small, contentType: 'image/png' });
      return route.fulfill({ body: '<!doctype html><title>t</title><script src="client.js"></script>', contentType: 'text/html' });
    });
    await page.goto(BASE + '/__test/index.html');

    const sid3 = await ctl('new_session');
    const uppy = await page.evaluate(async ({ sid, endpoint }) => {
      const bytes = await (await fetch('photo.png')).blob();
      const u = new window.Uppy({ autoProceed: false });
      u.use(window.UppyTus, { endpoint,
        headers: { Authorization: 'Bearer ' + sid }, chunkSize: 256 * 1024, retryDelays: [0, 500, 1000] });
      u.addFile({ name: 'uppy.png', type: 'image/png', data: bytes, meta: { source: 'web' } });
      const r = await u.upload();
      return { ok: r.successful.length, failed: r.failed.map((f) => String(f.error)) };
    }, { sid: sid3, endpoint: BASE + '/api/v1/uploads/tus' });
    is(uppy, { ok: 1, failed: [] }, 'Uppy with @uppy/tus uploads the file');
    const facts3 = await ctl('tus_facts', { session: sid3 });
    is(facts3.uploaded.map((e) => [e.filename, e.sha256]), [['uppy.png', sha256(small)]],
      'one image.uploaded, named by Uppy\'s metadata, byte-identical');

    const sid4 = await ctl('new_session');
    const tjc = await page.evaluate(async ({ sid, endpoint }) => {
      const bytes = await (await fetch('photo.png')).blob();
      return new Promise((resolve) => {
        const up = new window.tus.Upload(bytes, {
          endpoint,
          metadata: { session_id: sid, filename: 'tus-js.png', source: 'web' },
          chunkSize: 512 * 1024,
          retryDelays: [0, 500, 1000],
          onSuccess: () => resolve({ ok: true, url: up.url }),
          onError: (e) => resolve({ ok: false, error: String(e) }),
        });
        up.start();
      });
    }, { sid: sid4, endpoint: BASE + '/api/v1/uploads/tus' });
    ok(tjc.ok, 'tus-js-client uploads the file in chunks: ' + (tjc.error || tjc.url));
    const facts4 = await ctl('tus_facts', { session: sid4 });
    is(facts4.uploaded.map((e) => [e.filename, e.sha256]), [['tus-js.png', sha256(small)]],
      'one image.uploaded, byte-identical');

    // ---------------------------------------------------------------- 5. a server without tus
    // The creation answers as a server without the route does (404 not-found): the page sends
    // the large file as multipart instead, and it is stored once.
    const sid5 = await ctl('new_session');
    await page.unroute(BASE + '/__test/**');
    await page.route(BASE + '/api/v1/uploads/tus', (route) => route.fulfill({
      status: 404, contentType: 'application/problem+json',
      body: JSON.stringify({ type: 'urn:imagetools:problem:not-found', title: 'Not Found', status: 404 }),
    }));
    await page.goto(BASE + '/#s=' + sid5);
    await until(async () => (await page.getAttribute('#conn', 'data-status')) === 'connected', 30000);
    const plain = rawPng(1700, 1700, 5);
    const plainPath = path.join(dir, 'no-tus.png');
    fs.writeFileSync(plainPath, plain);
    await page.setInputFiles('#file-input', plainPath);
    ok(await until(async () => (await page.locator('#gallery .card:not(.arriving):has(.name:text-is("no-tus.png"))').count()) === 1, 60000),
      'without tus on the server a large file goes as multipart and arrives');
    const facts5 = await ctl('tus_facts', { session: sid5 });
    is([facts5.uploads, facts5.uploaded.map((e) => e.sha256)], [0, [sha256(plain)]], 'once, byte-identical, no tus upload');
    is(page.report.errors.filter((e) => !/Failed to load resource|WebSocket|net::ERR_|EventSource/.test(e)), [],
      'no script errors');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

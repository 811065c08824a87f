// compress.mjs: "Compress selected" on a mixed selection (JPEG, PNGs with and without alpha, a
// palette PNG, a 16-bit PNG, an animated GIF): the summary says how much was saved on how many
// images and how many were left unchanged, with the numbers of the operation's result; every
// image is listed; PNG and GIF downloads are still PNG and GIF; a cancelled operation lists the
// images done before the cancel; and a real cancel, clicked while 16 large photos are being
// compressed, leaves exactly the listed images rewritten and the others untouched; HEIC and AVIF
// uploaded through the page are shown in the gallery.

import { BASE, FEATURES, ctl, is, ok, openPage, run, skip, until } from './lib.mjs';

function sniff(bytes) {
  const b = bytes;
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'gif';
  if (b[0] === 0xff && b[1] === 0xd8) return 'jpeg';
  return '?';
}

function humanSize(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}

run(async (context) => {
  if (!FEATURES.uploads || !FEATURES.operations || !FEATURES.worker) {
    skip('compress from the page', 'uploads, operations or the worker not there');
    return;
  }
  const page = await openPage(context, BASE + '/');
  const sid = await until(async () => {
    const id = await page.textContent('#session-id');
    return /^[A-Za-z0-9_-]{16,}$/.test(id) ? id : null;
  });
  ok(sid, 'the page has a session');
  await until(async () => ['connected', 'degraded'].includes(await page.getAttribute('#conn', 'data-status')) || null, 20000);

  // ---------------------------------------------------------------- the settings
  is(await page.$$eval('#cmp-format option:not([hidden])', (os) => os.map((o) => o.value)).then((v) => v.slice(0, 3)),
    ['keep', 'jpeg', 'webp'], 'the format choice offers keep, JPEG and WebP');
  is(await page.$eval('#cmp-format', (s) => s.value), 'keep', 'keeping each format is the default');
  is(await page.$eval('#cmp-quality', (q) => q.value), '75', 'quality 75 by default');

  // ---------------------------------------------------------------- a mixed selection
  const files = await ctl('corpus');
  await page.setInputFiles('#file-input', files.map((f) => f.path));
  const uploaded = await until(async () => (await page.$$('#uploads .upload.done')).length === files.length || null, 60000);
  ok(uploaded, `the ${files.length} files upload`);
  await until(async () => (await page.$$('#gallery .card')).length === files.length || null);
  await page.check('#select-all');
  await page.click('#compress');
  const status = await until(async () => {
    const s = await page.getAttribute('#operation', 'data-status');
    return s === 'completed' || s === 'failed' ? s : null;
  }, 120000);
  is(status, 'completed', 'compress completes');

  // The summary has the numbers of the operation itself.
  const summary = await page.textContent('#op-summary');
  const op = await page.evaluate(async ({ sid }) => {
    // The page's own state is not exported; the newest operation is found through the events.
    const r = await fetch('api/v1/events?session_id=' + sid + '&cursor=0&timeout=1', { headers: { Authorization: 'Bearer ' + sid } });
    const evs = (await r.json()).events.filter((e) => e.type === 'operation.completed');
    return evs.length ? evs[evs.length - 1].data : null;
  }, { sid });
  ok(op && op.result, 'the operation.completed event is there');
  const res = op.result;
  const saved = res.bytes_before - res.bytes_after;
  const want = 'Saved ' + humanSize(saved) + ' (' + Math.round((saved * 100) / res.bytes_before) + ' %) on ' +
    files.length + ' images' + (res.unchanged ? ', ' + res.unchanged + ' unchanged' : '');
  is(summary, want, 'the summary: ' + summary);
  ok(/^Saved \d+(\.\d)? (B|KB|MB) \(\d+ %\) on 6 images, \d+ unchanged$/.test(summary),
    'it reads "Saved X (P %) on 6 images, N unchanged"');
  ok(res.unchanged >= 1 && saved > 0, `something was saved and something left alone (${res.unchanged} unchanged)`);
  const items = await page.$$eval('#op-results li', (lis) => lis.map((li) => ({ status: li.dataset.status, text: li.textContent })));
  is(items.length, files.length, 'every image is listed under the summary');
  ok(items.filter((i) => i.status === 'unchanged').every((i) => /unchanged · ./.test(i.text)),
    'an unchanged image says why: ' + (items.find((i) => i.status === 'unchanged') || {}).text);
  ok(items.filter((i) => i.status === 'ok').every((i) => /→/.test(i.text)), 'the others show before → after');

  // ---------------------------------------------------------------- downloads keep their type
  for (const [name, kind, ctype] of [['alpha.png', 'png', 'image/png'], ['screenshot.png', 'png', 'image/png'],
    ['anim.gif', 'gif', 'image/gif']]) {
    const card = page.locator(`#gallery .card:has(.name:text-is("${name}"))`);
    ok(await card.count() === 1, `the card of ${name} keeps its name`);
    const href = await card.locator('.download').getAttribute('href');
    const got = await page.evaluate(async (u) => {
      const r = await fetch(u);
      const b = new Uint8Array(await r.arrayBuffer());
      return { status: r.status, type: r.headers.get('Content-Type'), disposition: r.headers.get('Content-Disposition'), head: [...b.slice(0, 8)] };
    }, href);
    is([got.status, sniff(got.head), got.type], [200, kind, ctype], `${name} downloads as ${kind} bytes with Content-Type ${ctype}`);
    ok(new RegExp('filename="' + name.replace('.', '\\.') + '"').test(got.disposition || ''), `under the name ${name}: ${got.disposition}`);
  }

  // ---------------------------------------------------------------- cancel keeps what was done
  // What a cancelled operation's closing event says is rendered as it is: the images finished
  // before the cancel are listed and said to stay done.
  const done = res.images.slice(0, 2);
  await ctl('append', {
    session: sid, type: 'operation.failed',
    data: { operation_id: '00000000-0000-4000-8000-0000000000c1', operation_type: 'bulk_compress', reason: 'cancelled',
      result: { images: done, succeeded: 2, unchanged: done.filter((e) => e.status === 'unchanged').length, failed: 0,
        bytes_before: done.reduce((a, e) => a + e.bytes_before, 0), bytes_after: done.reduce((a, e) => a + e.bytes_after, 0) } },
  });
  const msg = await until(async () => {
    const t = await page.textContent('#op-message');
    return /^Cancelled after 2 images; those stay done$/.test(t) ? t : null;
  });
  ok(msg, 'a cancelled operation says the images done stay done');
  is(await page.$$eval('#op-results li', (lis) => lis.length), 2, 'and lists those two');
  ok(/^Saved .* on 2 images/.test(await page.textContent('#op-summary')), 'with what they saved');
  ok(await page.$eval('#op-cancel-note', (e) => e.hidden), 'the cancel note goes with the Cancel button');

  // ---------------------------------------------------------------- a real cancel, mid-way
  // 16 photos of 7.7 megapixels take the worker a few seconds; Cancel is clicked as soon as the
  // first one is listed. Whatever the machine's speed, the images the page then lists must be
  // exactly those whose stored bytes changed, and every other one must be as uploaded.
  const slow = await ctl('slow', { count: 16 });
  await page.setInputFiles('#file-input', slow.map((f) => f.path));
  const cards = await until(async () => {
    const got = await page.$$eval('#gallery .card', (lis) => lis.map((li) => [li.querySelector('.name').textContent, li.dataset.id]));
    const byName = Object.fromEntries(got);
    return slow.every((f) => byName[f.name]) ? byName : null;
  }, 120000);
  ok(cards, `the ${slow.length} large photos upload`);
  const slowIds = slow.map((f) => cards[f.name]);
  // Only the new photos: everything selected, then nothing, then each of them.
  await page.check('#select-all');
  await page.uncheck('#select-all');
  for (const f of slow) await page.locator(`#gallery .card[data-id="${cards[f.name]}"] .select`).check();
  await page.click('#compress');
  const first = await until(async () => {
    const s = await page.getAttribute('#operation', 'data-status');
    const n = await page.$$eval('#op-results li', (lis, ids) => lis.filter((li) => ids.includes(li.dataset.id)).length,
      slowIds);
    return s === 'running' && n > 0 ? n : null;
  }, 120000);
  ok(first, 'the first finished photo is listed while the rest are being compressed');
  await page.click('#op-cancel');
  const end = await until(async () => {
    const s = await page.getAttribute('#operation', 'data-status');
    return ['cancelled', 'completed', 'failed'].includes(s) ? s : null;
  }, 120000);
  is(end, 'cancelled', 'the operation ends cancelled');
  const listed = await page.$$eval('#op-results li', (lis) => lis.map((li) => ({ id: li.dataset.id, status: li.dataset.status })));
  const n = listed.length;
  ok(n >= 1 && n < slow.length, `it stopped part of the way: ${n} of ${slow.length} done`);
  is(await page.textContent('#op-message'), `Cancelled after ${n} image${n === 1 ? '' : 's'}; those stay done`,
    'the message says how many were done and that they stay done');
  ok(/^Saved \S+ \S+ \(\d+ %\) on \d+ images?/.test(await page.textContent('#op-summary')), 'with what they saved');
  const stored = await ctl('stored', { ids: slowIds });
  const rewritten = slow.filter((f) => {
    const row = stored[cards[f.name]];
    return row && row.sha256 !== f.sha256;
  }).map((f) => cards[f.name]);
  is(listed.map((e) => e.id).sort(), [...rewritten].sort(), 'the images listed are exactly the ones whose bytes changed');
  ok(listed.every((e) => e.status === 'ok'), 'each of them says ok');
  const untouched = slow.filter((f) => !listed.some((e) => e.id === cards[f.name]));
  ok(untouched.every((f) => stored[cards[f.name]].version === 1 && stored[cards[f.name]].sha256 === f.sha256),
    `the other ${untouched.length} are as uploaded: version 1, same bytes`);

  // ---------------------------------------------------------------- what phones send
  // HEIC (no browser shows it) and AVIF are shown in the gallery through the JPEG thumbnail the
  // server makes of them.
  const phones = await ctl('phones');
  if (!phones.length) {
    skip('HEIC and AVIF in the gallery', 'this libvips cannot write them to make test files');
  } else {
    await page.setInputFiles('#file-input', phones.map((f) => f.path));
    for (const f of phones) {
      const card = page.locator(`#gallery .card:has(.name:text-is("${f.name}"))`);
      await until(async () => (await card.count()) === 1 || null, 60000);
      // Thumbnails load lazily: the card is brought into view first.
      await card.scrollIntoViewIfNeeded();
      const shown = await until(async () =>
        (await card.locator('img.thumb').evaluate((i) => i.complete && i.naturalWidth > 0)) || null, 30000);
      ok(shown, `${f.name} is in the gallery with its thumbnail`);
      ok(!(await card.evaluate((li) => li.classList.contains('no-thumb'))), `${f.name}: the thumbnail loaded`);
    }
  }
  is(page.report.errors.filter((e) => !/Failed to load resource|WebSocket|net::ERR_|EventSource/.test(e)), [], 'no script errors');
});

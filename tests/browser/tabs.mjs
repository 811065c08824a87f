// tabs.mjs: ten tabs of one session in one Chromium share one event stream (web/js/imagetools-shared.js)
// over plain HTTP/1.1 with no WebSocket bridge, so that the stream is SSE and counts against the
// browser's six connections per host.
//
// Every tab receives every event exactly once and in order; the server holds one stream, not
// ten; an upload from the tenth tab completes while the stream is open; the leader tab closed
// mid-stream, and then the next leader stopped (paused in the debugger, as a hung or frozen tab):
// the others carry on with no gap or duplicate while events are published during the take-over,
// and the stopped one, running again, gives up its connection. Two tabs of another session get
// their own stream and only their session's events; three tabs of a third session without Web
// Locks elect their leader over BroadcastChannel and replace it when it closes.
//
// IT_TABS_SHARED=0 opens the tabs with ?shared=0 (one connection each, as before the shared
// mode): the scenario then fails, which is what it is there to show.

import { BASE, ctl, diag, is, makePng, ok, openPage, run, sleep, until } from './lib.mjs';

const TABS = 10;
const SHARED = process.env.IT_TABS_SHARED !== '0';
// Chromium logs failed or aborted requests; a closed tab's stream is one of them.
const NETWORK_NOISE = /Failed to load resource|net::ERR_|EventSource/;

async function record(page) {
  await page.evaluate(async () => {
    // The module's shared instance is the page's own client (app.js imports the same URL).
    const { realtime } = await import(new URL('js/imagetools-shared.js', document.baseURI).href);
    window.__rt = realtime;
    window.__ids = [];
    // The page announces each connection for presence; the presence.* events that adds are
    // the server's, not the ones this test publishes and counts.
    realtime.on('*', (m) => {
      if (m.id !== undefined && !String(m.type).startsWith('presence.')) window.__ids.push(m.id);
    });
  });
}

const ids = (p) => p.evaluate(() => window.__ids);
const role = (p) => p.evaluate(() => window.__rt.role);
const roles = (ps) => Promise.all(ps.map(role));

// True once every page's recorded ids end with want's last id; the caller compares exactly.
async function allSaw(ps, want) {
  const last = want[want.length - 1];
  const got = await Promise.all(ps.map(ids));
  return got.every((g) => g.length && g[g.length - 1] >= last) ? got : null;
}

function exactly(got, want) {
  return got.every((g) => JSON.stringify(g) === JSON.stringify(want));
}

async function streams() {
  return ctl('streams');
}

run(async (context) => {
  const sid = await ctl('new_session');
  const query = SHARED ? '' : '?shared=0';
  const pages = [];
  for (let i = 0; i < TABS; i++) {
    const p = await openPage(context, BASE + '/' + query + '#s=' + sid);
    await record(p);
    pages.push(p);
  }
  diag(SHARED ? 'tabs in shared mode (the page\'s default)' : 'tabs with ?shared=0: one connection each');

  // ---------------------------------------------------------------- one stream for ten tabs
  const live = await until(async () => {
    const st = await Promise.all(pages.map((p) => p.getAttribute('#conn', 'data-status')));
    return st.every((s) => s === 'connected') ? st : null;
  }, 30000);
  ok(live, `all ${TABS} tabs are live`);
  const transports = await Promise.all(pages.map((p) => p.getAttribute('#conn', 'data-transport')));
  is(transports, Array(TABS).fill('sse'), 'every tab reports the shared transport: SSE (no bridge)');
  const r0 = await roles(pages);
  is([r0.filter((r) => r === 'leader').length, r0.filter((r) => r === 'follower').length], [1, TABS - 1],
    'one tab leads, the others follow');
  const one = await until(async () => {
    const s = await streams();
    return s.sse === 1 ? s : null;
  }, 10000);
  const s0 = await streams();
  ok(one && s0.longpoll === 0, `the server holds one event stream for the ${TABS} tabs (sse ${s0.sse}, long-poll ${s0.longpoll})`);

  // ---------------------------------------------------------------- every event once, in order
  const batch = await ctl('append', { session: sid, count: 20 });
  const got = await until(() => allSaw(pages, batch), 20000);
  ok(got && exactly(got, batch), `every tab received the 20 events exactly once, in order (ids ${batch[0]}..${batch.at(-1)})`);
  if (got && !exactly(got, batch)) diag('tabs saw: ' + JSON.stringify(got.map((g) => g.join(','))));

  // ---------------------------------------------------------------- an upload from the tenth tab
  const tenth = pages[TABS - 1];
  const t0 = Date.now();
  await tenth.setInputFiles('#file-input', [{ name: 'tab10.png', mimeType: 'image/png', buffer: makePng(160, 120, 4) }]);
  const done = await until(async () => (await tenth.$$('#uploads .upload.done')).length === 1 || null, 20000);
  ok(done, `an upload from tab ${TABS} completes while the stream is open (${Date.now() - t0} ms)`);
  const shown = await until(async () => {
    const names = await Promise.all(pages.map((p) => p.$$eval('#gallery .card .name', (els) => els.map((e) => e.textContent))));
    return names.every((n) => n.includes('tab10.png')) || null;
  }, 20000);
  ok(shown, 'its image appears in every tab');
  const afterUpload = await Promise.all(pages.map(ids));
  ok(afterUpload.every((g) => g.length === batch.length + 1 && g.at(-1) === batch.at(-1) + 1),
    'each tab got its image.uploaded once');

  // ---------------------------------------------------------------- the leader closes mid-stream
  let all = [...batch, batch.at(-1) + 1];
  let li = (await roles(pages)).indexOf('leader');
  if (!ok(li >= 0, 'a leader to close')) return;
  const leader = pages[li];
  let rest = pages.filter((_, i) => i !== li);
  const pub = ctl('append_timed', { session: sid, count: 30, interval_ms: 100 });
  await until(async () => (await ids(rest[0])).length >= all.length + 5, 10000, 20);
  await leader.close();
  const published = await pub;
  all = all.concat(published);
  const got2 = await until(() => allSaw(rest, all), 20000);
  ok(got2 && exactly(got2, all), `the leader tab closed mid-stream: the other ${rest.length} tabs have every event once, in order`);
  if (got2 && !exactly(got2, all)) diag('tabs saw: ' + JSON.stringify(got2.map((g) => g.join(','))));
  const r1 = await roles(rest);
  is(r1.filter((r) => r === 'leader').length, 1, 'another tab leads');
  ok(await until(async () => (await streams()).sse === 1, 15000), 'the server holds one stream again');

  // ---------------------------------------------------------------- the leader stops running
  // Paused in the debugger: no timer, no message, no goodbye, as a hung tab or one the system
  // froze without a freeze event. Chromium's own freezing (Page Lifecycle) also says "freeze"
  // first, on which the leader hands over at once; DevTools cannot freeze a visible page.
  li = r1.indexOf('leader');
  if (li < 0) return;
  const frozen = rest[li];
  const others = rest.filter((_, i) => i !== li);
  const cdp = await context.newCDPSession(frozen);
  await cdp.send('Debugger.enable');
  await cdp.send('Debugger.pause');
  const paused = await until(async () => {
    const r = await Promise.race([frozen.evaluate(() => 1).catch(() => 0), sleep(300).then(() => 'hung')]);
    return r === 'hung';
  }, 5000);
  ok(paused, 'the leader tab stopped running script');
  const during = await ctl('append_timed', { session: sid, count: 10, interval_ms: 300 });
  all = all.concat(during);
  const got3 = await until(() => allSaw(others, all), 20000);
  ok(got3 && exactly(got3, all), 'the others have every event once, in order, while it does not run');
  if (got3 && !exactly(got3, all)) diag('tabs saw: ' + JSON.stringify(got3.map((g) => g.join(','))));
  const r2 = await roles(others);
  is(r2.filter((r) => r === 'leader').length, 1, 'one of them took over');
  await cdp.send('Debugger.resume');
  await cdp.send('Debugger.disable');
  const after = await ctl('append', { session: sid, count: 5 });
  all = all.concat(after);
  const got4 = await until(() => allSaw(rest, all), 20000);
  ok(got4 && exactly(got4, all), 'once it runs again it follows, and no tab (it included) misses or repeats an event');
  is(await role(frozen), 'follower', 'the tab that stopped no longer leads');
  ok(await until(async () => (await streams()).sse === 1, 15000), 'and the server holds one stream');

  // ---------------------------------------------------------------- another session
  // Two tabs on a second session form their own group: a second stream, and neither group sees
  // the other's events.
  const sid2 = await ctl('new_session');
  const second = [];
  for (let i = 0; i < 2; i++) {
    const p = await openPage(context, BASE + '/#s=' + sid2);
    await record(p);
    second.push(p);
  }
  ok(await until(async () => (await Promise.all(second.map((p) => p.getAttribute('#conn', 'data-status'))))
    .every((x) => x === 'connected'), 15000), 'two tabs of another session are live');
  is((await roles(second)).sort(), ['follower', 'leader'], 'they elect their own leader');
  ok(await until(async () => (await streams()).sse === 2, 10000), 'the server holds one stream per session: two');
  const other = await ctl('append', { session: sid2, count: 3 });
  const mine = await ctl('append', { session: sid, count: 1 });
  all = all.concat(mine);
  ok(await until(() => allSaw(second, other), 15000) && exactly(await Promise.all(second.map(ids)), other),
    'the second session\'s tabs get its events once, in order');
  ok(await until(() => allSaw(rest, all), 15000) && exactly(await Promise.all(rest.map(ids)), all),
    'and the first session\'s tabs only their own');

  // ---------------------------------------------------------------- without Web Locks
  // Three tabs of a third session whose browser lacks Web Locks (as a page outside a secure
  // context): they elect a leader over BroadcastChannel, and replace it when it closes.
  const sid3 = await ctl('new_session');
  const third = [];
  for (let i = 0; i < 3; i++) {
    const p = await context.newPage();
    p.report = { errors: [], dialogs: [] };
    p.on('pageerror', (e) => p.report.errors.push(String(e)));
    await p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }));
    await p.goto(BASE + '/#s=' + sid3);
    await record(p);
    third.push(p);
  }
  ok(await third[0].evaluate(() => navigator.locks === undefined), 'a third session\'s tabs run without Web Locks');
  ok(await until(async () => (await Promise.all(third.map((p) => p.getAttribute('#conn', 'data-status'))))
    .every((x) => x === 'connected'), 15000), 'they are live');
  is((await roles(third)).sort(), ['follower', 'follower', 'leader'], 'they elect one leader over BroadcastChannel');
  ok(await until(async () => (await streams()).sse === 3, 10000), 'one more stream at the server (three sessions, three streams)');
  let all3 = await ctl('append', { session: sid3, count: 5 });
  const l3 = (await roles(third)).indexOf('leader');
  const pub3 = ctl('append_timed', { session: sid3, count: 15, interval_ms: 100 });
  await sleep(300);
  await third[l3].close();
  all3 = all3.concat(await pub3);
  const left3 = third.filter((_, i) => i !== l3);
  const got5 = await until(() => allSaw(left3, all3), 20000);
  ok(got5 && exactly(got5, all3), 'the leader closes mid-stream: the other two have every event once, in order');
  is((await roles(left3)).filter((r) => r === 'leader').length, 1, 'one of them leads');
  ok(await until(async () => (await streams()).sse === 3, 15000), 'still one stream for that session');
  ok(left3.every((p) => !p.report.errors.some((e) => !NETWORK_NOISE.test(e))), 'no script errors in those tabs');

  // ---------------------------------------------------------------- hygiene
  for (const p of rest) {
    const errors = p.report.errors.filter((e) => !NETWORK_NOISE.test(e));
    if (errors.length) diag('errors: ' + errors.join(' | '));
  }
  ok(rest.every((p) => !p.report.errors.some((e) => !NETWORK_NOISE.test(e))), 'no script errors in any tab');
  ok(rest.every((p) => !p.report.dialogs.length), 'no dialogs');
  await sleep(0);
});

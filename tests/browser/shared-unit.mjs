// shared-unit.mjs: the election and relay of web/js/imagetools-shared.js in Node, no browser.
//
// Every tab is a worker thread running a SharedRealtimeClient, so tabs share a real
// BroadcastChannel (Node's reaches every thread) and a tab can be frozen for real: a worker
// blocked in Atomics.wait runs no timer and receives no message until it wakes, as a frozen or
// hung page. The connection itself is a fake RealtimeClient that asks this (main) thread, the
// "server", for a session's events from a position; the server counts open connections. Web
// Locks are missing in Node 20, which exercises the BroadcastChannel election with leases;
// the second half gives the tabs a lock manager (here in the main thread, with queueing, steal
// and release on a tab's end, as a browser's) to exercise the Web Locks path.
//
// Checks: one leader and one connection for many tabs; every tab sees every event once and in
// order; the leader closing, crashing and freezing (events published meanwhile): another tab
// takes over, nothing is lost or repeated, and a frozen leader that wakes gives up its
// connection; a tab joining late gets what it missed from the others (from their recent events,
// or through a connection reopened further back); the Page Lifecycle freeze/resume and pagehide
// events hand the lead over at once; shared: false and another session get their own connection.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const FILE = fileURLToPath(import.meta.url);
const TIMINGS = { heartbeatInterval: 40, takeoverAfter: 250, pingWait: 60, positionWait: 30, leaderWait: 60,
  claimWait: 40, gapWait: 1500, replayLimit: 20 };

if (!isMainThread) {
  await tab();
} else {
  await main();
}

// ------------------------------------------------------------------ one tab (a worker)

async function tab() {
  // The page's lifecycle events (pagehide, freeze, resume) are dispatched on these.
  globalThis.window = new EventTarget();
  globalThis.document = new EventTarget();
  const { SharedRealtimeClient } = await import('../../web/js/imagetools-shared.js');
  const wd = workerData;
  let nextConn = 1;
  const conns = new Map();
  // The fake connection: asks the main thread for events from a position and hands them to its
  // handlers as a RealtimeClient would ('*' sees every event and connection.status).
  class FakeClient {
    constructor(opts) {
      this.opts = opts;
      this.handlers = new Set();
    }
    on(type, fn) {
      this.handlers.add(fn);
      return () => this.handlers.delete(fn);
    }
    configure() {}
    connect(session, { lastEventId }) {
      this.id = wd.name + ':' + nextConn++;
      conns.set(this.id, this);
      parentPort.postMessage({ op: 'open', conn: this.id, session, from: lastEventId });
    }
    disconnect() {
      conns.delete(this.id);
      parentPort.postMessage({ op: 'close', conn: this.id });
    }
    emit(msg) {
      for (const fn of [...this.handlers]) fn(msg);
    }
  }

  // A lock manager in the main thread, reached over messages (only when the test asks for it).
  let nextReq = 1;
  const reqs = new Map();
  // 'broken': what an opaque origin or a sandboxed frame gives (a SecurityError).
  const broken = { request() { throw new DOMException('locks are not available here', 'SecurityError'); } };
  const locks = wd.locks === 'broken' ? broken : wd.locks ? {
    request(name, opts, cb) {
      return new Promise((resolve, reject) => {
        const id = nextReq++;
        reqs.set(id, { cb, resolve, reject });
        if (opts.signal) {
          opts.signal.addEventListener('abort', () => parentPort.postMessage({ op: 'lock-abort', req: id }));
        }
        parentPort.postMessage({ op: 'lock', req: id, name, steal: !!opts.steal });
      });
    },
  } : null;

  const seen = [];
  const c = new SharedRealtimeClient({ ...TIMINGS, Client: FakeClient, locks, shared: wd.shared !== false });
  c.on('*', (msg) => {
    if (msg.id !== undefined) seen.push(msg.id);
  });
  parentPort.on('message', async (m) => {
    if (m.op === 'deliver') {
      const conn = conns.get(m.conn);
      if (conn) conn.emit(m.msg);
    } else if (m.op === 'granted') {
      const r = reqs.get(m.req);
      Promise.resolve(r.cb({ name: m.name })).then(() => {
        reqs.delete(m.req);
        parentPort.postMessage({ op: 'unlock', req: m.req });
        r.resolve();
      });
    } else if (m.op === 'lock-rejected') {
      const r = reqs.get(m.req);
      if (r) {
        reqs.delete(m.req);
        r.reject(new DOMException('the lock request was aborted or the lock stolen', 'AbortError'));
      }
    } else if (m.op === 'connect') {
      c.connect(m.session, m.lastEventId !== undefined ? { lastEventId: m.lastEventId } : {});
    } else if (m.op === 'disconnect') {
      c.disconnect();
    } else if (m.op === 'lifecycle') {
      globalThis[m.target].dispatchEvent(new Event(m.type));
    } else if (m.op === 'freeze') {
      // Blocks this thread: no timers, no messages, as a frozen page.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, m.ms);
    } else if (m.op === 'state') {
      parentPort.postMessage({ op: 'state', q: m.q, role: c.role, last: c.lastEventId, seen, status: c.status,
        transport: c.transport });
    }
  });
  parentPort.postMessage({ op: 'ready' });
}

// ------------------------------------------------------------------ the server and the checks

async function main() {
  let failures = 0;
  const ok = (cond, name) => {
    console.log((cond ? 'ok' : 'not ok') + ' - ' + name);
    if (!cond) failures++;
    return cond;
  };
  const is = (got, want, name) => {
    const g = JSON.stringify(got);
    const w = JSON.stringify(want);
    if (!ok(g === w, name)) {
      console.log('# got:  ' + (g.length > 400 ? g.slice(0, 400) + '...' : g));
      console.log('# want: ' + w);
    }
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const until = async (fn, timeout = 8000) => {
    const end = Date.now() + timeout;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) return null;
      await sleep(20);
    }
  };
  const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

  // The server: events per session, open connections.
  const log = new Map(); // session -> [msg]
  const open = new Map(); // conn -> {session, worker}
  let opened = 0;
  const publish = (session, n = 1) => {
    const evs = log.get(session) || [];
    log.set(session, evs);
    for (let i = 0; i < n; i++) {
      const msg = { id: evs.length + 1, type: 'image.deleted', data: { image_id: 'x' + (evs.length + 1) } };
      evs.push(msg);
      for (const [conn, o] of open) if (o.session === session) o.worker.postMessage({ op: 'deliver', conn, msg });
    }
  };
  const openOn = (session) => [...open.values()].filter((o) => o.session === session).length;

  // The lock manager (for the Web Locks half): one holder per name, a queue, steal.
  const lockState = new Map(); // name -> {holder: {w, req}|null, queue: [{w, req}]}
  const lockOf = (name) => {
    if (!lockState.has(name)) lockState.set(name, { holder: null, queue: [] });
    return lockState.get(name);
  };
  const grantNext = (name) => {
    const l = lockOf(name);
    while (!l.holder && l.queue.length) {
      const next = l.queue.shift();
      if (next.w.dead) continue;
      l.holder = next;
      next.w.postMessage({ op: 'granted', req: next.req, name });
    }
  };
  const lockMsg = (w, m) => {
    if (m.op === 'lock') {
      const l = lockOf(m.name);
      const r = { w, req: m.req, name: m.name };
      if (m.steal) {
        if (l.holder) l.holder.w.postMessage({ op: 'lock-rejected', req: l.holder.req });
        l.holder = null;
        l.queue.unshift(r);
      } else {
        l.queue.push(r);
      }
      grantNext(m.name);
    } else if (m.op === 'lock-abort') {
      for (const [name, l] of lockState) {
        const i = l.queue.findIndex((q) => q.w === w && q.req === m.req);
        if (i >= 0) {
          l.queue.splice(i, 1);
          w.postMessage({ op: 'lock-rejected', req: m.req });
          grantNext(name);
        }
      }
    } else if (m.op === 'unlock') {
      for (const [name, l] of lockState) {
        if (l.holder && l.holder.w === w && l.holder.req === m.req) {
          l.holder = null;
          grantNext(name);
        }
      }
    }
  };
  // A tab that ends (closed or crashed) loses its locks and its connections, as in a browser.
  const forget = (w) => {
    w.dead = true;
    for (const [conn, o] of open) if (o.worker === w) open.delete(conn);
    for (const [name, l] of lockState) {
      l.queue = l.queue.filter((q) => q.w !== w);
      if (l.holder && l.holder.w === w) {
        l.holder = null;
        grantNext(name);
      }
    }
  };

  let q = 0;
  const waiting = new Map();
  const tabs = [];
  const spawn = (name, opts = {}) => new Promise((resolve) => {
    const w = new Worker(FILE, { workerData: { name, ...opts } });
    w.name = name;
    w.on('message', (m) => {
      if (m.op === 'ready') resolve(w);
      else if (m.op === 'open') {
        opened++;
        open.set(m.conn, { session: m.session, worker: w });
        for (const msg of log.get(m.session) || []) if (msg.id > m.from) w.postMessage({ op: 'deliver', conn: m.conn, msg });
        w.postMessage({ op: 'deliver', conn: m.conn,
          msg: { type: 'connection.status', data: { status: 'connected', transport: 'sse', fallback: true, online: true } } });
      } else if (m.op === 'close') open.delete(m.conn);
      else if (m.op === 'state') {
        const r = waiting.get(m.q);
        waiting.delete(m.q);
        if (r) r(m);
      } else lockMsg(w, m);
    });
    w.on('error', (e) => ok(false, name + ' raised ' + e.message));
    w.on('exit', () => forget(w));
    tabs.push(w);
  });
  const state = (w) => new Promise((resolve) => {
    const id = ++q;
    waiting.set(id, resolve);
    w.postMessage({ op: 'state', q: id });
    setTimeout(() => {
      if (waiting.delete(id)) resolve(null);
    }, 3000);
  });
  const states = (ws) => Promise.all(ws.map(state));
  const leaders = async (ws) => (await states(ws)).filter((s) => s && s.role === 'leader').length;
  const seenAll = async (ws, n) => (await states(ws)).every((s) => s && s.last === n);

  for (const mode of ['leases', 'locks']) {
    const useLocks = mode === 'locks';
    const S = 'session-' + mode;
    const label = (s) => `${mode}: ${s}`;
    log.set(S, []);
    publish(S, 3); // history before any tab: tabs start from position 3, as the page does
    const group = [];
    for (let i = 0; i < 5; i++) group.push(await spawn(mode + '-tab' + i, { locks: useLocks }));
    for (const w of group) w.postMessage({ op: 'connect', session: S, lastEventId: 3 });

    ok(await until(async () => (await leaders(group)) === 1 && openOn(S) === 1), label('five tabs elect one leader and open one connection'));
    const st0 = await states(group);
    is(st0.map((s) => s.role).sort(), ['follower', 'follower', 'follower', 'follower', 'leader'], label('the others follow'));
    ok(st0.every((s) => s.status === 'connected' && s.transport === 'sse'), label('every tab reports the shared transport and status'));

    publish(S, 20);
    ok(await until(() => seenAll(group, 23)), label('every tab receives the 20 events'));
    let st = await states(group);
    ok(st.every((s) => JSON.stringify(s.seen) === JSON.stringify(range(4, 23))), label('every tab saw ids 4..23 exactly once, in order'));
    is(openOn(S), 1, label('still one connection'));

    // The leader closes (disconnect: a graceful hand-over) while events are published.
    let li = st.findIndex((s) => s.role === 'leader');
    let alive = group.filter((_, i) => i !== li);
    group[li].postMessage({ op: 'disconnect' });
    for (let i = 0; i < 10; i++) {
      publish(S, 1);
      await sleep(15);
    }
    ok(await until(async () => (await leaders(alive)) === 1 && openOn(S) === 1 && seenAll(alive, 33)),
      label('the leader disconnects mid-stream: another takes over with one connection'));
    st = await states(alive);
    ok(st.every((s) => JSON.stringify(s.seen) === JSON.stringify(range(4, 33))), label('...and no tab misses or repeats an event'));
    await group[li].terminate();

    // The leader crashes (no goodbye, its connection dropped by the server) while events are published.
    li = st.findIndex((s) => s.role === 'leader');
    const crashed = alive[li];
    alive = alive.filter((_, i) => i !== li);
    const t0 = Date.now();
    await crashed.terminate();
    for (let i = 0; i < 10; i++) {
      publish(S, 1);
      await sleep(30);
    }
    ok(await until(async () => (await leaders(alive)) === 1 && openOn(S) === 1 && seenAll(alive, 43)),
      label('the leader crashes mid-stream: another takes over'));
    console.log(`# ${mode}: take-over after a crash took ${Date.now() - t0} ms (events published during the first 300 ms)`);
    st = await states(alive);
    ok(st.every((s) => JSON.stringify(s.seen) === JSON.stringify(range(4, 43))), label('...and no tab misses or repeats an event'));

    // The leader freezes (blocked: no heartbeat, no messages) while events are published; it is
    // replaced, and when it wakes it gives up its connection and follows, missing nothing.
    li = st.findIndex((s) => s.role === 'leader');
    const frozen = alive[li];
    const others = alive.filter((_, i) => i !== li);
    const frozenAt = Date.now();
    frozen.postMessage({ op: 'freeze', ms: 5000 });
    await sleep(50);
    publish(S, 5);
    let openWhileFrozen = null;
    ok(await until(async () => {
      if ((await leaders(others)) !== 1 || !(await seenAll(others, 48))) return false;
      openWhileFrozen = openOn(S);
      return Date.now() - frozenAt < 4800;
    }, 4700), label('a frozen leader is replaced while it is frozen'));
    is(openWhileFrozen, 2, label('...(its old connection is still open while it is frozen)'));
    publish(S, 5);
    ok(await until(async () => openOn(S) === 1 && (await leaders(alive)) === 1 && seenAll(alive, 53)),
      label('when it wakes it gives up its connection: one leader, one connection'));
    const fz = await state(frozen);
    is(fz.role, 'follower', label('the woken tab follows'));
    st = await states(alive);
    ok(st.every((s) => JSON.stringify(s.seen) === JSON.stringify(range(4, 53))),
      label('no tab, the woken one included, misses or repeats an event'));

    // A tab joining late, from an older position (it read the session a while ago): the others
    // give it what it missed.
    const late = await spawn(mode + '-late', { locks: useLocks });
    late.postMessage({ op: 'connect', session: S, lastEventId: 45 });
    ok(await until(async () => (await state(late)).last === 53), label('a tab joining from position 45 catches up'));
    publish(S, 2);
    ok(await until(async () => (await state(late)).last === 55), label('...and follows live'));
    is((await state(late)).seen, range(46, 55), label('...with ids 46..55 once, in order'));
    is(openOn(S), 1, label('...without a second connection'));
    alive.push(late);

    // One joining from further back than the others keep (replayLimit 20): the leader reopens
    // its connection from there, and the others drop what they have seen.
    const older = await spawn(mode + '-older', { locks: useLocks });
    const before = opened;
    older.postMessage({ op: 'connect', session: S, lastEventId: 10 });
    ok(await until(async () => (await state(older)).last === 55), label('a tab joining from position 10 catches up'));
    is((await state(older)).seen, range(11, 55), label('...with ids 11..55 once, in order'));
    is([opened - before, openOn(S)], [1, 1], label('...through the leader\'s connection, reopened from there'));
    ok((await states(alive)).every((s) => s.seen.at(-1) === 55 && s.seen.length === new Set(s.seen).size),
      label('...and the other tabs see nothing twice'));
    alive.push(older);

    // The browser freezes the leader (the Page Lifecycle freeze event): it hands over first and
    // follows again on resume, having missed nothing.
    st = await states(alive);
    const fl = alive[st.findIndex((s) => s.role === 'leader')];
    const rest = alive.filter((w) => w !== fl);
    fl.postMessage({ op: 'lifecycle', target: 'document', type: 'freeze' });
    ok(await until(async () => (await state(fl)).role === 'suspended' && (await leaders(rest)) === 1 && openOn(S) === 1),
      label('a leader the browser freezes hands over: another leads, one connection'));
    publish(S, 3);
    ok(await until(() => seenAll(rest, 58)), label('...and the others go on'));
    fl.postMessage({ op: 'lifecycle', target: 'document', type: 'resume' });
    ok(await until(async () => (await state(fl)).role === 'follower' && (await leaders(alive)) === 1), label('on resume it follows'));
    publish(S, 1);
    ok(await until(() => seenAll(alive, 59)), label('...and receives'));
    ok((await states(alive)).every((s) => s.seen.at(-1) === 59 && s.seen.length === new Set(s.seen).size &&
      s.seen.every((id, i) => i === 0 || id === s.seen[i - 1] + 1)), label('...every tab in order, none twice, no gap'));

    // pagehide (the tab closes or navigates): the leader says goodbye and another takes over.
    st = await states(alive);
    const gone = alive[st.findIndex((s) => s.role === 'leader')];
    alive = alive.filter((w) => w !== gone);
    gone.postMessage({ op: 'lifecycle', target: 'window', type: 'pagehide' });
    publish(S, 2);
    ok(await until(async () => (await leaders(alive)) === 1 && openOn(S) === 1 && seenAll(alive, 61)),
      label('a leader whose page is hidden for good (pagehide) hands over'));
    await gone.terminate();

    // shared: false: its own connection. Another session: its own leader and connection.
    const solo = await spawn(mode + '-solo', { locks: useLocks, shared: false });
    solo.postMessage({ op: 'connect', session: S, lastEventId: 61 });
    ok(await until(() => openOn(S) === 2), label('shared: false opens its own connection'));
    is((await state(solo)).role, 'own', label('...and says so'));
    const S2 = S + '-other';
    log.set(S2, []);
    const b1 = await spawn(mode + '-b1', { locks: useLocks });
    const b2 = await spawn(mode + '-b2', { locks: useLocks });
    b1.postMessage({ op: 'connect', session: S2, lastEventId: 0 });
    b2.postMessage({ op: 'connect', session: S2, lastEventId: 0 });
    ok(await until(async () => openOn(S2) === 1 && (await leaders([b1, b2])) === 1),
      label('tabs of another session elect their own leader, one connection for them'));
    publish(S2, 3);
    publish(S, 1);
    ok(await until(async () => (await state(b2)).last === 3 && (await state(b1)).last === 3 && seenAll(alive, 62)),
      label('each session gets its own events'));
    is((await state(b1)).seen, [1, 2, 3], label('...and none of the other session'));
    ok((await states(alive)).every((s) => s.seen.at(-1) === 62), label('...in both directions'));
    for (const w of [...alive, solo, b1, b2]) await w.terminate();
  }
  // Web Locks present but failing: the tabs fall back to the election over BroadcastChannel.
  const SB = 'session-broken-locks';
  log.set(SB, []);
  const bl = [];
  for (let i = 0; i < 3; i++) bl.push(await spawn('broken-' + i, { locks: 'broken' }));
  for (const w of bl) w.postMessage({ op: 'connect', session: SB, lastEventId: 0 });
  ok(await until(async () => (await leaders(bl)) === 1 && openOn(SB) === 1),
    'locks that throw: the tabs elect a leader over BroadcastChannel, one connection');
  publish(SB, 4);
  ok(await until(() => seenAll(bl, 4)), '...and every tab receives');
  for (const w of bl) await w.terminate();
  console.log(`# connections opened in all: ${opened}`);
  process.exit(failures ? 1 : 0);
}

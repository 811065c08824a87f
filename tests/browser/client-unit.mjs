// client-unit.mjs: the realtime client's decisions under a fake clock and fake transports (Node,
// no browser): backoff bounds and cap, never giving up, duplicate and order filtering, resync,
// heartbeat, resume positions in every transport's URL, invalid sessions; the credential only in
// headers or the first WebSocket message, a refused or revoked credential, presence.
//
// The browser scenarios (gallery, fallback, restart) show the same client against the real
// server; this file covers what takes minutes of real time or cannot be provoked there.

import { RealtimeClient } from '../../web/js/imagetools-realtime.js';

let failures = 0;
function ok(cond, name) {
  console.log((cond ? 'ok' : 'not ok') + ' - ' + name);
  if (!cond) failures++;
  return cond;
}
function is(got, want, name) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (!ok(g === w, name)) {
    console.log('# got:  ' + g);
    console.log('# want: ' + w);
  }
}

// ------------------------------------------------------------------ a fake clock

const clock = { now: 0, timers: new Map(), next: 1 };
globalThis.setTimeout = (fn, ms = 0) => {
  const id = clock.next++;
  clock.timers.set(id, { at: clock.now + Math.max(0, ms), fn });
  return id;
};
globalThis.clearTimeout = (id) => clock.timers.delete(id);
globalThis.setInterval = (fn, ms) => {
  const id = clock.next++;
  const tick = () => {
    clock.timers.set(id, { at: clock.now + ms, fn: () => { tick(); fn(); } });
  };
  tick();
  return id;
};
globalThis.clearInterval = (id) => clock.timers.delete(id);
const realNow = Date.now;
Date.now = () => clock.now;

const flush = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

async function advance(ms) {
  const end = clock.now + ms;
  for (;;) {
    await flush();
    let first = null;
    for (const [id, t] of clock.timers) if (t.at <= end && (!first || t.at < first[1].at)) first = [id, t];
    if (!first) break;
    clock.timers.delete(first[0]);
    clock.now = first[1].at;
    first[1].fn();
  }
  clock.now = end;
  await flush();
}

// ------------------------------------------------------------------ fake transports

const log = [];

class FakeWs {
  static instances = [];
  static mode = 'refuse'; // 'refuse': closes before any frame; 'accept': opens and greets
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    FakeWs.instances.push(this);
    log.push({ t: clock.now, kind: 'ws', url });
    queueMicrotask(() => {
      if (FakeWs.mode === 'refuse') {
        this.readyState = 3;
        this.onclose && this.onclose({ code: 1006 });
      } else if (FakeWs.mode === 'flap') {
        this.readyState = 1;
        this.onopen && this.onopen();
        this.frame({ type: 'connection.status', data: { status: 'degraded', transport: 'websocket' } });
        queueMicrotask(() => this.onclose && this.onclose({ code: 1011 }));
      } else if (FakeWs.mode === 'invalid') {
        this.readyState = 3;
        this.onclose && this.onclose({ code: 4004 });
      } else {
        this.readyState = 1;
        this.onopen && this.onopen();
        this.frame({ type: 'connection.status', data: { status: 'connected', transport: 'websocket' } });
      }
    });
  }
  frame(obj) {
    this.onmessage && this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) });
  }
  send(s) {
    this.sent.push(s);
  }
  close() {
    this.readyState = 3;
  }
}

class FakeEs {
  static instances = [];
  constructor(url) {
    this.url = url;
    FakeEs.instances.push(this);
    log.push({ t: clock.now, kind: 'sse', url });
    queueMicrotask(() => this.onerror && this.onerror());
  }
  addEventListener() {}
  removeEventListener() {}
  close() {}
}

const fetches = [];
const fetchInits = [];
let longpollWorks = false;
const healthChecks = [];
async function fakeFetch(url, init = {}) {
  fetches.push(url);
  fetchInits.push({ url, init });
  if (url.endsWith('/health')) healthChecks.push(clock.now);
  // SSE is read with fetch and a streaming body; this server refuses it (see the SSE tests below).
  if (url.includes('/events/stream')) log.push({ t: clock.now, kind: 'sse', url });
  if (url.includes('/events?')) {
    log.push({ t: clock.now, kind: 'longpoll', url });
    if (longpollWorks) {
      // Answers like the server: at once for timeout=0, otherwise after the wait.
      const wait = Number(new URL(url).searchParams.get('timeout')) * 1000;
      await new Promise((res) => setTimeout(res, wait));
      const cursor = Number(new URL(url).searchParams.get('cursor'));
      return { status: 200, headers: new Map(), text: async () => ' {"events": [], "cursor": ' + cursor + '}' };
    }
  }
  throw new TypeError('Failed to fetch');
}

const base = { baseUrl: 'http://app.test', WebSocket: FakeWs, EventSource: FakeEs, fetch: fakeFetch };

// ------------------------------------------------------------------ backoff and never giving up

{
  const c = new RealtimeClient({ ...base });
  const statuses = [];
  c.on('connection.status', (d) => statuses.push(d.status));
  c.connect('S1');
  await advance(0);
  is(log.map((l) => l.kind), ['ws', 'sse', 'longpoll'], 'one cycle tries WebSocket, SSE, long-poll in order');
  ok(statuses.includes('offline'), 'after a failed cycle the status is offline');

  // Thirty cycles: about ten minutes of fake time.
  await advance(15 * 60 * 1000);
  const starts = log.filter((l) => l.kind === 'ws').map((l) => l.t);
  ok(starts.length > 30, `it never gives up (${starts.length} cycles in 15 minutes)`);
  let bounded = true;
  const gaps = [];
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i] - starts[i - 1];
    gaps.push(gap);
    const nominal = Math.min(30000, 1000 * 2 ** (i - 1));
    if (gap < Math.max(1000, nominal * 0.75) || gap > Math.min(30000, nominal * 1.25)) bounded = false;
  }
  ok(bounded, 'delays grow 1 s, 2 s, 4 s ... within +-25 % jitter, between 1 s and the 30 s cap');
  console.log('# delays (ms): ' + gaps.join(', '));
  const capped = gaps.slice(6);
  ok(new Set(capped).size >= capped.length - 2, 'the jitter stays at the cap: delays there differ');
  ok(Math.max(...gaps) <= 30000 && Math.max(...gaps) > 25000, 'the longest delays are near the 30 s cap');
  // Health polling while the server is unreachable: a cheap check every 2 s (+-25 %), so that the
  // client notices the server's return within a couple of seconds and reconnects at once.
  const hgaps = healthChecks.slice(1).map((t, i) => t - healthChecks[i]);
  console.log('# health check gaps (ms): ' + hgaps.slice(0, 8).join(', ') + ', ...');
  ok(hgaps.length > 300 && hgaps.every((g) => g >= 1500 && g <= 2500),
    'failing health checks repeat every 1.5-2.5 s while the server is away');
  c.disconnect();
  const n = log.length;
  await advance(120000);
  is(log.length, n, 'disconnect() stops all attempts');
}

// ------------------------------------------------------------------ what /health says

{
  // A site without a WebSocket bridge says so in /health: the client does not open a WebSocket
  // that could only fail (a 404 in the console on every page load), and never probes for one.
  FakeWs.mode = 'refuse';
  let up = true;
  const healthFetch = async (url) => {
    if (url.endsWith('/health')) {
      if (!up) throw new TypeError('Failed to fetch');
      return { status: 200, headers: new Map(), json: async () => ({ status: 'ok', websocket: false }) };
    }
    return fakeFetch(url);
  };
  log.length = 0;
  const c = new RealtimeClient({ ...base, fetch: healthFetch });
  c.connect('S0');
  await advance(0);
  is(log.map((l) => l.kind).slice(0, 2), ['sse', 'longpoll'], 'websocket: false in /health: no WebSocket is opened');
  await advance(5 * 60 * 1000);
  is(log.filter((l) => l.kind === 'ws').length, 0, '... nor in five minutes of retries');

  // The server away for minutes: the transports back off towards 30 s, but the server's
  // return is noticed within a couple of seconds through /health, and the client reconnects.
  up = false;
  await advance(3 * 60 * 1000);
  up = true;
  const back = clock.now;
  const n = log.length;
  await advance(3000);
  const again = log.slice(n).filter((l) => l.kind === 'sse');
  ok(again.length > 0 && again[0].t - back <= 2600,
    'after the server returns, the next attempt comes within 2.6 s (' + (again.length ? again[0].t - back : '-') + ' ms)');
  c.disconnect();
}

{
  // A healthy connection drops (the web server stopped) while /health is on its 30 s interval:
  // the drop itself brings the next check forward, so the return is noticed within seconds
  // even though the transport backoff has grown meanwhile.
  FakeWs.mode = 'accept';
  FakeWs.instances = [];
  let up = true;
  const hf = async (url) => {
    if (url.endsWith('/health')) {
      if (!up) throw new TypeError('Failed to fetch');
      return { status: 200, headers: new Map(), json: async () => ({ status: 'ok', websocket: true }) };
    }
    return fakeFetch(url);
  };
  log.length = 0;
  const c = new RealtimeClient({ ...base, fetch: hf });
  c.connect('S9');
  await advance(5000);
  is(c.transport, 'websocket', 'a healthy connection on WebSocket');
  up = false;
  FakeWs.mode = 'refuse';
  FakeWs.instances[FakeWs.instances.length - 1].onclose({ code: 1006 });
  await advance(15000);
  ok(c.online === false, 'a 15 s outage shows in /health, though the healthy interval is 30 s');
  up = true;
  FakeWs.mode = 'accept';
  const back = clock.now;
  await advance(3000);
  ok(c.transport === 'websocket' && log.filter((l) => l.kind === 'ws' && l.t > back).length > 0 &&
    log.filter((l) => l.kind === 'ws' && l.t > back)[0].t - back <= 2600,
    'after a drop from a healthy state the server\'s return is noticed within 2.6 s');
  c.disconnect();
}

// ------------------------------------------------------------------ delivery rules

{
  FakeWs.mode = 'accept';
  FakeWs.instances = [];
  const c = new RealtimeClient({ ...base });
  const seen = [];
  const all = [];
  c.on('image.deleted', (data, msg) => seen.push(msg.id));
  const statusData = [];
  c.on('*', (m) => {
    all.push(m.type + (m.id ? ':' + m.id : ''));
    if (m.type === 'connection.status') statusData.push(m.data);
  });
  c.on('session.resync', (d) => seen.push('resync ' + d.last_event_id));
  c.connect('S2');
  await advance(0);
  is(c.transport, 'websocket', 'a WebSocket that greets is used');
  const ws = FakeWs.instances[0];
  ok(ws.url === 'ws://app.test/api/v1/ws', 'the WebSocket URL carries neither credential nor position: ' + ws.url);
  is(JSON.parse(ws.sent[0]), { type: 'auth', credential: 'S2', last_event_id: 0 },
    'the first message carries the credential and last_event_id');
  ws.sent.shift();
  for (const id of [1, 2, 2, 3, 1, 4]) ws.frame({ id, type: 'image.deleted', data: { image_id: 'x' + id } });
  is(seen, [1, 2, 3, 4], 'repeated and older ids are dropped, order kept');
  ws.frame({ type: 'session.resync', data: { reason: 'cursor too old', last_event_id: 10 } });
  ws.frame({ id: 5, type: 'image.deleted', data: {} });
  ws.frame({ id: 11, type: 'image.deleted', data: {} });
  is(seen, [1, 2, 3, 4, 'resync 10', 11], 'session.resync is passed on and moves lastEventId');
  is(c.lastEventId, 11, 'lastEventId follows');
  ok(statusData.length > 0 && statusData.every((d) => 'fallback' in d),
    "the server's connection.status frames are folded into the client's own");
  ws.frame('not json');
  ws.frame({ id: 'x', type: 'image.deleted' });
  is(c.lastEventId, 11, 'malformed frames are ignored');

  // Heartbeat: ping every 30 s; without an answer the socket is replaced.
  await advance(30000);
  is(ws.sent, ['ping'], 'a ping after 30 s');
  ws.frame('pong');
  await advance(29000);
  is(FakeWs.instances.length, 1, 'a pong keeps the socket');
  await advance(1000);
  is(ws.sent, ['ping', 'ping'], 'the next ping 30 s after the first');
  await advance(9000);
  is(FakeWs.instances.length, 1, 'the socket lives while the pong may still come');
  await advance(1500 + 1300);
  is(FakeWs.instances.length, 2, 'no pong within 10 s: the socket is declared dead and replaced');
  const again = FakeWs.instances[FakeWs.instances.length - 1];
  ok(again.sent.length && JSON.parse(again.sent[0]).last_event_id === 11,
    'the replacement resumes after the last id: ' + again.sent[0]);
  c.disconnect();
}

// ------------------------------------------------------------------ a server that accepts and drops at once

{
  FakeWs.mode = 'flap';
  FakeWs.instances = [];
  const c = new RealtimeClient({ ...base });
  c.connect('S5');
  await advance(120000);
  const n = FakeWs.instances.length;
  ok(n >= 4 && n <= 9, `a connection dropped right after it opened is retried with growing delays (${n} in 2 min, not 120)`);
  c.disconnect();
}

// ------------------------------------------------------------------ the other transports' resume positions

{
  FakeWs.mode = 'refuse';
  FakeEs.instances = [];
  fetches.length = 0;
  fetchInits.length = 0;
  const c = new RealtimeClient({ ...base });
  c.connect('S3', { lastEventId: 42 });
  await advance(0);
  const es = fetchInits.find((f) => f.url.includes('/events/stream'));
  ok(es && es.url === 'http://app.test/api/v1/events/stream?last_event_id=42',
    'SSE resumes with the last_event_id query: ' + (es && es.url));
  is(es && es.init.headers, { Authorization: 'Bearer S3', Accept: 'text/event-stream' },
    'SSE is read with fetch, the credential in the Authorization header');
  is(FakeEs.instances.length, 0, 'no EventSource where fetch can stream');
  const lp = fetchInits.find((f) => f.url.includes('/events?'));
  ok(lp && lp.url === 'http://app.test/api/v1/events?cursor=42&timeout=0',
    'long-poll resumes with cursor, first asking for an answer at once: ' + (lp && lp.url));
  is(lp && lp.init.headers, { Authorization: 'Bearer S3' }, 'long-poll sends the credential in the header');
  c.disconnect();

  longpollWorks = true;
  fetches.length = 0;
  fetchInits.length = 0;
  const d = new RealtimeClient({ ...base });
  d.connect('S3b', { lastEventId: 7 });
  await advance(100);
  is(d.transport, 'longpoll', 'long-poll is used when the others fail');
  await advance(25000);
  const polls = fetches.filter((u) => u.includes('/events?'));
  is(polls.slice(0, 2).map((u) => new URL(u).searchParams.get('timeout')), ['0', '25'],
    'once the first answer came, long-polls wait 25 s');
  d.disconnect();
  longpollWorks = false;
}

// ------------------------------------------------------------------ a browser without WebSocket or EventSource

{
  longpollWorks = true;
  log.length = 0;
  // Node has neither global; passing null makes the client look for them there.
  const c = new RealtimeClient({ ...base, WebSocket: null, EventSource: null });
  c.connect('S7');
  await advance(100);
  is(c.transport, 'longpoll', 'without WebSocket and EventSource the client long-polls');
  // SSE goes through fetch (which this fake server refuses), not through EventSource.
  is(log.map((l) => l.kind).slice(0, 2), ['sse', 'longpoll'], 'without trying to construct the missing ones');
  c.disconnect();
  longpollWorks = false;
}

// ------------------------------------------------------------------ an invalid session ends it

{
  FakeWs.mode = 'invalid';
  FakeWs.instances = [];
  const c = new RealtimeClient({ ...base });
  let invalid = null;
  c.on('session.invalid', (d) => { invalid = d.session_id; });
  c.connect('S4');
  await advance(60000);
  is(invalid, 'S4', 'close code 4004 ends in session.invalid');
  is(FakeWs.instances.length, 1, 'and no more attempts');
  is(c.status, 'disconnected', 'the client is disconnected');
}

{
  FakeWs.mode = 'accept';
  FakeWs.instances = [];
  const c = new RealtimeClient({ ...base });
  c.configure({ baseUrl: 'https://example.test/tools/' });
  c.connect('S6');
  await advance(0);
  is(FakeWs.instances[0] && FakeWs.instances[0].url, 'wss://example.test/tools/api/v1/ws',
    'configure() moves the client under a path, https becomes wss');
  c.disconnect();
  let threw = false;
  try {
    c.configure({ transports: [] });
  } catch (e) {
    threw = true;
  }
  ok(threw, 'configure() refuses an empty transport list');
}

{
  let threw = false;
  try {
    new RealtimeClient({ transports: ['carrier-pigeon'] });
  } catch (e) {
    threw = true;
  }
  ok(threw, 'an unknown transport name is refused');
}

// ------------------------------------------------------------------ SSE read with fetch

// A response whose body the test writes chunk by chunk, as a server's event stream arrives.
function streamResponse(status = 200, headers = {}) {
  const chunks = [];
  let wake = null;
  let ended = false;
  const enc = new TextEncoder();
  const h = new Map(Object.entries({ 'Content-Type': 'text/event-stream', ...headers }));
  return {
    status,
    headers: h,
    write(text) {
      chunks.push(enc.encode(text));
      if (wake) wake();
    },
    end() {
      ended = true;
      if (wake) wake();
    },
    body: {
      getReader: () => ({
        read: async () => {
          while (!chunks.length && !ended) await new Promise((res) => { wake = res; });
          wake = null;
          if (chunks.length) return { value: chunks.shift(), done: false };
          return { value: undefined, done: true };
        },
        cancel: async () => { ended = true; },
      }),
    },
    text: async () => '',
    json: async () => null,
  };
}

const TOKEN = 'itk.' + 'A'.repeat(32);

{
  // Only SSE offered; the stream splits lines and events across reads, has comments and CRLF.
  const streams = [];
  const seenUrls = [];
  const f = async (url, init = {}) => {
    seenUrls.push(url);
    if (url.endsWith('/health')) return { status: 200, headers: new Map(), json: async () => ({ status: 'ok' }) };
    if (url.includes('/events/stream')) {
      const r = streamResponse();
      r.init = init;
      streams.push(r);
      return r;
    }
    throw new TypeError('Failed to fetch');
  };
  const c = new RealtimeClient({ ...base, fetch: f, transports: ['sse', 'longpoll'] });
  const got = [];
  c.on('*', (m) => { if (m.type !== 'connection.status') got.push(m.type + ':' + (m.id || '')); });
  c.connect(TOKEN, { lastEventId: 3 });
  await advance(2000);
  is(c.transport, 'sse', 'SSE over fetch: the answer with text/event-stream makes it live');
  const s1 = streams[0];
  is(s1.init.headers.Authorization, 'Bearer ' + TOKEN, 'the token goes in the Authorization header');
  s1.write(': keepalive\n\nevent: connection.status\ndata: {"type":"connection.status","data":{"status":"connected"}}\n\n');
  s1.write('id: 4\nevent: image.deleted\r\ndata: {"id":4,"type":"image.del');
  s1.write('eted","data":{}}\r\n\r');
  s1.write('\nid: 5\ndata: {"id":5,"type":"image.deleted",\ndata: "data":{}}\n\n');
  await advance(10);
  is(got, ['image.deleted:4', 'image.deleted:5'], 'events split across reads, CRLF and multi-line data are parsed');
  s1.end();
  await advance(1500);
  ok(streams.length === 2 && streams[1] && new URL(seenUrls.filter((u) => u.includes('/events/stream'))[1]).searchParams.get('last_event_id') === '5',
    'a stream that ends is reopened after the last id');
  ok(seenUrls.every((u) => !u.includes(TOKEN)), 'the token is in no URL the client asked for');

  // The server revokes the device: session.revoked, then the stream ends.
  const revoked = [];
  const statuses = [];
  c.on('session.revoked', (d) => revoked.push(d));
  c.on('connection.status', (d) => statuses.push(d.status));
  streams[1].write('event: session.revoked\ndata: {"type":"session.revoked","data":{"reason":"revoked","device_id":"dev_x"}}\n\n');
  streams[1].end();
  await advance(60000);
  is(revoked, [{ reason: 'revoked', device_id: 'dev_x' }], 'session.revoked reaches handlers once');
  is(c.status, 'revoked', 'the status is revoked');
  is(streams.length, 2, 'and the client does not reconnect');
  is(statuses[statuses.length - 1], 'revoked', 'connection.status says revoked');
}

{
  // A WebSocket closed with 4401 (a token refused at once): revoked, no loop. 4403: forbidden.
  for (const [code, want, event] of [[4401, 'revoked', 'session.revoked'], [4403, 'forbidden', 'session.forbidden']]) {
    FakeWs.mode = 'accept';
    FakeWs.instances = [];
    const c = new RealtimeClient({ ...base });
    const heard = [];
    c.on(event, (d) => heard.push(d));
    c.connect(TOKEN);
    await advance(0);
    FakeWs.instances[0].onclose({ code });
    await advance(120000);
    is([c.status, FakeWs.instances.length, heard.length], [want, 1, 1],
      'close ' + code + ': status ' + want + ', ' + event + ' once, no reconnect');
  }
}

{
  // Long-poll answered 401 with the server's Bearer challenge: revoked. The same status with a
  // web server's Basic challenge (a site behind a password) is only a failure to retry.
  for (const [challenge, want] of [['Bearer error="invalid_token"', 'revoked'], ['Basic realm="x"', 'offline']]) {
    let polls = 0;
    const f = async (url) => {
      if (url.endsWith('/health')) return { status: 200, headers: new Map(), json: async () => ({}) };
      if (url.includes('/events?')) {
        polls++;
        return { status: 401, headers: new Map([['WWW-Authenticate', challenge]]), text: async () => '{}' };
      }
      throw new TypeError('Failed to fetch');
    };
    const c = new RealtimeClient({ ...base, fetch: f, transports: ['longpoll'] });
    c.connect(TOKEN);
    await advance(60000);
    ok(c.status === want && (want === 'revoked' ? polls === 1 : polls > 2),
      'long-poll 401 with ' + challenge.split(' ')[0] + ': ' + c.status + ' after ' + polls + ' request(s)');
    c.disconnect();
  }
}

{
  // Presence: the identity in the first message, a snapshot on (re)connect, events after it.
  FakeWs.mode = 'accept';
  FakeWs.instances = [];
  const asked = [];
  const f = async (url, init = {}) => {
    asked.push({ url, init });
    if (url.endsWith('/presence')) {
      return { status: 200, headers: new Map(), json: async () => ({ last_event_id: 7, presence: [
        { client_id: 'tabA', label: 'Chrome on Linux', transport: 'websocket', state: 'connected' },
        { client_id: 'phone', label: 'Phone', transport: 'http', state: 'uploading' }] }) };
    }
    return fakeFetch(url, init);
  };
  const c = new RealtimeClient({ ...base, fetch: f, presence: true, clientId: 'tabA', clientLabel: 'Chrome on Linux', clientSource: 'web' });
  const snaps = [];
  c.on('presence', (d) => snaps.push(d.presence.map((e) => e.client_id + '/' + e.state).sort().join(',')));
  c.connect('S8', { lastEventId: 5 });
  await advance(0);
  const ws = FakeWs.instances[0];
  is(JSON.parse(ws.sent[0]), { type: 'auth', credential: 'S8', last_event_id: 5, client_id: 'tabA',
    client_label: 'Chrome on Linux', client_source: 'web' }, 'the auth message names this tab for presence');
  const p = asked.find((a) => a.url.endsWith('/presence'));
  ok(p && p.init.headers.Authorization === 'Bearer S8', 'the snapshot is asked with the credential in the header');
  // An event already in the snapshot (id <= 7) changes nothing; later ones do.
  ws.frame({ id: 6, type: 'presence.left', data: { client_id: 'phone', reason: 'closed' } });
  ws.frame({ id: 8, type: 'presence.updated', data: { client_id: 'phone', state: 'idle' } });
  ws.frame({ id: 9, type: 'presence.joined', data: { client_id: 'cli1', label: 'imagetools-watch', state: 'connected' } });
  ws.frame({ id: 10, type: 'presence.left', data: { client_id: 'tabA', reason: 'closed' } });
  await advance(10);
  is(snaps, ['phone/uploading,tabA/connected', 'phone/idle,tabA/connected', 'cli1/connected,phone/idle,tabA/connected',
    'cli1/connected,phone/idle'], 'snapshot, then each presence event after its position, as a presence event');
  is(c.presence.length, 2, 'client.presence holds the current list');
  c.disconnect();
}

Date.now = realNow;
process.exit(failures ? 1 : 0);

// imagetools-shared.js: one realtime connection per browser for all tabs of a session, an ES module.
//
// Usage is that of imagetools-realtime.js, whose client it wraps:
//
//   import { realtime } from '/js/imagetools-shared.js';
//   realtime.on('image.uploaded', (data, msg) => addToGallery(data));
//   realtime.connect(sessionId);
//
// Browsers give a site six HTTP/1.1 connections. A person with the page open in several tabs,
// each holding an SSE stream or a long-poll, would otherwise starve their own uploads behind
// streams that never end. Here the tabs of one session elect a leader (Web Locks where the
// browser has them, else an election with leases over BroadcastChannel); the leader runs the
// real RealtimeClient and relays every event and every state change over BroadcastChannel; each
// tab keeps its own position and drops what it has seen, so handlers in every tab see every
// event once and in order, also when the leader closes, crashes or is frozen and another tab
// takes over. `shared: false` gives a client its own connection. docs/browser-client.md
// ("Many tabs") describes it in full.

import { HandlerHost, RealtimeClient } from './imagetools-realtime.js';

export { RealtimeClient };

const SHARED_DEFAULTS = {
  shared: true, // false: this client holds its own connection, like a RealtimeClient
  heartbeatInterval: 500, // how often the leader says it is alive, ms
  takeoverAfter: 2000, // a leader silent this long is asked once more, then replaced, ms
  pingWait: 500, // how long a silent leader has to answer that last question, ms (+ jitter)
  positionWait: 150, // how long a new leader collects the other tabs' positions, ms
  leaderWait: 300, // without Web Locks: how long a joining tab listens for a leader, ms
  claimWait: 250, // without Web Locks: how long a claim to lead stands before it counts, ms
  replayLimit: 1000, // events each tab keeps for tabs that join late or fall behind
  gapWait: 4000, // how long a tab waits for a missing event before it asks the app to reload, ms
};

// Options of this module, not passed to the RealtimeClient it runs. BroadcastChannel, locks and
// Client replace the browser's objects (tests, other environments); locks: null forces the
// election over BroadcastChannel.
const OWN_KEYS = new Set([...Object.keys(SHARED_DEFAULTS), 'BroadcastChannel', 'locks', 'Client']);

function isValidId(n) {
  return Number.isSafeInteger(n) && n >= 0;
}

// A 64-bit hash of a string as 16 hex digits. The lock and channel names derive from the
// session but must not contain it: the id is a capability, and names of locks and channels are
// visible to every script of the origin (navigator.locks.query()) and in the browser's
// internals. Two 32-bit multiply-xor hashes with different constants, each finished with an
// avalanche step; collisions between the few sessions one browser holds are out of reach.
function hash64(s) {
  let a = 0x811c9dc5;
  let b = 0x27d4eb2f;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  const fin = (h) => {
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return (h >>> 0).toString(16).padStart(8, '0');
  };
  return fin(a) + fin(b ^ a);
}

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const v = c.getRandomValues(new Uint32Array(2));
    return v[0].toString(16).padStart(8, '0') + v[1].toString(16).padStart(8, '0');
  }
  return Math.random().toString(16).slice(2, 10) + Math.random().toString(16).slice(2, 10);
}

// Whether leader a = {ep, id} outranks b: a newer epoch wins; within one, the smaller tab id.
function outranks(a, b) {
  return a.ep > b.ep || (a.ep === b.ep && a.id < b.id);
}

export class SharedRealtimeClient extends HandlerHost {
  /**
   * @param {object} [options]  everything RealtimeClient takes (baseUrl, transports, timings),
   *   and: shared (default true), heartbeatInterval, takeoverAfter, pingWait, positionWait,
   *   leaderWait, claimWait, replayLimit, gapWait. See docs/browser-client.md, "Many tabs".
   */
  constructor(options = {}) {
    super('imagetools-shared');
    this._opts = { ...SHARED_DEFAULTS, ...options };
    this._sessionId = null;
    this._lastSession = null;
    this._lastEventId = 0;
    this._ring = []; // the last replayLimit events this tab handed on, oldest first
    this._held = new Map(); // id -> event that arrived before an earlier one (a gap)
    this._gapSince = 0;
    this._gapAsked = 0;
    this._role = null; // null, 'own', 'follower', 'leader', 'suspended'
    this._tabId = randomId();
    this._gen = 0; // bumps on every connect()/disconnect(), so late callbacks can tell
    this._epoch = 0; // the highest leader epoch seen
    this._leader = null; // {id, ep, at} of the leader this tab follows (itself when leading)
    this._inner = null;
    this._innerOff = null;
    this._innerFrom = 0; // the position the inner client started from
    this._innerAt = 0; // when it started
    this._relayed = 0; // the highest id the inner client relayed since it started
    this._bc = null;
    this._name = null;
    this._lockCtl = null;
    this._lockToken = null;
    this._release = null;
    this._stealing = false;
    this._locksBroken = false;
    this._claimEp = 0;
    this._positions = null;
    this._timers = {};
    this._view = { status: 'disconnected', transport: null, fallback: false, online: true };
    this._viewKey = '';
    this._env = false;
    this._onHide = () => this._suspend();
    this._onShow = (ev) => {
      if (ev.type === 'resume' || ev.persisted) this._resume();
    };
  }

  // ------------------------------------------------------------------ the public API

  /** Changes options; transport options reach a running connection from its next connect(). */
  configure(options = {}) {
    this._opts = { ...this._opts, ...options };
    if (this._inner) this._inner.configure(this._innerOptions());
    return this;
  }

  /** The transport of the shared connection ('websocket', 'sse', 'longpoll'), or null. */
  get transport() {
    return this._view.transport;
  }

  /** The id of the last event handed to this tab's handlers (0 before any). */
  get lastEventId() {
    return this._lastEventId;
  }

  /** The shared connection's status: 'disconnected', 'connecting', 'connected', 'degraded', 'offline'. */
  get status() {
    return this._view.status;
  }

  /** False while the leader's /api/v1/health checks fail or the browser reports no network. */
  get online() {
    return this._view.online && !(typeof navigator !== 'undefined' && navigator.onLine === false);
  }

  /** The session connected to, or null. */
  get sessionId() {
    return this._sessionId;
  }

  /**
   * What this tab does: 'leader' (holds the connection for every tab), 'follower' (receives
   * from the leader), 'own' (its own connection: shared: false, or no BroadcastChannel),
   * 'suspended' (hidden in the back/forward cache or frozen), or null when not connected.
   */
  get role() {
    return this._role;
  }

  /**
   * Connects to a session, resuming after lastEventId when it is the same session as before
   * (or after options.lastEventId), as RealtimeClient.connect does; the connection itself is
   * shared with the other tabs of this browser on the same server and session.
   */
  connect(sessionId, options = {}) {
    if (typeof sessionId !== 'string' || !sessionId) throw new TypeError('connect: session id required');
    if (sessionId !== this._lastSession) {
      this._lastEventId = 0;
      this._ring = [];
    }
    this._lastSession = sessionId;
    if (isValidId(options.lastEventId)) {
      this._lastEventId = options.lastEventId;
      this._ring = [];
    }
    this._stop();
    this._sessionId = sessionId;
    this._gen++;
    const Bc = this._opts.BroadcastChannel || globalThis.BroadcastChannel;
    if (!this._opts.shared || typeof Bc !== 'function') {
      this._role = 'own';
      this._startInner(this._lastEventId);
      return;
    }
    // One connection per server and session. Sessions are not multiplexed over one connection:
    // every transport's URL and the server's checks are per session, and a tab of another
    // session is another person's view, whose events must not pass through this one.
    this._name = 'imagetools-realtime:' + hash64(this._apiBase() + '\n' + sessionId);
    this._bc = new Bc(this._name);
    this._bc.onmessage = (ev) => this._onMessage(ev.data);
    this._listenEnvironment(true);
    this._join();
  }

  /** Closes this tab's part (hands the connection to another tab when it led); handlers stay. */
  disconnect() {
    this._stop();
    this._gen++;
    this._sessionId = null;
    this._setView({ status: 'disconnected', transport: null, fallback: false, online: this._view.online });
  }

  // ------------------------------------------------------------------ joining and leading

  _apiBase() {
    const base = this._opts.baseUrl || (typeof location !== 'undefined' ? location.origin : '');
    return base.replace(/\/+$/, '');
  }

  _innerOptions() {
    const o = {};
    for (const [k, v] of Object.entries(this._opts)) if (!OWN_KEYS.has(k)) o[k] = v;
    return o;
  }

  _locks() {
    if (this._locksBroken) return null;
    const l = 'locks' in this._opts ? this._opts.locks : typeof navigator !== 'undefined' ? navigator.locks : null;
    return l && typeof l.request === 'function' ? l : null;
  }

  _clear(name) {
    const t = this._timers[name];
    if (t !== undefined) {
      clearTimeout(t);
      clearInterval(t);
      delete this._timers[name];
    }
  }

  _clearAll() {
    for (const name of Object.keys(this._timers)) this._clear(name);
  }

  _post(m) {
    if (!this._bc) return;
    m.from = this._tabId;
    try {
      this._bc.postMessage(m);
    } catch (e) {
      // A closed channel (the page is going away): nobody is left to tell.
    }
  }

  // Becomes a follower: says where it stands (a leader answers at once and replays what this
  // tab lacks), queues for the lock, and watches the leader's heartbeat.
  _join() {
    this._role = 'follower';
    this._leader = null;
    this._joinedAt = Date.now();
    this._setView({ status: 'connecting', transport: null, fallback: false, online: this._view.online });
    this._post({ k: 'hello', pos: this._lastEventId });
    if (this._locks()) this._requestLock(false);
    this._clear('watch');
    this._timers.watch = setInterval(() => this._watch(), this._opts.heartbeatInterval);
  }

  // A follower's check, every heartbeat interval, that its leader still speaks.
  _watch() {
    if (this._role !== 'follower' || this._timers.suspect || this._timers.claim || this._stealing) return;
    const o = this._opts;
    const locks = this._locks();
    if (!this._leader && !locks) {
      // No leader answered the hello: the first tab, or the others are gone. Claim at once.
      if (Date.now() - this._joinedAt >= o.leaderWait) this._claim();
      return;
    }
    const since = this._leader ? this._leader.at : this._joinedAt;
    if (Date.now() - since < o.takeoverAfter) return;
    // Silent for takeoverAfter. Timers of background tabs are throttled (down to once a minute
    // in Chromium), messages are not: a leader that is merely throttled answers this ping at
    // once, a frozen or hung one does not. The jitter spreads the followers' take-overs.
    this._post({ k: 'ping' });
    this._timers.suspect = setTimeout(() => {
      delete this._timers.suspect;
      const last = this._leader ? this._leader.at : this._joinedAt;
      if (this._role !== 'follower' || Date.now() - last < o.takeoverAfter) return;
      if (this._locks()) this._requestLock(true);
      else this._claim();
    }, o.pingWait + Math.random() * o.heartbeatInterval);
  }

  // Web Locks: every tab of the session queues for one exclusive lock, held for the leader's
  // life and freed by the browser when its tab closes or crashes, so the next in the queue
  // leads at once. steal takes it from a leader that stopped answering.
  _requestLock(steal) {
    const locks = this._locks();
    const gen = this._gen;
    const token = {};
    if (this._lockCtl) this._lockCtl.abort();
    this._lockCtl = steal ? null : new AbortController();
    this._lockToken = token;
    this._stealing = steal;
    const opts = steal ? { mode: 'exclusive', steal: true } : { mode: 'exclusive', signal: this._lockCtl.signal };
    let p;
    try {
      p = locks.request(this._name, opts, () => new Promise((release) => {
        if (gen !== this._gen || this._lockToken !== token || this._role !== 'follower') {
          release();
          return;
        }
        this._stealing = false;
        this._lockCtl = null;
        this._release = release;
        this._becomeLeader(this._epoch + 1);
      }));
    } catch (e) {
      p = Promise.reject(e);
    }
    Promise.resolve(p).catch((e) => {
      // Left the queue (this tab aborted), or stolen: another tab found this one silent. Any
      // other error means locks do not work here (an opaque origin, a sandboxed frame): the
      // tabs' election over BroadcastChannel takes their place.
      if (!e || e.name !== 'AbortError') this._locksBroken = true;
      if (gen !== this._gen || this._lockToken !== token) return;
      this._stealing = false;
      if (this._role === 'leader') this._stepDown(false);
    });
  }

  // Without Web Locks (older browsers; pages outside a secure context, e.g. plain HTTP on a
  // LAN address): a tab claims leadership for the next epoch and leads if, within claimWait,
  // no live leader spoke and no better claim (same epoch, smaller tab id) was heard.
  _claim() {
    const ep = this._epoch + 1;
    this._claimEp = ep;
    this._post({ k: 'claim', ep });
    this._clear('claim');
    this._timers.claim = setTimeout(() => {
      delete this._timers.claim;
      if (this._role !== 'follower' || this._claimEp !== ep) return;
      this._claimEp = 0;
      this._becomeLeader(Math.max(ep, this._epoch + 1));
    }, this._opts.claimWait);
  }

  _cancelClaim() {
    this._claimEp = 0;
    this._clear('claim');
  }

  _becomeLeader(ep) {
    this._clear('watch');
    this._clear('suspect');
    this._cancelClaim();
    this._role = 'leader';
    this._epoch = Math.max(this._epoch, ep);
    this._leader = { id: this._tabId, ep: this._epoch, at: Date.now() };
    // The connection starts from the lowest position any live tab reports, so that no tab
    // misses an event; each tab drops what it has already seen.
    this._positions = [this._lastEventId];
    this._post({ k: 'who', ep: this._epoch });
    this._beat();
    this._timers.beat = setInterval(() => this._beat(), this._opts.heartbeatInterval);
    this._timers.start = setTimeout(() => {
      delete this._timers.start;
      const from = Math.min(...this._positions);
      this._positions = null;
      if (this._role === 'leader') this._startInner(from);
    }, this._opts.positionWait);
  }

  _beat() {
    if (this._role !== 'leader') return;
    this._leader.at = Date.now();
    this._post({ k: 'hb', ep: this._leader.ep, view: this._view, pos: this._lastEventId });
  }

  // Leaves the lead: another tab outranks this one (it stole the lock or leads a newer epoch),
  // or this tab is going away (bye tells the others to take over now rather than after the
  // heartbeat timeout).
  _stepDown(bye, rejoin = true) {
    this._clear('beat');
    this._clear('start');
    this._positions = null;
    this._stopInner();
    if (bye) this._post({ k: 'bye', ep: this._leader ? this._leader.ep : this._epoch });
    if (this._release) {
      this._release();
      this._release = null;
    }
    if (rejoin) this._join();
  }

  // Frozen by the browser, or put in the back/forward cache: a leader hands over first.
  _suspend() {
    if (this._role === 'leader') this._stepDown(true, false);
    if (this._role !== 'follower' && this._role !== 'leader') return;
    this._letGo();
    this._role = 'suspended';
  }

  // Stops every timer, any claim to leadership and any wait for the lock.
  _letGo() {
    this._clearAll();
    this._cancelClaim();
    if (this._lockCtl) this._lockCtl.abort();
    this._lockCtl = null;
    this._lockToken = null;
    this._stealing = false;
  }

  _resume() {
    if (this._role === 'suspended' && this._sessionId) this._join();
  }

  _stop() {
    if (this._role === 'leader') this._stepDown(true, false);
    this._stopInner();
    this._letGo();
    if (this._bc) {
      this._bc.onmessage = null;
      this._bc.close();
      this._bc = null;
    }
    this._listenEnvironment(false);
    this._held.clear();
    this._gapSince = 0;
    this._leader = null;
    this._role = null;
  }

  _listenEnvironment(on) {
    if (typeof window === 'undefined' || typeof window.addEventListener !== 'function' || on === this._env) return;
    this._env = on;
    const m = on ? 'addEventListener' : 'removeEventListener';
    window[m]('pagehide', this._onHide);
    window[m]('pageshow', this._onShow);
    if (typeof document !== 'undefined') {
      // The Page Lifecycle events: a tab the browser freezes hands its lead over first.
      document[m]('freeze', this._onHide);
      document[m]('resume', this._onShow);
    }
  }

  // ------------------------------------------------------------------ the real connection

  _startInner(from) {
    const Client = this._opts.Client || RealtimeClient;
    const inner = new Client(this._innerOptions());
    this._inner = inner;
    this._innerFrom = from;
    this._innerAt = Date.now();
    this._relayed = from;
    this._innerOff = inner.on('*', (msg) => {
      if (this._inner === inner) this._fromInner(msg);
    });
    inner.connect(this._sessionId, { lastEventId: from });
  }

  _stopInner() {
    const inner = this._inner;
    if (!inner) return;
    this._inner = null;
    if (this._innerOff) this._innerOff();
    this._innerOff = null;
    inner.disconnect();
  }

  _fromInner(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'connection.status') {
      const d = msg.data || {};
      this._setView(d);
      this._beat();
      return;
    }
    if (msg.type === 'session.invalid') {
      if (this._role === 'leader') this._post({ k: 'invalid', msg });
      this._invalid(msg);
      return;
    }
    if (this._role === 'leader') {
      if (isValidId(Number(msg.id))) this._relayed = Math.max(this._relayed, Number(msg.id));
      this._post({ k: 'ev', msg });
    }
    this._take(msg);
  }

  _invalid(msg) {
    this.disconnect();
    this._emit(msg);
  }

  // ------------------------------------------------------------------ the channel

  _onMessage(m) {
    if (!m || typeof m !== 'object' || typeof m.k !== 'string' || m.from === this._tabId) return;
    const role = this._role;
    if (role === null) return;
    if (typeof m.ep === 'number' && m.ep > this._epoch) this._epoch = m.ep;
    switch (m.k) {
      case 'ev':
        // From the leader, or from a leader that does not know yet that it was replaced: the
        // event is real either way, and the position filter drops what this tab has seen.
        this._take(m.msg);
        break;
      case 'replay':
        if (m.to === this._tabId && Array.isArray(m.msgs)) for (const msg of m.msgs) this._take(msg);
        break;
      case 'hb':
        this._onBeat(m);
        break;
      case 'bye':
        if (role === 'follower' && this._leader && this._leader.id === m.from) {
          this._leader = null;
          this._joinedAt = Date.now() - this._opts.takeoverAfter;
          this._setView({ status: 'connecting', transport: null, fallback: false, online: this._view.online });
          // With Web Locks the browser hands the lock to the next tab in the queue by itself.
          if (!this._locks()) this._claim();
        }
        break;
      case 'claim':
        if (role === 'leader') {
          this._beat();
        } else if (role === 'follower' && this._claimEp &&
          outranks({ ep: m.ep, id: m.from }, { ep: this._claimEp, id: this._tabId })) {
          this._cancelClaim();
          this._joinedAt = Date.now();
        }
        break;
      case 'ping':
        if (role === 'leader') this._beat();
        break;
      case 'hello':
        if (role === 'leader') {
          this._beat();
          this._catchUp(m.from, Number(m.pos));
        }
        break;
      case 'who':
        if (role === 'follower' || role === 'suspended') this._post({ k: 'pos', pos: this._lastEventId });
        break;
      case 'pos':
        if (role === 'leader') this._catchUp(m.from, Number(m.pos));
        break;
      case 'invalid':
        if (m.msg && m.msg.type === 'session.invalid') this._invalid(m.msg);
        break;
      default:
        break;
    }
  }

  _onBeat(m) {
    const them = { ep: m.ep, id: m.from };
    if (typeof m.ep !== 'number') return;
    if (this._role === 'leader') {
      // Two leaders: one was frozen, or two claims crossed. The outranked one steps down.
      if (outranks(them, this._leader)) this._stepDown(false);
      else this._beat();
      if (this._role === 'leader') return;
    }
    if (this._role !== 'follower') return;
    const now = Date.now();
    const cur = this._leader;
    if (cur && cur.id !== m.from && !outranks(them, cur) && now - cur.at < this._opts.takeoverAfter) return;
    if (this._claimEp && m.ep >= this._claimEp - 1) this._cancelClaim();
    this._leader = { id: m.from, ep: m.ep, at: now };
    if (m.view && typeof m.view === 'object') this._setView(m.view);
  }

  // A tab at position pos (it joined, fell behind, or answered late): replay what it lacks from
  // this tab's recent events; if they do not reach back that far, restart the connection from
  // pos (the server keeps the log), unless it is still going to deliver pos + 1 anyway.
  _catchUp(tab, pos) {
    if (!isValidId(pos)) return;
    if (this._positions) {
      this._positions.push(pos);
      return;
    }
    if (pos >= this._lastEventId) return;
    const ring = this._ring;
    const msgs = ring.filter((e) => e.id > pos);
    if (msgs.length) this._post({ k: 'replay', to: tab, msgs });
    const covered = ring.length > 0 && ring[0].id <= pos + 1;
    if (covered) return;
    if (!this._inner) return;
    // Still to come from the running connection, or from one reopened for this (or a lower)
    // position a moment ago: a tab asks again while the replay is on its way.
    if (this._innerFrom <= pos && (this._relayed <= pos || Date.now() - this._innerAt < this._opts.gapWait)) return;
    this._stopInner();
    this._startInner(pos);
  }

  // ------------------------------------------------------------------ this tab's events

  // Hands an event to this tab's handlers once, in order. Events carry the session's gapless
  // sequence number, so an id beyond the next one means something is missing: it is held, the
  // leader is asked for what lies between, and if nothing fills the gap in gapWait the app is
  // told to reload (session.resync), never left with a silent hole.
  _take(msg) {
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (msg.type === 'session.resync') {
      const to = Number(msg.data && msg.data.last_event_id);
      if (isValidId(to)) {
        this._lastEventId = to;
        this._ring = [];
        for (const id of [...this._held.keys()]) if (id <= to) this._held.delete(id);
      }
      this._emit(msg);
      this._drain();
      return;
    }
    if (msg.id === undefined || msg.id === null) {
      this._emit(msg);
      return;
    }
    const id = Number(msg.id);
    if (!isValidId(id) || id <= this._lastEventId) return;
    if (id > this._lastEventId + 1) {
      if (this._held.size < this._opts.replayLimit) this._held.set(id, msg);
      this._gapCheck();
      return;
    }
    this._accept(msg);
    this._drain();
  }

  _accept(msg) {
    this._lastEventId = Number(msg.id);
    this._ring.push(msg);
    if (this._ring.length > this._opts.replayLimit) this._ring.shift();
    this._emit(msg);
  }

  _drain() {
    for (;;) {
      const next = this._held.get(this._lastEventId + 1);
      if (!next) break;
      this._held.delete(this._lastEventId + 1);
      this._accept(next);
    }
    for (const id of [...this._held.keys()]) if (id <= this._lastEventId) this._held.delete(id);
    if (!this._held.size) {
      this._gapSince = 0;
      this._clear('gap');
    }
  }

  _gapCheck() {
    const now = Date.now();
    if (!this._gapSince) this._gapSince = now;
    if (now - this._gapAsked >= this._opts.heartbeatInterval) {
      this._gapAsked = now;
      this._post({ k: 'hello', pos: this._lastEventId });
    }
    if (this._timers.gap) return;
    this._timers.gap = setTimeout(() => {
      delete this._timers.gap;
      if (!this._held.size) return;
      const first = Math.min(...this._held.keys());
      this._gapSince = 0;
      this._take({ type: 'session.resync', timestamp: new Date().toISOString(),
        data: { last_event_id: first - 1, reason: 'gap' } });
    }, this._opts.gapWait);
  }

  _emit(msg) {
    this._handlers.emit(msg);
  }

  // The connection's state as this tab reports it: the leader's (or its own) status, transport
  // and health, with this tab's own position. connection.status is emitted when anything a user
  // could see changed, as RealtimeClient does.
  _setView(v) {
    const status = typeof v.status === 'string' ? v.status : 'connecting';
    // Whatever else the client says about its connection (reason, retry_in, and fields a later
    // client may add) travels along; the position and role are this tab's own.
    const { last_event_id: _pos, shared: _shared, leader: _leader, ...rest } = v;
    this._view = { ...rest, status, transport: v.transport || null, fallback: !!v.fallback, online: v.online !== false };
    const key = [status, this._view.transport, this.online, this._view.fallback].join('/');
    if (key === this._viewKey) return;
    this._viewKey = key;
    const data = { ...this._view, online: this.online, last_event_id: this._lastEventId,
      shared: this._role !== 'own', leader: this._role === 'leader' };
    this._emit({ type: 'connection.status', timestamp: new Date().toISOString(), data });
  }
}

/** A shared client for apps that talk to one server (the page's own origin), shared across tabs. */
export const realtime = new SharedRealtimeClient();

// imagetools-realtime.js: the ImageTools realtime client (WebSocket, then SSE, then long-poll), an ES module.
//
// Usage, from a plain page or a Vue/React app, no build step:
//
//   import { realtime } from '/js/imagetools-realtime.js';
//   realtime.on('image.uploaded', (data, msg) => addToGallery(data));
//   realtime.on('connection.status', (data) => showIndicator(data.status, data.transport));
//   realtime.connect(credential);   // the session id, or a device token (itk....)
//
// The client never gives up on its own: it falls back from WebSocket to Server-Sent Events to
// long-polling when the better transport is missing or broken, probes the better ones again now
// and then, reconnects with exponential backoff and jitter, and resumes from the id of the last
// event it handled, so handlers see every event of the session exactly once and in order.
// The credential travels only in headers (Authorization: Bearer) or in the first WebSocket
// message, never in a URL: URLs end up in web server logs, proxies and browser history.
// docs/browser-client.md describes it in full.

const DEFAULT_TRANSPORTS = ['websocket', 'sse', 'longpoll'];

// Event types the server names on an SSE stream. EventSource only reports named events to
// listeners registered for that exact name, so the stream transport has to know them all;
// unnamed events ('message') are taken as well, for types added later.
const EVENT_TYPES = [
  'image.uploaded', 'image.updated', 'image.deleted', 'upload.started', 'upload.progress', 'upload.failed',
  'operation.started', 'operation.progress', 'operation.completed', 'operation.failed',
  'session.expiring', 'connection.status', 'session.resync', 'session.revoked',
  'presence.joined', 'presence.updated', 'presence.left', 'device.paired', 'device.revoked', 'message',
];

// Close codes of the bridge: the credential was refused (unknown, expired or revoked token), or
// it lacks the scope events need (an upload-only device), or the session is unknown.
const CLOSE_REFUSED = 4401;
const CLOSE_SCOPE = 4403;
const CLOSE_UNKNOWN_SESSION = 4004;

// A client id names one tab for presence (1-64 of [A-Za-z0-9_-]); it is not a secret.
const CLIENT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

const DEFAULTS = {
  baseUrl: '',
  transports: DEFAULT_TRANSPORTS,
  backoffBase: 1000, // first reconnect delay, ms
  backoffCap: 30000, // longest reconnect delay, ms
  pingInterval: 30000, // WebSocket heartbeat, ms
  pongTimeout: 10000, // a WebSocket without an answer this long after a ping is dead, ms
  connectTimeout: 10000, // a transport that shows no sign of life this long has failed, ms
  healthInterval: 30000, // /health polling while it succeeds, ms
  offlineProbeInterval: 2000, // /health polling while the server is away, ms (jittered)
  healthFirstWait: 1500, // how long connect() waits for the first /health answer before trying, ms
  upgradeInterval: 60000, // how often to try a better transport while on a fallback, ms
  longpollTimeout: 25, // seconds the server may hold a long-poll
  clientId: null, // this tab's name for presence; null: the connection does not announce itself
  clientLabel: '', // what presence shows for it ("Chrome on Linux"); a device token's label wins
  clientSource: '', // e.g. 'web'
  presence: false, // keep a presence list: snapshot from GET /presence on every (re)connect + events
};

// A connection that lasted this long without dropping resets the backoff, ms.
const STABLE_AFTER = 10000;

function jittered(ms) {
  // Between three quarters and one and a quarter of the nominal delay, so that many clients
  // cut off together by a restart do not all come back in the same instant.
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}

// The delay before reconnect attempt number `attempt` (0 = first): base, 2 base, 4 base, ...
// up to cap, each spread uniformly over -25 %..+25 % but kept between base and cap. The
// spread stays at the cap too (22.5-30 s by default), where a long outage has gathered the
// most clients.
function backoffDelay(base, cap, attempt) {
  const nominal = Math.min(cap, base * 2 ** Math.min(attempt, 30));
  const lower = Math.max(base, nominal * 0.75);
  const upper = Math.max(lower, Math.min(cap, nominal * 1.25));
  return Math.round(lower + Math.random() * (upper - lower));
}

function isValidId(n) {
  return Number.isSafeInteger(n) && n >= 0;
}

// ------------------------------------------------------------------ transports
//
// Each transport is a small object with close(); it reports through the callbacks it is given:
//   alive()        the first sign that the server answered properly (the connection works)
//   message(msg)   one parsed event object
//   fail(info)     the connection is over; info = {code, invalidSession} where known
// A transport calls fail at most once and nothing after it, and nothing after close().

// The identity a connection announces for presence, as query parameters (not secrets).
function identityParams(url, opts) {
  if (!opts.clientId || !CLIENT_ID_RE.test(opts.clientId)) return;
  url.searchParams.set('client_id', opts.clientId);
  if (opts.clientLabel) url.searchParams.set('client_label', String(opts.clientLabel).slice(0, 64));
  if (opts.clientSource) url.searchParams.set('client_source', String(opts.clientSource).slice(0, 32));
}

function fetchOf(opts) {
  return opts.fetch || (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : null);
}

// What a refused request says about the credential: 401 = unknown, expired or revoked token,
// 403 = valid but without the scope. Only the server's own Bearer challenge counts: a web server
// in front that asks for a password (WWW-Authenticate: Basic) says nothing about the token.
function refusal(r) {
  const challenge = (r.headers && r.headers.get && r.headers.get('WWW-Authenticate')) || '';
  if (!/^\s*Bearer\b/i.test(challenge)) return {};
  if (r.status === 401) return { refused: 'revoked' };
  if (r.status === 403) return { refused: 'forbidden' };
  return {};
}

class WebSocketTransport {
  constructor(client, credential, cb) {
    this.name = 'websocket';
    this.cb = cb;
    this.done = false;
    this.pingTimer = null;
    this.pongTimer = null;
    this.revoked = null;
    // No credential and no position in the URL: /api/v1/ws is the same for everyone, and the
    // first message (sent on open, before anything else) carries the credential, the position
    // and the identity. The bridge sends no event before it has checked that message.
    const url = new URL(client._apiUrl('/ws'));
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const Ws = client._opts.WebSocket || globalThis.WebSocket;
    if (typeof Ws !== 'function') {
      queueMicrotask(() => this._fail({ reason: 'unavailable' }));
      return;
    }
    try {
      this.ws = new Ws(url.toString());
    } catch (e) {
      queueMicrotask(() => this._fail({ reason: 'refused' }));
      return;
    }
    const opts = client._opts;
    this.connectTimer = setTimeout(() => this._fail({ reason: 'timeout' }), opts.connectTimeout);
    this.ws.onmessage = (ev) => {
      // Any frame proves the connection alive, so the heartbeat waits again from here.
      this._armPong(opts);
      if (typeof ev.data !== 'string') return;
      if (ev.data === 'pong') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      // The close that follows a session.revoked carries 4401; remember why.
      if (msg && msg.type === 'session.revoked') this.revoked = msg.data || msg;
      // Opening the socket is not enough: a proxy that strips the Upgrade header may accept
      // and close at once. The bridge's first frame (connection.status) is the proof.
      if (!this.alive) {
        this.alive = true;
        clearTimeout(this.connectTimer);
        this.cb.alive();
      }
      if (!this.done) this.cb.message(msg);
    };
    this.ws.onopen = () => {
      const auth = { type: 'auth', credential: client._credential, last_event_id: client.lastEventId };
      if (opts.clientId && CLIENT_ID_RE.test(opts.clientId)) {
        auth.client_id = opts.clientId;
        if (opts.clientLabel) auth.client_label = String(opts.clientLabel).slice(0, 64);
        if (opts.clientSource) auth.client_source = String(opts.clientSource).slice(0, 32);
      }
      try {
        this.ws.send(JSON.stringify(auth));
      } catch (e) {
        this._fail({ reason: 'refused' });
        return;
      }
      this.pingTimer = setInterval(() => {
        if (this.ws.readyState !== 1) return;
        try {
          this.ws.send('ping');
        } catch (e) {
          return;
        }
        this._armPong(opts, true);
      }, opts.pingInterval);
    };
    this.ws.onclose = (ev) => {
      const info = { reason: 'closed', code: ev.code, invalidSession: ev.code === CLOSE_UNKNOWN_SESSION };
      if (ev.code === CLOSE_REFUSED) info.refused = 'revoked';
      if (ev.code === CLOSE_SCOPE) info.refused = 'forbidden';
      if (this.revoked) info.revokedData = this.revoked;
      this._fail(info);
    };
    this.ws.onerror = () => {
      // onclose follows and carries the code; nothing to do here.
    };
  }

  _armPong(opts, start) {
    if (start) {
      if (this.pongTimer) return;
      this.pongTimer = setTimeout(() => {
        this._fail({ reason: 'heartbeat' });
      }, opts.pongTimeout);
    } else if (this.pongTimer) {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
  }

  _fail(info) {
    if (this.done) return;
    this.close();
    this.cb.fail(info);
  }

  close() {
    this.done = true;
    clearTimeout(this.connectTimer);
    clearTimeout(this.pongTimer);
    clearInterval(this.pingTimer);
    if (this.ws) {
      this.ws.onmessage = this.ws.onclose = this.ws.onerror = this.ws.onopen = null;
      try {
        this.ws.close(1000, 'client closed');
      } catch (e) {
        // Closing a socket that never opened may throw in some engines; it is gone either way.
      }
    }
  }
}

// Server-Sent Events read with fetch() and a streaming body reader, so that the credential goes
// in the Authorization header. Where the browser cannot stream a fetch body (none of the current
// ones), EventSource is the last resort: it cannot send headers, so the credential then has to
// travel in the query (docs/browser-client.md).
class SseTransport {
  constructor(client, credential, cb) {
    this.name = 'sse';
    this.cb = cb;
    this.done = false;
    this.client = client;
    const opts = client._opts;
    const fetchFn = fetchOf(opts);
    const streams = typeof globalThis.ReadableStream === 'function' && typeof globalThis.TextDecoder === 'function';
    const url = new URL(client._apiUrl('/events/stream'));
    url.searchParams.set('last_event_id', String(client.lastEventId));
    identityParams(url, opts);
    this.connectTimer = setTimeout(() => this._fail({ reason: 'timeout' }), opts.connectTimeout);
    if (fetchFn && streams) {
      this._fetchStream(fetchFn, url, credential);
      return;
    }
    this._eventSource(url, credential);
  }

  async _fetchStream(fetchFn, url, credential) {
    this.abort = typeof AbortController === 'function' ? new AbortController() : null;
    let r;
    try {
      r = await fetchFn(url.toString(), {
        headers: { Authorization: 'Bearer ' + credential, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: this.abort ? this.abort.signal : undefined,
      });
    } catch (e) {
      this._fail({ reason: 'error' });
      return;
    }
    if (this.done) return;
    const type = (r.headers && r.headers.get && r.headers.get('Content-Type')) || '';
    if (r.status !== 200 || !/^text\/event-stream/i.test(type)) {
      this._fail({ reason: 'http', code: r.status, ...refusal(r) });
      return;
    }
    if (!r.body || typeof r.body.getReader !== 'function') {
      // Answered, but this browser cannot read the body as it arrives.
      this._eventSource(url, credential);
      return;
    }
    this._alive();
    const reader = r.body.getReader();
    this.reader = reader;
    const dec = new TextDecoder();
    let buf = '';
    let ev = { type: '', data: [] };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (this.done) return;
        if (done) break;
        buf += dec.decode(value, { stream: true });
        // One line at a time; an event ends at an empty line (text/event-stream, WHATWG HTML 9.2).
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (buf[nl] === '\r' && nl + 1 === buf.length) break; // a \r\n split across reads
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
          if (line === '') {
            if (ev.data.length) this._deliver(ev.data.join('\n'));
            ev = { type: '', data: [] };
            if (this.done) return;
            continue;
          }
          if (line[0] === ':') continue; // a keepalive comment
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value[0] === ' ') value = value.slice(1);
          if (field === 'data') ev.data.push(value);
          else if (field === 'event') ev.type = value;
          // id: and retry: are the server's advice for EventSource; the client keeps its own
          // position from the events' ids and its own backoff.
        }
        // A line longer than any event the server writes means this is not an event stream.
        if (buf.length > 4 * 1024 * 1024) break;
      }
    } catch (e) {
      // The connection broke (network, server restart): the client reconnects.
    }
    this._fail({ reason: 'closed' });
  }

  _deliver(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (msg && msg.type === 'session.revoked') this.revoked = msg.data || msg;
    if (!this.done) this.cb.message(msg);
  }

  _eventSource(url, credential) {
    const Es = this.client._opts.EventSource || globalThis.EventSource;
    if (typeof Es !== 'function') {
      queueMicrotask(() => this._fail({ reason: 'unavailable' }));
      return;
    }
    // A new EventSource cannot be given a Last-Event-ID header (nor Authorization), so the
    // position and the credential travel in the query; the browser's own reconnects are not used.
    url.searchParams.set('session_id', credential);
    try {
      this.es = new Es(url.toString());
    } catch (e) {
      queueMicrotask(() => this._fail({ reason: 'refused' }));
      return;
    }
    this.es.onopen = () => this._alive();
    this.listener = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      this._alive();
      if (msg && msg.type === 'session.revoked') this.revoked = msg.data || msg;
      if (!this.done) this.cb.message(msg);
    };
    for (const t of EVENT_TYPES) this.es.addEventListener(t, this.listener);
    // EventSource retries by itself after a dropped stream but gives up for good after a non-200
    // answer or a wrong Content-Type, and it knows nothing of backoff with a cap or of other
    // transports. Every error therefore ends this transport and the client decides what next.
    this.es.onerror = () => this._fail({ reason: 'error' });
  }

  _alive() {
    if (this.alive || this.done) return;
    this.alive = true;
    clearTimeout(this.connectTimer);
    this.cb.alive();
  }

  _fail(info) {
    if (this.done) return;
    if (this.revoked) info = { ...info, refused: 'revoked', revokedData: this.revoked };
    this.close();
    this.cb.fail(info);
  }

  close() {
    this.done = true;
    clearTimeout(this.connectTimer);
    if (this.abort) this.abort.abort();
    if (this.reader) this.reader.cancel().catch(() => {});
    if (this.es) {
      for (const t of EVENT_TYPES) this.es.removeEventListener(t, this.listener);
      this.es.onopen = this.es.onerror = null;
      this.es.close();
    }
  }
}

class LongPollTransport {
  constructor(client, credential, cb) {
    this.name = 'longpoll';
    this.client = client;
    this.credential = credential;
    this.cb = cb;
    this.done = false;
    this.abort = null;
    queueMicrotask(() => this._loop());
  }

  async _loop() {
    const opts = this.client._opts;
    const fetchFn = fetchOf(opts);
    if (!fetchFn) {
      this._fail({ reason: 'unavailable' });
      return;
    }
    while (!this.done) {
      // Each request starts from the client's position (which a session.resync may have moved),
      // not from the server's cursor, so there is one position for every transport.
      const url = new URL(this.client._apiUrl('/events'));
      url.searchParams.set('cursor', String(this.client.lastEventId));
      // The first request asks for an immediate answer: it proves the route works (and fetches
      // the backlog) at once, rather than after a whole quiet wait.
      url.searchParams.set('timeout', String(this.alive ? opts.longpollTimeout : 0));
      identityParams(url, opts);
      this.abort = new AbortController();
      // The server answers within its timeout (plus keepalive spaces); a request that hangs far
      // longer went to a dead connection.
      const timer = setTimeout(() => this.abort.abort(), opts.longpollTimeout * 1000 + opts.connectTimeout);
      let body;
      try {
        const r = await fetchFn(url.toString(), {
          headers: { Authorization: 'Bearer ' + this.credential }, signal: this.abort.signal, cache: 'no-store',
        });
        // A 404 may mean an unknown session or a server without this route; the client asks
        // GET /session before it concludes the session is gone (see _checkSession).
        if (r.status !== 200) {
          this._fail({ reason: 'http', code: r.status, retryAfter: Number(r.headers.get('Retry-After')) || 0,
            ...refusal(r) });
          return;
        }
        // The body may begin with keepalive spaces, which JSON.parse skips.
        body = JSON.parse(await r.text());
      } catch (e) {
        this._fail({ reason: 'error' });
        return;
      } finally {
        clearTimeout(timer);
      }
      if (this.done) return;
      if (!body || !Array.isArray(body.events)) {
        this._fail({ reason: 'bad-response' });
        return;
      }
      if (!this.alive) {
        this.alive = true;
        this.cb.alive();
      }
      for (const msg of body.events) {
        if (this.done) return;
        this.cb.message(msg);
      }
      // A busy server (CGI mode past its waiter cap) answers at once with a hint to wait.
      const hint = Number(body.retry_after_ms || body.retry_ms) || 0;
      if (hint > 0 && !this.done) await new Promise((res) => setTimeout(res, Math.min(hint, 60000)));
    }
  }

  _fail(info) {
    if (this.done) return;
    this.done = true;
    this.cb.fail(info);
  }

  close() {
    this.done = true;
    if (this.abort) this.abort.abort();
  }
}

const TRANSPORT_CLASSES = { websocket: WebSocketTransport, sse: SseTransport, longpoll: LongPollTransport };

// ------------------------------------------------------------------ handlers

/**
 * The handlers registered with on(), by event type ('*' for every message), shared by
 * RealtimeClient and the many-tabs wrapper (imagetools-shared.js). name labels the console
 * message of a handler that throws.
 */
export class Handlers {
  constructor(name) {
    this._name = name;
    this._byType = new Map();
  }

  on(type, handler) {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    if (!this._byType.has(type)) this._byType.set(type, new Set());
    this._byType.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    const set = this._byType.get(type);
    if (!set) return;
    if (handler) set.delete(handler);
    else set.clear();
  }

  /** Calls handler(data, message) for msg.type, then handler(message) for '*'. */
  emit(msg) {
    const call = (fn, ...args) => {
      try {
        fn(...args);
      } catch (e) {
        // One faulty handler must not stop the others or the stream.
        console.error(this._name + ': handler for', msg.type, 'threw', e);
      }
    };
    const typed = this._byType.get(msg.type);
    if (typed) for (const fn of [...typed]) call(fn, msg.data, msg);
    const all = this._byType.get('*');
    if (all) for (const fn of [...all]) call(fn, msg);
  }
}

/**
 * What both clients share: on() and off() over their own Handlers, named name (RealtimeClient
 * and the many-tabs wrapper in imagetools-shared.js extend it).
 */
export class HandlerHost {
  constructor(name) {
    this._handlers = new Handlers(name);
  }

  /**
   * Registers handler(data, message) for events of type, or handler(message) for '*' (every
   * event, including the local connection.status). Returns a function that unregisters it.
   */
  on(type, handler) {
    return this._handlers.on(type, handler);
  }

  /** Unregisters a handler given to on(); without handler, every handler of type. */
  off(type, handler) {
    this._handlers.off(type, handler);
  }
}

// ------------------------------------------------------------------ the client

export class RealtimeClient extends HandlerHost {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl]  origin and path in front of /api/v1 ('' = this page's origin)
   * @param {string[]} [options.transports]  in order of preference; any of 'websocket', 'sse', 'longpoll'
   * Timing options (ms unless said): backoffBase, backoffCap, pingInterval, pongTimeout,
   * connectTimeout, healthInterval, upgradeInterval, longpollTimeout (s). See docs/browser-client.md.
   */
  constructor(options = {}) {
    super('imagetools-realtime');
    this._opts = { ...DEFAULTS, ...options };
    const unknown = this._opts.transports.filter((t) => !TRANSPORT_CLASSES[t]);
    if (unknown.length || !this._opts.transports.length) {
      throw new Error('RealtimeClient: unknown transport(s): ' + unknown.join(', '));
    }
    this._sessionId = null; // the credential connected with (a session id or a token)
    this._lastSession = null;
    this._ended = null; // 'revoked' or 'forbidden' once the server refused the credential
    this._presence = new Map(); // client_id -> entry
    this._presenceAt = -1; // last_event_id of the snapshot; -1 while none arrived
    this._presenceQueue = null; // presence events that came while a snapshot was on its way
    this._lastEventId = 0;
    this._active = null; // the transport delivering events
    this._activeLevel = -1; // its index in transports
    this._probe = null; // a better transport being tried while connected on a worse one
    this._attemptLevel = 0;
    this._failures = 0; // consecutive failed connection cycles, for backoff
    this._retryTimer = null;
    this._upgradeTimer = null;
    this._healthTimer = null;
    this._healthFailures = 0;
    this._healthKnown = false; // a /health answer arrived since connect()
    this._healthDue = 0; // when the next /health check is due (Date.now() ms)
    this._lacking = new Set(); // transports /health says this server does not offer
    this._firstAttemptTimer = null;
    this._online = true;
    this._serverDegraded = false;
    this._status = 'disconnected';
    this._statusKey = '';
    this._env = false;
    this._onOnline = () => this._wake('online');
    this._onOffline = () => this._setStatus();
    this._onVisible = () => {
      if (typeof document !== 'undefined' && document.visibilityState === 'visible') this._wake('visible');
    };
  }

  /**
   * Changes options (baseUrl, transports, timings) of this client; they apply from the next
   * connect(). Lets an app set up the shared `realtime` instance, e.g. for a site under a path.
   */
  configure(options = {}) {
    const next = { ...this._opts, ...options };
    const unknown = next.transports.filter((t) => !TRANSPORT_CLASSES[t]);
    if (unknown.length || !next.transports.length) {
      throw new Error('RealtimeClient: unknown transport(s): ' + unknown.join(', '));
    }
    this._opts = next;
    return this;
  }

  /** The transport delivering events now ('websocket', 'sse', 'longpoll'), or null. */
  get transport() {
    return this._active ? this._active.name : null;
  }

  /** The id of the last event handed to handlers (0 before any). */
  get lastEventId() {
    return this._lastEventId;
  }

  /**
   * 'disconnected', 'connecting', 'connected' (events flow), 'degraded' (events flow but the
   * server reports trouble), 'offline' (no transport works at the moment; retrying), or, after
   * the server refused the credential for good, 'revoked' or 'forbidden' (no more attempts).
   */
  get status() {
    return this._status;
  }

  /** False while /api/v1/health fails or the browser reports no network. */
  get online() {
    return this._online && !(typeof navigator !== 'undefined' && navigator.onLine === false);
  }

  /** The credential connected with (a session id or a device token), or null. */
  get sessionId() {
    return this._sessionId;
  }

  /** The same as sessionId: the credential in use, or null. */
  get credential() {
    return this._sessionId;
  }

  /** Internal: what transports present. */
  get _credential() {
    return this._sessionId;
  }

  /**
   * Who else is connected to the session (with options.presence): an array of entries
   * {client_id, device_id?, label, source, transport, state, since}, this tab's own included.
   */
  get presence() {
    return [...this._presence.values()];
  }

  /**
   * Connects to a session, resuming after lastEventId when it is the same session as before
   * (or after options.lastEventId). Connecting to another session starts from its beginning.
   */
  connect(sessionId, options = {}) {
    if (typeof sessionId !== 'string' || !sessionId) throw new TypeError('connect: session id or token required');
    this._ended = null;
    // The position belongs to a session: kept across disconnect() and connect() of the same
    // one, reset for another.
    if (sessionId !== this._lastSession) this._lastEventId = 0;
    this._lastSession = sessionId;
    if (isValidId(options.lastEventId)) this._lastEventId = options.lastEventId;
    this._teardown();
    this._sessionId = sessionId;
    this._failures = 0;
    this._listenEnvironment(true);
    // /health says whether the site runs a WebSocket bridge; without one, opening a WebSocket
    // only earns a 404 in the browser's console on every page load. The first attempt waits for
    // that answer, briefly: a server that does not answer at once is tried all the same.
    clearTimeout(this._healthTimer);
    this._healthTimer = null;
    this._healthKnown = false;
    this._checkHealthSoon(0);
    this._firstAttemptTimer = setTimeout(() => this._firstAttempt(), this._opts.healthFirstWait);
  }

  _firstAttempt() {
    clearTimeout(this._firstAttemptTimer);
    this._firstAttemptTimer = null;
    if (!this._sessionId || this._active || this._pending || this._retryTimer) return;
    this._attempt(0);
  }

  // The first level at or after level whose transport the server does not say it lacks.
  _usable(level) {
    const ts = this._opts.transports;
    while (level < ts.length - 1 && this._lacking.has(ts[level])) level++;
    return level;
  }

  /** Closes every connection and timer; handlers stay registered. */
  disconnect() {
    this._stop('disconnected');
  }

  _stop(status) {
    this._teardown();
    this._listenEnvironment(false);
    clearTimeout(this._healthTimer);
    this._healthTimer = null;
    this._sessionId = null;
    this._presence.clear();
    this._presenceAt = -1;
    this._presenceQueue = null;
    this._setStatus(status);
  }

  // The server refused the credential for good: a token unknown, expired or revoked (401, close
  // 4401, or a session.revoked message), or one whose scope does not cover events (403, close
  // 4403). Trying again would be refused again, so the client stops and says so, once.
  _refused(kind, data) {
    if (!this._sessionId) return;
    this._ended = kind;
    this._stop(kind);
    if (kind === 'revoked') {
      if (!this._revokedSeen) this._emitLocal('session.revoked', { reason: 'revoked', ...(data || {}) });
    } else {
      this._emitLocal('session.forbidden', { needed: 'view' });
    }
  }

  // -------------------------------------------------------------- internals

  _apiUrl(path) {
    const base = this._opts.baseUrl || (typeof location !== 'undefined' ? location.origin : '');
    return base.replace(/\/+$/, '') + '/api/v1' + path;
  }

  _teardown() {
    clearTimeout(this._firstAttemptTimer);
    this._firstAttemptTimer = null;
    clearTimeout(this._retryTimer);
    clearTimeout(this._upgradeTimer);
    clearTimeout(this._stableTimer);
    this._retryTimer = this._upgradeTimer = null;
    for (const t of [this._active, this._probe, this._pending]) if (t) t.close();
    this._active = this._probe = this._pending = null;
    this._activeLevel = -1;
  }

  _listenEnvironment(on) {
    if (typeof window === 'undefined' || on === this._env) return;
    this._env = on;
    const m = on ? 'addEventListener' : 'removeEventListener';
    window[m]('online', this._onOnline);
    window[m]('offline', this._onOffline);
    if (typeof document !== 'undefined') document[m]('visibilitychange', this._onVisible);
  }

  // Something suggests the network is back (or the user looks again): while waiting to
  // reconnect, do it now instead of at the end of the backoff; and check health at once.
  _wake(why) {
    if (!this._sessionId) return;
    if (why !== 'health') this._checkHealthSoon(0);
    if (this._retryTimer) {
      clearTimeout(this._retryTimer);
      this._retryTimer = null;
      this._failures = 0;
      this._attempt(0);
    } else {
      this._setStatus();
    }
  }

  // Starts the transport at level; on failure before it worked, the next level is tried at once.
  _attempt(level) {
    level = this._usable(level);
    this._attemptLevel = level;
    this._setStatus('connecting');
    this._startTransport(level, '_pending', (info) => this._attemptFailed(level, info));
  }

  // Starts the transport at level as this[slot] ('_pending' or '_probe'): once alive it is
  // promoted; its messages are dispatched while it is in the slot or active; a failure while in
  // the slot calls failedEarly(info), one once active is the active transport's failure.
  _startTransport(level, slot, failedEarly) {
    let t = null;
    const cb = {
      alive: () => {
        if (this[slot] !== t) return;
        this[slot] = null;
        this._promote(t, level);
      },
      message: (msg) => {
        if (this[slot] === t || this._active === t) this._dispatch(msg);
      },
      fail: (info) => {
        if (this[slot] === t) {
          this[slot] = null;
          failedEarly(info);
        } else if (this._active === t) {
          this._activeFailed(level, info);
        }
      },
    };
    t = new TRANSPORT_CLASSES[this._opts.transports[level]](this, this._sessionId, cb);
    this[slot] = t;
  }

  _promote(t, level) {
    if (this._active && this._active !== t) this._active.close();
    this._active = t;
    this._activeLevel = level;
    // What the previous connection's server said about itself no longer holds; a WebSocket or
    // SSE stream says it again in its first frame (long-poll has the health check).
    this._serverDegraded = false;
    // The backoff starts over only once the connection proved stable (it delivered an event
    // or lasted a while): a server that accepts and drops at once (its database away, a
    // crashing backend) must not be hammered every second by every client.
    clearTimeout(this._stableTimer);
    this._stableTimer = setTimeout(() => {
      if (this._active === t) this._failures = 0;
    }, STABLE_AFTER);
    this._scheduleUpgrade();
    this._setStatus();
    // Whatever happened while no transport delivered (entries that left, others that came) is
    // read again as a whole; the events then keep it current.
    if (this._opts.presence) this._loadPresence();
  }

  _attemptFailed(level, info) {
    if (info && info.invalidSession) return this._invalidSession();
    if (info && info.refused) return this._refused(info.refused, info.revokedData);
    if (level + 1 < this._opts.transports.length) {
      this._attempt(level + 1);
      return;
    }
    this._retryLater(0, info);
  }

  // A transport that worked dropped: try the same kind again after a backoff delay (a restart
  // of the server looks like this), starting from it rather than from the top of the list.
  _activeFailed(level, info) {
    clearTimeout(this._stableTimer);
    this._active = null;
    this._activeLevel = -1;
    clearTimeout(this._upgradeTimer);
    if (this._probe) {
      this._probe.close();
      this._probe = null;
    }
    if (info && info.invalidSession) return this._invalidSession();
    if (info && info.refused) return this._refused(info.refused, info.revokedData);
    this._retryLater(level, info);
  }

  _retryLater(level, info) {
    const opts = this._opts;
    let delay = backoffDelay(opts.backoffBase, opts.backoffCap, this._failures);
    if (info && info.retryAfter > 0) delay = Math.max(delay, Math.min(opts.backoffCap, info.retryAfter * 1000));
    this._failures++;
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._attempt(level);
    }, delay);
    this._retryAt = Date.now() + delay;
    // A connection that dropped may mean the server went away: check /health soon (and then
    // every offlineProbeInterval while it fails) rather than at the end of the healthy 30 s
    // interval, so that its return is noticed within a couple of seconds.
    const soon = jittered(opts.offlineProbeInterval);
    if (this._healthTimer && this._healthDue > Date.now() + soon) this._checkHealthSoon(soon);
    this._setStatus();
    // After a whole cycle failed, the session itself may be gone: a 404 then ends the attempts.
    this._checkSession();
  }

  // GET /session names the credential's session without putting the credential in the URL. A
  // 404 counts only with the problem type unknown-session: a server without the route answers
  // its generic not-found, which says nothing about the session.
  async _checkSession() {
    const id = this._sessionId;
    try {
      const r = await fetchOf(this._opts)(
        this._apiUrl('/session'), { cache: 'no-store', headers: { Authorization: 'Bearer ' + id } });
      if (this._sessionId !== id || this._active) return;
      if (refusal(r).refused === 'revoked') return this._refused('revoked', { reason: 'invalid-token' });
      if (r.status !== 404) return;
      const p = await r.json().catch(() => null);
      if (this._sessionId === id && !this._active && p && /:unknown-session$/.test(String(p.type))) this._invalidSession();
    } catch (e) {
      // Unreachable: that is what the backoff is for.
    }
  }

  _invalidSession() {
    const id = this._sessionId;
    this.disconnect();
    this._emitLocal('session.invalid', { session_id: id });
  }

  // While on a fallback, now and then try the better transports; the first that works takes over.
  _scheduleUpgrade() {
    clearTimeout(this._upgradeTimer);
    this._upgradeTimer = null;
    if (this._activeLevel <= 0) return;
    this._upgradeTimer = setTimeout(() => this._tryUpgrade(0), jittered(this._opts.upgradeInterval));
  }

  _tryUpgrade(level, fresh = false) {
    this._upgradeTimer = null;
    // A better transport the server said it lacks may have appeared since (a bridge started):
    // ask /health again before deciding, rather than trusting an answer up to 30 s old.
    if (!fresh && this._active && this._lacking.size && this._opts.transports.slice(level, this._activeLevel)
      .some((t) => this._lacking.has(t))) {
      clearTimeout(this._healthTimer);
      this._healthTimer = null;
      const id = this._sessionId;
      this._checkHealth().then(() => {
        if (this._sessionId === id && this._active && !this._upgradeTimer && !this._probe) this._tryUpgrade(level, true);
      });
      return;
    }
    level = this._usable(level);
    if (!this._active || level >= this._activeLevel) {
      this._scheduleUpgrade();
      return;
    }
    // The probe resumes from the current position and its events go through the same duplicate
    // filter, so while both transports run an event is handed on once, by whichever is first.
    this._startTransport(level, '_probe', () => this._tryUpgrade(level + 1));
  }

  async _loadPresence() {
    const id = this._sessionId;
    if (this._presenceQueue) return; // one snapshot at a time; the events fill in the rest
    this._presenceQueue = [];
    let snap = null;
    try {
      const r = await fetchOf(this._opts)(
        this._apiUrl('/presence'), { cache: 'no-store', headers: { Authorization: 'Bearer ' + id } });
      if (r.status === 200) snap = await r.json();
    } catch (e) {
      snap = null;
    }
    const queued = this._presenceQueue || [];
    this._presenceQueue = null;
    if (this._sessionId !== id) return;
    if (snap && Array.isArray(snap.presence)) {
      this._presence.clear();
      for (const e of snap.presence) if (e && typeof e.client_id === 'string') this._presence.set(e.client_id, e);
      this._presenceAt = Number.isSafeInteger(snap.last_event_id) ? snap.last_event_id : 0;
    }
    // Events that arrived while the snapshot was on its way: those after its position apply.
    for (const msg of queued) this._applyPresence(msg);
    this._emitLocal('presence', { presence: this.presence });
  }

  _applyPresence(msg) {
    const d = msg.data || {};
    if (typeof d.client_id !== 'string') return false;
    if (msg.id != null && Number(msg.id) <= this._presenceAt) return false;
    if (msg.type === 'presence.left') {
      this._presence.delete(d.client_id);
    } else {
      this._presence.set(d.client_id, { ...(this._presence.get(d.client_id) || {}), ...d });
    }
    return true;
  }

  _dispatch(msg) {
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (msg.type === 'session.revoked') {
      // The server ends the stream right after this (close 4401, end of SSE, a 401 long-poll);
      // handlers hear it once, and the client stops rather than reconnecting.
      this._revokedSeen = true;
      this._emit(msg);
      this._refused('revoked', msg.data);
      this._revokedSeen = false;
      return;
    }
    if (msg.type === 'connection.status') {
      // The server's view of its own health (degraded while its database is away). It is
      // folded into the client's status instead of being passed on, so that handlers see one
      // consistent connection.status stream.
      const s = msg.data && msg.data.status;
      this._serverDegraded = s === 'degraded' || s === 'reconnecting';
      this._setStatus();
      return;
    }
    if (msg.type === 'session.resync') {
      const to = msg.data && Number(msg.data.last_event_id);
      if (isValidId(to)) this._lastEventId = to;
      this._emit(msg);
      return;
    }
    if (msg.id !== undefined && msg.id !== null) {
      const id = Number(msg.id);
      if (!isValidId(id)) return;
      // Two transports may overlap during a switch, and every reconnect asks for "after
      // lastEventId", so an id at or below it has been handled already.
      if (id <= this._lastEventId) return;
      this._lastEventId = id;
      this._failures = 0;
    }
    this._emit(msg);
    if (this._opts.presence && msg.type.startsWith('presence.')) {
      if (this._presenceQueue) this._presenceQueue.push(msg);
      else if (this._applyPresence(msg)) this._emitLocal('presence', { presence: this.presence });
    }
  }

  _emit(msg) {
    this._handlers.emit(msg);
  }

  _emitLocal(type, data) {
    this._emit({ type, timestamp: new Date().toISOString(), data });
  }

  // Derives the status from the facts (or takes an explicit one) and emits connection.status
  // when anything a user would see changed. Being on a fallback transport is not by itself
  // "degraded" (a site without the bridge is served fine over SSE); the data says so in
  // `fallback`. Degraded means events flow but the server reports trouble (its database away).
  _setStatus(explicit) {
    let status = explicit;
    const netOffline = typeof navigator !== 'undefined' && navigator.onLine === false;
    if (!status || status === 'connecting') {
      if (!this._sessionId) status = this._ended || 'disconnected';
      // The browser knows it has no network: whatever a socket opened before still claims,
      // nothing new can arrive or be sent, and the person should see that.
      else if (netOffline) status = 'offline';
      else if (this._active) status = this._serverDegraded || !this.online ? 'degraded' : 'connected';
      else if (netOffline || this._retryTimer || !this._online) status = 'offline';
      else status = 'connecting';
    }
    const transport = this.transport;
    const fallback = this._activeLevel > 0;
    const key = [status, transport, this.online, fallback].join('/');
    if (key === this._statusKey) return;
    this._statusKey = key;
    this._status = status;
    const data = { status, transport, fallback, online: this.online, last_event_id: this._lastEventId };
    if (status === 'degraded') data.reason = this._serverDegraded ? 'server' : 'health';
    if (this._retryTimer) data.retry_in = Math.max(0, this._retryAt - Date.now());
    this._emitLocal('connection.status', data);
  }

  // ------------------------------------------------------------ health polling

  _startHealth() {
    if (this._healthTimer) return;
    this._checkHealthSoon(0);
  }

  _checkHealthSoon(delay) {
    clearTimeout(this._healthTimer);
    this._healthDue = Date.now() + delay;
    this._healthTimer = setTimeout(() => this._checkHealth(), delay);
  }

  async _checkHealth() {
    this._healthTimer = null;
    if (!this._sessionId) return;
    const opts = this._opts;
    let ok = false;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), opts.connectTimeout);
    try {
      const r = await fetchOf(opts)(this._apiUrl('/health'),
        { cache: 'no-store', signal: ctl.signal });
      ok = r.status === 200;
      if (ok) {
        const h = await r.json().catch(() => null);
        // Only a definite "no" counts: an older server says nothing, and every transport is tried.
        if (h && h.websocket === false) this._lacking.add('websocket');
        else this._lacking.delete('websocket');
      }
    } catch (e) {
      ok = false;
    } finally {
      clearTimeout(timer);
    }
    if (!this._sessionId) return;
    const first = !this._healthKnown;
    this._healthKnown = true;
    if (first && this._firstAttemptTimer) this._firstAttempt();
    const was = this._online;
    this._online = ok;
    this._healthFailures = ok ? 0 : this._healthFailures + 1;
    this._setStatus();
    // Health is back while the transports wait out a long backoff: reconnect now.
    if (ok && !was && this._retryTimer) this._wake('health');
    // While the server is away the check is cheap and frequent, so that the page is live again
    // within a couple of seconds of its return rather than at the end of a long backoff.
    const next = ok ? opts.healthInterval : jittered(Math.min(opts.offlineProbeInterval, opts.healthInterval));
    if (!this._healthTimer) this._checkHealthSoon(next);
  }
}

/** A shared client for apps that talk to one server (the page's own origin). */
export const realtime = new RealtimeClient();

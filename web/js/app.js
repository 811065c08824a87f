// app.js: the ImageTools page: session, uploads with progress, live gallery, bulk compress, device panel.
//
// Every piece of data from the server or from other people (file names above all) reaches the
// page through textContent or element properties, never through innerHTML, so a file named
// "<img src=x onerror=alert(1)>.png" is shown as exactly that text.

// One connection for every tab of this browser on a session (docs/browser-client.md, "Many tabs").
import { realtime } from './imagetools-shared.js';
import { drawQr } from './qr.js';
import { TUS_THRESHOLD, tusAttempt, tusRetryable } from './tus.js';

// The page may live under a path (shared hosting, url_prefix); the API is beside it.
const ROOT = new URL('.', location.href).pathname.replace(/\/$/, '');
const API = ROOT + '/api/v1';
// A session id (22-64 URL-safe base64 characters, the server's rule), a device token and a
// pairing code: the form alone tells them apart.
const SESSION_RE = /^[A-Za-z0-9_-]{22,64}$/;
const TOKEN_RE = /^itk\.[A-Za-z0-9_-]{32}$/;
const PAIR_RE = /^itp\.[A-Za-z0-9_-]{22}$/;
const SCOPE_NAMES = { upload: 'upload only', view: 'view only', full: 'full access' };
const SOURCE_NAMES = {
  web: 'a web browser',
  android_app: 'Android app',
  browser_addon: 'browser add-on',
  cli: 'command line',
  api: 'API',
};
const TRANSPORT_NAMES = { websocket: 'WebSocket', sse: 'SSE', longpoll: 'long-poll' };

const $ = (id) => document.getElementById(id);

const state = {
  session: null, // the credential in use: the session id (owner) or this device's token
  kind: '', // 'session' or 'token'
  sessionId: null, // the session id, when the credential is one
  scope: '', // 'full', 'view' or 'upload'
  label: '',
  images: new Map(), // id -> {data, el}
  selected: new Set(),
  ownUploads: new Map(), // size -> count of this tab's uploads in flight, to tell own uploads from others'
  ownImageIds: new Set(),
  deleted: new Set(), // ids deleted while a list request may still carry them
  operation: null, // {id, type, status}
  joinUrl: null, // the pairing link from the server (public_url), when it has one
};

// On a phone the toasts would cover the gallery: fewer of them, stacked compactly.
const NARROW = window.matchMedia ? window.matchMedia('(max-width: 520px)') : { matches: false };

// ------------------------------------------------------------------ small helpers

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// Calls the API with the credential in use (or cred: a given one; null: none).
async function api(method, path, body, cred = state.session) {
  const init = { method, headers: {}, cache: 'no-store' };
  // Image and operation ids are names, not keys: every call about them presents the credential,
  // always in the header, never in the address.
  if (cred) init.headers.Authorization = 'Bearer ' + cred;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  } else if (method === 'POST') {
    init.headers['Content-Length'] = '0';
  }
  const r = await fetch(API + path, init);
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch (e) {
    json = null;
  }
  if (!r.ok) {
    const err = new Error((json && (json.detail || json.title)) || 'HTTP ' + r.status);
    err.status = r.status;
    err.problem = json;
    throw err;
  }
  return json;
}

function toast(text, kind = 'info', ms = 6000) {
  const t = el('div', 'toast ' + kind, text);
  t.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  $('toasts').append(t);
  // Keep the stack short on a busy session: the newest stay, at most two on a phone.
  const max = NARROW.matches ? 2 : 4;
  while ($('toasts').children.length > max) $('toasts').firstElementChild.remove();
  setTimeout(() => {
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 300);
  }, ms);
}

function humanSize(n) {
  if (!(n >= 0)) return '';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}

// ------------------------------------------------------------------ session
//
// The credential never sits in the page's address: an address is kept in history, synced
// between devices, shown over a shoulder and sent on by people who mean to share "the page". The
// session's owner keeps the session id in localStorage (so that a new tab or a restarted browser
// finds the session again) and in sessionStorage (so that a tab keeps its session when another
// tab starts a new one). A paired device keeps its token the same way. Old links with #s=<id>
// still work: the id is taken out of the address at once.

const STORE_KEY = 'imagetools.credential';

function stored() {
  for (const store of [() => sessionStorage, () => localStorage]) {
    try {
      const rec = JSON.parse(store().getItem(STORE_KEY) || 'null');
      if (rec && typeof rec.cred === 'string' && (SESSION_RE.test(rec.cred) || TOKEN_RE.test(rec.cred))) return rec;
    } catch (e) {
      // Storage disabled or garbled: as if nothing were kept.
    }
  }
  return null;
}

function store(rec) {
  for (const s of [() => sessionStorage, () => localStorage]) {
    try {
      if (rec) s().setItem(STORE_KEY, JSON.stringify(rec));
      else s().removeItem(STORE_KEY);
    } catch (e) {
      // Without storage the page still works until it is closed.
    }
  }
}

// What the address brings: a pairing code (#pair=), or a session id from an old link (#s=,
// ?session=). Either is taken out of the address before anything else happens.
function takeFromUrl() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const query = new URLSearchParams(location.search);
  const pair = hash.get('pair');
  const id = hash.get('s') || hash.get('session') || query.get('session') || query.get('s');
  if (pair || id || location.hash) {
    for (const k of ['session', 's']) query.delete(k);
    const q = query.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : ''));
  }
  if (pair && PAIR_RE.test(pair)) return { pair };
  if (id && SESSION_RE.test(id)) return { id };
  return null;
}

function showSessionError(msg) {
  const p = $('session-error');
  p.textContent = msg || '';
  p.hidden = !msg;
}

async function newSession() {
  const s = await api('POST', '/sessions');
  return s.session_id;
}

// A link or QR code that names a session the server does not know (expired, ended, mistyped):
// the page says so and lets the person choose, rather than quietly starting an empty session
// that nobody else is looking at.
function showSessionMissing(id) {
  stopSession();
  $('session-id').textContent = id ? id.slice(0, 6) + '… (not found)' : '—';
  $('session-missing').hidden = false;
  document.body.dataset.session = 'missing';
  setConnIndicator({ status: 'none' });
}

// The device's token was revoked or has expired: nothing it sends is taken any more. It is
// forgotten, and the page says what happened and how to go on.
function showRevoked() {
  if (document.body.dataset.session === 'revoked') return;
  const wasDevice = state.kind === 'token';
  stopSession();
  store(null);
  document.body.dataset.session = 'revoked';
  $('session-id').textContent = '—';
  $('revoked').hidden = false;
  $('revoked-text').textContent = wasDevice
    ? 'This device was disconnected from the session (its access was revoked or has expired). ' +
      'Nothing more is sent from here. Scan a new code on the other device to pair again.'
    : 'This page\'s access to the session has ended.';
  setConnIndicator({ status: 'revoked' });
}

function stopSession() {
  state.session = null;
  state.sessionId = null;
  state.scope = '';
  realtime.disconnect();
  stopPairing();
  stopHeartbeat();
  clearGallery();
  renderPresence([]);
}

// Exchanges a pairing code for this device's own token (POST /pair). The code is single use:
// a photographed QR code is worth nothing once this page has used it.
async function pairWith(code) {
  showSessionError('');
  let r;
  try {
    r = await api('POST', '/pair', { code, source: 'web' }, null);
  } catch (e) {
    const why = e.status === 410 ? 'This pairing code was used already or has expired. Ask for a new one on the other device.'
      : e.status === 401 ? 'This pairing code is not valid.'
        : 'Could not pair: ' + e.message;
    showSessionError(why);
    const kept = stored();
    if (kept) await openCredential(kept);
    else showSessionMissing(null);
    return;
  }
  const rec = { cred: r.token, kind: 'token', scope: r.scope, label: r.label, device_id: r.device_id };
  store(rec);
  await openCredential(rec);
}

// Opens the session a credential leads to. GET /session answers what it may do (scope, label)
// and where the session's events stand, without the credential in the address.
async function openCredential(rec) {
  showSessionError('');
  let info = null;
  try {
    info = await api('GET', '/session', undefined, rec.cred);
  } catch (e) {
    if (e.status === 401) {
      showRevoked();
      return;
    }
    if (e.status === 404 || e.status === 400) {
      if (rec.kind === 'session') showSessionMissing(rec.cred);
      else showRevoked();
      return;
    }
    showSessionError('The server cannot be reached right now; retrying in the background.');
  }
  stopSession();
  $('session-missing').hidden = true;
  $('revoked').hidden = true;
  document.body.dataset.session = 'open';
  state.session = rec.cred;
  state.kind = rec.kind;
  state.sessionId = rec.kind === 'session' ? rec.cred : null;
  state.scope = (info && info.scope) || rec.scope || 'full';
  state.label = (info && info.label) || rec.label || '';
  document.body.dataset.scope = state.scope;
  document.body.dataset.kind = rec.kind;
  store({ ...rec, scope: state.scope, label: state.label });
  state.joinUrl = info && typeof info.join_url === 'string' && /^https?:\/\//.test(info.join_url) ? info.join_url : null;
  $('session-id').textContent = state.sessionId || '';
  $('device-info').hidden = rec.kind !== 'token';
  if (rec.kind === 'token') {
    $('device-label').textContent = state.label || 'this device';
    $('device-scope').textContent = SCOPE_NAMES[state.scope] || state.scope;
  }
  if (can('manage')) renderDevicePanel();
  clearGallery();
  if (!can('view')) {
    // An upload-only device has no stream to be seen by: it says it is here, and whether it is
    // sending, by a heartbeat.
    setConnIndicator({ status: 'paired' });
    startHeartbeat();
    return;
  }
  // Events up to the session's current position are history the image list already shows; a
  // device joining now starts after them, so it never replays old notifications or an old
  // operation's panel ("Compressing 0 % · Cancelled") as if they were happening now.
  const from = info && Number.isSafeInteger(info.last_event_id) ? { lastEventId: info.last_event_id } : {};
  realtime.configure({ clientId: clientId(), clientLabel: browserLabel(), clientSource: 'web', presence: true });
  realtime.connect(rec.cred, from);
  await loadImages();
}

// What the credential in use allows: 'upload', 'view', 'manage' (the session id: everything).
function can(what) {
  const s = state.scope;
  if (s === 'full') return true;
  return s === what;
}

async function openSessionId(id) {
  await openCredential({ cred: id, kind: 'session', scope: 'full' });
}

async function startNewSession() {
  const id = await newSession().catch((e) => {
    showSessionError('Could not create a session: ' + e.message);
    return null;
  });
  if (id) {
    store({ cred: id, kind: 'session', scope: 'full' });
    await openSessionId(id);
  }
}

// ------------------------------------------------------------------ presence

// One name per tab (sessionStorage), so that a reload is the same entry, not a new one.
function clientId() {
  let id = null;
  try {
    id = sessionStorage.getItem('imagetools.client_id');
  } catch (e) {
    id = null;
  }
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) { // the server's rule for a client_id
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    id = btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_');
    try {
      sessionStorage.setItem('imagetools.client_id', id);
    } catch (e) {
      // A new name on every load then; presence still works.
    }
  }
  return id;
}

// "Chrome on Android": how other devices see this tab (a device's token label wins).
function browserLabel() {
  const ua = navigator.userAgent || '';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome'
    : /Safari\//.test(ua) ? 'Safari' : 'Browser';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad|iPod/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows'
    : /Mac OS X/.test(ua) ? 'macOS' : /Linux|X11/.test(ua) ? 'Linux' : '';
  return os ? browser + ' on ' + os : browser;
}

const STATE_WORDS = { uploading: 'uploading', idle: '', connected: '' };

// "Phone connected · uploading" next to the gallery, one line per other tab or device.
function renderPresence(entries) {
  const ul = $('presence');
  const me = state.session ? clientId() : null;
  const others = entries.filter((e) => e.client_id !== me).sort((x, y) => String(x.since || '').localeCompare(String(y.since || '')));
  ul.replaceChildren();
  for (const e of others) {
    const li = el('li', 'presence-item');
    li.dataset.clientId = e.client_id;
    li.dataset.state = e.state || '';
    li.dataset.source = e.source || '';
    const word = STATE_WORDS[e.state] ?? e.state ?? '';
    li.textContent = (e.label || SOURCE_NAMES[e.source] || 'A device') + ' connected' + (word ? ' · ' + word : '');
    li.title = [e.label, SOURCE_NAMES[e.source] || e.source, e.transport && 'via ' + (TRANSPORT_NAMES[e.transport] || e.transport)]
      .filter(Boolean).join(' · ');
    ul.append(li);
  }
  ul.hidden = others.length === 0;
}

async function loadPresence() {
  const cred = state.session;
  try {
    const r = await api('GET', '/presence');
    if (state.session === cred && r && Array.isArray(r.presence)) renderPresence(r.presence);
  } catch (e) {
    // A server without presence: nothing to show.
  }
}

// An upload-only device has no stream: it keeps its presence entry alive with POST /presence
// (every 20 s; the server keeps an entry 45 s) and says at once when it starts or stops sending.
let heartbeat = null;
let sentState = '';

function uploadState() {
  return waitingUploads.size || $('uploads').querySelector('.upload:not(.done):not(.failed)') ? 'uploading' : 'idle';
}

async function beat() {
  if (!state.session || can('view')) return;
  const want = uploadState();
  sentState = want;
  try {
    await api('POST', '/presence', { client_id: clientId(), state: want, source: 'web' });
  } catch (e) {
    if (e.status === 401) showRevoked();
    // Anything else (a server without presence, a moment offline) only costs the entry.
  }
}

function startHeartbeat() {
  stopHeartbeat();
  beat();
  heartbeat = setInterval(beat, 20000);
}

function stopHeartbeat() {
  if (heartbeat) clearInterval(heartbeat);
  heartbeat = null;
  sentState = '';
}

function presenceChanged() {
  if (heartbeat && uploadState() !== sentState) beat();
}

// Leaving the page leaves presence at once rather than after the entry's time runs out.
window.addEventListener('pagehide', () => {
  if (!heartbeat || !state.session) return;
  fetch(API + '/presence?client_id=' + encodeURIComponent(clientId()), {
    method: 'DELETE', keepalive: true, headers: { Authorization: 'Bearer ' + state.session },
  }).catch(() => {});
});

// ------------------------------------------------------------------ gallery

function clearGallery() {
  arriving.clear();
  state.images.clear();
  state.deleted.clear();
  state.selected.clear();
  $('gallery').replaceChildren();
  updateCounts();
}

async function loadImages() {
  const id = state.session;
  const seen = new Set();
  let before = null;
  try {
    // Newest first, page by page; a few hundred images at most in a session in practice.
    for (let pages = 0; pages < 20; pages++) {
      const q = '?limit=100' + (before ? '&before=' + encodeURIComponent(before) : '');
      // The credential's session, named by the header: no session id in the address.
      const r = await api('GET', '/images' + q);
      if (state.session !== id) return;
      for (const img of r.images || []) {
        seen.add(img.id);
        if (!state.deleted.has(img.id)) upsertImage(img, { append: true });
      }
      if (!r.next) break;
      before = r.next;
    }
    // After a resync, drop what the server no longer has.
    for (const imgId of [...state.images.keys()]) if (!seen.has(imgId)) removeImage(imgId);
  } catch (e) {
    if (e.status === 401) showRevoked();
    else if (e.status !== 404) toast('Could not load the images: ' + e.message, 'error');
  }
}

function imageId(data) {
  return data.image_id || data.id;
}

// The server hands out file and thumbnail URLs signed for one version of the image and valid until
// an expiry (?v=&exp=&sig=): an <img src> or a download link needs no credential, and no URL on
// the page leads anywhere but to those bytes. Only paths on this site are used: an event written by
// any producer must not make the page fetch from elsewhere (the CSP would block it too).
function localUrl(given) {
  return typeof given === 'string' && given.startsWith('/') && !given.startsWith('//') ? given : '';
}

function thumbUrl(data) {
  return localUrl(data.thumbnail_url);
}

// Seconds since the epoch at which a signed URL stops working (0: unknown).
function urlExpiry(url) {
  const m = /[?&]exp=(\d+)/.exec(url || '');
  return m ? Number(m[1]) : 0;
}

// Signed URLs expire (signed_url_ttl) and a page may stay open longer; the image's metadata, read
// with the session credential, carries fresh ones.
async function refreshUrls(id) {
  const entry = state.images.get(id);
  if (!entry || entry.refreshing) return false;
  entry.refreshing = true;
  try {
    const img = await api('GET', '/images/' + encodeURIComponent(id));
    if (img && state.images.has(id)) upsertImage(img);
    return true;
  } catch (e) {
    return false; // gone meanwhile (its image.deleted event will follow) or the server is away
  } finally {
    setTimeout(() => { entry.refreshing = false; }, 30000);
  }
}

function stale(url) {
  const exp = urlExpiry(url);
  return exp > 0 && exp * 1000 < Date.now() + 60000;
}

function upsertImage(data, { append = false } = {}) {
  const id = imageId(data);
  if (!id) return;
  let entry = state.images.get(id);
  if (!entry) {
    entry = { data: {}, el: buildCard(id) };
    state.images.set(id, entry);
    if (append) $('gallery').append(entry.el);
    else $('gallery').prepend(entry.el);
  }
  Object.assign(entry.data, data);
  renderCard(entry);
  updateCounts();
}

function buildCard(id) {
  const li = el('li', 'card');
  li.dataset.id = id;
  const fig = el('figure', 'thumb-box');
  const img = el('img', 'thumb');
  img.alt = '';
  img.loading = 'lazy';
  img.decoding = 'async';
  img.addEventListener('error', () => {
    li.classList.add('no-thumb');
    // An expired URL (a page left open for days) is refreshed once; a missing thumbnail is not.
    const entry = state.images.get(id);
    if (entry && stale(entry.data.thumbnail_url)) refreshUrls(id);
  });
  img.addEventListener('load', () => li.classList.remove('no-thumb'));
  fig.append(img);
  const check = el('input', 'select');
  check.type = 'checkbox';
  check.addEventListener('change', () => {
    if (check.checked) state.selected.add(id);
    else state.selected.delete(id);
    li.classList.toggle('selected', check.checked);
    updateCounts();
  });
  const del = el('button', 'delete', '×');
  del.type = 'button';
  // Deleting removes the image for everyone in the session and cannot be undone, so the card
  // asks first, in place (no browser dialog, which a phone shows as a full-screen interruption).
  del.addEventListener('click', () => askDelete(id));
  const meta = el('div', 'meta');
  const name = el('span', 'name');
  const info = el('span', 'info');
  const actions = el('div', 'actions');
  const download = el('a', 'download', 'Download');
  download.addEventListener('click', async (ev) => {
    if (!stale(download.getAttribute('href'))) return;
    ev.preventDefault();
    if (await refreshUrls(id)) download.click();
    else toast('Could not refresh the download link; reload the page.', 'error');
  });
  const rename = el('button', 'rename', 'Rename');
  rename.type = 'button';
  rename.addEventListener('click', () => startRename(id));
  actions.append(download, rename);
  meta.append(name, info, actions);
  li.append(fig, check, del, meta);
  return li;
}

function askDelete(id) {
  const entry = state.images.get(id);
  if (!entry || entry.el.querySelector('.confirm-delete')) return;
  const box = el('div', 'confirm-delete');
  box.setAttribute('role', 'group');
  box.setAttribute('aria-label', 'Delete ' + (entry.data.filename || 'this image') + '?');
  const q = el('p', null, 'Delete for everyone?');
  const yes = el('button', 'button danger small confirm-yes', 'Delete');
  yes.type = 'button';
  const no = el('button', 'button secondary small confirm-no', 'Keep');
  no.type = 'button';
  box.append(q, yes, no);
  no.addEventListener('click', () => box.remove());
  yes.addEventListener('click', async () => {
    yes.disabled = no.disabled = true;
    try {
      await api('DELETE', '/images/' + encodeURIComponent(id));
      removeImage(id);
    } catch (e) {
      box.remove();
      toast('Could not delete: ' + e.message, 'error');
    }
  });
  entry.el.append(box);
  no.focus();
}

// Renaming edits the name in place: Enter saves (PATCH; the image.updated event then renames
// the card in every tab), Escape or leaving the field cancels.
function startRename(id) {
  const entry = state.images.get(id);
  if (!entry || entry.el.querySelector('.rename-input')) return;
  const name = entry.el.querySelector('.name');
  const input = el('input', 'rename-input');
  input.type = 'text';
  input.value = entry.data.filename || '';
  input.maxLength = 255;
  input.setAttribute('aria-label', 'New name');
  let done = false;
  const finish = () => {
    done = true;
    input.remove();
    name.hidden = false;
  };
  input.addEventListener('keydown', async (ev) => {
    if (ev.key === 'Escape') finish();
    if (ev.key !== 'Enter' || done) return;
    const wanted = input.value.trim();
    if (!wanted || wanted === entry.data.filename) return finish();
    input.disabled = true;
    try {
      const img = await api('PATCH', '/images/' + encodeURIComponent(id), { filename: wanted });
      finish();
      if (img) upsertImage(img);
    } catch (e) {
      input.disabled = false;
      toast('Could not rename: ' + e.message, 'error');
    }
  });
  input.addEventListener('blur', () => {
    if (!input.disabled && !done) finish();
  });
  name.hidden = true;
  name.after(input);
  input.focus();
  input.select();
}

function renderCard(entry) {
  const d = entry.data;
  const li = entry.el;
  const name = d.filename || d.original_filename || '(unnamed)';
  li.querySelector('.name').textContent = name;
  li.querySelector('.name').title = name;
  const parts = [];
  if (d.width && d.height) parts.push(d.width + '×' + d.height);
  if (d.size) parts.push(humanSize(d.size));
  if (d.source && d.source !== 'web') parts.push('from ' + (SOURCE_NAMES[d.source] || d.source));
  li.querySelector('.info').textContent = parts.join(' · ');
  const img = li.querySelector('img');
  const src = thumbUrl(d);
  // A new version or a fresh signature is a new URL, so the browser refetches exactly then.
  if (!src) li.classList.add('no-thumb');
  else if (img.getAttribute('src') !== src) img.src = src;
  const file = localUrl(d.file_url);
  if (file) li.querySelector('.download').href = file;
  else li.querySelector('.download').removeAttribute('href');
  img.alt = name;
  const check = li.querySelector('.select');
  check.setAttribute('aria-label', 'Select ' + name);
  li.querySelector('.delete').setAttribute('aria-label', 'Delete ' + name);
  li.querySelector('.delete').title = 'Delete';
  // The server names the download (Content-Disposition); this is the browser's suggestion.
  li.querySelector('.download').download = name;
  li.querySelector('.download').setAttribute('aria-label', 'Download ' + name);
  li.querySelector('.rename').setAttribute('aria-label', 'Rename ' + name);
}

function removeImage(id) {
  state.deleted.add(id);
  const entry = state.images.get(id);
  if (!entry) return;
  entry.el.remove();
  state.images.delete(id);
  state.selected.delete(id);
  updateCounts();
}

function updateCounts() {
  const n = state.images.size;
  $('image-count').textContent = n ? '(' + n + ')' : '';
  $('empty').hidden = n > 0;
  for (const id of state.selected) if (!state.images.has(id)) state.selected.delete(id);
  const k = state.selected.size;
  $('selection-count').textContent = k + ' selected';
  const busy = state.operation && (state.operation.status === 'queued' || state.operation.status === 'running');
  $('compress').disabled = k === 0 || busy;
  $('select-all').checked = n > 0 && k === n;
  $('select-all').indeterminate = k > 0 && k < n;
}

function selectAll(on) {
  for (const [id, entry] of state.images) {
    const check = entry.el.querySelector('.select');
    check.checked = on;
    entry.el.classList.toggle('selected', on);
    if (on) state.selected.add(id);
    else state.selected.delete(id);
  }
  updateCounts();
}

// ------------------------------------------------------------------ uploads

function uploadFiles(files) {
  if (!state.session) return;
  for (const f of files) uploadOne(f);
}

// An upload that failed for a reason that passes (no network, the server restarting, busy or
// rate limiting) is sent again on its own: after about 1 s, 2 s, 4 s ... up to 30 s (or the
// server's Retry-After), and at once when the browser is back online or the connection is live
// again; at most UPLOAD_RETRIES times, then the row offers a Retry button. Refusals that would
// repeat (not an image, too large, unknown session) are final.
const UPLOAD_RETRIES = 8;
const waitingUploads = new Set(); // uploads waiting for their next attempt: {retryNow}
let tusUnavailable = false; // set when the server answers that it has no /uploads/tus

function retryFailedUploads() {
  for (const job of [...waitingUploads]) job.retryNow();
}

function uploadOne(file) {
  const row = el('li', 'upload');
  const name = el('span', 'name', file.name);
  name.title = file.name;
  const bar = el('progress');
  bar.max = 100;
  bar.value = 0;
  const status = el('span', 'status muted', 'waiting');
  row.append(name, bar, status);
  $('uploads').prepend(row);

  const session = state.session;
  let attempt = 0;
  let timer = null;
  const job = {
    retryNow: () => {
      if (timer) send();
    },
  };

  const fail = (text) => {
    row.classList.remove('retrying');
    row.classList.add('failed');
    status.textContent = text;
    const again = el('button', 'button secondary small retry', 'Retry');
    again.type = 'button';
    again.addEventListener('click', () => {
      again.remove();
      attempt = 0;
      send();
    });
    status.append(' ', again);
  };

  const retryLater = (why, retryAfter) => {
    if (attempt >= UPLOAD_RETRIES) {
      fail(why + ' (gave up after ' + attempt + ' retries)');
      return;
    }
    const nominal = Math.min(30000, 1000 * 2 ** attempt);
    const delay = Math.max(retryAfter > 0 ? retryAfter * 1000 : 0, Math.round(nominal * (0.75 + Math.random() * 0.5)));
    attempt++;
    row.classList.add('retrying');
    status.textContent = why + '; retrying in ' + Math.max(1, Math.round(delay / 1000)) + ' s';
    timer = setTimeout(send, delay);
    waitingUploads.add(job);
  };

  // Large files go through tus: an interruption costs only what had not arrived, and the
  // next attempt (or the same file chosen again after a reload) goes on from the server's offset.
  const sendTus = () => {
    clearTimeout(timer);
    timer = null;
    waitingUploads.delete(job);
    row.classList.remove('failed');
    row.dataset.via = 'tus';
    status.textContent = attempt ? 'resuming…' : bar.value + ' %';
    // As for multipart, the events of this upload are recognised as this tab's own by its size;
    // it stays registered across retries, as the upload's events keep coming between them.
    if (!job.held) {
      job.held = true;
      state.ownUploads.set(file.size, (state.ownUploads.get(file.size) || 0) + 1);
      // After a reload, the events of the upload this tab now goes on with made an arriving card.
      settleArriving({ filename: file.name, size: file.size });
    }
    const release = () => {
      if (!job.held) return;
      job.held = false;
      const c = (state.ownUploads.get(file.size) || 1) - 1;
      if (c > 0) state.ownUploads.set(file.size, c);
      else state.ownUploads.delete(file.size);
    };
    const started = Number(row.dataset.offset || 0);
    tusAttempt(API + '/uploads/tus', session, file, {
      source: 'web',
      onProgress: (heldBytes, total) => {
        // A step forward is a sign the link works again: the backoff starts over.
        if (heldBytes > started) attempt = 0;
        row.dataset.offset = String(heldBytes);
        bar.value = total ? Math.floor((heldBytes / total) * 100) : 0;
        status.textContent = bar.value + ' %';
      },
    }).then(() => {
      bar.value = 100;
      status.textContent = 'done';
      row.classList.remove('retrying');
      row.classList.add('done');
      // The image.uploaded event normally brings the card; the list is read again in case the
      // events are not flowing. The size stays this tab's own until then.
      setTimeout(release, 10000);
      presenceChanged();
      if (state.session === session && can('view')) loadImages();
      setTimeout(() => row.remove(), 4000);
    }, (err) => {
      if (err.unsupported) {
        // This server has no resumable uploads: the page sends every file as multipart.
        release();
        tusUnavailable = true;
        send();
      } else if (tusRetryable(err) && attempt < UPLOAD_RETRIES) {
        retryLater(err.message, err.retryAfter);
      } else {
        release();
        fail(err.message);
        if (err.status === 401 && state.session === session && state.kind === 'token') showRevoked();
        setTimeout(() => row.remove(), 30000);
      }
      presenceChanged();
    });
    presenceChanged();
  };

  const send = () => {
    if (file.size >= TUS_THRESHOLD && !tusUnavailable) {
      sendTus();
      return;
    }
    clearTimeout(timer);
    timer = null;
    waitingUploads.delete(job);
    row.classList.remove('failed');
    bar.value = 0;
    status.textContent = attempt ? 'retrying…' : '0 %';

    const form = new FormData();
    form.append('source', 'web');
    form.append('file', file, file.name);
    // The image.uploaded event may arrive before this request's answer does; the size of the
    // upload in flight is how the event handler recognises it as this tab's own.
    state.ownUploads.set(file.size, (state.ownUploads.get(file.size) || 0) + 1);
    const release = () => {
      const c = (state.ownUploads.get(file.size) || 1) - 1;
      if (c > 0) state.ownUploads.set(file.size, c);
      else state.ownUploads.delete(file.size);
    };

    // XMLHttpRequest rather than fetch: it reports upload progress.
    const xhr = new XMLHttpRequest();
    xhr.open('POST', API + '/images');
    xhr.responseType = 'text';
    // The credential in the header (a token or the session id), not in the address or the form.
    xhr.setRequestHeader('Authorization', 'Bearer ' + session);
    xhr.upload.addEventListener('progress', (e) => {
      if (!e.lengthComputable) return;
      bar.value = Math.round((e.loaded / e.total) * 100);
      status.textContent = bar.value + ' %';
    });
    xhr.addEventListener('load', () => {
      release();
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (e) {
        body = null;
      }
      const said = (body && (body.detail || body.title)) || 'failed (HTTP ' + xhr.status + ')';
      if (xhr.status === 201 && body && Array.isArray(body.images)) {
        bar.value = 100;
        status.textContent = 'done';
        row.classList.remove('retrying');
        row.classList.add('done');
        for (const img of body.images) {
          state.ownImageIds.add(img.id);
          if (state.session === session) upsertImage(img);
        }
        setTimeout(() => row.remove(), 4000);
      } else if (xhr.status === 429 || xhr.status >= 500) {
        retryLater(said, Number(xhr.getResponseHeader('Retry-After')) || 0);
      } else {
        fail(said);
        // A revoked or expired token: nothing from here is taken any more.
        if (xhr.status === 401 && state.session === session && state.kind === 'token') showRevoked();
        setTimeout(() => row.remove(), 30000);
      }
      presenceChanged();
    });
    xhr.addEventListener('error', () => {
      release();
      retryLater('network error');
      presenceChanged();
    });
    xhr.send(form);
    presenceChanged();
  };
  send();
}

function setupDropzone() {
  const zone = $('dropzone');
  const input = $('file-input');
  input.addEventListener('change', () => {
    uploadFiles([...input.files]);
    input.value = '';
  });
  for (const t of ['dragenter', 'dragover']) {
    zone.addEventListener(t, (e) => {
      e.preventDefault();
      zone.classList.add('over');
    });
  }
  for (const t of ['dragleave', 'drop']) {
    zone.addEventListener(t, (e) => {
      e.preventDefault();
      zone.classList.remove('over');
    });
  }
  zone.addEventListener('drop', (e) => {
    const files = [...(e.dataTransfer ? e.dataTransfer.files : [])];
    if (files.length) uploadFiles(files);
  });
  // A file dropped next to the zone must not make the browser navigate away from the session.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
}

// ------------------------------------------------------------------ operations

function showOperation(op) {
  state.operation = op;
  $('operation').hidden = false;
  $('op-label').textContent = op.label || 'Compressing';
  const p = Math.max(0, Math.min(100, Math.round(op.progress || 0)));
  $('op-progress').value = p;
  $('op-percent').textContent = p + ' %';
  $('op-message').textContent = op.message || '';
  const live = op.status === 'queued' || op.status === 'running';
  $('op-cancel').hidden = !live;
  $('op-cancel-note').hidden = !live;
  $('op-summary').textContent = op.summary || '';
  showResults(op.images || []);
  $('operation').dataset.status = op.status;
  updateCounts();
}

function opLabel(type) {
  return { bulk_compress: 'Compressing', bulk_resize: 'Resizing', bulk_convert: 'Converting' }[type] || type;
}

// "Saved 3.4 MB (41 %) on 12 images, 2 unchanged": from the totals the worker puts in every
// progress event and in the result (succeeded counts the unchanged ones too).
function savedText(t) {
  if (!t || typeof t.bytes_before !== 'number' || typeof t.bytes_after !== 'number') return '';
  const n = t.succeeded ?? 0;
  const saved = t.bytes_before - t.bytes_after;
  const pct = t.bytes_before > 0 ? Math.round((saved * 100) / t.bytes_before) : 0;
  let text = 'Saved ' + humanSize(saved) + ' (' + pct + ' %) on ' + n + ' image' + (n === 1 ? '' : 's');
  if (t.unchanged) text += ', ' + t.unchanged + ' unchanged';
  if (t.failed) text += ', ' + t.failed + ' failed';
  return text;
}

// One line per finished image: what it was, what it is, or why it was left alone.
function showResults(images) {
  const ul = $('op-results');
  ul.replaceChildren();
  for (const e of images) {
    const li = el('li');
    li.dataset.status = e.status || '';
    li.dataset.id = e.image_id || '';
    const name = e.filename || e.image_id || 'image';
    if (e.status === 'ok') {
      const pct = e.bytes_before ? Math.round(((e.bytes_before - e.bytes_after) * 100) / e.bytes_before) : 0;
      li.textContent = name + ': ' + humanSize(e.bytes_before) + ' → ' + humanSize(e.bytes_after) +
        ' (−' + pct + ' %)' + (e.note ? ' · ' + e.note : '');
    } else if (e.status === 'unchanged') {
      li.textContent = name + ': unchanged' + (e.reason ? ' · ' + e.reason : '');
    } else {
      li.textContent = name + ': failed' + (e.error ? ' · ' + e.error : '');
    }
    ul.append(li);
  }
}

function compressParams() {
  const params = { quality: Number($('cmp-quality').value) || 75 };
  const format = $('cmp-format').value;
  if (format && format !== 'keep') params.format = format;
  if ($('cmp-strip').checked) params.strip = true;
  if ($('cmp-palette').checked) params.palette = true;
  return params;
}

async function startCompress() {
  const ids = [...state.selected];
  if (!ids.length) return;
  $('compress').disabled = true;
  try {
    const op = await api('POST', '/operations', {
      type: 'bulk_compress', image_ids: ids, params: compressParams(),
    });
    const id = op.operation_id || op.id;
    // The operation.started event may already have shown it; keep whatever is further along.
    if (!state.operation || state.operation.id !== id) {
      showOperation({ id, type: 'bulk_compress', label: opLabel('bulk_compress'), status: op.status || 'queued',
        progress: op.progress || 0, message: ids.length + ' images queued', images: [] });
    }
  } catch (e) {
    toast('Could not start compressing: ' + e.message, 'error');
    updateCounts();
  }
}

async function cancelOperation() {
  const op = state.operation;
  if (!op) return;
  $('op-cancel').disabled = true;
  try {
    const r = await api('POST', '/operations/' + encodeURIComponent(op.id) + '/cancel');
    // The operation.failed event may have come first; never step back from a final state.
    const cur = state.operation;
    if (cur && cur.id === op.id && (cur.status === 'queued' || cur.status === 'running')) {
      if (r && r.status === 'cancelled') showOperation({ ...cur, status: 'cancelled', message: 'Cancelled' });
      else $('op-message').textContent = 'Cancelling… images already done stay done';
    }
  } catch (e) {
    toast('Could not cancel: ' + e.message, 'error');
  } finally {
    $('op-cancel').disabled = false;
  }
}

// Adds the entry of the image a progress event names to the list, once.
function withImage(images, entry) {
  if (!entry || !entry.image_id) return images;
  return [...images.filter((e) => e.image_id !== entry.image_id), entry];
}

function onOperationEvent(type, d) {
  const id = d.operation_id;
  if (!id) return;
  const cur = state.operation && state.operation.id === id ? state.operation : null;
  const base = cur || { id, type: d.operation_type, label: opLabel(d.operation_type), progress: 0, images: [] };
  const images = base.images || [];
  if (type === 'operation.started') {
    showOperation({ ...base, status: 'running', message: d.total ? '0 of ' + d.total : '', images });
  } else if (type === 'operation.progress') {
    const msg = d.message || (d.total ? d.current + ' of ' + d.total : '');
    showOperation({ ...base, status: 'running', progress: d.progress, message: msg, summary: savedText(d),
      images: withImage(images, d.image) });
  } else if (type === 'operation.completed') {
    const r = d.result || {};
    showOperation({ ...base, status: 'completed', progress: 100, message: d.message || 'Done',
      summary: savedText(r), images: r.images || images });
    toast(base.label + ' finished' + (savedText(r) ? ': ' + savedText(r) : ''), 'success');
  } else if (type === 'operation.failed') {
    const cancelled = d.reason === 'cancelled';
    const r = d.result || {};
    const done = (r.images || []).length;
    // Images finished before the cancel keep their new versions: the panel says so and lists them.
    const message = cancelled
      ? (done ? 'Cancelled after ' + done + ' image' + (done === 1 ? '' : 's') + '; those stay done' : 'Cancelled')
      : 'Failed: ' + (d.reason || 'unknown error');
    showOperation({ ...base, status: cancelled ? 'cancelled' : 'failed', message,
      summary: done ? savedText(r) : '', images: r.images || images });
    toast(cancelled ? base.label + ' cancelled' : base.label + ' failed', cancelled ? 'info' : 'error');
  }
}

// What this server can write: AVIF is offered only where its libvips has an AV1 encoder.
async function loadFormats() {
  try {
    const h = await api('GET', '/health');
    const w = (h && h.formats && h.formats.write) || [];
    const avif = document.querySelector('#cmp-format option[value="avif"]');
    avif.hidden = avif.disabled = !w.includes('avif');
  } catch (e) {
    // Without the answer the page offers what every server writes.
  }
}

// ------------------------------------------------------------------ realtime events

// A resumable upload from another device (or tab) shows as an "arriving" card at the top of the
// gallery, with the progress its events report, until its image.uploaded replaces it (same file
// name and size) or upload.failed says it will not come. This tab's own uploads have their row.
const arriving = new Map(); // upload_id -> {el, data}

function onUploadEvent(type, d) {
  const id = d && d.upload_id;
  if (typeof id !== 'string' || !id) return;
  let a = arriving.get(id);
  if (type === 'upload.failed') {
    if (a) a.el.remove();
    arriving.delete(id);
    if (a || (d.reason && d.reason !== 'expired')) {
      if (!(d.source === 'web' && state.ownUploads.has(d.length))) {
        toast('An upload from ' + (SOURCE_NAMES[d.source] || d.source || 'somewhere') + ' did not arrive: ' +
          (d.filename || 'unnamed'), 'warning');
      }
    }
    return;
  }
  // This tab's own upload is shown in its upload list already.
  if (!a && d.source === 'web' && state.ownUploads.has(d.length)) return;
  if (!a) {
    const li = el('li', 'card arriving');
    li.dataset.upload = id;
    li.setAttribute('aria-busy', 'true');
    const box = el('figure', 'thumb-box');
    const bar = el('progress');
    bar.max = 100;
    box.append(bar);
    const meta = el('div', 'meta');
    meta.append(el('span', 'name'), el('span', 'info'));
    li.append(box, meta);
    a = { el: li, data: {} };
    arriving.set(id, a);
    $('gallery').prepend(li);
  }
  Object.assign(a.data, d);
  const name = a.data.filename || '(unnamed)';
  const pct = a.data.length > 0 ? Math.floor(((a.data.offset || 0) * 100) / a.data.length) : (a.data.progress || 0);
  a.el.querySelector('.name').textContent = name;
  a.el.querySelector('.name').title = name;
  a.el.querySelector('progress').value = Math.max(0, Math.min(100, pct));
  a.el.dataset.progress = String(pct);
  const from = SOURCE_NAMES[a.data.source] || a.data.source || 'somewhere';
  a.el.querySelector('.info').textContent = 'arriving from ' + from + ' · ' + pct + ' %' +
    (a.data.length ? ' of ' + humanSize(a.data.length) : '');
}

function settleArriving(d) {
  for (const [id, a] of arriving) {
    if (a.data.filename === d.filename && a.data.length === d.size) {
      a.el.remove();
      arriving.delete(id);
      return;
    }
  }
}

function onUploaded(d) {
  settleArriving(d);
  const id = imageId(d);
  const known = state.images.has(id) || state.ownImageIds.has(id);
  const mine = known || (d.source === 'web' && state.ownUploads.has(d.size));
  if (mine) state.ownImageIds.add(id);
  upsertImage(d);
  if (!mine) {
    const from = SOURCE_NAMES[d.source] || d.source || 'somewhere';
    toast('New image from ' + from + ': ' + (d.filename || 'unnamed'), 'info');
  }
}

function setupRealtime() {
  realtime.on('image.uploaded', onUploaded);
  realtime.on('image.updated', (d) => {
    if (state.images.has(imageId(d))) upsertImage(d);
  });
  realtime.on('image.deleted', (d) => removeImage(imageId(d)));
  for (const t of ['upload.started', 'upload.progress', 'upload.failed']) realtime.on(t, (d) => onUploadEvent(t, d));
  for (const t of ['operation.started', 'operation.progress', 'operation.completed', 'operation.failed']) {
    realtime.on(t, (d) => onOperationEvent(t, d));
  }
  realtime.on('session.expiring', (d) => {
    const min = Math.max(1, Math.round((d.seconds_left || 0) / 60));
    toast('This session expires in about ' + min + ' min. Download what you need.', 'warning', 15000);
  });
  // Events were dropped from the log before this tab could see them: reload the state.
  realtime.on('session.resync', () => loadImages());
  realtime.on('session.invalid', () => {
    showSessionError('This session has ended. Start a new one to go on.');
    setConnIndicator({ status: 'ended' });
  });
  // This device's token was revoked or expired while its stream was open.
  realtime.on('session.revoked', () => showRevoked());
  realtime.on('presence', (d) => renderPresence(d.presence || []));
  // A tab that follows another tab's shared connection hears the leader's presence list only
  // when it changes: it reads the current one itself once it is live.
  realtime.on('connection.status', (d) => {
    if (d.status === 'connected' && !Array.isArray(realtime.presence) && state.session && can('view')) loadPresence();
  });
  // A device paired with the code on show (or another one): the list changes and the code is
  // spent, so a fresh one replaces it.
  realtime.on('device.paired', () => {
    if (!can('manage')) return;
    loadDevices();
    refreshPairing();
  });
  realtime.on('device.revoked', () => {
    if (can('manage')) loadDevices();
  });
  realtime.on('connection.status', setConnIndicator);
}

// The indicator speaks plainly: Live (events arrive), Reconnecting (trying, or the server says
// its database is away so new events wait), Offline (the browser has no network, or no server
// answers). The transport is a detail next to it and in the tooltip.
let everLive = false;

function setConnIndicator(d) {
  const conn = $('conn');
  conn.dataset.status = d.status;
  conn.dataset.transport = d.transport || '';
  if (d.status === 'connected') everLive = true;
  const via = d.transport ? TRANSPORT_NAMES[d.transport] : '';
  const netOffline = navigator.onLine === false;
  const [word, state] = {
    connected: ['Live', 'live'],
    degraded: ['Reconnecting', 'reconnecting'],
    connecting: everLive ? ['Reconnecting', 'reconnecting'] : ['Connecting…', 'connecting'],
    offline: ['Offline', 'offline'],
    disconnected: ['Disconnected', 'offline'],
    ended: ['Session ended', 'ended'],
    none: ['No session', 'ended'],
    revoked: ['Disconnected by the owner', 'ended'],
    forbidden: ['Upload only', 'live'],
    paired: ['Paired · upload only', 'live'],
  }[d.status] || [d.status, d.status];
  conn.dataset.state = state;
  $('conn-text').textContent = word;
  let detail = via;
  if (d.status === 'offline') {
    detail = netOffline ? 'no network' : d.retry_in > 0 ? 'retrying in ' + Math.max(1, Math.round(d.retry_in / 1000)) + ' s' : 'retrying';
  } else if (d.status === 'degraded') {
    detail = (d.reason === 'server' ? 'server busy' : 'server unreachable') + (via ? ' · ' + via : '');
  }
  $('conn-detail').textContent = detail;
  conn.dataset.fallback = d.fallback ? 'yes' : 'no';
  conn.title = d.transport
    ? word + ': receiving updates over ' + via + (d.fallback ? ' (fallback)' : '')
    : word + (detail ? ' (' + detail + ')' : '');
  if (d.status === 'connected') retryFailedUploads();
}

// ------------------------------------------------------------------ device panel

// Addresses only this computer can open: a phone scanning a link to one of them reaches itself.
function isLoopback(url) {
  let host;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch (e) {
    return false;
  }
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '[::1]' ||
    host === '0.0.0.0' || host === '[::]';
}

// The QR code and the link carry a pairing code (POST /pairings), never the session id: the code
// is good for one exchange within a few minutes, for the scope chosen here, so a photographed
// code is useless once a device has used it. A new code replaces it when it is used or expires.
let pairTimer = null;
let pairSeq = 0;

function stopPairing() {
  clearTimeout(pairTimer);
  pairTimer = null;
  pairSeq++;
}

function showPairLink(link) {
  const a = $('join-link');
  a.href = link || '#';
  a.textContent = link || '';
  const warn = $('loopback-warning');
  if (link && isLoopback(link)) {
    warn.textContent = 'This link uses ' + new URL(link).host + ', which only this computer can open: a phone ' +
      'cannot reach it. Open this page by the computer\'s network address instead, or set public_url ' +
      'in the server\'s configuration.';
    warn.hidden = false;
  } else {
    warn.hidden = true;
  }
  const canvas = $('qr');
  if (!link) {
    canvas.hidden = true;
    return;
  }
  try {
    drawQr(canvas, link, { level: 'M', moduleSize: 5 });
    canvas.hidden = false;
  } catch (e) {
    // A link too long for the encoder (a very long host name): the text link still works.
    canvas.hidden = true;
  }
}

async function refreshPairing() {
  stopPairing();
  const seq = pairSeq;
  const cred = state.session;
  if (!cred || !can('manage')) return;
  const scope = $('pair-scope').value === 'view' ? 'view' : 'upload';
  const label = $('pair-label').value.trim().slice(0, 64) || 'Phone';
  $('qr').dataset.state = 'loading';
  let r;
  try {
    r = await api('POST', '/pairings', { scope, label });
  } catch (e) {
    if (seq !== pairSeq) return;
    $('qr').dataset.state = 'error';
    showPairLink('');
    $('pair-status').textContent = 'No pairing code: ' + e.message;
    // Try again in a while (the server may be away for a moment).
    pairTimer = setTimeout(refreshPairing, 15000);
    return;
  }
  if (seq !== pairSeq || state.session !== cred) return;
  // The server builds the link from public_url, else from the request's origin; on that same
  // origin this page knows its own path best (a site under /imagetools/, say).
  let link = typeof r.pair_url === 'string' && /^https?:\/\//.test(r.pair_url) ? r.pair_url : '';
  if (!link || new URL(link).origin === location.origin) link = location.origin + location.pathname + '#pair=' + r.code;
  state.pairCode = r.code;
  showPairLink(link);
  $('qr').dataset.state = 'ready';
  $('qr').dataset.scope = r.scope || scope;
  const until = Date.parse(r.expires_at);
  const ms = Number.isFinite(until) ? until - Date.now() : 600000;
  $('pair-status').textContent = 'Single use, ' + (SCOPE_NAMES[r.scope || scope] || scope) + '; a new code comes when ' +
    'this one is used or in ' + Math.max(1, Math.round(ms / 60000)) + ' min.';
  // A little before it expires, so that a code scanned at the last moment still works.
  pairTimer = setTimeout(refreshPairing, Math.max(5000, ms - 15000));
}

function renderDevicePanel() {
  refreshPairing();
  loadDevices();
  const uploadUrl = location.origin + API + '/images';
  $('upload-url').textContent = uploadUrl;
  $('curl-example').textContent =
    "curl -H 'Authorization: Bearer " + (state.sessionId || '<token>') + "' -F source=cli \\\n     -F file=@photo.jpg " + uploadUrl;
}

function ago(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return 'never';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return new Date(t).toLocaleDateString();
}

let devicesTimer = null;

// The devices paired with the session (GET /devices): label, scope, source, last seen, and
// Revoke, which ends the device's access at once (its open streams close within a second).
async function loadDevices() {
  clearTimeout(devicesTimer);
  devicesTimer = null;
  const cred = state.session;
  if (!cred || !can('manage')) return;
  let r;
  try {
    r = await api('GET', '/devices');
  } catch (e) {
    if (state.session === cred) devicesTimer = setTimeout(loadDevices, 30000);
    return;
  }
  if (state.session !== cred) return;
  const ul = $('device-list');
  ul.replaceChildren();
  for (const d of (r && r.devices) || []) {
    if (d.revoked_at) continue;
    const li = el('li', 'device-row');
    li.dataset.deviceId = d.device_id;
    li.dataset.scope = d.scope || '';
    const name = el('span', 'device-name', d.label || d.device_id);
    const meta = el('span', 'device-meta muted',
      [SCOPE_NAMES[d.scope] || d.scope, SOURCE_NAMES[d.source] || d.source,
        d.last_seen_at ? 'last seen ' + ago(d.last_seen_at) : 'paired ' + ago(d.created_at) + ', not seen since']
        .filter(Boolean).join(' · '));
    const revoke = el('button', 'button danger small revoke', 'Revoke');
    revoke.type = 'button';
    revoke.setAttribute('aria-label', 'Revoke ' + (d.label || 'this device'));
    revoke.addEventListener('click', async () => {
      revoke.disabled = true;
      try {
        await api('DELETE', '/devices/' + encodeURIComponent(d.device_id));
        li.remove();
        toast((d.label || 'The device') + ' can no longer reach this session', 'success', 3000);
      } catch (e) {
        revoke.disabled = false;
        toast('Could not revoke: ' + e.message, 'error');
      }
      updateDeviceCount();
    });
    li.append(name, meta, revoke);
    ul.append(li);
  }
  updateDeviceCount();
  // "Last seen" moves on even when nothing else happens.
  devicesTimer = setTimeout(loadDevices, 30000);
}

function updateDeviceCount() {
  const n = $('device-list').children.length;
  $('devices-empty').hidden = n > 0;
}

// ------------------------------------------------------------------ start

function setupControls() {
  $('new-session').addEventListener('click', startNewSession);
  $('join-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const v = $('join-input').value.trim();
    const pair = v.match(/[#&]pair=(itp\.[A-Za-z0-9_-]+)/) || v.match(/^(itp\.[A-Za-z0-9_-]+)$/);
    if (pair && PAIR_RE.test(pair[1])) {
      $('join-input').value = '';
      pairWith(pair[1]);
      return;
    }
    let id = v;
    const m = v.match(/[#?&]s(?:ession)?=([A-Za-z0-9_-]+)/);
    if (m) id = m[1];
    if (!SESSION_RE.test(id)) {
      showSessionError('That is not a session link, a pairing link or a session id.');
      return;
    }
    $('join-input').value = '';
    store({ cred: id, kind: 'session', scope: 'full' });
    openSessionId(id);
  });
  $('start-new').addEventListener('click', startNewSession);
  $('revoked-new').addEventListener('click', startNewSession);
  $('enter-other').addEventListener('click', () => {
    $('join-input').focus();
  });
  $('copy-link').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('join-link').href);
      toast('Link copied', 'success', 2000);
    } catch (e) {
      toast('Copy failed; select the link instead', 'error', 3000);
    }
  });
  $('pair-scope').addEventListener('change', refreshPairing);
  $('pair-label').addEventListener('change', refreshPairing);
  $('leave-device').addEventListener('click', () => {
    // Forgets this device's token here; the owner's list keeps it until revoked or expired.
    store(null);
    stopSession();
    startNewSession();
  });
  $('select-all').addEventListener('change', (e) => selectAll(e.target.checked));
  $('compress').addEventListener('click', startCompress);
  $('cmp-quality').addEventListener('input', () => {
    $('cmp-quality-out').textContent = $('cmp-quality').value;
  });
  $('op-cancel').addEventListener('click', cancelOperation);
  // A link pasted into the address bar of an open page.
  window.addEventListener('hashchange', () => {
    const got = takeFromUrl();
    if (got && got.pair) pairWith(got.pair);
    else if (got && got.id && got.id !== state.session) {
      store({ cred: got.id, kind: 'session', scope: 'full' });
      openSessionId(got.id);
    }
  });
}

async function start() {
  const got = takeFromUrl();
  if (got && got.pair) return pairWith(got.pair);
  if (got && got.id) {
    // Kept for this tab only until the server knows it: an unknown id must not replace the
    // session another tab keeps.
    try {
      sessionStorage.setItem(STORE_KEY, JSON.stringify({ cred: got.id, kind: 'session', scope: 'full' }));
    } catch (e) {
      // Opened all the same, just not kept.
    }
    return openCredential({ cred: got.id, kind: 'session', scope: 'full' }).then(() => {
      if (state.session === got.id) store({ cred: got.id, kind: 'session', scope: 'full' });
    });
  }
  const rec = stored();
  if (rec) return openCredential(rec);
  return startNewSession();
}

// ?shared=0 gives this tab its own connection instead of sharing one with the session's other tabs.
realtime.configure({ baseUrl: location.origin + ROOT, shared: new URLSearchParams(location.search).get('shared') !== '0' });
window.addEventListener('online', retryFailedUploads);
setupRealtime();
setupControls();
setupDropzone();
loadFormats();
start();

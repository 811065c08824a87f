// imagetools.js: what the add-on knows about the ImageTools API (docs/api.md): pairing links and
// codes, the multipart upload, presence, and problem+json errors. No browser-extension APIs here, so the same
// module runs in the service worker, the options page and plain Node.js.

// A session id: URL-safe base64, 22 to 64 characters (the server issues 32).
export const SESSION_RE = /^[A-Za-z0-9_-]{22,64}$/;

// A pairing code (single use, short-lived; exchanged for a token) and a device token.
export const PAIR_CODE_RE = /^itp\.[A-Za-z0-9_-]{22}$/;
export const TOKEN_RE = /^itk\.[A-Za-z0-9_-]{32}$/;

// Sources the API accepts; the add-on is browser_addon.
export const SOURCE = 'browser_addon';

// The name the add-on pairs under and shows in the session's presence list.
export const LABEL = 'Browser add-on';

// The server keeps a presence entry 45 s after each heartbeat; one every 20 s keeps it alive.
export const PRESENCE_RENEW_MS = 20000;

// Reads a pairing link and returns {server, code} for one that carries a pairing code
// (http://host/#pair=itp.CODE, what the ImageTools page shows as text and QR code), or
// {server, session} for an older link that carries the session id itself
// (http://host/#s=ID, http://host/prefix/#session=ID or http://host/?session=ID), or null
// when text is neither. The server is the page's address without the file name: the API
// lives under <server>/api/v1.
export function parsePairing(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  const hash = new URLSearchParams(url.hash.replace(/^#/, ''));
  const path = url.pathname.replace(/\/[^/]*\.html?$/, '/').replace(/\/+$/, '');
  const code = hash.get('pair');
  if (code) return PAIR_CODE_RE.test(code) ? { server: url.origin + path, code } : null;
  const session = hash.get('s') || hash.get('session') || url.searchParams.get('session') ||
    url.searchParams.get('s');
  if (!session || !SESSION_RE.test(session)) return null;
  return { server: url.origin + path, session };
}

// Accepts what a user pastes into the options page: a bare pairing code or session id, or a
// pairing link. Returns {server (may be null), code} or {server (may be null), session}, or
// null when it is none of these.
export function parseSessionInput(text) {
  const t = String(text || '').trim();
  if (PAIR_CODE_RE.test(t)) return { server: null, code: t };
  if (SESSION_RE.test(t)) return { server: null, session: t };
  return parsePairing(t);
}

// A short, log-safe form of a credential: its type prefix and six characters.
export function shortCredential(cred) {
  const s = String(cred || '');
  return (s.startsWith('itk.') || s.startsWith('itp.') ? s.slice(0, 10) : s.slice(0, 6)) + '...';
}

// A random name for this installation in the session's presence list (not a secret).
export function newClientId() {
  const b = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_');
}

// Exchanges a pairing code for a token of the add-on's own: POST <server>/api/v1/pair with
// {code, label, source}. The code is single use, so the exchange is never retried by itself.
// Returns {token, device_id, scope, label, source, expires_at}. Throws an Error whose message
// is meant for the user, with .status (0 when the server was not reached).
export async function exchangePairing({ server, code, label = LABEL, fetchImpl = fetch }) {
  let res;
  try {
    res = await fetchImpl(server + '/api/v1/pair', {
      method: 'POST', credentials: 'omit', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code, label, source: SOURCE }),
    });
  } catch (e) {
    throw Object.assign(new Error('Cannot reach the ImageTools server at ' + server + ' (' + e.message + ').'),
      { status: 0 });
  }
  const text = await res.text();
  if (res.status !== 201 && res.status !== 200) {
    throw Object.assign(new Error(pairingMessage(res.status, text)), { status: res.status });
  }
  let answer = null;
  try {
    answer = JSON.parse(text);
  } catch {
    // fall through
  }
  if (!answer || !TOKEN_RE.test(answer.token || '')) {
    throw Object.assign(new Error(`${server} answered ${res.status}, but not with a token.`), { status: res.status });
  }
  return answer;
}

function problemType(body) {
  try {
    const p = JSON.parse(body);
    return p && typeof p.type === 'string' ? p.type.replace(/^urn:imagetools:problem:/, '') : '';
  } catch {
    return '';
  }
}

// Says why a pairing code was refused.
export function pairingMessage(status, body) {
  const type = problemType(body);
  if (type === 'pairing-code-used') return 'This pairing code was already used: show a new one on the ImageTools page.';
  if (type === 'pairing-code-expired') return 'This pairing code has expired: show a new one on the ImageTools page.';
  if (status === 401) return 'The server does not know this pairing code: check it, or show a new one.';
  if (status === 429) return 'Too many pairing attempts; try again in a minute.';
  if (status === 404 || status === 405) return 'This server cannot pair devices (is it an ImageTools server?).';
  return problemMessage(status, body).trim();
}

// Checks and normalises a server address: http(s), no trailing slash, no query or hash.
export function normaliseServer(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return url.origin + url.pathname.replace(/\/+$/, '');
}

// A file name for an image taken from a page: the last path segment of its URL when it
// looks like a file name, else "image" with an extension from the content type.
export function filenameFor(srcUrl, contentType) {
  const ext = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp' }[
    String(contentType || '').split(';')[0].trim()] || 'img';
  try {
    const u = new URL(srcUrl);
    if (u.protocol === 'http:' || u.protocol === 'https:') {
      const last = decodeURIComponent(u.pathname.split('/').pop() || '');
      if (/^[^\\/:*?"<>|\x00-\x1f]{1,200}\.[A-Za-z0-9]{2,5}$/.test(last)) return last;
    }
  } catch {
    // not a URL: fall through
  }
  return 'image.' + ext;
}

// A name for a screenshot: screenshot-2026-02-07-12-34-56.png (local time).
export function screenshotName(date = new Date()) {
  const p = (n) => String(n).padStart(2, '0');
  return `screenshot-${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}-` +
    `${p(date.getHours())}-${p(date.getMinutes())}-${p(date.getSeconds())}.png`;
}

// Turns an error answer into one sentence for the user, from its problem+json body.
export function problemMessage(status, body) {
  let p = null;
  try {
    p = JSON.parse(body);
  } catch {
    // not JSON (a proxy's HTML page, say)
  }
  const detail = p && typeof p.detail === 'string' ? p.detail : '';
  const type = p && typeof p.type === 'string' ? p.type.replace(/^urn:imagetools:problem:/, '') : '';
  if (status === 401 && type === 'invalid-token') {
    return 'The add-on\'s token is unknown, expired or revoked: pair again from the ImageTools page.';
  }
  if (status === 403 && type === 'insufficient-scope') {
    return 'The add-on\'s token may not upload into this session: pair again with an upload code.';
  }
  switch (status) {
    case 404: return 'The session is unknown or has expired: pair again with the ImageTools page.';
    case 413: return 'The image is too large for this server. ' + detail;
    case 415: return 'The server does not accept this file as an image. ' + detail;
    case 429: return 'Too many uploads right now; try again in a moment. ' + detail;
    default: return `The server answered ${status}. ` + detail;
  }
}

// Sends one image: POST <server>/api/v1/images with the multipart fields source and file,
// exactly as imagetools-upload does. A token goes in the Authorization header; a session id
// (from an older pairing link) in the field session_id, as the add-on always sent it.
// Returns the stored image (the first of the answer's images). Throws an Error whose message
// is meant for the user, with .status (0 when the server was not reached).
export async function uploadImage({ server, session, token, blob, filename, fetchImpl = fetch }) {
  const form = new FormData();
  const headers = {};
  if (token) headers.Authorization = 'Bearer ' + token;
  else form.append('session_id', session);
  form.append('source', SOURCE);
  form.append('file', blob, filename);
  let res;
  try {
    res = await fetchImpl(server + '/api/v1/images', { method: 'POST', body: form, headers, credentials: 'omit' });
  } catch (e) {
    const err = new Error('Cannot reach the ImageTools server at ' + server + ' (' + e.message + ').');
    err.status = 0;
    throw err;
  }
  const text = await res.text();
  if (res.status !== 201 && res.status !== 200) {
    const err = new Error(problemMessage(res.status, text).trim());
    err.status = res.status;
    throw err;
  }
  const answer = JSON.parse(text);
  return (answer.images || [])[0] || answer;
}

// Says the add-on is there (state 'uploading' or 'idle'): POST <server>/api/v1/presence. The
// server keeps the entry 45 s. Presence is a courtesy: every failure is ignored, and the
// answer's status is returned (0 when the server was not reached; 404 from a server without
// presence).
export async function announce({ server, credential, clientId, state, fetchImpl = fetch }) {
  try {
    const res = await fetchImpl(server + '/api/v1/presence', {
      method: 'POST', credentials: 'omit',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + credential },
      body: JSON.stringify({ client_id: clientId, state, label: LABEL, source: SOURCE }),
    });
    return res.status;
  } catch {
    return 0;
  }
}

// Leaves the presence list now (DELETE <server>/api/v1/presence?client_id=).
export async function leave({ server, credential, clientId, fetchImpl = fetch }) {
  try {
    const res = await fetchImpl(server + '/api/v1/presence?client_id=' + encodeURIComponent(clientId), {
      method: 'DELETE', credentials: 'omit', headers: { Authorization: 'Bearer ' + credential },
    });
    return res.status;
  } catch {
    return 0;
  }
}

// Runs work() while the add-on is announced as uploading: one heartbeat at once, one every
// PRESENCE_RENEW_MS while it lasts, and a leave at the end, whatever work() does.
export async function whileAnnounced({ server, credential, clientId, fetchImpl = fetch }, work) {
  const opts = { server, credential, clientId, fetchImpl };
  const first = await announce({ ...opts, state: 'uploading' });
  const on = first >= 200 && first < 300;
  const timer = on ? setInterval(() => announce({ ...opts, state: 'uploading' }), PRESENCE_RENEW_MS) : null;
  try {
    return await work();
  } finally {
    if (timer) clearInterval(timer);
    if (on) await leave(opts);
  }
}

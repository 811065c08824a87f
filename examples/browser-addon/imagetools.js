// imagetools.js: what the add-on knows about the ImageTools API (docs/api.md): pairing links,
// the multipart upload, and problem+json errors. No browser-extension APIs here, so the same
// module runs in the service worker, the options page and plain Node.js.

// A session id: URL-safe base64, 22 to 64 characters (the server issues 32).
export const SESSION_RE = /^[A-Za-z0-9_-]{22,64}$/;

// Sources the API accepts; the add-on is browser_addon.
export const SOURCE = 'browser_addon';

// Reads a pairing link such as http://host/#s=ID, http://host/prefix/#session=ID or
// http://host/?session=ID (what the ImageTools page shows as text and QR code) and returns
// {server, session}, or null when text is not such a link. The server is the page's
// address without the file name: the API lives under <server>/api/v1.
export function parsePairing(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  const hash = new URLSearchParams(url.hash.replace(/^#/, ''));
  const session = hash.get('s') || hash.get('session') || url.searchParams.get('session') ||
    url.searchParams.get('s');
  if (!session || !SESSION_RE.test(session)) return null;
  const path = url.pathname.replace(/\/[^/]*\.html?$/, '/').replace(/\/+$/, '');
  return { server: url.origin + path, session };
}

// Accepts what a user pastes into the options page: a bare session id, or a pairing link.
// Returns {server (may be null), session}, or null when it is neither.
export function parseSessionInput(text) {
  const t = String(text || '').trim();
  if (SESSION_RE.test(t)) return { server: null, session: t };
  return parsePairing(t);
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
  switch (status) {
    case 404: return 'The session is unknown or has expired: pair again with the ImageTools page.';
    case 413: return 'The image is too large for this server. ' + detail;
    case 415: return 'The server does not accept this file as an image. ' + detail;
    case 429: return 'Too many uploads right now; try again in a moment. ' + detail;
    default: return `The server answered ${status}. ` + detail;
  }
}

// Sends one image: POST <server>/api/v1/images with the multipart fields session_id,
// source and file, exactly as imagetools-upload does. Returns the stored image (the first
// of the answer's images). Throws an Error whose message is meant for the user, with
// .status (0 when the server was not reached).
export async function uploadImage({ server, session, blob, filename, fetchImpl = fetch }) {
  const form = new FormData();
  form.append('session_id', session);
  form.append('source', SOURCE);
  form.append('file', blob, filename);
  let res;
  try {
    res = await fetchImpl(server + '/api/v1/images', { method: 'POST', body: form, credentials: 'omit' });
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

// tus.js: a small tus 1.0.0 client for the page: creation, PATCH in chunks, HEAD to resume.
//
// One call of tusAttempt() is one attempt: it finds where the upload stands (the URL kept in
// localStorage, asked with HEAD; or a new upload, created with POST), then sends the rest in
// PATCH requests of TUS_CHUNK bytes. It resolves when the server holds every byte (the last
// PATCH answers only once the image is stored) and rejects with an Error carrying `status`
// (0 for a network error) and `retryAfter` (seconds) when it stops. The caller decides about
// retrying: a new attempt asks the server again and sends only what it does not hold.
//
// The upload URL is a capability (192 random bits); it is kept in this browser's localStorage
// only, under a key naming the session and the file (name, size, modification time), so that
// the same file chosen again after a reload goes on where it stopped. It is removed once the
// upload is complete or the server no longer knows it.

export const TUS_VERSION = '1.0.0';
// Files from this size on go through tus; smaller ones are one multipart request, which costs
// one round trip less and loses little when it has to start over.
export const TUS_THRESHOLD = 8 * 1024 * 1024;
// Bytes per PATCH: the server commits what arrives in any case, so the chunk only bounds what
// one request's progress and one retry's HEAD cover; a few MiB keep requests short on phones.
export const TUS_CHUNK = 4 * 1024 * 1024;

const STORE_PREFIX = 'imagetools.tus.';

function storeKey(session, file) {
  return STORE_PREFIX + session + '.' + [file.name, file.size, file.lastModified || 0].join('/');
}

function remembered(key) {
  try {
    return localStorage.getItem(key);
  } catch (e) {
    return null; // storage disabled (private mode on some browsers): no resume across reloads
  }
}

function remember(key, url) {
  try {
    if (url) localStorage.setItem(key, url);
    else localStorage.removeItem(key);
  } catch (e) {
    // As above: the upload still resumes within this page.
  }
}

// Upload-Metadata: comma-separated "key base64(value)" pairs; values are UTF-8.
function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

function metadata(obj) {
  return Object.entries(obj).map(([k, v]) => k + ' ' + b64(String(v))).join(',');
}

function failure(xhr, what) {
  let detail = null;
  try {
    const j = JSON.parse(xhr.responseText || 'null');
    detail = j && (j.detail || j.title);
  } catch (e) {
    detail = null;
  }
  const err = new Error(xhr.status ? detail || what + ' failed (HTTP ' + xhr.status + ')' : 'network error');
  err.status = xhr.status;
  err.type = '';
  try {
    const j = JSON.parse(xhr.responseText || 'null');
    err.type = (j && typeof j.type === 'string' && j.type) || '';
  } catch (e) {
    err.type = '';
  }
  err.retryAfter = Number(xhr.getResponseHeader('Retry-After')) || 0;
  return err;
}

// One request; resolves with the XMLHttpRequest whatever its status (0: no answer).
function request(method, url, headers, body, onUpload, signal) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.responseType = 'text';
    xhr.setRequestHeader('Tus-Resumable', TUS_VERSION);
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    if (onUpload) xhr.upload.addEventListener('progress', (e) => onUpload(e.loaded));
    const done = () => resolve(xhr);
    xhr.addEventListener('load', done);
    xhr.addEventListener('error', done);
    xhr.addEventListener('abort', done);
    xhr.addEventListener('timeout', done);
    if (signal) signal.xhr = xhr;
    xhr.send(body === undefined ? null : body);
  });
}

/**
 * One attempt at uploading file to endpoint for session (the credential: a session id or a token,
 * sent as Authorization: Bearer). opts: source, onProgress(bytesHeld, total) with the upload's own bytes,
 * onStart(url). The same file given again later resumes at the URL kept for it.
 */
export async function tusAttempt(endpoint, session, file, opts = {}) {
  const key = storeKey(session, file);
  const auth = { Authorization: 'Bearer ' + session };
  const progress = opts.onProgress || (() => {});
  let url = remembered(key);
  let offset = 0;

  if (url) {
    const head = await request('HEAD', url, { ...auth, 'Cache-Control': 'no-store' });
    if (head.status === 200 && Number(head.getResponseHeader('Upload-Length')) === file.size) {
      offset = Number(head.getResponseHeader('Upload-Offset'));
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > file.size) offset = 0;
    } else if (head.status === 404 || head.status === 410 || head.status === 200) {
      // Expired, terminated, or not this file after all: start a new upload.
      url = null;
      remember(key, null);
    } else {
      throw failure(head, 'asking where the upload stands');
    }
  }

  if (!url) {
    const created = await request('POST', endpoint, {
      ...auth,
      'Upload-Length': String(file.size),
      // The credential goes in Authorization only: metadata is stored with the upload and
      // answered to every HEAD.
      'Upload-Metadata': metadata({ filename: file.name, source: opts.source || 'web',
        filetype: file.type || 'application/octet-stream' }),
    });
    const loc = created.getResponseHeader('Location');
    if (created.status !== 201 || !loc) {
      const err = failure(created, 'creating the upload');
      // A server without resumable uploads (an older version): the route does not exist.
      err.unsupported = created.status === 405 || created.status === 501 ||
        (created.status === 404 && /(^|[:/])not-found$/.test(err.type));
      throw err;
    }
    url = new URL(loc, new URL(endpoint, location.href)).href;
    remember(key, url);
  }
  if (opts.onStart) opts.onStart(url);
  progress(offset, file.size);

  while (offset < file.size) {
    const end = Math.min(file.size, offset + TUS_CHUNK);
    const from = offset;
    const patch = await request('PATCH', url, {
      ...auth, 'Upload-Offset': String(from), 'Content-Type': 'application/offset+octet-stream',
    }, file.slice(from, end), (sent) => progress(from + Math.min(sent, end - from), file.size));
    if (patch.status === 204) {
      const got = Number(patch.getResponseHeader('Upload-Offset'));
      offset = Number.isSafeInteger(got) && got > from ? got : end;
      progress(offset, file.size);
      continue;
    }
    if (patch.status === 404 || patch.status === 410) remember(key, null);
    // 409 (another offset: a request this page no longer waits for got further) and 423 (one
    // still running) are settled by the next attempt's HEAD, as are network errors.
    throw failure(patch, 'sending the bytes');
  }
  remember(key, null);
  return url;
}

/** Whether a failed attempt may succeed when tried again (network, server away, busy, racing). */
export function tusRetryable(err) {
  const s = err && err.status;
  // 400 truncated: the body ended early (a proxy or the link cut it); the bytes that came are kept.
  if (s === 400 && /:truncated$/.test(err.type || '')) return true;
  return !s || s === 409 || s === 423 || s === 429 || s === 408 || s >= 500;
}

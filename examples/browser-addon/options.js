// options.js: the options page: pairing from a link, a pairing code or a session id, and a check
// that the credential still opens the session.
import {
  exchangePairing, normaliseServer, parseSessionInput, problemMessage, shortCredential,
} from './imagetools.js';
import { loadSettings, savePairing } from './store.js';

const $ = (id) => document.getElementById(id);

function show(text, ok) {
  const s = $('status');
  s.textContent = text; // textContent: nothing from the server is ever parsed as HTML
  s.className = ok ? 'ok' : 'error';
}

async function stored() {
  try {
    return await loadSettings();
  } catch {
    return {};
  }
}

async function load() {
  const s = await stored();
  if (s.server) $('server').value = s.server;
  // A token is never shown whole: the field shows which one is kept.
  if (s.token) $('pairing').placeholder = `paired: token ${shortCredential(s.token)} (${s.scope || 'upload'})`;
  else if (s.session) $('pairing').value = s.session;
  const { lastResult } = await chrome.storage.local.get('lastResult');
  if (lastResult) $('last').textContent = `Last: ${lastResult.ok ? 'ok' : 'failed'}, ${lastResult.message}`;
}

// Whether the credential opens the session, asked without putting it in a URL: a long-poll
// that does not wait, from a cursor beyond any log, with the credential in the header. An
// upload-only token is refused it with 403 insufficient-scope, which still says it is valid.
async function check(server, { session, token }) {
  try {
    const r = await fetch(`${server}/api/v1/events?cursor=4611686018427387903&timeout=0`, {
      credentials: 'omit', headers: { Authorization: 'Bearer ' + (token || session) },
    });
    if (token && (r.status === 200 || r.status === 403)) return [true, 'Paired: the token is valid.'];
    if (r.status === 200) return [true, 'Paired: the session exists.'];
    if (r.status === 404) return [false, 'The session is unknown or has expired.'];
    return [false, problemMessage(r.status, await r.text()).trim()];
  } catch (e) {
    return [false, `Cannot reach ${server}: ${e.message}`];
  }
}

$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const parsed = parseSessionInput($('pairing').value);
  if (!parsed) return show('Paste a pairing link (http://host/#pair=...), a pairing code or a session id.', false);
  const server = normaliseServer(parsed.server || $('server').value);
  if (!server) return show('The server must be an http:// or https:// address.', false);
  $('server').value = server;
  if (parsed.code) {
    let t;
    try {
      t = await exchangePairing({ server, code: parsed.code });
    } catch (e) {
      return show(e.message, false);
    }
    await savePairing({ server, token: t.token, deviceId: t.device_id, scope: t.scope });
    $('pairing').value = '';
    $('pairing').placeholder = `paired: token ${shortCredential(t.token)} (${t.scope})`;
    return show(`Paired as "${t.label}" (${t.scope}).`, true);
  }
  $('pairing').value = parsed.session;
  await savePairing({ server, session: parsed.session });
  const [ok, msg] = await check(server, { session: parsed.session });
  show(ok ? 'Saved. ' + msg : 'Saved, but: ' + msg, ok);
});

$('check').addEventListener('click', async () => {
  const s = await stored();
  if (!s.server || !(s.session || s.token)) return show('Not paired yet.', false);
  const [ok, msg] = await check(s.server, s);
  show(msg, ok);
});

load();

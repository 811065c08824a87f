// options.js: the options page: pairing from a link or a pasted session id, and a check that
// the session exists (GET /api/v1/sessions/{id}).
import { normaliseServer, parseSessionInput } from './imagetools.js';

const $ = (id) => document.getElementById(id);

function show(text, ok) {
  const s = $('status');
  s.textContent = text; // textContent: nothing from the server is ever parsed as HTML
  s.className = ok ? 'ok' : 'error';
}

async function load() {
  const { server, session } = await chrome.storage.sync.get(['server', 'session']);
  if (server) $('server').value = server;
  if (session) $('pairing').value = session;
  const { lastResult } = await chrome.storage.local.get('lastResult');
  if (lastResult) $('last').textContent = `Last: ${lastResult.ok ? 'ok' : 'failed'}, ${lastResult.message}`;
}

async function check(server, session) {
  try {
    const r = await fetch(`${server}/api/v1/sessions/${encodeURIComponent(session)}`, { credentials: 'omit' });
    if (r.status === 200) return [true, 'Paired: the session exists.'];
    if (r.status === 404) return [false, 'The session is unknown or has expired.'];
    return [false, `The server answered ${r.status}.`];
  } catch (e) {
    return [false, `Cannot reach ${server}: ${e.message}`];
  }
}

$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const parsed = parseSessionInput($('pairing').value);
  if (!parsed) return show('Paste a pairing link (http://host/#s=...) or a session id.', false);
  const server = normaliseServer(parsed.server || $('server').value);
  if (!server) return show('The server must be an http:// or https:// address.', false);
  $('server').value = server;
  $('pairing').value = parsed.session;
  await chrome.storage.sync.set({ server, session: parsed.session });
  const [ok, msg] = await check(server, parsed.session);
  show(ok ? 'Saved. ' + msg : 'Saved, but: ' + msg, ok);
});

$('check').addEventListener('click', async () => {
  const { server, session } = await chrome.storage.sync.get(['server', 'session']);
  if (!server || !session) return show('Not paired yet.', false);
  const [ok, msg] = await check(server, session);
  show(msg, ok);
});

load();

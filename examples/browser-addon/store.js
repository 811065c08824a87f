// store.js: where the add-on keeps its pairing, shared by the service worker and the options
// page. A token of its own (from a pairing code) lives in chrome.storage.local, which stays on
// this computer; a session id from an older pairing link lives in chrome.storage.sync, as it
// always did. The token wins when both are there.
import { newClientId } from './imagetools.js';

// Returns {server, token, scope} or {server, session}, each with the installation's presence
// clientId (made once). Throws an Error with .status 0 when the add-on is not paired.
export async function loadSettings() {
  const local = await chrome.storage.local.get(['server', 'token', 'scope', 'clientId']);
  let clientId = local.clientId;
  if (!clientId) {
    clientId = newClientId();
    await chrome.storage.local.set({ clientId });
  }
  if (local.server && local.token) return { server: local.server, token: local.token, scope: local.scope, clientId };
  const { server, session } = await chrome.storage.sync.get(['server', 'session']);
  if (!server || !session) {
    throw Object.assign(new Error('Not paired: open the add-on options and paste the pairing link.'), {
      status: 0,
    });
  }
  return { server, session, clientId };
}

// Keeps what a pairing gave: a token (and the server it belongs to) or a session id. Each
// replaces the other, so the newest pairing is the one used, and a session id, which grants
// everything, does not linger in synced storage once the add-on has a token.
export async function savePairing({ server, token, deviceId, scope, session }) {
  if (token) {
    await chrome.storage.local.set({ server, token, deviceId, scope });
    await chrome.storage.sync.remove('session');
  } else {
    await chrome.storage.local.remove(['server', 'token', 'deviceId', 'scope']);
    await chrome.storage.sync.set({ server, session });
  }
}

// background.js: the add-on's service worker: context menus, fetching the image or taking the
// screenshot, and the upload through imagetools.js.
import {
  exchangePairing, filenameFor, parsePairing, screenshotName, shortCredential, uploadImage, whileAnnounced,
} from './imagetools.js';
import { loadSettings, savePairing } from './store.js';

const MENU_IMAGE = 'send-image';
const MENU_SCREENSHOT = 'send-screenshot';
const MENU_PAIR = 'pair';

// Context menus persist across service-worker restarts but not across installs or updates,
// so they are (re)created there.
chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_IMAGE, title: 'Send image to ImageTools', contexts: ['image'] });
    chrome.contextMenus.create({ id: MENU_SCREENSHOT, title: 'Send screenshot of this tab', contexts: ['page'] });
    chrome.contextMenus.create({
      id: MENU_PAIR, title: 'Pair with this ImageTools session', contexts: ['page', 'link'],
    });
  });
  refreshTitle();
});

chrome.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId === MENU_IMAGE) sendImage(info.srcUrl);
  else if (info.menuItemId === MENU_SCREENSHOT) sendScreenshot(tab);
  else if (info.menuItemId === MENU_PAIR) pair(info.linkUrl || info.pageUrl || (tab && tab.url));
});

// The toolbar tooltip follows the pairing, wherever it was changed (here or on the options page).
chrome.storage.onChanged.addListener((changes) => {
  if (changes.token || changes.session || changes.server) refreshTitle();
});

// Shows the outcome on the toolbar button and keeps it for the options page.
async function report(ok, message) {
  await chrome.action.setBadgeBackgroundColor({ color: ok ? '#2e7d32' : '#c62828' });
  await chrome.action.setBadgeText({ text: ok ? 'OK' : 'ERR' });
  await chrome.action.setTitle({ title: 'ImageTools: ' + message });
  await chrome.storage.local.set({ lastResult: { ok, message, at: new Date().toISOString() } });
  setTimeout(() => chrome.action.setBadgeText({ text: '' }), 5000);
}

async function refreshTitle() {
  let title = 'ImageTools: not paired (open the options)';
  try {
    const s = await loadSettings();
    title = s.token ? `ImageTools: sending to ${s.server} (token ${shortCredential(s.token)})`
      : `ImageTools: sending to ${s.server} (session ${shortCredential(s.session)})`;
  } catch {
    // not paired
  }
  await chrome.action.setTitle({ title });
}

async function send(blob, filename) {
  try {
    const { server, session, token, clientId } = await loadSettings();
    // The session's other devices see the add-on while it sends.
    const image = await whileAnnounced({ server, credential: token || session, clientId },
      () => uploadImage({ server, session, token, blob, filename }));
    await report(true, `sent ${image.filename || filename}`);
    return { ok: true, image };
  } catch (e) {
    await report(false, e.message);
    return { ok: false, status: e.status, message: e.message };
  }
}

// Fetches the image the user right-clicked (any site: the add-on has host permissions, so
// no CORS applies) and sends it. data: URLs work the same way.
export async function sendImage(srcUrl) {
  let res;
  try {
    res = await fetch(srcUrl, { credentials: 'include' });
    if (!res.ok) throw new Error('HTTP ' + res.status);
  } catch (e) {
    const message = 'Cannot fetch the image: ' + e.message;
    await report(false, message);
    return { ok: false, status: 0, message };
  }
  const blob = await res.blob();
  return send(blob, filenameFor(srcUrl, blob.type));
}

// Captures the visible part of the tab as PNG and sends it.
export async function sendScreenshot(tab) {
  let dataUrl;
  try {
    dataUrl = await chrome.tabs.captureVisibleTab(tab ? tab.windowId : chrome.windows.WINDOW_ID_CURRENT,
      { format: 'png' });
  } catch (e) {
    const message = 'Cannot capture this tab: ' + e.message;
    await report(false, message);
    return { ok: false, status: 0, message };
  }
  const blob = await (await fetch(dataUrl)).blob();
  return send(blob, screenshotName());
}

// Pairs from an ImageTools pairing link: one with #pair=<code> is exchanged for a token of the
// add-on's own (upload only, as the page's owner chose, and revocable from the page); an older
// one with #s=<session> is kept as it is.
export async function pair(url) {
  const p = parsePairing(url || '');
  if (!p) {
    await report(false, 'This is not an ImageTools pairing link (it needs #pair=<code> or #s=<session>).');
    return { ok: false };
  }
  if (p.session) {
    await savePairing(p);
    await report(true, `paired with ${p.server}`);
    return { ok: true, ...p };
  }
  let t;
  try {
    t = await exchangePairing({ server: p.server, code: p.code });
  } catch (e) {
    await report(false, e.message);
    return { ok: false, status: e.status, message: e.message };
  }
  await savePairing({ server: p.server, token: t.token, deviceId: t.device_id, scope: t.scope });
  await report(true, `paired with ${p.server} as "${t.label}" (${t.scope})`);
  // The token stays in the add-on: the answer names the device, not the credential.
  return { ok: true, server: p.server, device_id: t.device_id, scope: t.scope, label: t.label };
}

// Reachable from the options page and from tests that drive the worker directly (a
// headless browser cannot click a native context menu).
globalThis.imagetools = { sendImage, sendScreenshot, pair };

// background.js: the add-on's service worker: context menus, fetching the image or taking the
// screenshot, and the upload through imagetools.js.
import { filenameFor, parsePairing, screenshotName, uploadImage } from './imagetools.js';

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

async function settings() {
  const { server, session } = await chrome.storage.sync.get(['server', 'session']);
  if (!server || !session) {
    throw Object.assign(new Error('Not paired: open the add-on options and paste the pairing link.'), {
      status: 0,
    });
  }
  return { server, session };
}

// Shows the outcome on the toolbar button and keeps it for the options page.
async function report(ok, message) {
  await chrome.action.setBadgeBackgroundColor({ color: ok ? '#2e7d32' : '#c62828' });
  await chrome.action.setBadgeText({ text: ok ? 'OK' : 'ERR' });
  await chrome.action.setTitle({ title: 'ImageTools: ' + message });
  await chrome.storage.local.set({ lastResult: { ok, message, at: new Date().toISOString() } });
  setTimeout(() => chrome.action.setBadgeText({ text: '' }), 5000);
}

async function refreshTitle() {
  const { server, session } = await chrome.storage.sync.get(['server', 'session']);
  await chrome.action.setTitle({
    title: server && session ? `ImageTools: sending to ${server} (session ${session.slice(0, 6)}...)`
      : 'ImageTools: not paired (open the options)',
  });
}

async function send(blob, filename) {
  try {
    const { server, session } = await settings();
    const image = await uploadImage({ server, session, blob, filename });
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

// Takes server and session from an ImageTools page's address or pairing link.
export async function pair(url) {
  const p = parsePairing(url || '');
  if (!p) {
    await report(false, 'This is not an ImageTools pairing link (it needs #s=<session>).');
    return { ok: false };
  }
  await chrome.storage.sync.set(p);
  await refreshTitle();
  await report(true, `paired with ${p.server}`);
  return { ok: true, ...p };
}

// Reachable from the options page and from tests that drive the worker directly (a
// headless browser cannot click a native context menu).
globalThis.imagetools = { sendImage, sendScreenshot, pair };

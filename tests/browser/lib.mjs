// lib.mjs: shared helpers of the browser tests: Chromium launch, TAP-like output, and the control
// channel to the Python wrapper (tests/integration/browser.py) that owns the stack.
//
// Output lines the wrapper understands: "ok - name", "not ok - name", "skip - name # reason",
// "# diagnostic", and "@@ctl {json}" (a request the wrapper answers with one JSON line on stdin).

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import zlib from 'node:zlib';

export const BASE = process.env.IT_URL;
export const ARTIFACTS = process.env.IT_ARTIFACTS || os.tmpdir();
export const FEATURES = JSON.parse(process.env.IT_FEATURES || '{}');
// Prefix of artifact file names, so that runs against different deployments keep theirs apart.
export const LABEL = process.env.IT_LABEL ? process.env.IT_LABEL + '-' : '';

let failures = 0;

export function ok(cond, name) {
  console.log((cond ? 'ok' : 'not ok') + ' - ' + String(name).replace(/\n/g, ' '));
  if (!cond) failures++;
  return !!cond;
}

export function diag(msg) {
  for (const line of String(msg).split('\n')) console.log('# ' + line);
}

export function is(got, want, name) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (!ok(g === w, name)) {
    diag('got:  ' + (g && g.length > 600 ? g.slice(0, 600) + '...' : g));
    diag('want: ' + (w && w.length > 600 ? w.slice(0, 600) + '...' : w));
    return false;
  }
  return true;
}

export function skip(name, why) {
  console.log('skip - ' + name + ' # ' + why);
}

// ------------------------------------------------------------------ control channel

const pending = [];
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const p = pending.shift();
  if (p) p(line);
});

/** Asks the wrapper to do something to the stack (restart_lighttpd, append, ...); returns its answer. */
export function ctl(cmd, args = {}) {
  return new Promise((resolve, reject) => {
    pending.push((line) => {
      let r;
      try {
        r = JSON.parse(line);
      } catch (e) {
        reject(new Error('bad control answer: ' + line));
        return;
      }
      if (r.error) reject(new Error(cmd + ': ' + r.error));
      else resolve(r.result);
    });
    console.log('@@ctl ' + JSON.stringify({ cmd, ...args }));
  });
}

// ------------------------------------------------------------------ browser

export async function launch() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'it-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.IT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 860 },
    // IT_IGNORE_HTTPS_ERRORS: the stack serves https with a self-signed certificate.
    ignoreHTTPSErrors: !!process.env.IT_IGNORE_HTTPS_ERRORS,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { context, close };
}

/**
 * Opens a page that records what a test must be able to see: CSP violations, uncaught errors,
 * console errors and dialogs (a dialog would mean injected script ran).
 */
export async function openPage(context, url) {
  const page = await context.newPage();
  const report = { errors: [], dialogs: [] };
  page.on('pageerror', (e) => report.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') report.errors.push('console: ' + m.text());
  });
  page.on('dialog', (d) => {
    report.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
    });
  });
  await page.goto(url);
  page.report = report;
  return page;
}

/** Polls fn (in Node) until it returns a truthy value; returns it, or null after timeout ms. */
export async function until(fn, timeout = 15000, interval = 100) {
  const end = Date.now() + timeout;
  for (;;) {
    let v;
    try {
      v = await fn();
    } catch (e) {
      v = null;
    }
    if (v) return v;
    if (Date.now() > end) return null;
    await new Promise((r) => setTimeout(r, interval));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ test images

// A real PNG (RGB, a colour gradient) of w x h, so that the server's sniffing and thumbnailing
// have something true to work on.
export function makePng(w, h, seed = 0) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < w; x++) {
      raw[row + 1 + x * 3] = (x * 255) / w + seed * 40;
      raw[row + 2 + x * 3] = (y * 255) / h;
      raw[row + 3 + x * 3] = 128 + seed * 25;
    }
  }
  return encodePng(w, h, raw);
}

// A PNG file (8-bit RGB) of the w x h image raw: rows of a filter byte (0, None) and w * 3
// samples. deflate is zlib.deflateSync's options (level 0 keeps the file as large as the image).
export function encodePng(w, h, raw, deflate = {}) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, deflate)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Runs main with a browser; reports an exception as a failure; exits with the right code. */
export async function run(main) {
  const watchdog = setTimeout(() => {
    ok(false, 'the script finished within its time limit');
    process.exit(1);
  }, Number(process.env.IT_BROWSER_TIMEOUT || 240) * 1000);
  let b = null;
  try {
    b = await launch();
    await main(b.context);
  } catch (e) {
    ok(false, 'test script raised: ' + (e && e.message));
    diag(e && e.stack);
  } finally {
    if (b) await b.close();
    clearTimeout(watchdog);
    rl.close();
  }
  process.exit(failures ? 1 : 0);
}

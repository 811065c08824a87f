// qr-pbm.mjs: writes the QR code web/js/qr.js makes for a text as a PBM image, for a decoder to
// check (tests/integration/test_browser_client.py runs zbarimg on it).
//
//   node qr-pbm.mjs TEXT LEVEL OUT.pbm    prints the version and mask chosen

import fs from 'node:fs';
import { qrEncode } from '../../web/js/qr.js';

const [text, level, out] = process.argv.slice(2);
const code = qrEncode(text, { level });
const scale = 4;
const quiet = 4;
const px = (code.size + 2 * quiet) * scale;
const rows = [];
for (let y = 0; y < px; y++) {
  const row = [];
  for (let x = 0; x < px; x++) {
    const r = Math.floor(y / scale) - quiet;
    const c = Math.floor(x / scale) - quiet;
    row.push(r >= 0 && c >= 0 && r < code.size && c < code.size && code.isDark(r, c) ? 1 : 0);
  }
  rows.push(row.join(' '));
}
fs.writeFileSync(out, `P1\n${px} ${px}\n${rows.join('\n')}\n`);
console.log(JSON.stringify({ version: code.version, mask: code.mask, size: code.size }));

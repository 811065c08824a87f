// qr.js: a small QR Code encoder (ISO/IEC 18004, byte mode, versions 1-10, error correction L or M).
//
// Enough for what the page needs: a URL of up to 213 bytes (version 10, level M) shown as a
// code that a phone camera opens. It is written for clarity, not speed; encoding a URL takes
// well under a millisecond.

// Per version (index 1..10) and level: [error correction codewords per block,
// blocks of group 1, data codewords per group-1 block, blocks of group 2 (one codeword more)].
const BLOCKS = {
  L: [null, [7, 1, 19, 0], [10, 1, 34, 0], [15, 1, 55, 0], [20, 1, 80, 0], [26, 1, 108, 0],
    [18, 2, 68, 0], [20, 2, 78, 0], [24, 2, 97, 0], [30, 2, 116, 0], [18, 2, 68, 2]],
  M: [null, [10, 1, 16, 0], [16, 1, 28, 0], [26, 1, 44, 0], [18, 2, 32, 0], [24, 2, 43, 0],
    [16, 4, 27, 0], [18, 4, 31, 0], [22, 2, 38, 2], [22, 3, 36, 2], [26, 4, 43, 1]],
};

// Centres of the alignment patterns along each axis, by version.
const ALIGN = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42], [6, 26, 46],
  [6, 28, 50]];

const LEVEL_BITS = { L: 1, M: 0 };
const MAX_VERSION = 10;

// ------------------------------------------------------------------ GF(256) and Reed-Solomon

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
(() => {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d; // the field's primitive polynomial x^8 + x^4 + x^3 + x^2 + 1
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
})();

function mul(a, b) {
  return a && b ? EXP[LOG[a] + LOG[b]] : 0;
}

// Coefficients of prod(x - a^i), i < degree, highest power first, without the leading 1.
function generator(degree) {
  let g = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(g.length + 1).fill(0);
    for (let j = 0; j < g.length; j++) {
      next[j] ^= g[j];
      next[j + 1] ^= mul(g[j], EXP[i]);
    }
    g = next;
  }
  return g.slice(1);
}

// The remainder of data(x) * x^n divided by the generator: the block's n check codewords.
function eccFor(data, n) {
  const gen = generator(n);
  const rem = new Array(n).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < n; i++) rem[i] ^= mul(gen[i], factor);
  }
  return rem;
}

// ------------------------------------------------------------------ codewords

function dataCapacity(version, level) {
  const [, b1, d1, b2] = BLOCKS[level][version];
  return b1 * d1 + b2 * (d1 + 1);
}

function chooseVersion(nbytes, level) {
  for (let v = 1; v <= MAX_VERSION; v++) {
    const countBits = v < 10 ? 8 : 16;
    if (4 + countBits + nbytes * 8 <= dataCapacity(v, level) * 8) return v;
  }
  return 0;
}

function dataCodewords(bytes, version, level) {
  const cap = dataCapacity(version, level);
  const bits = [];
  const put = (value, n) => {
    for (let i = n - 1; i >= 0; i--) bits.push((value >>> i) & 1);
  };
  put(0b0100, 4); // byte mode
  put(bytes.length, version < 10 ? 8 : 16);
  for (const b of bytes) put(b, 8);
  put(0, Math.min(4, cap * 8 - bits.length)); // terminator
  while (bits.length % 8) bits.push(0);
  const out = [];
  for (let i = 0; i < bits.length; i += 8) {
    let b = 0;
    for (let j = 0; j < 8; j++) b = (b << 1) | bits[i + j];
    out.push(b);
  }
  for (let pad = 0xec; out.length < cap; pad ^= 0xec ^ 0x11) out.push(pad);
  return out;
}

// Splits into blocks, adds each block's check codewords, and interleaves them column by column
// as the symbol stores them.
function finalCodewords(data, version, level) {
  const [ecLen, b1, d1, b2] = BLOCKS[level][version];
  const blocks = [];
  let pos = 0;
  for (let i = 0; i < b1 + b2; i++) {
    const len = i < b1 ? d1 : d1 + 1;
    const d = data.slice(pos, pos + len);
    pos += len;
    blocks.push({ d, e: eccFor(d, ecLen) });
  }
  const out = [];
  for (let i = 0; i <= d1; i++) for (const b of blocks) if (i < b.d.length) out.push(b.d[i]);
  for (let i = 0; i < ecLen; i++) for (const b of blocks) out.push(b.e[i]);
  return out;
}

// ------------------------------------------------------------------ the matrix

class Matrix {
  constructor(version) {
    this.version = version;
    this.size = 17 + 4 * version;
    this.dark = new Uint8Array(this.size * this.size);
    this.fixed = new Uint8Array(this.size * this.size); // function patterns, not data
  }

  get(r, c) {
    return this.dark[r * this.size + c];
  }

  setFixed(r, c, dark) {
    this.dark[r * this.size + c] = dark ? 1 : 0;
    this.fixed[r * this.size + c] = 1;
  }

  drawFunctionPatterns() {
    const n = this.size;
    // Finders with their light separators.
    for (const [r0, c0] of [[0, 0], [0, n - 7], [n - 7, 0]]) {
      for (let dr = -1; dr <= 7; dr++) {
        for (let dc = -1; dc <= 7; dc++) {
          const r = r0 + dr;
          const c = c0 + dc;
          if (r < 0 || c < 0 || r >= n || c >= n) continue;
          const ring = Math.max(Math.abs(dr - 3), Math.abs(dc - 3));
          this.setFixed(r, c, ring !== 2 && ring !== 4);
        }
      }
    }
    // Timing lines between the finders.
    for (let i = 8; i < n - 8; i++) {
      this.setFixed(6, i, i % 2 === 0);
      this.setFixed(i, 6, i % 2 === 0);
    }
    // Alignment patterns, except where a finder sits.
    const pos = ALIGN[this.version];
    const last = pos.length - 1;
    for (let i = 0; i < pos.length; i++) {
      for (let j = 0; j < pos.length; j++) {
        if ((i === 0 && j === 0) || (i === 0 && j === last) || (i === last && j === 0)) continue;
        for (let dr = -2; dr <= 2; dr++) {
          for (let dc = -2; dc <= 2; dc++) {
            this.setFixed(pos[i] + dr, pos[j] + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
          }
        }
      }
    }
    // Reserve the format areas now (their bits depend on the mask) and draw the version areas.
    this.drawFormat(0);
    if (this.version >= 7) this.drawVersion();
  }

  // 15 bits: level and mask, BCH(15,5) check bits, then XOR with a fixed pattern so that the
  // area is never all light.
  drawFormat(bits) {
    const n = this.size;
    const bit = (i) => (bits >>> i) & 1;
    for (let i = 0; i <= 5; i++) this.setFixed(i, 8, bit(i));
    this.setFixed(7, 8, bit(6));
    this.setFixed(8, 8, bit(7));
    this.setFixed(8, 7, bit(8));
    for (let i = 9; i < 15; i++) this.setFixed(8, 14 - i, bit(i));
    for (let i = 0; i < 8; i++) this.setFixed(8, n - 1 - i, bit(i));
    for (let i = 8; i < 15; i++) this.setFixed(n - 15 + i, 8, bit(i));
    this.setFixed(n - 8, 8, 1); // the module that is always dark
  }

  drawVersion() {
    let rem = this.version;
    for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
    const bits = (this.version << 12) | rem;
    for (let i = 0; i < 18; i++) {
      const a = this.size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      this.setFixed(b, a, (bits >>> i) & 1);
      this.setFixed(a, b, (bits >>> i) & 1);
    }
  }

  // Places the codewords in two-module columns, right to left, alternately upwards and
  // downwards, skipping the function patterns and the vertical timing line.
  drawCodewords(codewords) {
    const n = this.size;
    let i = 0;
    const total = codewords.length * 8;
    for (let right = n - 1; right >= 1; right -= 2) {
      if (right === 6) right = 5;
      const upward = ((right + 1) & 2) === 0;
      for (let k = 0; k < n; k++) {
        const r = upward ? n - 1 - k : k;
        for (let j = 0; j < 2; j++) {
          const c = right - j;
          if (this.fixed[r * n + c]) continue;
          const dark = i < total ? (codewords[i >>> 3] >>> (7 - (i & 7))) & 1 : 0;
          this.dark[r * n + c] = dark;
          i++;
        }
      }
    }
  }

  applyMask(mask) {
    const n = this.size;
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        if (this.fixed[r * n + c]) continue;
        let flip;
        switch (mask) {
          case 0: flip = (r + c) % 2 === 0; break;
          case 1: flip = r % 2 === 0; break;
          case 2: flip = c % 3 === 0; break;
          case 3: flip = (r + c) % 3 === 0; break;
          case 4: flip = (Math.floor(r / 2) + Math.floor(c / 3)) % 2 === 0; break;
          case 5: flip = ((r * c) % 2) + ((r * c) % 3) === 0; break;
          case 6: flip = (((r * c) % 2) + ((r * c) % 3)) % 2 === 0; break;
          default: flip = (((r + c) % 2) + ((r * c) % 3)) % 2 === 0; break;
        }
        if (flip) this.dark[r * n + c] ^= 1;
      }
    }
  }

  // The standard's penalty score; the mask with the lowest is used, as it reads most reliably.
  penalty() {
    const n = this.size;
    let score = 0;
    const line = (get) => {
      let run = 1;
      for (let i = 1; i <= n; i++) {
        if (i < n && get(i) === get(i - 1)) {
          run++;
        } else {
          if (run >= 5) score += 3 + (run - 5);
          run = 1;
        }
      }
      // Finder look-alikes: dark-light-dark-dark-dark-light-dark with four light on one side.
      for (let i = 0; i + 7 <= n; i++) {
        if (get(i) && !get(i + 1) && get(i + 2) && get(i + 3) && get(i + 4) && !get(i + 5) && get(i + 6)) {
          const lightBefore = [1, 2, 3, 4].every((k) => i - k < 0 || !get(i - k));
          const lightAfter = [7, 8, 9, 10].every((k) => i + k >= n || !get(i + k));
          if (lightBefore || lightAfter) score += 40;
        }
      }
    };
    for (let r = 0; r < n; r++) line((c) => this.get(r, c));
    for (let c = 0; c < n; c++) line((r) => this.get(r, c));
    let darkCount = 0;
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        const d = this.get(r, c);
        darkCount += d;
        if (r + 1 < n && c + 1 < n && d === this.get(r, c + 1) && d === this.get(r + 1, c) &&
          d === this.get(r + 1, c + 1)) score += 3;
      }
    }
    score += Math.floor(Math.abs((darkCount * 100) / (n * n) - 50) / 5) * 10;
    return score;
  }
}

function formatBits(level, mask) {
  const data = (LEVEL_BITS[level] << 3) | mask;
  let rem = data;
  for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  return ((data << 10) | rem) ^ 0x5412;
}

/**
 * Encodes text (UTF-8, byte mode) as a QR code.
 * Returns {version, size, level, mask, isDark(row, col)}; throws RangeError when the text does
 * not fit version 10 (213 bytes at level M, 271 at L).
 */
export function qrEncode(text, { level = 'M' } = {}) {
  if (!BLOCKS[level]) throw new RangeError('qrEncode: level must be L or M');
  const bytes = new TextEncoder().encode(String(text));
  const version = chooseVersion(bytes.length, level);
  if (!version) throw new RangeError('qrEncode: text too long for a version ' + MAX_VERSION + ' code');
  const codewords = finalCodewords(dataCodewords(bytes, version, level), version, level);
  let best = null;
  for (let mask = 0; mask < 8; mask++) {
    const m = new Matrix(version);
    m.drawFunctionPatterns();
    m.drawCodewords(codewords);
    m.applyMask(mask);
    m.drawFormat(formatBits(level, mask));
    const score = m.penalty();
    if (!best || score < best.score) best = { m, mask, score };
  }
  const { m, mask } = best;
  return { version, size: m.size, level, mask, isDark: (r, c) => m.get(r, c) === 1 };
}

/**
 * Draws text as a QR code on canvas (dark on white, with the four-module quiet zone the
 * standard asks for), scaling modules to whole pixels. Returns the encoded code.
 */
export function drawQr(canvas, text, { level = 'M', moduleSize = 6 } = {}) {
  const code = qrEncode(text, { level });
  const quiet = 4;
  const px = (code.size + 2 * quiet) * moduleSize;
  canvas.width = px;
  canvas.height = px;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#fff';
  ctx.fillRect(0, 0, px, px);
  ctx.fillStyle = '#000';
  for (let r = 0; r < code.size; r++) {
    for (let c = 0; c < code.size; c++) {
      if (code.isDark(r, c)) ctx.fillRect((c + quiet) * moduleSize, (r + quiet) * moduleSize, moduleSize, moduleSize);
    }
  }
  return code;
}

/**
 * Animated GIF89a encoder with no dependencies, meant for rollout videos of the 2-D environments.
 *
 * All frames share one global colour table. Renderings of these environments use a handful of
 * flat colours, so when the whole clip has at most 256 distinct colours they are kept exactly;
 * anti-aliased edges can push a long clip past 256, and then the clip is median-cut quantised on a
 * 5-bit-per-channel histogram, which keeps the dominant flat colours exact and costs one extra
 * pass over the pixels. Alpha is ignored.
 */

export interface GifFrame {
  width: number;
  height: number;
  /** Row-major RGBA, 4 bytes per pixel; alpha is ignored. */
  rgba: Uint8Array | Uint8ClampedArray;
}

export interface GifOptions {
  /** Delay per frame in milliseconds; GIF stores hundredths of a second, so it is rounded. Default 100. */
  delayMs?: number;
  /** Loop forever (NETSCAPE2.0 extension). Default true. */
  loop?: boolean;
}

const MAX_COLOURS = 256;
/** LZW minimum code size: always 8, so indices never need repacking when the palette is smaller. */
const MIN_CODE_SIZE = 8;
const MAX_CODE = 4096;

/** Grows on demand so the caller need not guess how well the frames compress. */
class ByteWriter {
  buf: Uint8Array;
  pos = 0;

  constructor(initial: number) {
    this.buf = new Uint8Array(Math.max(1024, initial));
  }

  ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf[this.pos++] = v & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
  }

  bytes(data: ArrayLike<number>): void {
    this.ensure(data.length);
    for (let i = 0; i < data.length; i++) this.buf[this.pos++] = data[i];
  }

  ascii(s: string): void {
    for (let i = 0; i < s.length; i++) this.byte(s.charCodeAt(i));
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/**
 * Open-addressing map from 24-bit RGB to palette index. A Map would do, but this sits in the
 * per-pixel loop of clips with tens of millions of pixels.
 */
class ColourIndex {
  private readonly keys = new Int32Array(1024).fill(-1);
  private readonly values = new Int16Array(1024);
  size = 0;

  get(rgb: number): number {
    let h = Math.imul(rgb, 0x9e3779b1) >>> 22;
    for (;;) {
      const k = this.keys[h];
      if (k === rgb) return this.values[h];
      if (k === -1) return -1;
      h = (h + 1) & 1023;
    }
  }

  /** Adds `rgb` if absent; returns its index, or -1 when that would exceed 256 colours. */
  add(rgb: number): number {
    let h = Math.imul(rgb, 0x9e3779b1) >>> 22;
    for (;;) {
      const k = this.keys[h];
      if (k === rgb) return this.values[h];
      if (k === -1) break;
      h = (h + 1) & 1023;
    }
    if (this.size === MAX_COLOURS) return -1;
    this.keys[h] = rgb;
    this.values[h] = this.size;
    return this.size++;
  }
}

interface Palette {
  /** Packed 0xRRGGBB entries, at most 256. */
  colours: number[];
  /** Writes each pixel's palette index into `out`. */
  map(rgba: Uint8Array | Uint8ClampedArray, out: Uint8Array): void;
}

function exactPalette(frames: readonly GifFrame[]): Palette | null {
  const index = new ColourIndex();
  const colours: number[] = [];
  for (const f of frames) {
    const px = f.rgba;
    // Flat-colour frames are mostly runs, so skipping repeats avoids most hash probes.
    let last = -1;
    for (let i = 0; i < px.length; i += 4) {
      const rgb = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
      if (rgb === last) continue;
      last = rgb;
      const before = index.size;
      const idx = index.add(rgb);
      if (idx < 0) return null;
      if (index.size !== before) colours.push(rgb);
    }
  }
  return {
    colours,
    map(px, out) {
      let last = -1;
      let lastIdx = 0;
      for (let i = 0, p = 0; i < px.length; i += 4, p++) {
        const rgb = (px[i] << 16) | (px[i + 1] << 8) | px[i + 2];
        if (rgb !== last) {
          last = rgb;
          lastIdx = index.get(rgb);
        }
        out[p] = lastIdx;
      }
    },
  };
}

const BINS = 1 << 15;

function binOf(r: number, g: number, b: number): number {
  return ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
}

interface Box {
  start: number;
  end: number;
  count: number;
  /** Widest channel (0 r, 1 g, 2 b) and its extent in bin units. */
  axis: number;
  range: number;
}

function quantisedPalette(frames: readonly GifFrame[]): Palette {
  const count = new Float64Array(BINS);
  const sumR = new Float64Array(BINS);
  const sumG = new Float64Array(BINS);
  const sumB = new Float64Array(BINS);
  // Boyer-Moore majority vote per bin: finds a bin's dominant exact colour in O(1) memory, so a
  // flat colour sharing its bin with anti-aliased neighbours still comes out exact.
  const candidate = new Int32Array(BINS).fill(-1);
  const votes = new Int32Array(BINS);
  for (const f of frames) {
    const px = f.rgba;
    for (let i = 0; i < px.length; i += 4) {
      const r = px[i];
      const g = px[i + 1];
      const b = px[i + 2];
      const bin = binOf(r, g, b);
      count[bin]++;
      sumR[bin] += r;
      sumG[bin] += g;
      sumB[bin] += b;
      const rgb = (r << 16) | (g << 8) | b;
      if (candidate[bin] === rgb) votes[bin]++;
      else if (votes[bin] === 0) {
        candidate[bin] = rgb;
        votes[bin] = 1;
      } else votes[bin]--;
    }
  }

  let occupied = 0;
  for (let b = 0; b < BINS; b++) if (count[b] > 0) occupied++;
  const bins = new Int32Array(occupied);
  for (let b = 0, j = 0; b < BINS; b++) if (count[b] > 0) bins[j++] = b;

  const channel = (bin: number, axis: number): number => (bin >> (10 - 5 * axis)) & 31;
  const makeBox = (start: number, end: number): Box => {
    const lo = [31, 31, 31];
    const hi = [0, 0, 0];
    let n = 0;
    for (let j = start; j < end; j++) {
      const bin = bins[j];
      n += count[bin];
      for (let a = 0; a < 3; a++) {
        const v = channel(bin, a);
        if (v < lo[a]) lo[a] = v;
        if (v > hi[a]) hi[a] = v;
      }
    }
    let axis = 0;
    for (let a = 1; a < 3; a++) if (hi[a] - lo[a] > hi[axis] - lo[axis]) axis = a;
    return { start, end, count: n, axis, range: hi[axis] - lo[axis] };
  };

  const boxes: Box[] = [makeBox(0, occupied)];
  while (boxes.length < MAX_COLOURS) {
    // count * range^2 approximates the squared error a split removes, so big flat areas get
    // isolated first but sparse anti-aliasing ramps still get entries.
    let pick = -1;
    let best = 0;
    for (let k = 0; k < boxes.length; k++) {
      const bx = boxes[k];
      const score = bx.count * bx.range * bx.range;
      if (bx.end - bx.start > 1 && score > best) {
        best = score;
        pick = k;
      }
    }
    if (pick < 0) break;
    const bx = boxes[pick];
    const slice = bins.subarray(bx.start, bx.end);
    const axis = bx.axis;
    slice.sort((p, q) => channel(p, axis) - channel(q, axis));
    // Split at the population median, but never leave a side empty.
    let acc = 0;
    let cut = bx.start + 1;
    for (let j = bx.start; j < bx.end - 1; j++) {
      acc += count[bins[j]];
      cut = j + 1;
      if (acc * 2 >= bx.count) break;
    }
    boxes[pick] = makeBox(bx.start, cut);
    boxes.push(makeBox(cut, bx.end));
  }

  const colours: number[] = [];
  const pr: number[] = [];
  const pg: number[] = [];
  const pb: number[] = [];
  for (const bx of boxes) {
    let r = 0;
    let g = 0;
    let b = 0;
    let heaviest = bins[bx.start];
    for (let j = bx.start; j < bx.end; j++) {
      const bin = bins[j];
      r += sumR[bin];
      g += sumG[bin];
      b += sumB[bin];
      if (count[bin] > count[heaviest]) heaviest = bin;
    }
    let rgb: number;
    if (count[heaviest] * 2 >= bx.count) {
      // A box dominated by one bin is almost always a flat fill: reproduce its colour exactly.
      rgb = candidate[heaviest];
    } else {
      rgb = (Math.round(r / bx.count) << 16) | (Math.round(g / bx.count) << 8) | Math.round(b / bx.count);
    }
    colours.push(rgb);
    pr.push((rgb >> 16) & 255);
    pg.push((rgb >> 8) & 255);
    pb.push(rgb & 255);
  }

  const exact = new ColourIndex();
  for (const c of colours) exact.add(c);
  const lut = new Uint8Array(BINS);
  for (let j = 0; j < occupied; j++) {
    const bin = bins[j];
    const hit = exact.get(candidate[bin]);
    if (hit >= 0) {
      lut[bin] = hit;
      continue;
    }
    const r = sumR[bin] / count[bin];
    const g = sumG[bin] / count[bin];
    const b = sumB[bin] / count[bin];
    let bestIdx = 0;
    let bestD = Infinity;
    for (let k = 0; k < colours.length; k++) {
      const dr = pr[k] - r;
      const dg = pg[k] - g;
      const db = pb[k] - b;
      const d = dr * dr + dg * dg + db * db;
      if (d < bestD) {
        bestD = d;
        bestIdx = k;
      }
    }
    lut[bin] = bestIdx;
  }

  return {
    colours,
    map(px, out) {
      for (let i = 0, p = 0; i < px.length; i += 4, p++) out[p] = lut[binOf(px[i], px[i + 1], px[i + 2])];
    },
  };
}

/**
 * LZW-compresses palette indices into GIF data sub-blocks (min code size 8, codes LSB-first).
 * `keys`/`codes` are a reusable open-addressing table from (prefix << 8 | byte) to code.
 */
function writeLzw(indices: Uint8Array, w: ByteWriter, keys: Int32Array, codes: Uint16Array): void {
  const clear = 1 << MIN_CODE_SIZE;
  const eoi = clear + 1;
  const mask = keys.length - 1;
  const shift = 32 - Math.log2(keys.length);

  w.byte(MIN_CODE_SIZE);
  // Bytes go straight into the output; the length byte of the current sub-block is patched when
  // it fills or the stream ends.
  let blockLenAt = w.pos;
  let blockLen = 0;
  w.byte(0);
  let acc = 0;
  let accBits = 0;
  let codeSize = MIN_CODE_SIZE + 1;

  const put = (byte: number): void => {
    if (blockLen === 255) {
      w.buf[blockLenAt] = 255;
      blockLenAt = w.pos;
      blockLen = 0;
      w.byte(0);
    }
    w.byte(byte);
    blockLen++;
  };
  const emit = (code: number): void => {
    acc |= code << accBits;
    accBits += codeSize;
    while (accBits >= 8) {
      put(acc & 0xff);
      acc >>>= 8;
      accBits -= 8;
    }
  };

  keys.fill(-1);
  let nextCode = eoi + 1;
  emit(clear);
  let prefix = indices[0];
  for (let i = 1; i < indices.length; i++) {
    const c = indices[i];
    const key = (prefix << 8) | c;
    let h = Math.imul(key, 0x9e3779b1) >>> shift;
    let k: number;
    while ((k = keys[h]) !== key && k !== -1) h = (h + 1) & mask;
    if (k === key) {
      prefix = codes[h];
      continue;
    }
    emit(prefix);
    if (nextCode < MAX_CODE) {
      keys[h] = key;
      codes[h] = nextCode++;
      // The decoder adds each entry one code later than we do, hence '>' rather than '>='.
      if (nextCode > 1 << codeSize && codeSize < 12) codeSize++;
    } else {
      // Table full: a clear code (still at 12 bits) makes both sides start over.
      emit(clear);
      keys.fill(-1);
      codeSize = MIN_CODE_SIZE + 1;
      nextCode = eoi + 1;
    }
    prefix = c;
  }
  emit(prefix);
  emit(eoi);
  if (accBits > 0) put(acc & 0xff);
  w.buf[blockLenAt] = blockLen;
  if (blockLen > 0) w.byte(0);
}

function validate(frames: readonly GifFrame[]): { width: number; height: number } {
  if (!Array.isArray(frames) || frames.length === 0) throw new Error('encodeGif: no frames to encode');
  const { width, height } = frames[0];
  for (let i = 0; i < frames.length; i++) {
    const f = frames[i];
    if (!Number.isInteger(f.width) || !Number.isInteger(f.height) || f.width < 1 || f.height < 1 || f.width > 65535 || f.height > 65535) {
      throw new Error(`encodeGif: frame ${i} has invalid size ${f.width}x${f.height} (each side must be an integer in 1..65535)`);
    }
    if (f.width !== width || f.height !== height) {
      throw new Error(`encodeGif: frame ${i} is ${f.width}x${f.height} but frame 0 is ${width}x${height}; all frames must be the same size`);
    }
    const want = f.width * f.height * 4;
    if (!f.rgba || f.rgba.length !== want) {
      throw new Error(`encodeGif: frame ${i} (${f.width}x${f.height}) has rgba length ${f.rgba?.length} but needs ${want} (4 bytes per pixel)`);
    }
  }
  return { width, height };
}

export function encodeGif(frames: GifFrame[], opts: GifOptions = {}): Uint8Array {
  const { width, height } = validate(frames);
  const delayMs = opts.delayMs ?? 100;
  if (!Number.isFinite(delayMs) || delayMs < 0) throw new Error(`encodeGif: delayMs must be a non-negative number, got ${delayMs}`);
  const delayCs = Math.min(65535, Math.round(delayMs / 10));
  const loop = opts.loop ?? true;

  const palette = exactPalette(frames) ?? quantisedPalette(frames);
  // The colour table must hold 2^n entries (n >= 1); unused ones are black padding.
  let tableBits = 1;
  while (1 << tableBits < palette.colours.length) tableBits++;

  const pixels = width * height;
  // Flat renderings compress ~50x, so start small and let the writer double.
  const w = new ByteWriter(1 << 16);
  w.ascii('GIF89a');
  w.u16(width);
  w.u16(height);
  // Global table present, 8 bits per primary colour, unsorted, table size 2^tableBits.
  w.byte(0x80 | (7 << 4) | (tableBits - 1));
  w.byte(0); // background colour index
  w.byte(0); // no pixel aspect ratio
  for (let k = 0; k < 1 << tableBits; k++) {
    const c = palette.colours[k] ?? 0;
    w.byte((c >> 16) & 255);
    w.byte((c >> 8) & 255);
    w.byte(c & 255);
  }
  if (loop) {
    w.bytes([0x21, 0xff, 11]);
    w.ascii('NETSCAPE2.0');
    w.bytes([3, 1, 0, 0, 0]); // sub-block: id 1, loop count 0 = forever
  }

  const indices = new Uint8Array(pixels);
  const keys = new Int32Array(8192); // > 2x the 4096 codes, so probes stay short
  const codes = new Uint16Array(keys.length);
  for (const f of frames) {
    // Graphic Control Extension: disposal 1 (leave in place), no transparency.
    w.bytes([0x21, 0xf9, 4, 1 << 2]);
    w.u16(delayCs);
    w.bytes([0, 0]);
    // Image descriptor: full frame, no local table, not interlaced.
    w.byte(0x2c);
    w.u16(0);
    w.u16(0);
    w.u16(width);
    w.u16(height);
    w.byte(0);
    palette.map(f.rgba, indices);
    writeLzw(indices, w, keys, codes);
  }
  w.byte(0x3b);
  return w.result();
}

/**
 * Reading and writing Diffusion Policy replay buffers in the zarr v2 layout that Python's
 * `zarr` 2.x writes (`pusht_cchi_v7_replay.zarr`):
 *
 *   <root>/.zgroup
 *   <root>/data/.zgroup, <root>/data/<key>/{.zarray, chunk files}   frame-major arrays (N, ...)
 *   <root>/meta/.zgroup, <root>/meta/episode_ends/{.zarray, 0}     int64 cumulative frame counts
 *
 * Reading goes through zarrita (metadata translation, dtype handling, the blosc/zlib/... codec
 * pipeline). zarrita 0.7 can only *create* zarr v3 metadata, so the writer emits the v2 JSON
 * itself and compresses chunks with numcodecs' Blosc, exactly as Python zarr would lay them out.
 *
 * Every failure throws a {@link DatasetError} whose message starts with the offending file-system
 * path (the dataset, an array directory or a single chunk file), so a CLI can print it as is.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zarr from 'zarrita';
import Blosc from 'numcodecs/blosc';
import { ReplayBuffer, type ArrayData } from './replay.js';

/** A problem with a dataset on disk; `path` is the file or directory at fault. */
export class DatasetError extends Error {
  readonly path: string;
  constructor(where: string, what: string) {
    super(`${where}: ${what}`);
    this.name = 'DatasetError';
    this.path = where;
  }
}

export interface ReadOptions {
  /** Data arrays to load (default: every array under `data/`); e.g. skip `img` for state-only training. */
  keys?: string[];
}

export interface WriteOptions {
  /** Frames per chunk for every data array (default: about 1 MiB of raw data per chunk). */
  chunkFrames?: number;
}

export interface ArrayInfo {
  /** Name under `data/`, e.g. `state`. */
  key: string;
  /** numpy dtype string as stored, e.g. `<f4` or `|u1`. */
  dtype: string;
  shape: number[];
  chunks: number[];
  /** Compressor id (`blosc`, `zlib`, ...) or null for raw chunks. */
  compressor: string | null;
  /** Over the whole array; null for an empty array. NaNs are ignored. */
  min: number | null;
  max: number | null;
}

export interface DatasetInfo {
  path: string;
  episodes: number;
  frames: number;
  arrays: ArrayInfo[];
}

// ---------------------------------------------------------------------------------------------
// v2 metadata

interface CompressorV2 {
  id: string;
  [k: string]: unknown;
}

/** The subset of a v2 `.zarray` that this module relies on, validated by {@link readZarray}. */
interface ZarrayV2 {
  zarr_format: 2;
  shape: number[];
  chunks: number[];
  dtype: string;
  compressor: CompressorV2 | null;
  fill_value: number | string | null;
  order: 'C' | 'F';
  filters: CompressorV2[] | null;
  dimension_separator?: '.' | '/';
}

interface DtypeInfo {
  kind: 'f' | 'i' | 'u';
  size: number;
}

/**
 * Numeric dtypes only. float16 is refused because zarrita decodes it to Float16Array, which
 * Node 20 lacks; bool, strings, objects, complex and datetimes have no meaning as policy inputs.
 */
function parseDtype(dtype: unknown): DtypeInfo | null {
  if (typeof dtype !== 'string') return null;
  const m = /^([<>|=])([fiu])(\d+)$/.exec(dtype);
  if (!m) return null;
  const kind = m[2] as DtypeInfo['kind'];
  const size = Number(m[3]);
  const ok = kind === 'f' ? size === 4 || size === 8 : [1, 2, 4, 8].includes(size);
  return ok ? { kind, size } : null;
}

function isIntArray(v: unknown, min: number): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= min);
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    if (isNotFound(e)) throw new DatasetError(path.dirname(file), `missing ${what} (no ${path.basename(file)})`);
    throw new DatasetError(file, `cannot read: ${errMessage(e)}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new DatasetError(file, `invalid JSON: ${errMessage(e)}`);
  }
}

/** The most values one array may hold: 2^31, a 2 GiB uint8 image array or 8 GiB of float32. */
const MAX_VALUES = 2 ** 31;

/** Reads and validates `<dir>/.zarray`; `what` names the array in "missing ..." messages. */
async function readZarray(dir: string, what: string): Promise<ZarrayV2> {
  const raw = await readJson(path.join(dir, '.zarray'), what);
  const fail = (msg: string): never => {
    throw new DatasetError(dir, msg);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('.zarray is not a JSON object');
  const m = raw as Record<string, unknown>;
  if (m.zarr_format !== 2) fail(`unsupported zarr_format ${JSON.stringify(m.zarr_format)} (only zarr v2 is supported)`);
  if (!isIntArray(m.shape, 0)) fail(`invalid shape ${JSON.stringify(m.shape)}`);
  if (!isIntArray(m.chunks, 1) || (m.chunks as number[]).length !== (m.shape as number[]).length) {
    fail(`invalid chunks ${JSON.stringify(m.chunks)} for shape ${JSON.stringify(m.shape)}`);
  }
  // Sizes a corrupt .zarray could claim would otherwise surface as an allocation failure.
  const values = prod(m.shape as number[]);
  if (!Number.isSafeInteger(values) || values > MAX_VALUES) fail(`shape ${JSON.stringify(m.shape)} holds ${values} values, more than onedp reads into memory (${MAX_VALUES})`);
  if (prod(m.chunks as number[]) > MAX_VALUES) fail(`chunks ${JSON.stringify(m.chunks)} are larger than onedp reads into memory (${MAX_VALUES} values)`);
  if (!parseDtype(m.dtype)) {
    fail(`unsupported dtype ${JSON.stringify(m.dtype)} (expected a numeric dtype such as "<f4", "<f8", "|u1" or "<i8")`);
  }
  if (m.order !== 'C' && m.order !== 'F') fail(`invalid order ${JSON.stringify(m.order)}`);
  const isCodec = (c: unknown) => typeof c === 'object' && c !== null && typeof (c as CompressorV2).id === 'string';
  if (m.compressor !== null && !isCodec(m.compressor)) fail(`invalid compressor ${JSON.stringify(m.compressor)}`);
  if (m.filters != null && !(Array.isArray(m.filters) && m.filters.every(isCodec))) fail(`invalid filters ${JSON.stringify(m.filters)}`);
  if (m.dimension_separator != null && m.dimension_separator !== '.' && m.dimension_separator !== '/') {
    fail(`invalid dimension_separator ${JSON.stringify(m.dimension_separator)}`);
  }
  return m as unknown as ZarrayV2;
}

/** Requires `<dir>/.zgroup` with zarr_format 2. */
async function requireGroup(dir: string, what: string): Promise<void> {
  let st;
  try {
    st = await fs.stat(dir);
  } catch (e) {
    if (isNotFound(e)) throw new DatasetError(dir, `${what} not found`);
    throw new DatasetError(dir, `cannot access: ${errMessage(e)}`);
  }
  if (!st.isDirectory()) throw new DatasetError(dir, `not a zarr group (${what} is not a directory)`);
  if (!(await exists(path.join(dir, '.zgroup')))) {
    const v3 = await exists(path.join(dir, 'zarr.json'));
    throw new DatasetError(dir, v3 ? 'is a zarr v3 group; only zarr v2 is supported' : `not a zarr v2 group (no .zgroup)`);
  }
  const g = await readJson(path.join(dir, '.zgroup'), 'group metadata');
  if (typeof g !== 'object' || g === null || Array.isArray(g)) throw new DatasetError(dir, '.zgroup is not a JSON object');
  if ((g as { zarr_format?: unknown }).zarr_format !== 2) throw new DatasetError(dir, `.zgroup has zarr_format ${JSON.stringify((g as { zarr_format?: unknown }).zarr_format)}, expected 2`);
}

// ---------------------------------------------------------------------------------------------
// chunk reading

const prod = (xs: number[]) => xs.reduce((a, b) => a * b, 1);

function chunkFileName(meta: ZarrayV2, coords: number[]): string {
  return coords.length === 0 ? '0' : coords.join(meta.dimension_separator ?? '.');
}

/**
 * Validates a chunk before zarrita decodes it. This matters because numcodecs' blosc
 * decompressor trusts the blosc header: a truncated file (even 10 bytes of one) "decodes"
 * without error into garbage, so truncation must be caught from the header's own sizes.
 */
function checkChunkBytes(file: string, meta: ZarrayV2, bytes: Uint8Array | undefined): void {
  if (!bytes) {
    // zarr semantics: a missing chunk is all fill_value; with no fill value that is data loss.
    if (meta.fill_value === null) throw new DatasetError(file, 'missing chunk file (the array has fill_value null, so it cannot be filled in)');
    return;
  }
  if (meta.filters?.length) return; // filters may change sizes; the codecs have the last word
  const expected = prod(meta.chunks) * parseDtype(meta.dtype)!.size;
  if (meta.compressor === null) {
    if (bytes.length !== expected) throw new DatasetError(file, `truncated or corrupt chunk: ${bytes.length} bytes, expected ${expected}`);
    return;
  }
  if (meta.compressor.id !== 'blosc') return;
  if (bytes.length < 16) throw new DatasetError(file, `truncated chunk: ${bytes.length} bytes is shorter than a blosc header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nbytes = view.getUint32(4, true);
  const cbytes = view.getUint32(12, true);
  if (cbytes !== bytes.length) {
    throw new DatasetError(file, `truncated or corrupt blosc chunk: header says ${cbytes} compressed bytes, file has ${bytes.length}`);
  }
  if (nbytes !== expected) {
    throw new DatasetError(file, `blosc chunk holds ${nbytes} bytes but a ${JSON.stringify(meta.chunks)} chunk of dtype ${meta.dtype} needs ${expected} (dtype or chunks in .zarray do not match the data)`);
  }
}

/**
 * A read-only zarrita store rooted at one array's directory, so every key that is not a
 * `.z*` metadata file is a chunk of that array and can be checked against its metadata.
 */
class ArrayDirStore {
  constructor(
    private readonly dir: string,
    private readonly meta: ZarrayV2,
  ) {}

  async get(key: string): Promise<Uint8Array | undefined> {
    const file = path.join(this.dir, key);
    let bytes: Uint8Array | undefined;
    try {
      const buf = await fs.readFile(file);
      bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      if (!isNotFound(e)) throw new DatasetError(file, `cannot read: ${errMessage(e)}`);
    }
    if (!path.posix.basename(key).startsWith('.')) checkChunkBytes(file, this.meta, bytes);
    return bytes;
  }
}

type Decoded = ArrayLike<number> | ArrayLike<bigint>;
type Output = Float32Array | Uint8Array | Float64Array;

/** C-order strides of a shape, in elements. */
function cStrides(shape: number[]): number[] {
  const s = new Array<number>(shape.length).fill(1);
  for (let d = shape.length - 2; d >= 0; d--) s[d] = s[d + 1] * shape[d + 1];
  return s;
}

/**
 * Visits the in-bounds part of every chunk of an array as runs of elements: `run(src, srcOff,
 * srcStep, dstOff, len)` covers `len` elements of the decoded chunk `src` (stepping `srcStep`)
 * that land at C-order offset `dstOff..dstOff+len` of the whole array. Chunks are decoded one at
 * a time so a whole-array scan (min/max of 700 MB of images) needs one chunk of memory.
 */
async function forEachRun(
  dir: string,
  meta: ZarrayV2,
  run: (src: Decoded, srcOff: number, srcStep: number, dstOff: number, len: number) => void,
): Promise<void> {
  const { shape, chunks } = meta;
  const rank = shape.length;
  if (prod(shape) === 0) return;
  let arr: zarr.Array<zarr.DataType, ArrayDirStore>;
  try {
    arr = await zarr.open.v2(new ArrayDirStore(dir, meta), { kind: 'array', attrs: false });
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    throw new DatasetError(dir, `cannot open array: ${errMessage(e)}`);
  }
  const grid = shape.map((n, d) => Math.ceil(n / chunks[d]));
  const dstStrides = cStrides(shape);
  const coords = new Array<number>(rank).fill(0);
  for (;;) {
    const file = path.join(dir, chunkFileName(meta, coords));
    let chunk: zarr.Chunk<zarr.DataType>;
    try {
      chunk = await arr.getChunk(coords);
    } catch (e) {
      if (e instanceof DatasetError) throw e;
      throw new DatasetError(file, `cannot decode chunk: ${errMessage(e)}`);
    }
    const src = chunk.data as unknown as Decoded;
    if (src.length !== prod(chunks)) throw new DatasetError(file, `chunk decoded to ${src.length} values, expected ${prod(chunks)}`);
    visitChunk(src, chunk.stride, coords, chunks, shape, dstStrides, run);
    // odometer over the chunk grid, last axis fastest
    let d = rank - 1;
    while (d >= 0 && ++coords[d] === grid[d]) coords[d--] = 0;
    if (d < 0) break;
  }
}

function visitChunk(
  src: Decoded,
  srcStrides: number[],
  coords: number[],
  chunks: number[],
  shape: number[],
  dstStrides: number[],
  run: (src: Decoded, srcOff: number, srcStep: number, dstOff: number, len: number) => void,
): void {
  const rank = shape.length;
  const start = coords.map((c, d) => c * chunks[d]);
  const extent = start.map((s, d) => Math.min(chunks[d], shape[d] - s));
  // Merge trailing axes into one run while they are whole in the chunk and in the array and
  // contiguous in the decoded chunk: for the usual frame-chunked C-order layout a chunk is one run.
  let inner = rank - 1;
  let len = extent[inner];
  const step = srcStrides[inner];
  while (
    inner > 0 &&
    step === 1 &&
    extent[inner] === chunks[inner] &&
    chunks[inner] === shape[inner] &&
    srcStrides[inner - 1] === srcStrides[inner] * chunks[inner]
  ) {
    inner--;
    len *= extent[inner];
  }
  const idx = new Array<number>(inner).fill(0);
  for (;;) {
    let srcOff = 0;
    let dstOff = 0;
    for (let d = 0; d < inner; d++) {
      srcOff += idx[d] * srcStrides[d];
      dstOff += (start[d] + idx[d]) * dstStrides[d];
    }
    dstOff += start[inner] * dstStrides[inner];
    run(src, srcOff, step, dstOff, len);
    let d = inner - 1;
    while (d >= 0 && ++idx[d] === extent[d]) idx[d--] = 0;
    if (d < 0) break;
  }
}

/** Decodes a whole array into `out`, converting any numeric dtype (int64 included) to its element type. */
async function readArrayInto(dir: string, meta: ZarrayV2, out: Output): Promise<void> {
  await forEachRun(dir, meta, (src, srcOff, step, dstOff, len) => {
    if (src instanceof BigInt64Array || src instanceof BigUint64Array) {
      for (let i = 0; i < len; i++) out[dstOff + i] = Number(src[srcOff + i * step]);
    } else if (step === 1 && ArrayBuffer.isView(src)) {
      // typed-array set converts element types (f8 -> f4 rounds to nearest) in native code
      out.set((src as Float32Array).subarray(srcOff, srcOff + len), dstOff);
    } else {
      const s = src as ArrayLike<number>;
      for (let i = 0; i < len; i++) out[dstOff + i] = s[srcOff + i * step];
    }
  });
}

// ---------------------------------------------------------------------------------------------
// reading

interface OpenedDataset {
  root: string;
  episodeEnds: number[];
  /** Directory of every array under data/, in name order. */
  arrays: Map<string, string>;
}

interface SelectedArray {
  key: string;
  dir: string;
  meta: ZarrayV2;
}

/** Opens and validates the hierarchy and episode ends; reads no data chunks. */
async function openDataset(root: string): Promise<OpenedDataset> {
  await requireGroup(root, 'dataset');
  const dataDir = path.join(root, 'data');
  const metaDir = path.join(root, 'meta');
  await requireGroup(dataDir, 'group "data"');
  await requireGroup(metaDir, 'group "meta"');

  const endsDir = path.join(metaDir, 'episode_ends');
  if (!(await exists(endsDir))) throw new DatasetError(endsDir, 'missing meta/episode_ends (every replay buffer needs it)');
  const endsMeta = await readZarray(endsDir, 'meta/episode_ends array');
  const endsType = parseDtype(endsMeta.dtype)!;
  if (endsType.kind === 'f') throw new DatasetError(endsDir, `wrong dtype ${JSON.stringify(endsMeta.dtype)}: episode_ends must be an integer array (normally "<i8")`);
  if (endsMeta.shape.length !== 1) throw new DatasetError(endsDir, `episode_ends must be 1-D, got shape ${JSON.stringify(endsMeta.shape)}`);
  await checkChunkFiles(endsDir, endsMeta);
  const endsF64 = new Float64Array(endsMeta.shape[0]);
  await readArrayInto(endsDir, endsMeta, endsF64);
  const episodeEnds = Array.from(endsF64);
  let prev = 0;
  for (let i = 0; i < episodeEnds.length; i++) {
    const e = episodeEnds[i];
    if (!Number.isSafeInteger(e) || e <= prev) {
      throw new DatasetError(endsDir, `episode ends must be strictly increasing positive integers, but entry ${i} is ${e} after ${prev}`);
    }
    prev = e;
  }

  const arrays = new Map<string, string>();
  const entries = (await fs.readdir(dataDir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  for (const name of entries) {
    const dir = path.join(dataDir, name);
    if (await exists(path.join(dir, '.zarray'))) arrays.set(name, dir); // else a nested group or stray directory
  }
  return { root, episodeEnds, arrays };
}

/**
 * Reads the metadata of the requested arrays (all by default) and checks that they agree with
 * each other and with episode_ends before any chunk is decoded, so a bad dataset fails in
 * milliseconds rather than after reading images. Arrays not requested are not looked at, so a
 * broken `img` does not stop state-only training.
 */
async function selectArrays(ds: OpenedDataset, keys: string[] | undefined): Promise<SelectedArray[]> {
  const selected: SelectedArray[] = [];
  for (const key of keys ? [...new Set(keys)] : ds.arrays.keys()) {
    const dir = ds.arrays.get(key);
    if (!dir) {
      const have = [...ds.arrays.keys()].join(', ') || 'none';
      throw new DatasetError(path.join(ds.root, 'data', key), `missing data array "${key}" (dataset has: ${have})`);
    }
    selected.push({ key, dir, meta: await readZarray(dir, `data array "${key}"`) });
  }
  const frames = ds.episodeEnds.length ? ds.episodeEnds[ds.episodeEnds.length - 1] : 0;
  let first: { key: string; n: number } | undefined;
  for (const { key, dir, meta } of selected) {
    if (meta.shape.length === 0) throw new DatasetError(dir, 'data arrays need a leading frame axis, got a 0-d array');
    const n = meta.shape[0];
    if (first && n !== first.n) throw new DatasetError(dir, `shape mismatch: ${n} frames but data/${first.key} has ${first.n}`);
    first ??= { key, n };
    if (n < frames) throw new DatasetError(dir, `holds ${n} frames but meta/episode_ends ends at ${frames} (episode ends beyond the data)`);
    if (n > frames) throw new DatasetError(dir, `holds ${n} frames but meta/episode_ends ends at ${frames} (frames beyond the last episode)`);
    await checkChunkFiles(dir, meta);
  }
  return selected;
}

/** Chunks an array may declare without their files being there (read as fill_value). */
const MAX_MISSING_CHUNKS = 1 << 16;

/**
 * zarr lets chunks that hold only fill_value be absent, so a missing file is not an error; but
 * metadata that declares far more chunks than the directory holds (a corrupt shape: millions
 * of chunks over three files) would have the reader look for each one and allocate the whole
 * shape. Beyond 65,536 declared chunks, at least half must exist.
 */
async function checkChunkFiles(dir: string, meta: ZarrayV2): Promise<void> {
  const declared = meta.shape.reduce((n, d, i) => n * Math.ceil(d / meta.chunks[i]), 1);
  if (declared <= MAX_MISSING_CHUNKS) return;
  let present = 0;
  const sep = meta.dimension_separator ?? '.';
  const count = async (d: string, depth: number): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.name.startsWith('.')) continue;
      if (sep === '/' && e.isDirectory() && depth > 1) await count(path.join(d, e.name), depth - 1);
      else if (e.isFile()) present++;
    }
  };
  await count(dir, meta.shape.length);
  if (present * 2 < declared) {
    throw new DatasetError(dir, `shape ${JSON.stringify(meta.shape)} in chunks of ${JSON.stringify(meta.chunks)} declares ${declared} chunks but only ${present} chunk files exist (corrupt .zarray?)`);
  }
}

/**
 * Reads a zarr v2 replay buffer. Float arrays (f4, f8) and integer arrays other than uint8 load
 * as Float32Array; uint8 (images) stays Uint8Array.
 */
export async function readReplayBuffer(root: string, opts: ReadOptions = {}): Promise<ReplayBuffer> {
  const ds = await openDataset(root);
  return loadArrays(ds, await selectArrays(ds, opts.keys));
}

function isUint8(meta: ZarrayV2): boolean {
  const t = parseDtype(meta.dtype)!;
  return t.kind === 'u' && t.size === 1;
}

async function loadArrays(ds: OpenedDataset, selected: SelectedArray[]): Promise<ReplayBuffer> {
  const arrays = new Map<string, ArrayData>();
  for (const { key, dir, meta } of selected) {
    const n = prod(meta.shape);
    const data = isUint8(meta) ? new Uint8Array(n) : new Float32Array(n);
    await readArrayInto(dir, meta, data);
    arrays.set(key, { data, frameShape: meta.shape.slice(1) });
  }
  return new ReplayBuffer(arrays, ds.episodeEnds, ds.root);
}

/** Shapes, dtypes, chunking and value ranges of a dataset, reading one chunk at a time. */
export async function datasetInfo(root: string): Promise<DatasetInfo> {
  const ds = await openDataset(root);
  const arrays: ArrayInfo[] = [];
  for (const { key, dir, meta } of await selectArrays(ds, undefined)) {
    let min = Infinity;
    let max = -Infinity;
    await forEachRun(dir, meta, (src, srcOff, step, _dstOff, len) => {
      for (let i = 0; i < len; i++) {
        const v = Number(src[srcOff + i * step]);
        if (v < min) min = v;
        if (v > max) max = v;
      }
    });
    arrays.push({
      key,
      dtype: meta.dtype,
      shape: [...meta.shape],
      chunks: [...meta.chunks],
      compressor: meta.compressor?.id ?? null,
      min: min === Infinity ? null : min,
      max: max === -Infinity ? null : max,
    });
  }
  const frames = ds.episodeEnds.length ? ds.episodeEnds[ds.episodeEnds.length - 1] : 0;
  return { path: root, episodes: ds.episodeEnds.length, frames, arrays };
}

// ---------------------------------------------------------------------------------------------
// writing

/** Python zarr 2.x's default compressor, which the reference dataset uses. */
const BLOSC_CONFIG = { blocksize: 0, clevel: 5, cname: 'lz4', id: 'blosc', shuffle: 1 } as const;
const blosc = Blosc.fromConfig(BLOSC_CONFIG);

/** Default chunking: about 1 MiB of raw data per chunk (≈37 frames of 96x96x3 images). */
function defaultChunkFrames(frameBytes: number): number {
  return Math.max(1, Math.floor((1 << 20) / Math.max(1, frameBytes)));
}

/** Python's json.dumps(indent=4, sort_keys=True), which is how zarr 2.x writes metadata. */
function pythonJson(v: unknown): string {
  const sortKeys = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sortKeys);
    if (x && typeof x === 'object') {
      return Object.fromEntries(Object.keys(x).sort().map((k) => [k, sortKeys((x as Record<string, unknown>)[k])]));
    }
    return x;
  };
  return JSON.stringify(sortKeys(v), null, 4);
}

async function writeGroup(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, '.zgroup'), pythonJson({ zarr_format: 2 }));
}

/**
 * Writes one array chunked along the frame axis only (whole frames per chunk), the way the
 * reference dataset is chunked. The last chunk is padded to full size with the fill value 0,
 * as zarr stores partial edge chunks.
 */
async function writeArray(
  dir: string,
  data: Float32Array | Uint8Array | BigInt64Array,
  shape: number[],
  chunkFrames: number,
  compress: boolean,
): Promise<void> {
  // Chunks are the typed arrays' own bytes, which are little-endian only on little-endian hosts.
  if (os.endianness() !== 'LE') throw new Error('writing zarr datasets needs a little-endian host');
  const dtype = data instanceof Float32Array ? '<f4' : data instanceof Uint8Array ? '|u1' : '<i8';
  const chunks = [Math.max(1, Math.min(chunkFrames, shape[0] || 1)), ...shape.slice(1)];
  await fs.mkdir(dir, { recursive: true });
  const meta = {
    chunks,
    compressor: compress ? { ...BLOSC_CONFIG } : null,
    dtype,
    fill_value: 0,
    filters: null,
    order: 'C',
    shape,
    zarr_format: 2,
  };
  await fs.writeFile(path.join(dir, '.zarray'), pythonJson(meta));
  // Chunks are cut from the raw bytes; padding with zero bytes is the fill value 0 for every dtype.
  const all = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const chunkBytes = prod(chunks) * data.BYTES_PER_ELEMENT;
  const trailing = new Array<number>(shape.length - 1).fill(0);
  for (let c = 0; c * chunks[0] < shape[0]; c++) {
    let raw = all.subarray(c * chunkBytes, (c + 1) * chunkBytes);
    if (raw.length < chunkBytes) {
      const padded = new Uint8Array(chunkBytes);
      padded.set(raw);
      raw = padded;
    }
    const bytes = compress ? await blosc.encode(raw) : raw;
    await fs.writeFile(path.join(dir, [c, ...trailing].join('.')), bytes);
  }
}

async function writeDatasetTo(dir: string, buffer: ReplayBuffer, chunkFramesFor: (key: string, frameBytes: number) => number): Promise<void> {
  await writeGroup(dir);
  await writeGroup(path.join(dir, 'data'));
  await writeGroup(path.join(dir, 'meta'));
  const n = buffer.numFrames;
  for (const [key, a] of buffer.arrays) {
    if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(key)) throw new Error(`cannot write array "${key}": names must be plain file names`);
    const frameBytes = prod(a.frameShape) * a.data.BYTES_PER_ELEMENT;
    await writeArray(path.join(dir, 'data', key), a.data, [n, ...a.frameShape], chunkFramesFor(key, frameBytes), true);
  }
  // Uncompressed like the reference dataset's, and small enough that compression is pointless.
  const ends = BigInt64Array.from(buffer.episodeEnds, (e) => BigInt(e));
  await writeArray(path.join(dir, 'meta', 'episode_ends'), ends, [ends.length], ends.length, false);
}

/**
 * Builds a dataset in a hidden temporary sibling directory and only then moves it to `target`,
 * so readers (and a crash) never see a half-written dataset. An existing dataset is moved aside
 * first (directory renames cannot replace a non-empty directory) and deleted once the new one is
 * in place; between those two renames `target` briefly does not exist.
 */
async function writeAtomically(target: string, build: (tmp: string) => Promise<void>): Promise<void> {
  const abs = path.resolve(target);
  const parent = path.dirname(abs);
  const refuseUnlessDataset = async () => {
    if ((await exists(abs)) && !(await exists(path.join(abs, '.zgroup')))) {
      throw new DatasetError(target, 'exists and is not a zarr group; refusing to replace it');
    }
  };
  await refuseUnlessDataset();
  let tmp: string;
  try {
    await fs.mkdir(parent, { recursive: true });
    tmp = await fs.mkdtemp(path.join(parent, `.${path.basename(abs)}.tmp-`));
  } catch (e) {
    throw new DatasetError(target, `cannot write dataset: ${errMessage(e)}`);
  }
  try {
    await build(tmp);
    await refuseUnlessDataset();
    if (await exists(abs)) {
      const old = `${tmp}-old`;
      await fs.rename(abs, old);
      try {
        await fs.rename(tmp, abs);
      } catch (e) {
        await fs.rename(old, abs);
        throw e;
      }
      await fs.rm(old, { recursive: true, force: true });
    } else {
      await fs.rename(tmp, abs);
    }
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    if (e instanceof DatasetError) throw e;
    throw new DatasetError(target, `cannot write dataset: ${errMessage(e)}`);
  }
}

/**
 * Writes `buffer` as a zarr v2 replay buffer readable by Python zarr 2.x and Diffusion Policy:
 * `data/<key>` as `<f4` (Float32Array) or `|u1` (Uint8Array), blosc lz4 with byte shuffle,
 * chunked along frames; `meta/episode_ends` as uncompressed `<i8`. Replaces `root` atomically.
 */
export async function writeReplayBuffer(root: string, buffer: ReplayBuffer, opts: WriteOptions = {}): Promise<void> {
  const cf = opts.chunkFrames;
  if (cf !== undefined && !(Number.isInteger(cf) && cf >= 1)) throw new Error(`chunkFrames must be a positive integer, got ${cf}`);
  await writeAtomically(root, (tmp) => writeDatasetTo(tmp, buffer, (_key, frameBytes) => cf ?? defaultChunkFrames(frameBytes)));
}

/**
 * Appends the episodes of `buffer` to the dataset at `root`, which must have the same keys,
 * element types and frame shapes. Reads everything, concatenates and rewrites atomically (keeping
 * each array's chunking): simple and crash-safe, at the cost of holding the whole dataset in
 * memory. f8 or integer arrays on disk come back as `<f4`, the only float type the buffer has.
 */
export async function appendEpisodes(root: string, buffer: ReplayBuffer): Promise<void> {
  const ds = await openDataset(root);
  const selected = await selectArrays(ds, undefined);
  // Compatibility is decided from metadata alone, before the (possibly large) data is read.
  const have = selected.map((s) => s.key).sort();
  const add = [...buffer.arrays.keys()].sort();
  if (have.join('\0') !== add.join('\0')) {
    throw new DatasetError(root, `cannot append: dataset has arrays [${have.join(', ')}] but the new episodes have [${add.join(', ')}]`);
  }
  for (const { key, dir, meta } of selected) {
    const b = buffer.get(key);
    const frameShape = meta.shape.slice(1);
    if (frameShape.join(',') !== b.frameShape.join(',')) {
      throw new DatasetError(dir, `cannot append: frame shape [${b.frameShape}] does not match the dataset's [${frameShape}]`);
    }
    if (isUint8(meta) !== b.data instanceof Uint8Array) {
      throw new DatasetError(dir, `cannot append: ${b.data.constructor.name} episodes to an array of dtype ${meta.dtype}`);
    }
  }
  const existing = await loadArrays(ds, selected);
  const arrays = new Map<string, ArrayData>();
  for (const [key, a] of existing.arrays) {
    const b = buffer.get(key).data;
    const out = a.data instanceof Uint8Array ? new Uint8Array(a.data.length + b.length) : new Float32Array(a.data.length + b.length);
    out.set(a.data);
    out.set(b, a.data.length);
    arrays.set(key, { data: out, frameShape: a.frameShape });
  }
  const offset = existing.numFrames;
  const merged = new ReplayBuffer(arrays, [...existing.episodeEnds, ...buffer.episodeEnds.map((e) => e + offset)], root);
  const chunkFrames = new Map(selected.map((s) => [s.key, s.meta.chunks[0]]));
  await writeAtomically(root, (tmp) => writeDatasetTo(tmp, merged, (key) => chunkFrames.get(key)!));
}

// ---------------------------------------------------------------------------------------------

function isNotFound(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.stat(p);
    return true;
  } catch (e) {
    if (isNotFound(e)) return false;
    throw new DatasetError(p, `cannot access: ${errMessage(e)}`);
  }
}

/**
 * The safetensors format: 8-byte little-endian header length, a JSON header mapping names to
 * `{dtype, shape, data_offsets}` (plus optional `__metadata__` of string values), then raw
 * little-endian data. Written atomically; every structural problem is reported with the file name.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export type SafeDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES: Record<SafeDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export type SafeData = Float64Array | Float32Array | Uint16Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

export interface SafeTensor {
  dtype: SafeDtype;
  shape: number[];
  /** Raw values: F16 and BF16 as their Uint16 bit patterns, BOOL as Uint8. */
  data: SafeData;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(source: string, problem: string) {
    super(`${source}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

function typedArrayFor(dtype: SafeDtype, buf: ArrayBuffer, offset: number, count: number): SafeData {
  switch (dtype) {
    case 'F64':
      return new Float64Array(buf, offset, count);
    case 'F32':
      return new Float32Array(buf, offset, count);
    case 'F16':
    case 'BF16':
      return new Uint16Array(buf, offset, count);
    case 'I64':
      return new BigInt64Array(buf, offset, count);
    case 'I32':
      return new Int32Array(buf, offset, count);
    case 'I16':
      return new Int16Array(buf, offset, count);
    case 'I8':
      return new Int8Array(buf, offset, count);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buf, offset, count);
  }
}

/** Parses safetensors bytes. `source` names the file in error messages. */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsFile {
  if (bytes.byteLength < 8) throw new SafetensorsError(source, `file is ${bytes.byteLength} bytes, too short for a safetensors header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(dv.getBigUint64(0, true));
  if (headerLen > bytes.byteLength - 8 || headerLen > 100_000_000) {
    throw new SafetensorsError(source, `header length ${headerLen} exceeds the file size ${bytes.byteLength} (truncated or not a safetensors file)`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  } catch (e) {
    throw new SafetensorsError(source, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new SafetensorsError(source, 'header is not a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, SafeTensor>();
  const spans: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (raw && typeof raw === 'object') for (const [k, v] of Object.entries(raw)) metadata[k] = String(v);
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = info?.dtype as SafeDtype;
    if (!(dtype in BYTES)) throw new SafetensorsError(source, `tensor "${name}" has unsupported dtype ${String(info?.dtype)}`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SafetensorsError(source, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) {
      throw new SafetensorsError(source, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== count * BYTES[dtype]) {
      throw new SafetensorsError(source, `tensor "${name}" (${dtype} [${shape}]) needs ${count * BYTES[dtype]} bytes but data_offsets span ${end - begin}`);
    }
    if (end > dataLen) {
      throw new SafetensorsError(source, `tensor "${name}" ends at byte ${end} of the data section, which has only ${dataLen} bytes (file truncated?)`);
    }
    spans.push([begin, end, name]);
    // Copy into an aligned buffer: the data section need not be aligned for the typed array.
    const copy = bytes.slice(dataStart + begin, dataStart + end);
    tensors.set(name, { dtype, shape: shape as number[], data: typedArrayFor(dtype, copy.buffer, 0, count) });
  }
  spans.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i][0] < spans[i - 1][1]) throw new SafetensorsError(source, `tensors "${spans[i - 1][2]}" and "${spans[i][2]}" overlap`);
  }
  return { tensors, metadata };
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new SafetensorsError(file, err.code === 'ENOENT' ? 'file not found' : err.message);
  }
  return parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

const DTYPE_OF: [new (...a: never[]) => SafeData, SafeDtype][] = [
  [Float64Array, 'F64'],
  [Float32Array, 'F32'],
  [BigInt64Array, 'I64'],
  [Int32Array, 'I32'],
  [Int16Array, 'I16'],
  [Int8Array, 'I8'],
  [Uint8Array, 'U8'],
];

/** Serialises tensors (name order kept) into safetensors bytes. */
export function serializeSafetensors(tensors: Map<string, SafeTensor> | Record<string, SafeTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw new Error('a tensor cannot be named __metadata__');
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw new Error(`tensor "${name}": ${t.data.length} values for shape [${t.shape}]`);
    if (t.data.BYTES_PER_ELEMENT !== BYTES[t.dtype]) throw new Error(`tensor "${name}": data does not match dtype ${t.dtype}`);
    const n = count * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let pos = 8 + hbytes.length;
  for (const [, t] of entries) {
    const b = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(b, pos);
    pos += b.length;
  }
  return out;
}

/** Writes a file atomically: a temporary file in the same directory, fsync, then rename. */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  // A write that fails (disk full, a signal-free I/O error) removes its temporary file and leaves
  // the previous `file` as it was.
  try {
    const fh = await fs.open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, file);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
}

export async function writeSafetensors(file: string, tensors: Map<string, SafeTensor> | Record<string, SafeTensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}

/** Infers the dtype of a typed array (F16/BF16/BOOL must be given explicitly). */
export function dtypeOf(data: SafeData): SafeDtype {
  for (const [ctor, dt] of DTYPE_OF) if (data instanceof ctor) return dt;
  throw new Error('unsupported typed array');
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Float to IEEE half, round to nearest even. */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Any numeric tensor as float32 (int64 through Number: exact below 2^53). */
export function toFloat32(t: SafeTensor): Float32Array {
  const n = t.data.length;
  if (t.dtype === 'F32') return t.data as Float32Array;
  const out = new Float32Array(n);
  if (t.dtype === 'F16') {
    const d = t.data as Uint16Array;
    for (let i = 0; i < n; i++) out[i] = halfToFloat(d[i]);
  } else if (t.dtype === 'BF16') {
    const d = t.data as Uint16Array;
    for (let i = 0; i < n; i++) {
      u32[0] = d[i] << 16;
      out[i] = f32[0];
    }
  } else if (t.dtype === 'I64') {
    const d = t.data as BigInt64Array;
    for (let i = 0; i < n; i++) out[i] = Number(d[i]);
  } else {
    const d = t.data as Exclude<SafeData, BigInt64Array>;
    for (let i = 0; i < n; i++) out[i] = d[i];
  }
  return out;
}

export function f32Tensor(shape: number[], data: Float32Array): SafeTensor {
  return { dtype: 'F32', shape, data };
}

export function f16Tensor(shape: number[], data: Float32Array): SafeTensor {
  const h = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) h[i] = floatToHalf(data[i]);
  return { dtype: 'F16', shape, data: h };
}

/**
 * robomimic's HDF5 datasets (issue 18), read and written with h5wasm (libhdf5 compiled to
 * WebAssembly: no native build, and the same code runs in a browser).
 *
 * Layout, as robomimic writes it: `data` with attributes `total` (frames over all demos) and
 * `env_args` (a JSON string); one group `data/demo_N` per demonstration with attribute
 * `num_samples` and datasets `actions` (T, A), `rewards` (T,), `dones` (T,), optionally `states`
 * (T, S), and groups `obs/` and `next_obs/` of (T, ...) arrays named as the environment names
 * them (`object`, `robot0_eef_pos`, ...); `mask/<split>` lists demo names as byte strings.
 *
 * Values are kept as the file stores them (float64 in robomimic's own files) so that nothing is
 * lost reading and writing; `robomimicToReplay` converts to onedp's float32 replay buffer, with
 * `action` and each observation key as arrays, so training reads an HDF5 file as it reads zarr.
 */
import nodeFs, { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ReplayBuffer, type ArrayData } from './replay.js';

export class Hdf5DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Hdf5DatasetError';
  }
}

type Numeric = Float64Array | Float32Array | Int32Array | Int16Array | Int8Array | Uint8Array | Uint16Array | Uint32Array | BigInt64Array | BigUint64Array;

/** An array of T frames: flat values, frame-major, and one frame's shape. */
export interface FrameArray {
  values: Float64Array | Float32Array | Uint8Array;
  frameShape: number[];
}

export interface RobomimicDemo {
  /** The group name, `demo_N`. */
  name: string;
  actions: FrameArray;
  rewards: Float64Array;
  dones: Uint8Array;
  states?: FrameArray;
  obs: Record<string, FrameArray>;
  nextObs?: Record<string, FrameArray>;
}

export interface RobomimicDataset {
  /** The environment's description, as robomimic's `env_args` (parsed JSON). */
  envArgs: unknown;
  demos: RobomimicDemo[];
  /** Splits (`train`, `valid`, ...) as lists of demo names. */
  masks: Record<string, string[]>;
}

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

type H5 = typeof import('h5wasm/node');
let h5: Promise<H5> | null = null;

/** h5wasm, loaded once. */
async function h5wasm(): Promise<H5> {
  h5 ??= import('h5wasm/node').then(async (m) => {
    await m.ready;
    return m;
  });
  return h5;
}

/**
 * Runs an h5wasm call with libhdf5's own diagnostics kept off stderr: libhdf5 prints its error
 * stack (HDF5-DIAG ...) on every failure, and h5wasm's exception says little ("error - name not
 * defined!"), or nothing (a file that failed to open is an invalid handle). h5wasm's Node build
 * writes to the host's file descriptors with `fs.writeSync`, so writes to fd 2 are collected
 * while the call runs; the innermost "minor" line is the reason, for the error message.
 */
function quietly<T>(fn: () => T): { value?: T; error?: unknown; reason: string | null } {
  let diag = '';
  const original = nodeFs.writeSync;
  nodeFs.writeSync = function (this: unknown, fd: number, buffer: unknown, ...rest: unknown[]): number {
    // Emscripten hands over its heap view (an Int8Array) with an offset and a length.
    if (fd === 2 && ArrayBuffer.isView(buffer)) {
      const offset = typeof rest[0] === 'number' ? rest[0] : 0;
      const length = typeof rest[1] === 'number' ? rest[1] : buffer.byteLength - offset;
      diag += Buffer.from(buffer.buffer, buffer.byteOffset + offset, length).toString('utf8');
      return length;
    }
    return (original as (...a: unknown[]) => number).call(this, fd, buffer, ...rest);
  } as typeof nodeFs.writeSync;
  const reason = () => [...diag.matchAll(/minor: (.+)/g)].map((m) => m[1].trim()).at(-1) ?? null;
  try {
    const value = fn();
    return { value, reason: reason() };
  } catch (error) {
    return { error, reason: reason() };
  } finally {
    nodeFs.writeSync = original;
  }
}

interface H5Node {
  keys?: () => string[];
  attrs?: Record<string, { value: unknown }>;
  value?: unknown;
  shape?: number[] | null;
  dtype?: unknown;
}

class Reader {
  constructor(
    private readonly file: InstanceType<H5['File']>,
    readonly source: string,
  ) {}

  get(p: string): H5Node | null {
    const r = quietly(() => this.file.get(p) as unknown as H5Node | null);
    if (r.error) throw new Hdf5DatasetError(`${this.source}: cannot read ${p}${r.reason ? ` (${r.reason})` : ''}`);
    return r.value ?? null;
  }

  group(p: string): string[] {
    const g = this.get(p);
    if (!g || typeof g.keys !== 'function') throw new Hdf5DatasetError(`${this.source}: no group "${p}" (robomimic datasets keep demonstrations under data/demo_N)`);
    const r = quietly(() => g.keys!());
    if (r.error || !r.value) throw new Hdf5DatasetError(`${this.source}: cannot list ${p}${r.reason ? ` (${r.reason})` : ''}`);
    return r.value;
  }

  /** A dataset of `frames` frames, as numbers. */
  array(p: string, frames: number): FrameArray {
    const d = this.get(p);
    if (!d || d.shape === undefined) throw new Hdf5DatasetError(`${this.source}: missing dataset "${p}"`);
    const shape = d.shape ?? [];
    if (shape.length === 0 || shape[0] !== frames) throw new Hdf5DatasetError(`${this.source}: ${p} has shape (${shape.join(', ')}), expected ${frames} frames (num_samples)`);
    const r = quietly(() => d.value);
    if (r.error) throw new Hdf5DatasetError(`${this.source}: cannot read ${p}${r.reason ? ` (${r.reason})` : ''}`);
    const v = r.value as Numeric | unknown;
    let values: FrameArray['values'];
    if (v instanceof Float64Array || v instanceof Float32Array || v instanceof Uint8Array) values = v;
    else if (ArrayBuffer.isView(v) && !(v instanceof DataView)) values = Float64Array.from(v as unknown as ArrayLike<number | bigint>, Number);
    else throw new Hdf5DatasetError(`${this.source}: ${p} is not numeric (dtype ${JSON.stringify(d.dtype)})`);
    const frameShape = shape.slice(1);
    const per = frameShape.reduce((a, b) => a * b, 1);
    if (values.length !== frames * per) throw new Hdf5DatasetError(`${this.source}: ${p} holds ${values.length} values, its shape says ${frames * per}`);
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw new Hdf5DatasetError(`${this.source}: ${p} has a non-finite value at index ${i} (frame ${Math.floor(i / per)})`);
    }
    return { values, frameShape };
  }

  attr(p: string, name: string): unknown {
    const node = this.get(p);
    const a = node?.attrs?.[name];
    if (!a) return undefined;
    const r = quietly(() => a.value);
    if (r.error) throw new Hdf5DatasetError(`${this.source}: cannot read attribute ${name} of ${p}`);
    return r.value;
  }
}

const demoIndex = (name: string) => Number(/^demo_(\d+)$/.exec(name)?.[1] ?? NaN);

async function openForReading(file: string): Promise<{ mod: H5; f: InstanceType<H5['File']> }> {
  let head: Buffer;
  try {
    const fd = await fs.open(file, 'r');
    try {
      head = Buffer.alloc(8);
      await fd.read(head, 0, 8, 0);
    } finally {
      await fd.close();
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Hdf5DatasetError(code === 'ENOENT' ? `${file}: no such file` : `${file}: ${(e as Error).message}`);
  }
  if (!HDF5_SIGNATURE.every((b, i) => head[i] === b)) throw new Hdf5DatasetError(`${file}: not an HDF5 file (no HDF5 signature at its start)`);
  const mod = await h5wasm();
  const r = quietly(() => new mod.File(path.resolve(file), 'r'));
  // h5wasm returns a File with an invalid handle (id < 0) when libhdf5 could not open it.
  if (r.error || !r.value || !(r.value.file_id > 0n)) throw new Hdf5DatasetError(`${file}: libhdf5 cannot open it (${r.reason ?? 'unknown reason'}; truncated or corrupt?)`);
  return { mod, f: r.value };
}

export interface ReadRobomimicOptions {
  /** Leave out `next_obs` and `states` (training reads neither; they double the memory). */
  trainingOnly?: boolean;
}

/** Reads a robomimic dataset; every problem is one error naming the file and what is wrong. */
export async function readRobomimic(file: string, opts: ReadRobomimicOptions = {}): Promise<RobomimicDataset> {
  const { f } = await openForReading(file);
  const rd = new Reader(f, file);
  try {
    const names = rd.group('data').filter((n) => /^demo_\d+$/.test(n)).sort((a, b) => demoIndex(a) - demoIndex(b));
    if (names.length === 0) throw new Hdf5DatasetError(`${file}: data holds no demo_N groups`);
    let envArgs: unknown = null;
    const rawArgs = rd.attr('data', 'env_args');
    if (rawArgs !== undefined) {
      try {
        envArgs = JSON.parse(String(rawArgs));
      } catch {
        throw new Hdf5DatasetError(`${file}: data's env_args attribute is not JSON`);
      }
    }
    const demos: RobomimicDemo[] = [];
    let frames = 0;
    for (const name of names) {
      const g = `data/${name}`;
      const keys = rd.group(g);
      const declared = rd.attr(g, 'num_samples');
      const actionsNode = rd.get(`${g}/actions`);
      if (!actionsNode?.shape?.length) throw new Hdf5DatasetError(`${file}: ${g} has no actions`);
      const t = declared === undefined ? actionsNode.shape[0] : Number(declared);
      if (!Number.isInteger(t) || t < 1) throw new Hdf5DatasetError(`${file}: ${g}'s num_samples is ${String(declared)}, expected a positive integer`);
      const actions = rd.array(`${g}/actions`, t);
      if (actions.frameShape.length !== 1) throw new Hdf5DatasetError(`${file}: ${g}/actions must be (T, action_dim), got a frame of (${actions.frameShape.join(', ')})`);
      const rewards = keys.includes('rewards') ? Float64Array.from(rd.array(`${g}/rewards`, t).values) : new Float64Array(t);
      const dones = keys.includes('dones') ? Uint8Array.from(rd.array(`${g}/dones`, t).values, (v) => (v ? 1 : 0)) : new Uint8Array(t);
      const readObs = (sub: string): Record<string, FrameArray> => {
        const out: Record<string, FrameArray> = {};
        for (const k of rd.group(`${g}/${sub}`)) out[k] = rd.array(`${g}/${sub}/${k}`, t);
        return out;
      };
      if (!keys.includes('obs')) throw new Hdf5DatasetError(`${file}: ${g} has no obs group`);
      const demo: RobomimicDemo = { name, actions, rewards, dones, obs: readObs('obs') };
      if (keys.includes('next_obs') && !opts.trainingOnly) demo.nextObs = readObs('next_obs');
      if (keys.includes('states') && !opts.trainingOnly) demo.states = rd.array(`${g}/states`, t);
      demos.push(demo);
      frames += t;
    }
    const total = rd.attr('data', 'total');
    if (total !== undefined && Number(total) !== frames) throw new Hdf5DatasetError(`${file}: data's total says ${String(total)} frames, the demos hold ${frames}`);
    const masks: Record<string, string[]> = {};
    const maskKeys = rd.group('/').includes('mask') ? rd.group('mask') : [];
    for (const k of maskKeys) {
      const v = quietly(() => rd.get(`mask/${k}`)?.value).value;
      const list = Array.isArray(v) ? v.map((x) => (x instanceof Uint8Array ? Buffer.from(x).toString('utf8') : String(x)).replace(/\0+$/, '')) : null;
      if (!list) throw new Hdf5DatasetError(`${file}: mask/${k} is not a list of demo names`);
      const unknown = list.filter((n) => !names.includes(n));
      if (unknown.length) throw new Hdf5DatasetError(`${file}: mask/${k} names demos that are not in data: ${unknown.slice(0, 5).join(', ')}`);
      masks[k] = list;
    }
    return { envArgs, demos, masks };
  } catch (e) {
    if (e instanceof Hdf5DatasetError) throw e;
    throw new Hdf5DatasetError(`${file}: libhdf5 cannot read it (${(e as Error).message}; truncated or corrupt?)`);
  } finally {
    quietly(() => f.close());
  }
}

/** Frames over all demos. */
export function robomimicFrames(ds: RobomimicDataset): number {
  return ds.demos.reduce((a, d) => a + d.actions.values.length / d.actions.frameShape[0], 0);
}

/**
 * Writes a dataset in robomimic's layout (float64 values, gzip-compressed observations, byte
 * string masks, as robomimic's own files). The file appears whole or not at all: it is written
 * beside its destination and renamed.
 */
export async function writeRobomimic(file: string, ds: RobomimicDataset): Promise<void> {
  if (ds.demos.length === 0) throw new Hdf5DatasetError(`${file}: no demonstrations to write`);
  const mod = await h5wasm();
  const tmp = path.resolve(`${file}.tmp-${process.pid}`);
  await fs.mkdir(path.dirname(tmp), { recursive: true });
  const r = quietly(() => {
    const f = new mod.File(tmp, 'w');
    try {
      const data = f.create_group('data');
      const frames = robomimicFrames(ds);
      data.create_attribute('total', frames, null, '<i8');
      data.create_attribute('env_args', JSON.stringify(ds.envArgs ?? {}));
      const put = (g: InstanceType<H5['Group']>, name: string, a: FrameArray, t: number, compress: boolean) => {
        const shape = [t, ...a.frameShape];
        const dtype = a.values instanceof Uint8Array ? '<B' : '<d';
        const values = a.values instanceof Uint8Array ? a.values : Float64Array.from(a.values);
        g.create_dataset({ name, data: values, shape, dtype, ...(compress ? { chunks: shape, compression: 'gzip', compression_opts: [4] } : {}) });
      };
      for (const d of ds.demos) {
        const t = d.actions.values.length / d.actions.frameShape[0];
        const g = data.create_group(d.name);
        g.create_attribute('num_samples', t, null, '<i8');
        put(g, 'actions', d.actions, t, false);
        put(g, 'rewards', { values: d.rewards, frameShape: [] }, t, false);
        g.create_dataset({ name: 'dones', data: BigInt64Array.from(d.dones, (v) => BigInt(v)), shape: [t], dtype: '<q' });
        if (d.states) put(g, 'states', d.states, t, false);
        for (const [sub, obs] of [['obs', d.obs], ['next_obs', d.nextObs]] as const) {
          if (!obs) continue;
          const og = g.create_group(sub);
          for (const [k, a] of Object.entries(obs)) put(og, k, a, t, true);
        }
      }
      const masks = Object.entries(ds.masks);
      if (masks.length) {
        const mg = f.create_group('mask');
        for (const [k, names] of masks) {
          const width = Math.max(1, ...names.map((n) => n.length));
          mg.create_dataset({ name: k, data: names, shape: [names.length], dtype: `S${width}` });
        }
      }
    } finally {
      f.close();
    }
  });
  if (r.error) {
    await fs.rm(tmp, { force: true });
    throw new Hdf5DatasetError(`${file}: cannot write it (${r.reason ?? (r.error as Error).message})`);
  }
  await fs.rename(tmp, file);
}

/**
 * A robomimic dataset as onedp's replay buffer: `action` (float32) and each observation key as
 * arrays, demos in order, episode ends from their lengths. `split` keeps a mask's demos only.
 */
export function robomimicToReplay(ds: RobomimicDataset, opts: { split?: string; source?: string } = {}): ReplayBuffer {
  const source = opts.source ?? 'robomimic dataset';
  let demos = ds.demos;
  if (opts.split !== undefined) {
    const keep = ds.masks[opts.split];
    if (!keep) throw new Hdf5DatasetError(`${source}: no mask "${opts.split}" (has ${Object.keys(ds.masks).join(', ') || 'none'})`);
    demos = demos.filter((d) => keep.includes(d.name));
  }
  if (demos.length === 0) throw new Hdf5DatasetError(`${source}: mask "${opts.split}" lists no demos`);
  const keys = Object.keys(demos[0].obs);
  for (const d of demos) {
    const k = Object.keys(d.obs);
    if (k.length !== keys.length || !keys.every((x) => k.includes(x))) throw new Hdf5DatasetError(`${source}: ${d.name} observes ${k.join(', ')}, ${demos[0].name} ${keys.join(', ')}`);
  }
  const concat = (get: (d: RobomimicDemo) => FrameArray, key: string): ArrayData => {
    const first = get(demos[0]);
    const per = first.frameShape.reduce((a, b) => a * b, 1);
    const total = demos.reduce((a, d) => a + get(d).values.length, 0);
    const image = first.values instanceof Uint8Array;
    const out = image ? new Uint8Array(total) : new Float32Array(total);
    let off = 0;
    for (const d of demos) {
      const a = get(d);
      if (a.frameShape.join() !== first.frameShape.join()) throw new Hdf5DatasetError(`${source}: ${d.name}/${key} has frames of (${a.frameShape.join(', ')}), ${demos[0].name} (${first.frameShape.join(', ')})`);
      out.set(a.values, off);
      off += a.values.length;
    }
    return { data: out, frameShape: per === 1 && first.frameShape.length === 0 ? [1] : [...first.frameShape] };
  };
  const arrays: Record<string, ArrayData> = { action: concat((d) => d.actions, 'actions') };
  for (const k of keys) arrays[k] = concat((d) => d.obs[k], `obs/${k}`);
  const ends: number[] = [];
  let n = 0;
  for (const d of demos) ends.push((n += d.actions.values.length / d.actions.frameShape[0]));
  return new ReplayBuffer(arrays, ends, source);
}

export interface RobomimicInfo {
  path: string;
  env: string | null;
  demos: number;
  frames: number;
  /** Demos per mask. */
  masks: Record<string, number>;
  /** Per array over all demos: its path in a demo group, frame shape, and value range. */
  arrays: { key: string; frameShape: number[]; min: number; max: number }[];
}

/** What `onedp dataset info` prints for an HDF5 dataset. */
export async function robomimicInfo(file: string): Promise<RobomimicInfo> {
  const ds = await readRobomimic(file);
  const arrays = new Map<string, { frameShape: number[]; min: number; max: number }>();
  const add = (key: string, a: FrameArray) => {
    const e = arrays.get(key) ?? { frameShape: a.frameShape, min: Infinity, max: -Infinity };
    for (const v of a.values) {
      if (v < e.min) e.min = v;
      if (v > e.max) e.max = v;
    }
    arrays.set(key, e);
  };
  for (const d of ds.demos) {
    add('actions', d.actions);
    add('rewards', { values: d.rewards, frameShape: [] });
    add('dones', { values: d.dones, frameShape: [] });
    if (d.states) add('states', d.states);
    for (const [k, a] of Object.entries(d.obs)) add(`obs/${k}`, a);
  }
  const env = (ds.envArgs as { env_name?: unknown } | null)?.env_name;
  return {
    path: file,
    env: typeof env === 'string' ? env : null,
    demos: ds.demos.length,
    frames: robomimicFrames(ds),
    masks: Object.fromEntries(Object.entries(ds.masks).map(([k, v]) => [k, v.length])),
    arrays: [...arrays].map(([key, e]) => ({ key, ...e })),
  };
}

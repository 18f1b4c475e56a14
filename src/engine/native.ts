/**
 * onedp's native kernels (native/, a C++ addon that `npm install` builds with node-gyp): the
 * convolutions, matrix products, GroupNorm and optimiser updates of a training step, on all
 * cores, computing directly on the tfjs wasm backend's heap. Chosen automatically in Node when
 * the addon loads; `ONEDP_NATIVE=0` turns it off. Without it, onedp runs its wasm kernels on
 * one core, and in the browser there is no native path at all.
 *
 * Threads: `ONEDP_THREADS` or `setThreads`; default all cores on the main thread and one in
 * worker threads (evaluation workers already spread over the cores). Results do not depend on
 * the thread count: each output element is computed by one thread in a fixed order.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';

export interface NativeInfo {
  /** Instruction set the addon was compiled for (avx512, avx2+fma, ...). */
  isa: string;
  vectorWidth: number;
  mr: number;
  nr: number;
  threads: number;
  hardwareThreads: number;
  /** Kernel calls shared out between threads so far. */
  parallelRuns: number;
}

/** The addon's functions. Kernels take the wasm heap and a Float64Array of byte offsets and sizes. */
export interface NativeAddon {
  conv2d(heap: Uint8Array, args: Float64Array): void;
  conv2dBackpropFilter(heap: Uint8Array, args: Float64Array): void;
  conv2dBackpropInput(heap: Uint8Array, args: Float64Array): void;
  batchMatMul(heap: Uint8Array, args: Float64Array): void;
  sum(heap: Uint8Array, args: Float64Array): void;
  film(heap: Uint8Array, args: Float64Array): void;
  filmGrad(heap: Uint8Array, args: Float64Array): void;
  activation(heap: Uint8Array, args: Float64Array): void;
  maxPoolGrad(heap: Uint8Array, args: Float64Array): void;
  groupNorm(heap: Uint8Array, args: Float64Array): void;
  groupNormGrad(heap: Uint8Array, args: Float64Array): void;
  adamw(heap: Uint8Array, args: Float64Array): void;
  ema(heap: Uint8Array, args: Float64Array): void;
  peakGflops(threads: number, seconds: number): number;
  setThreads(n: number): void;
  info(): NativeInfo;
}

export interface NativeStatus {
  addon: NativeAddon | null;
  /** Where it was loaded from, or why not. */
  detail: string;
}

const ADDON = path.join('native', 'build', 'Release', 'onedp_native.node');

/** The package root: the nearest folder above this file with native/binding.gyp. */
function packageRoot(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(path.join(dir, 'native', 'binding.gyp'))) return dir;
    dir = path.dirname(dir);
  }
  return null;
}

let status: NativeStatus | null = null;

/** Loads the addon once; never throws (a missing or broken build means the wasm path). */
export function loadNative(): NativeStatus {
  if (status) return status;
  const flag = process.env.ONEDP_NATIVE;
  if (flag === '0' || flag === 'false' || flag === 'off') {
    status = { addon: null, detail: 'disabled by ONEDP_NATIVE=0' };
    return status;
  }
  const root = packageRoot();
  const file = root ? path.join(root, ADDON) : null;
  if (!file || !existsSync(file)) {
    status = { addon: null, detail: `not built (${file ?? ADDON} is missing; run \`npm run build:native\`)` };
    return status;
  }
  try {
    const addon = createRequire(import.meta.url)(file) as NativeAddon;
    addon.setThreads(defaultThreads());
    status = { addon, detail: file };
  } catch (e) {
    status = { addon: null, detail: `failed to load ${file}: ${e instanceof Error ? e.message : String(e)}` };
  }
  return status;
}

/** Parses a thread count (from a flag or `ONEDP_THREADS`); throws a clear error on bad input. */
export function parseThreads(v: string | number, source: string): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error(`${source} must be an integer from 1 to 256, got ${JSON.stringify(v)}`);
  return n;
}

export function defaultThreads(): number {
  const env = process.env.ONEDP_THREADS;
  if (env !== undefined && env !== '') return parseThreads(env, 'ONEDP_THREADS');
  return isMainThread ? (os.availableParallelism?.() ?? os.cpus().length) : 1;
}

/** Sets the native kernels' thread count (a no-op on the wasm path, which has one thread). */
export function setThreads(n: number): void {
  parseThreads(n, 'threads');
  loadNative().addon?.setThreads(n);
}

/** Threads the training kernels run on now. */
export function getThreads(): number {
  return loadNative().addon?.info().threads ?? 1;
}

/**
 * The tensor engine: one place that picks and initialises the tfjs backend.
 *
 * Order of preference in Node: `@tensorflow/tfjs-node` when the user has it installed (native
 * TensorFlow, multi-threaded), else the wasm backend with onedp's training kernels, else cpu.
 * `ONEDP_BACKEND=wasm|cpu|tensorflow` forces a choice. On wasm, onedp's native addon (native.ts)
 * runs the heavy kernels on all cores when it is built; `ONEDP_NATIVE=0` keeps them in wasm.
 */
import * as tf from '@tensorflow/tfjs';
import { installWasmKernels, uninstallWasmKernels, nativeKernelsActive, CUSTOM_KERNELS, NATIVE_KERNELS, type CustomKernelName } from './kernels.js';
import { loadNative, setThreads, getThreads, parseThreads, defaultThreads } from './native.js';

export { tf, installWasmKernels, uninstallWasmKernels, nativeKernelsActive, CUSTOM_KERNELS, NATIVE_KERNELS, type CustomKernelName };
export { loadNative, setThreads, getThreads, parseThreads, defaultThreads };
export { withoutTape } from './tape.js';

export type BackendName = 'wasm' | 'cpu' | 'tensorflow';

export interface EngineOptions {
  /** Backend to use; default: `ONEDP_BACKEND`, else tfjs-node if installed, else wasm. */
  backend?: BackendName | 'auto';
  /** Register onedp's wasm training kernels (default true). */
  customKernels?: boolean;
}

let wasmLoaded = false;
let tfnodeTried = false;
let tfnodeAvailable = false;

async function tryLoadTfNode(): Promise<boolean> {
  if (tfnodeTried) return tfnodeAvailable;
  tfnodeTried = true;
  try {
    // A variable specifier keeps bundlers and tsc from requiring the optional package.
    const name = '@tensorflow/tfjs-node';
    await import(name);
    tfnodeAvailable = tf.findBackend('tensorflow') !== null || tf.engine().registryFactory['tensorflow'] !== undefined;
  } catch {
    tfnodeAvailable = false;
  }
  return tfnodeAvailable;
}

async function loadWasm(): Promise<void> {
  if (wasmLoaded) return;
  await import('@tensorflow/tfjs-backend-wasm');
  wasmLoaded = true;
}

/** The cpu backend prints an advert for tfjs-node on first use; onedp documents that itself. */
function silenceCpuBanner(): void {
  const cpu = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
  if (cpu && 'firstUse' in cpu) cpu.firstUse = false;
}

/** Initialises the backend and returns its name. Safe to call repeatedly. */
export async function initEngine(opts: EngineOptions = {}): Promise<BackendName> {
  silenceCpuBanner();
  const env = process.env.ONEDP_BACKEND as BackendName | undefined;
  let want = opts.backend && opts.backend !== 'auto' ? opts.backend : env;
  if (want && !['wasm', 'cpu', 'tensorflow'].includes(want)) {
    throw new Error(`ONEDP_BACKEND must be wasm, cpu or tensorflow, got "${want}"`);
  }
  if (!want) want = (await tryLoadTfNode()) ? 'tensorflow' : 'wasm';
  if (want === 'tensorflow' && !(await tryLoadTfNode())) {
    throw new Error('backend "tensorflow" requested but @tensorflow/tfjs-node is not installed');
  }
  if (want === 'wasm') {
    try {
      await loadWasm();
      await tf.setBackend('wasm');
      await tf.ready();
    } catch (e) {
      process.emitWarning(`onedp: wasm backend failed to start (${String(e)}); falling back to cpu`);
      want = 'cpu';
    }
  }
  if (want !== 'wasm') {
    await tf.setBackend(want);
    await tf.ready();
  }
  if (want === 'wasm' && opts.customKernels !== false) installWasmKernels();
  return want;
}

/** Switches to an already-initialised backend (for cross-checks in tests and benchmarks). */
export async function useBackend(name: BackendName): Promise<void> {
  if (name === 'wasm') await loadWasm();
  await tf.setBackend(name);
  await tf.ready();
}

export interface EngineInfo {
  backend: string;
  /** Which kernels run the training step: onedp's native addon, its wasm kernels, or the backend's own. */
  kernels: 'native' | 'wasm' | 'backend';
  threads: number;
  /** Native: the instruction set it was built for; otherwise why it is not in use. */
  detail: string;
}

/** What runs the tensors now, for logs, checkpoints' provenance and benchmark headers. */
export function engineInfo(): EngineInfo {
  const backend = tf.getBackend() ?? 'none';
  const st = loadNative();
  if (backend === 'wasm' && nativeKernelsActive() && st.addon) {
    const i = st.addon.info();
    return { backend, kernels: 'native', threads: i.threads, detail: `${i.isa}, ${i.vectorWidth}-wide` };
  }
  if (backend === 'wasm') return { backend, kernels: 'wasm', threads: 1, detail: st.addon ? 'native kernels not installed' : `native addon ${st.detail}` };
  return { backend, kernels: 'backend', threads: getThreads(), detail: '' };
}

/** One line for logs: "wasm + native kernels (avx512, 16-wide), 2 threads". */
export function describeEngine(): string {
  const e = engineInfo();
  if (e.kernels === 'native') return `${e.backend} + native kernels (${e.detail}), ${e.threads} thread${e.threads === 1 ? '' : 's'}`;
  if (e.kernels === 'wasm') return `${e.backend} + onedp wasm kernels, 1 thread (${e.detail})`;
  return e.backend;
}

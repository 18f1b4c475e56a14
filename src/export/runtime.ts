/**
 * Running exported bundles with onnxruntime-node: the inference backend for deployment, beside
 * tfjs, which stays the training engine and the fallback. The policy itself (`BundlePolicy`,
 * bundle.ts) is shared with the browser demo; this file opens bundles from disk and chooses the
 * runtime for `onedp eval` and `onedp serve`.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import type * as Ort from 'onnxruntime-node';
import { BundleError, BundlePolicy, checkManifest, type BundleManifest } from './bundle.js';

export { BundleError, BundlePolicy, checkManifest } from './bundle.js';

let ortModule: typeof Ort | null | undefined;

/** Graphs at least this large (bytes) get more than one intra-op thread by default. */
const MULTI_THREAD_BYTES = 64 << 20;

/**
 * onnxruntime's intra-op threads for a graph of `bytes` when not given. Measured at batch 1 on
 * 2 cores (bench deploy): the 65.8M U-Net (263 MB, bound by reading its weights) runs in 12 ms on
 * two threads against 19 ms on one, while the small state policy and the ResNet-18 image policy
 * run faster and steadier on one (0.39 against 0.48 ms; 10 against 15 ms), the second thread's
 * hand-offs costing more than it computes. So: the machine's cores (up to 4) for large graphs.
 */
export function defaultOrtThreads(bytes: number): number {
  return bytes >= MULTI_THREAD_BYTES ? Math.max(1, Math.min(4, os.cpus().length)) : 1;
}

/** onnxruntime-node, or null when it cannot load on this machine (then tfjs serves). */
export async function loadOnnxRuntime(): Promise<typeof Ort | null> {
  if (ortModule === undefined) {
    try {
      ortModule = (await import('onnxruntime-node')) as typeof Ort;
    } catch {
      ortModule = null;
    }
  }
  return ortModule;
}

/** Reads and checks policy.json; every problem names the file. */
export async function readManifest(dir: string): Promise<BundleManifest> {
  const file = path.join(dir, 'policy.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new BundleError(code === 'ENOENT' ? `${dir}: not an exported policy (no policy.json; run onedp export first)` : `${file}: ${(e as Error).message}`);
  }
  let m: unknown;
  try {
    m = JSON.parse(text) as unknown;
  } catch (e) {
    throw new BundleError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return checkManifest(m, file);
}

/** A bundle on disk, on onnxruntime-node. */
export class OnnxPolicy extends BundlePolicy {
  /**
   * Opens a bundle written by `onedp export`. `threads`: onnxruntime's intra-op threads per graph
   * (default: `defaultOrtThreads` of its size); `sampler`: ddpm, ddim-N, edm-N or cp-N.
   */
  static async load(dir: string, opts: { seed?: number; threads?: number; sampler?: string } = {}): Promise<OnnxPolicy> {
    const ort = await loadOnnxRuntime();
    if (!ort) throw new BundleError('onnxruntime-node is not available on this machine; use --runtime tfjs');
    const manifest = await readManifest(dir);
    // A wrong sampler is the caller's error: said before the graphs load.
    BundlePolicy.sampling(manifest, dir, opts.sampler);
    const session = async (name: string): Promise<Ort.InferenceSession> => {
      const file = path.join(dir, name);
      try {
        const threads = opts.threads ?? defaultOrtThreads((await fs.stat(file)).size);
        return await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      } catch (e) {
        throw new BundleError(`${file}: onnxruntime cannot load it (${(e as Error).message.split('\n')[0]})`);
      }
    };
    const encoder = await session(manifest.files.encoder);
    const action = await session(manifest.files.action);
    return new OnnxPolicy(manifest, dir, ort, encoder, action, opts);
  }

  get dir(): string {
    return this.source;
  }
}

export type RuntimeChoice = 'auto' | 'tfjs' | 'onnx';

/** Why a path is or is not run on onnxruntime, decided before anything heavy loads. */
export interface RuntimePlan {
  runtime: 'tfjs' | 'onnx';
  /** An exported bundle (policy.json) rather than a checkpoint. */
  isBundle: boolean;
  /** For `auto`: why tfjs was chosen (null when onnx was). */
  reason: string | null;
}

/**
 * `auto` runs exported bundles and policy checkpoints (exported on the fly) on onnxruntime when
 * it loads, and on tfjs when it does not or when `needsTfjs` names a reason (worker threads).
 * `onnx` insists, with a clear error.
 */
export async function planRuntime(policyPath: string, choice: RuntimeChoice, needsTfjs: string | null = null): Promise<RuntimePlan> {
  if (!['auto', 'tfjs', 'onnx'].includes(choice)) throw new BundleError(`runtime must be auto, tfjs or onnx, got "${choice}"`);
  const isBundle = await fs.stat(path.join(policyPath, 'policy.json')).then(() => true, () => false);
  if (choice === 'tfjs') {
    if (isBundle) throw new BundleError(`${policyPath}: an exported bundle runs on onnxruntime (runtime onnx); give the checkpoint for tfjs`);
    return { runtime: 'tfjs', isBundle, reason: 'asked for' };
  }
  let why: string | null = needsTfjs;
  if (!why && !(await loadOnnxRuntime())) why = 'onnxruntime-node cannot load on this machine';
  if (!why && !isBundle) {
    const { loadCheckpoint } = await import('../train/checkpoint.js');
    const ck = await loadCheckpoint(policyPath, { metaOnly: true });
    if (!['onedp', 'diffusion-policy', 'consistency-policy'].includes(ck.meta.kind as string)) why = `onnxruntime runs OneDP, diffusion and consistency policies; this is a ${JSON.stringify(ck.meta.kind)} checkpoint`;
  }
  if (why && isBundle) throw new BundleError(`${policyPath}: an exported bundle needs onnxruntime, but ${why}`);
  if (why && choice === 'onnx') throw new BundleError(`${policyPath}: cannot run on onnxruntime: ${why} (use runtime tfjs)`);
  return why ? { runtime: 'tfjs', isBundle, reason: why } : { runtime: 'onnx', isBundle, reason: null };
}

/** Opens a bundle, or exports a checkpoint to a temporary bundle and opens that. */
export async function openOnnxPolicy(policyPath: string, isBundle: boolean, opts: { seed?: number; sampler?: string } = {}): Promise<OnnxPolicy> {
  if (isBundle) return OnnxPolicy.load(policyPath, opts);
  const os = await import('node:os');
  const { exportOnnx } = await import('./export.js');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-onnx-'));
  try {
    await exportOnnx(policyPath, dir);
    return await OnnxPolicy.load(dir, opts);
  } finally {
    // onnxruntime holds the graphs in memory once loaded.
    await fs.rm(dir, { recursive: true, force: true });
  }
}

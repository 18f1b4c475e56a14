/**
 * Running exported bundles with onnxruntime (`onnxruntime-node`): the inference backend for
 * deployment, beside tfjs, which stays the training engine and the fallback.
 *
 * onnxruntime's `run` is asynchronous, so `OnnxPolicy.predict` returns a promise; it takes the
 * same observation batches and seeds as `Policy.predictAction` and returns the same output, so
 * the two runtimes give the same actions for the same noise. One-step bundles (OneDP-S/D) run
 * as two graph calls; a diffusion policy's denoiser and a Consistency Policy's student run inside
 * onedp's sampler loops (DDPM, DDIM-N, EDM Heun-N, CP's chained jumps: `SamplerLoop`), whose few
 * elementwise updates per step stay in tfjs.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import type * as Ort from 'onnxruntime-node';
import { Rng } from '../util/rng.js';
import { nest, noiseFor, toObservationBatch, type AsyncPolicy, type ObservationBatch, type PolicyOutput } from '../policy/types.js';
import { validateVisionConfig } from '../policy/obs_encoder.js';
import { POLICY_SIZE_LIMITS } from '../policy/diffusion_policy.js';
import { tf } from '../engine/index.js';
import { parseSampler, schedulerFromConfig, validateNoiseConfig } from '../diffusion/index.js';
import { randn, runSamplerAsync, type NoiseScheduler, type SamplerLoop } from '../diffusion/types.js';
import { consistencyLoop, consistencyStopInput, parseConsistencySampler } from '../distill/consistency.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, isExportWeights, type BundleManifest } from './export.js';
import { LinearNormalizer } from '../policy/normalizer.js';

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

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

function isInt(v: unknown, min = 1): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
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
  let m: Partial<BundleManifest>;
  try {
    m = JSON.parse(text) as Partial<BundleManifest>;
  } catch (e) {
    throw new BundleError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!m || typeof m !== 'object' || m.format !== BUNDLE_FORMAT) throw new BundleError(`${file}: not an onedp ONNX bundle (format ${JSON.stringify(m?.format)})`);
  if (m.version !== BUNDLE_VERSION) throw new BundleError(`${file}: bundle version ${JSON.stringify(m.version)}, this onedp reads version ${BUNDLE_VERSION}`);
  for (const k of ['obsDim', 'actionDim', 'horizon', 'nObsSteps', 'nActionSteps'] as const) {
    if (!isInt(m[k])) throw new BundleError(`${file}: "${k}" must be a positive integer, got ${JSON.stringify(m[k])}`);
  }
  // The policy's own limits; nActionSteps is bounded by the horizon's.
  const L = POLICY_SIZE_LIMITS;
  for (const [k, max] of [['obsDim', L.obsDim], ['actionDim', L.actionDim], ['horizon', L.horizon], ['nObsSteps', L.nObsSteps], ['nActionSteps', L.horizon]] as const) {
    if (m[k]! > max) throw new BundleError(`${file}: "${k}" ${m[k]} is beyond the supported ${max}`);
  }
  if (m.nActionSteps! + m.nObsSteps! - 1 > m.horizon!) throw new BundleError(`${file}: nObsSteps + nActionSteps - 1 exceeds the horizon`);
  if (!['onedp-s', 'onedp-d', 'diffusion-policy', 'consistency-policy'].includes(m.kind as string)) throw new BundleError(`${file}: unknown kind ${JSON.stringify(m.kind)}`);
  const files = m.files;
  if (!files || typeof files.encoder !== 'string' || typeof files.action !== 'string' || [files.encoder, files.action].some((f) => f.includes('/') || f.includes('\\'))) {
    throw new BundleError(`${file}: "files" must name the encoder and action graphs in the bundle's directory`);
  }
  const act = m.normalizer?.action;
  if (!act || !Array.isArray(act.scale) || !Array.isArray(act.offset) || act.scale.length !== m.actionDim || act.offset.length !== m.actionDim || ![...act.scale, ...act.offset].every((v) => typeof v === 'number' && Number.isFinite(v)) || act.scale.includes(0)) {
    throw new BundleError(`${file}: the action normaliser must have ${m.actionDim} finite, non-zero scales and ${m.actionDim} finite offsets`);
  }
  if (m.weights === undefined) m.weights = 'float32';
  if (!isExportWeights(m.weights)) throw new BundleError(`${file}: "weights" must be float32, int8 or int4, got ${JSON.stringify(m.weights)}`);
  if (m.vision !== undefined) {
    try {
      validateVisionConfig(m.vision, file);
    } catch (e) {
      throw new BundleError((e as Error).message);
    }
    if (m.vision.frameSize > 1024) throw new BundleError(`${file}: vision.frameSize ${m.vision.frameSize} is beyond the supported 1024`);
  }
  if (m.kind === 'consistency-policy') {
    const c = m.sampling as Record<string, unknown> | undefined;
    const pos = (k: string) => typeof c?.[k] === 'number' && Number.isFinite(c[k]) && (c[k] as number) > 0;
    if (!c || !isInt(c.bins) || (c.bins as number) > 10000 || !['sigmaMin', 'sigmaMax', 'rho', 'sigmaData'].every(pos) || (c.sigmaMax as number) <= (c.sigmaMin as number)) {
      throw new BundleError(`${file}: "sampling" must give bins (1..10000) and positive sigmaMin < sigmaMax, rho and sigmaData, got ${JSON.stringify(m.sampling)}`);
    }
  }
  if (m.kind === 'diffusion-policy') {
    // Bounded before anything is built: a schedule's size sets the sampler's allocations.
    try {
      validateNoiseConfig(m.noise, file);
    } catch (e) {
      throw new BundleError((e as Error).message);
    }
    if (!['ddpm', 'edm'].includes((m.noise as { kind?: string }).kind ?? '')) throw new BundleError(`${file}: "noise.kind" must be ddpm or edm`);
  }
  return m as BundleManifest;
}

export class OnnxPolicy implements AsyncPolicy {
  private readonly rng: Rng;
  /** The action statistics (checked by readManifest), to unnormalise a sampled chunk. */
  private readonly actionNorm: LinearNormalizer;

  private constructor(
    readonly manifest: BundleManifest,
    readonly dir: string,
    private readonly ort: typeof Ort,
    private readonly encoder: Ort.InferenceSession,
    private readonly action: Ort.InferenceSession,
    seed: number,
    /** A diffusion policy's sampler: its training schedule's own unless one was chosen. */
    readonly sampler: NoiseScheduler | null,
    /** A Consistency Policy's chained steps (1 unless `cp-N` was chosen). */
    readonly cpSteps: number,
  ) {
    this.rng = new Rng(seed + 1);
    this.actionNorm = new LinearNormalizer({ action: manifest.normalizer.action });
  }

  /**
   * Opens a bundle written by `onedp export`. `threads`: onnxruntime's intra-op threads per graph
   * (default: `defaultOrtThreads` of its size); `sampler`: ddpm, ddim-N, edm-N or cp-N.
   */
  static async load(dir: string, opts: { seed?: number; threads?: number; sampler?: string } = {}): Promise<OnnxPolicy> {
    const ort = await loadOnnxRuntime();
    if (!ort) throw new BundleError('onnxruntime-node is not available on this machine; use --runtime tfjs');
    const manifest = await readManifest(dir);
    const session = async (name: string): Promise<Ort.InferenceSession> => {
      const file = path.join(dir, name);
      try {
        const threads = opts.threads ?? defaultOrtThreads((await fs.stat(file)).size);
        return await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      } catch (e) {
        throw new BundleError(`${file}: onnxruntime cannot load it (${(e as Error).message.split('\n')[0]})`);
      }
    };
    let sampler: NoiseScheduler | null = null;
    let cpSteps = 1;
    if (manifest.kind === 'diffusion-policy') sampler = opts.sampler ? parseSampler(opts.sampler, manifest.noise.kind as 'ddpm' | 'edm') : schedulerFromConfig(manifest.noise);
    else if (manifest.kind === 'consistency-policy') {
      cpSteps = opts.sampler ? parseConsistencySampler(opts.sampler) : 1;
      if (cpSteps > manifest.sampling!.bins) throw new BundleError(`${dir}: ${opts.sampler} asks for more steps than the policy's ${manifest.sampling!.bins} noise levels`);
    } else if (opts.sampler) throw new BundleError(`${dir}: a sampler applies to diffusion and consistency policies; this is a one-step ${manifest.kind} bundle`);
    return new OnnxPolicy(manifest, dir, ort, await session(manifest.files.encoder), await session(manifest.files.action), opts.seed ?? 0, sampler, cpSteps);
  }

  get kind(): string {
    return this.manifest.kind;
  }
  get nObsSteps(): number {
    return this.manifest.nObsSteps;
  }
  get nActionSteps(): number {
    return this.manifest.nActionSteps;
  }
  get horizon(): number {
    return this.manifest.horizon;
  }
  get actionDim(): number {
    return this.manifest.actionDim;
  }
  get cameras(): readonly string[] {
    return this.manifest.vision?.cameras ?? [];
  }

  /** As `Policy.predictAction`: the same seeds give the same noise, hence the same actions. */
  async predict(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } = {}): Promise<PolicyOutput> {
    const m = this.manifest;
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, obsDim, horizon, actionDim, nActionSteps } = m;
    const raw = obs.data.obs;
    const b = obs.batch;
    if (!isInt(b)) throw new BundleError(`${this.dir}: predict: batch must be a positive integer, got ${b}`);
    if (!raw || raw.length !== b * to * obsDim) throw new BundleError(`${this.dir}: predict: expected "obs" with ${b} x ${to} x ${obsDim} values (policy.json), got ${raw ? raw.length : 'none'}`);
    const encoderFeeds: Record<string, Ort.Tensor> = { obs: new this.ort.Tensor('float32', Float32Array.from(raw), [b, to, obsDim]) };
    if (m.vision) {
      const size = m.vision.frameSize;
      for (const cam of m.vision.cameras) {
        const frames = obs.data[cam];
        if (!frames || frames.length !== b * to * size * size * 3) throw new BundleError(`${this.dir}: predict: expected camera "${cam}" with ${b} x ${to} frames of ${size}x${size}x3 values, got ${frames ? frames.length : 'none'}`);
        // Cameras give uint8 frames; float frames (0..255) are rounded to them.
        const u8 = frames instanceof Uint8Array ? frames : Uint8Array.from(frames, (v) => Math.max(0, Math.min(255, Math.round(v))));
        encoderFeeds[cam] = new this.ort.Tensor('uint8', u8, [b, to, size, size, 3]);
      }
    }
    const noise = noiseFor(b, opts, this.rng);
    const t0 = performance.now();
    const { cond } = await this.run(this.encoder, encoderFeeds, m.files.encoder);
    const t1 = performance.now();
    let chunk: Float32Array;
    let nfe = 1;
    if (this.sampler || m.kind === 'consistency-policy') {
      // The network inside onedp's sampler loop, in normalised action space.
      let loop: SamplerLoop;
      let x: tf.Tensor | null = null;
      const extra: Record<string, Ort.Tensor> = {};
      if (this.sampler) {
        x = randn(noise, [b, horizon, actionDim], tf);
        loop = this.sampler.loop(x, noise);
      } else {
        loop = consistencyLoop(m.sampling!, this.cpSteps, [b, horizon, actionDim], noise);
        extra.stop = new this.ort.Tensor('float32', new Float32Array(b).fill(consistencyStopInput(m.sampling!)), [b]);
      }
      const res = await runSamplerAsync(loop, async (xs, ts) => {
        const { output } = await this.run(this.action, { sample: new this.ort.Tensor('float32', xs.dataSync() as Float32Array, xs.shape), timestep: new this.ort.Tensor('float32', ts.dataSync() as Float32Array, [b]), ...extra, cond }, m.files.action);
        const out = tf.tensor(output.data as Float32Array, xs.shape);
        output.dispose();
        return out;
      });
      x?.dispose();
      nfe = res.nfe;
      chunk = this.actionNorm.unnormalize('action', res.sample.dataSync() as Float32Array);
      res.sample.dispose();
    } else {
      const feeds: Record<string, Ort.Tensor> = { cond };
      // Drawn for OneDP-D too, so that the generator's state advances as the tfjs policy's does.
      const z = noise.fillNormal(new Float32Array(b * horizon * actionDim));
      if (m.kind === 'onedp-s') feeds.noise = new this.ort.Tensor('float32', z, [b, horizon, actionDim]);
      const { action } = await this.run(this.action, feeds, m.files.action);
      chunk = action.data as Float32Array;
      action.dispose();
    }
    const t2 = performance.now();
    cond.dispose();
    return {
      actions: nest(chunk, b, horizon, actionDim, to - 1, nActionSteps),
      chunk: nest(chunk, b, horizon, actionDim),
      timing: { obsEncodingMs: t1 - t0, actionPredictionMs: t2 - t1, nfe },
    };
  }

  /** A policy.json that disagrees with its graphs surfaces here, as onnxruntime's shape errors. */
  private async run(s: Ort.InferenceSession, feeds: Record<string, Ort.Tensor>, file: string): Promise<Ort.InferenceSession.ReturnType> {
    try {
      return await s.run(feeds);
    } catch (e) {
      throw new BundleError(`${path.join(this.dir, file)}: onnxruntime rejected the inputs policy.json describes (${(e as Error).message.split('\n')[0]})`);
    }
  }

  async dispose(): Promise<void> {
    await this.encoder.release();
    await this.action.release();
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

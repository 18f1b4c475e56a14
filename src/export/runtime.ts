/**
 * Running exported bundles with onnxruntime (`onnxruntime-node`): the inference backend for
 * deployment, beside tfjs, which stays the training engine and the fallback.
 *
 * onnxruntime's `run` is asynchronous, so `OnnxPolicy.predict` returns a promise; it takes the
 * same observation batches and seeds as `Policy.predictAction` and returns the same output, so
 * the two runtimes give the same actions for the same noise. One-step bundles (OneDP-S/D) run
 * here; multi-step samplers (the diffusion policy's denoiser, CP) are exported but still run in
 * tfjs.
 */
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import type * as Ort from 'onnxruntime-node';
import { Rng } from '../util/rng.js';
import { nest, noiseFor, toObservationBatch, type AsyncPolicy, type ObservationBatch, type PolicyOutput } from '../policy/types.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type BundleManifest } from './export.js';

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

let ortModule: typeof Ort | null | undefined;

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
  for (const [k, max] of [['obsDim', 1 << 16], ['actionDim', 1024], ['horizon', 1024], ['nObsSteps', 64], ['nActionSteps', 1024]] as const) {
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
  return m as BundleManifest;
}

export class OnnxPolicy implements AsyncPolicy {
  private readonly rng: Rng;

  private constructor(
    readonly manifest: BundleManifest,
    readonly dir: string,
    private readonly ort: typeof Ort,
    private readonly encoder: Ort.InferenceSession,
    private readonly action: Ort.InferenceSession,
    seed: number,
  ) {
    this.rng = new Rng(seed + 1);
  }

  /** Opens a bundle written by `onedp export`. */
  static async load(dir: string, opts: { seed?: number; threads?: number } = {}): Promise<OnnxPolicy> {
    const ort = await loadOnnxRuntime();
    if (!ort) throw new BundleError('onnxruntime-node is not available on this machine; use --runtime tfjs');
    const manifest = await readManifest(dir);
    const session = async (name: string): Promise<Ort.InferenceSession> => {
      const file = path.join(dir, name);
      try {
        return await ort.InferenceSession.create(file, { intraOpNumThreads: opts.threads ?? 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      } catch (e) {
        throw new BundleError(`${file}: onnxruntime cannot load it (${(e as Error).message.split('\n')[0]})`);
      }
    };
    return new OnnxPolicy(manifest, dir, ort, await session(manifest.files.encoder), await session(manifest.files.action), opts.seed ?? 0);
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

  /** As `Policy.predictAction`: the same seeds give the same noise, hence the same actions. */
  async predict(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } = {}): Promise<PolicyOutput> {
    const m = this.manifest;
    if (m.kind !== 'onedp-s' && m.kind !== 'onedp-d') {
      throw new BundleError(`${this.dir}: onnxruntime runs one-step bundles; a ${m.kind} bundle's sampler loop runs in tfjs (--runtime tfjs)`);
    }
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, obsDim, horizon, actionDim, nActionSteps } = m;
    const raw = obs.data.obs;
    const b = obs.batch;
    if (!isInt(b)) throw new BundleError(`${this.dir}: predict: batch must be a positive integer, got ${b}`);
    if (!raw || raw.length !== b * to * obsDim) throw new BundleError(`${this.dir}: predict: expected "obs" with ${b} x ${to} x ${obsDim} values (policy.json), got ${raw ? raw.length : 'none'}`);
    const noise = noiseFor(b, opts, this.rng);
    const t0 = performance.now();
    // A policy.json that disagrees with its graphs surfaces here, as onnxruntime's shape errors.
    const run = async (s: Ort.InferenceSession, feeds: Record<string, Ort.Tensor>, file: string) => {
      try {
        return await s.run(feeds);
      } catch (e) {
        throw new BundleError(`${path.join(this.dir, file)}: onnxruntime rejected the inputs policy.json describes (${(e as Error).message.split('\n')[0]})`);
      }
    };
    const { cond } = await run(this.encoder, { obs: new this.ort.Tensor('float32', Float32Array.from(raw), [b, to, obsDim]) }, m.files.encoder);
    const t1 = performance.now();
    const feeds: Record<string, Ort.Tensor> = { cond };
    // Drawn for OneDP-D too, so that the generator's state advances as the tfjs policy's does.
    const z = noise.fillNormal(new Float32Array(b * horizon * actionDim));
    if (m.kind === 'onedp-s') feeds.noise = new this.ort.Tensor('float32', z, [b, horizon, actionDim]);
    const { action } = await run(this.action, feeds, m.files.action);
    const chunk = action.data as Float32Array;
    const t2 = performance.now();
    cond.dispose();
    action.dispose();
    return {
      actions: nest(chunk, b, horizon, actionDim, to - 1, nActionSteps),
      chunk: nest(chunk, b, horizon, actionDim),
      timing: { obsEncodingMs: t1 - t0, actionPredictionMs: t2 - t1, nfe: 1 },
    };
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
 * `auto` runs exported bundles and one-step state checkpoints (OneDP-S/D, exported on the fly) on
 * onnxruntime when it loads, and everything else (multi-step samplers, image policies, or when
 * `needsTfjs` names a reason such as worker threads) on tfjs. `onnx` insists, with a clear error.
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
    const ck = await loadCheckpoint(policyPath);
    const pc = ck.meta.policyConfig as { vision?: unknown } | undefined;
    if (ck.meta.kind !== 'onedp') why = `onnxruntime runs one-step OneDP policies; this is a ${JSON.stringify(ck.meta.kind)} checkpoint`;
    else if (pc?.vision) why = 'image policies are not exported yet';
  }
  if (why && isBundle) throw new BundleError(`${policyPath}: an exported bundle needs onnxruntime, but ${why}`);
  if (why && choice === 'onnx') throw new BundleError(`${policyPath}: cannot run on onnxruntime: ${why} (use runtime tfjs)`);
  return why ? { runtime: 'tfjs', isBundle, reason: why } : { runtime: 'onnx', isBundle, reason: null };
}

/** Opens a bundle, or exports a one-step checkpoint to a temporary bundle and opens that. */
export async function openOnnxPolicy(policyPath: string, isBundle: boolean, opts: { seed?: number } = {}): Promise<OnnxPolicy> {
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

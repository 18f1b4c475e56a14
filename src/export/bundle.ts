/**
 * An exported bundle (`onedp export`: encoder.onnx + an action graph + policy.json) as a policy,
 * on any onnxruntime whose API is onnxruntime-common's: onnxruntime-node in Node (runtime.ts opens
 * bundles from disk) and onnxruntime-web in the browser demo (which fetches them). This file
 * imports nothing from Node, and of onedp only the sampler loops and small checks, so a page
 * bundles it without the training code.
 *
 * onnxruntime's `run` is asynchronous, so `BundlePolicy.predict` returns a promise; it takes the
 * same observation batches and seeds as `Policy.predictAction` and returns the same output, so
 * the runtimes give the same actions for the same noise. One-step bundles (OneDP-S/D) run as two
 * graph calls; a diffusion policy's denoiser and a Consistency Policy's student run inside
 * onedp's sampler loops (DDPM, DDIM-N, EDM Heun-N, CP's chained jumps: `SamplerLoop`), whose few
 * elementwise updates per step stay in tfjs.
 */
import type { InferenceSession, Tensor } from 'onnxruntime-common';
import { tf } from '../engine/index.js';
import { Rng } from '../util/rng.js';
import { POLICY_SIZE_LIMITS, nest, noiseFor, toObservationBatch, type AsyncPolicy, type ObservationBatch, type PolicyOutput } from '../policy/types.js';
import { validateVisionConfig } from '../policy/vision_config.js';
import { LinearNormalizer } from '../policy/normalizer.js';
import { parseSampler, schedulerFromConfig, validateNoiseConfig } from '../diffusion/index.js';
import { randn, runSamplerAsync, type NoiseScheduler, type SamplerLoop } from '../diffusion/types.js';
import { consistencyLoop, consistencyStopInput, parseConsistencySampler } from '../distill/cp_sampling.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, BundleShape, isExportWeights, type BundleManifest } from './manifest.js';

export { BUNDLE_FORMAT, BUNDLE_VERSION, BundleShape, EXPORT_WEIGHTS, isExportWeights, type BundleKind, type BundleManifest, type ExportWeights } from './manifest.js';

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

/** What a bundle policy needs of an onnxruntime module: its Tensor class. */
export interface OrtApi {
  Tensor: typeof Tensor;
}

function isInt(v: unknown, min = 1): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= min;
}

/** Checks a parsed policy.json; every problem names `file`. */
export function checkManifest(parsed: unknown, file: string): BundleManifest {
  const m = parsed as Partial<BundleManifest> | null;
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

export interface BundleSampling {
  /** Noise stream of calls made without a seed (as `Policy`'s: seed + 1). */
  seed?: number;
  /** ddpm, ddim-N, edm-N (diffusion policies) or cp-N (consistency policies). */
  sampler?: string;
}

export class BundlePolicy extends BundleShape implements AsyncPolicy {
  private readonly rng: Rng;
  /** The action statistics (checked by checkManifest), to unnormalise a sampled chunk. */
  private readonly actionNorm: LinearNormalizer;
  /** A diffusion policy's sampler: its training schedule's own unless one was chosen. */
  readonly sampler: NoiseScheduler | null;
  /** A Consistency Policy's chained steps (1 unless `cp-N` was chosen). */
  readonly cpSteps: number;

  /**
   * `source` names the bundle in errors (its directory or URL); `encoder` and `action` are the
   * sessions of `manifest.files`.
   */
  constructor(
    manifest: BundleManifest,
    readonly source: string,
    private readonly ort: OrtApi,
    private readonly encoder: InferenceSession,
    private readonly action: InferenceSession,
    opts: BundleSampling = {},
  ) {
    super(manifest);
    this.rng = new Rng((opts.seed ?? 0) + 1);
    this.actionNorm = new LinearNormalizer({ action: manifest.normalizer.action });
    ({ sampler: this.sampler, cpSteps: this.cpSteps } = BundlePolicy.sampling(manifest, source, opts.sampler));
  }

  /** The sampler a bundle runs with `name` (its own schedule without one); throws if it does not apply. */
  static sampling(manifest: BundleManifest, source: string, name?: string): { sampler: NoiseScheduler | null; cpSteps: number } {
    if (manifest.kind === 'diffusion-policy') return { sampler: name ? parseSampler(name, manifest.noise.kind as 'ddpm' | 'edm') : schedulerFromConfig(manifest.noise), cpSteps: 1 };
    if (manifest.kind === 'consistency-policy') {
      const cpSteps = name ? parseConsistencySampler(name) : 1;
      if (cpSteps > manifest.sampling!.bins) throw new BundleError(`${source}: ${name} asks for more steps than the policy's ${manifest.sampling!.bins} noise levels`);
      return { sampler: null, cpSteps };
    }
    if (name) throw new BundleError(`${source}: a sampler applies to diffusion and consistency policies; this is a one-step ${manifest.kind} bundle`);
    return { sampler: null, cpSteps: 1 };
  }

  /** As `Policy.predictAction`: the same seeds give the same noise, hence the same actions. */
  async predict(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } = {}): Promise<PolicyOutput> {
    const m = this.manifest;
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, obsDim, horizon, actionDim, nActionSteps } = m;
    const raw = obs.data.obs;
    const b = obs.batch;
    if (!isInt(b)) throw new BundleError(`${this.source}: predict: batch must be a positive integer, got ${b}`);
    if (!raw || raw.length !== b * to * obsDim) throw new BundleError(`${this.source}: predict: expected "obs" with ${b} x ${to} x ${obsDim} values (policy.json), got ${raw ? raw.length : 'none'}`);
    const encoderFeeds: Record<string, Tensor> = { obs: new this.ort.Tensor('float32', Float32Array.from(raw), [b, to, obsDim]) };
    if (m.vision) {
      const size = m.vision.frameSize;
      for (const cam of m.vision.cameras) {
        const frames = obs.data[cam];
        if (!frames || frames.length !== b * to * size * size * 3) throw new BundleError(`${this.source}: predict: expected camera "${cam}" with ${b} x ${to} frames of ${size}x${size}x3 values, got ${frames ? frames.length : 'none'}`);
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
    let x: tf.Tensor | null = null;
    // Released on every path: a bundle whose graphs fail would otherwise leak a call's tensors.
    try {
      if (this.sampler || m.kind === 'consistency-policy') {
        // The network inside onedp's sampler loop, in normalised action space.
        let loop: SamplerLoop;
        const extra: Record<string, Tensor> = {};
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
        nfe = res.nfe;
        chunk = this.actionNorm.unnormalize('action', res.sample.dataSync() as Float32Array);
        res.sample.dispose();
      } else {
        const feeds: Record<string, Tensor> = { cond };
        // Drawn for OneDP-D too, so that the generator's state advances as the tfjs policy's does.
        const z = noise.fillNormal(new Float32Array(b * horizon * actionDim));
        if (m.kind === 'onedp-s') feeds.noise = new this.ort.Tensor('float32', z, [b, horizon, actionDim]);
        const { action } = await this.run(this.action, feeds, m.files.action);
        chunk = action.data as Float32Array;
        action.dispose();
      }
    } finally {
      x?.dispose();
      cond.dispose();
    }
    const t2 = performance.now();
    return {
      actions: nest(chunk, b, horizon, actionDim, to - 1, nActionSteps),
      chunk: nest(chunk, b, horizon, actionDim),
      timing: { obsEncodingMs: t1 - t0, actionPredictionMs: t2 - t1, nfe },
    };
  }

  /** A policy.json that disagrees with its graphs surfaces here, as onnxruntime's shape errors. */
  private async run(s: InferenceSession, feeds: Record<string, Tensor>, file: string): Promise<InferenceSession.ReturnType> {
    try {
      return await s.run(feeds);
    } catch (e) {
      throw new BundleError(`${this.source}${this.source.endsWith('/') ? '' : '/'}${file}: onnxruntime rejected the inputs policy.json describes (${(e as Error).message.split('\n')[0]})`);
    }
  }

  async dispose(): Promise<void> {
    await this.encoder.release();
    await this.action.release();
  }
}

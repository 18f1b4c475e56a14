/**
 * What every action-chunk policy shares, whatever generates the chunk (a diffusion sampler, a
 * one-step generator): the horizons, observation checking, normalisation and encoding into the
 * global conditioning vector, and unnormalising the chunk with timings.
 */
import { tf } from '../engine/index.js';
import type { NoiseSource } from '../diffusion/types.js';
import type { LinearNormalizer } from './normalizer.js';
import type { DiffusionPolicyConfig } from './diffusion_policy.js';
import { Rng } from '../util/rng.js';
import { nest, noiseFor, toObservationBatch, type ObservationBatch, type Policy, type PolicyOutput } from './types.js';

export abstract class ChunkPolicy implements Policy {
  abstract readonly kind: string;
  protected readonly rng: Rng;

  constructor(
    readonly config: DiffusionPolicyConfig,
    readonly normalizer: LinearNormalizer,
    seed: number,
  ) {
    this.rng = new Rng(seed);
  }

  get nObsSteps(): number {
    return this.config.nObsSteps;
  }
  get nActionSteps(): number {
    return this.config.nActionSteps;
  }
  get horizon(): number {
    return this.config.horizon;
  }
  get actionDim(): number {
    return this.config.actionDim;
  }

  /** Normalised observation history (B, To, obsDim) -> global conditioning (B, To*obsDim). */
  encodeObs(obsNorm: tf.Tensor): tf.Tensor {
    return obsNorm.reshape([obsNorm.shape[0], -1]);
  }

  /** The normalised chunk (B, horizon, actionDim) for conditioning `cond`, and its NFE. */
  protected abstract generateChunk(cond: tf.Tensor, noise: NoiseSource, opts: Record<string, unknown>): { sample: tf.Tensor; nfe: number };

  predictAction(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } & Record<string, unknown> = {}): PolicyOutput {
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, obsDim, horizon, actionDim, nActionSteps } = this.config;
    const raw = obs.data.obs;
    if (!raw || raw.length !== obs.batch * to * obsDim) {
      throw new Error(`predictAction: expected "obs" with ${obs.batch} x ${to} x ${obsDim} values, got ${raw ? raw.length : 'none'}`);
    }
    const noise = noiseFor(obs.batch, opts, this.rng);
    const t0 = performance.now();
    const cond = tf.tidy(() => this.encodeObs(tf.tensor(this.normalizer.normalize('obs', Float32Array.from(raw)), [obs.batch, to, obsDim])));
    cond.dataSync();
    const t1 = performance.now();
    const { sample, nfe } = this.generateChunk(cond, noise, opts);
    const chunk = this.normalizer.unnormalize('action', sample.dataSync() as Float32Array);
    const t2 = performance.now();
    tf.dispose([cond, sample]);
    return {
      actions: nest(chunk, obs.batch, horizon, actionDim, to - 1, nActionSteps),
      chunk: nest(chunk, obs.batch, horizon, actionDim),
      timing: { obsEncodingMs: t1 - t0, actionPredictionMs: t2 - t1, nfe },
    };
  }

  abstract dispose(): void;
}

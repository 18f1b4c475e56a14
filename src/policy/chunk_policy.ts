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
import { toPolicyObs, type PolicyModel, type PolicyObs } from './obs_encoder.js';

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
  get cameras(): readonly string[] {
    return this.config.vision?.cameras ?? [];
  }

  /** The network that encodes observations (and generates the chunk). */
  abstract readonly model: PolicyModel;

  /** Observation histories -> global conditioning (B, condDim). */
  encodeObs(obs: PolicyObs): tf.Tensor {
    return this.model.encode(obs);
  }

  /** The normalised chunk (B, horizon, actionDim) for conditioning `cond`, and its NFE. */
  protected abstract generateChunk(cond: tf.Tensor, noise: NoiseSource, opts: Record<string, unknown>): { sample: tf.Tensor; nfe: number };

  predictAction(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } & Record<string, unknown> = {}): PolicyOutput {
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, horizon, actionDim, nActionSteps } = this.config;
    const noise = noiseFor(obs.batch, opts, this.rng);
    const t0 = performance.now();
    // Encoding time includes decoding and centre-cropping the frames, as a robot's loop would pay it.
    const cond = tf.tidy(() => this.encodeObs(toPolicyObs(this.config, this.normalizer, obs.batch, obs.data, 'center', 'predictAction')));
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

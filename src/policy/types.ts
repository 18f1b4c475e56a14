import { Rng } from '../util/rng.js';
import { RowNoise, type NoiseSource } from '../diffusion/types.js';

/** What every policy (multi-step diffusion, one-step OneDP, Consistency Policy) offers. */

/**
 * A batch of observation histories: per key, (batch, nObsSteps, ...frame) values, flat.
 * "obs" holds the low-dimensional values; image policies add one uint8 array per camera.
 */
export interface ObservationBatch {
  batch: number;
  data: Record<string, Float32Array | Uint8Array>;
}

export interface PolicyTiming {
  /** Normalising and encoding the observation history into the conditioning vector. */
  obsEncodingMs: number;
  /** Generating the action chunk (all network evaluations) and unnormalising it. */
  actionPredictionMs: number;
  /** Network evaluations for the action (the encoder is not counted). */
  nfe: number;
}

export interface PolicyOutput {
  /** The actions to execute now: (batch, nActionSteps, actionDim). */
  actions: number[][][];
  /** The whole predicted chunk: (batch, horizon, actionDim). */
  chunk: number[][][];
  timing: PolicyTiming;
}

/** What every policy says about itself, however it runs. */
export interface PolicyShape {
  readonly kind: string;
  readonly nObsSteps: number;
  readonly nActionSteps: number;
  readonly horizon: number;
  readonly actionDim: number;
  /** Camera keys the policy observes besides "obs" (absent or empty for state policies). */
  readonly cameras?: readonly string[];
}

export interface Policy extends PolicyShape {
  /**
   * `seed` fixes the noise of this call; `rngs` gives one generator per batch row, so each
   * row's actions do not depend on the rest of the batch.
   */
  predictAction(obs: ObservationBatch | number[][][], opts?: { seed?: number; rngs?: Rng[] }): PolicyOutput;
  dispose(): void;
}

/**
 * A policy whose predictions are asynchronous (an onnxruntime session): the same inputs, seeds and
 * outputs as `Policy.predictAction`.
 */
export interface AsyncPolicy extends PolicyShape {
  predict(obs: ObservationBatch | number[][][], opts?: { seed?: number; rngs?: Rng[] }): Promise<PolicyOutput>;
  dispose(): Promise<void> | void;
}

/** Accepts nested (batch, steps, dim) arrays for low-dimensional observations. */
export function toObservationBatch(obs: ObservationBatch | number[][][], key = 'obs'): ObservationBatch {
  if (!Array.isArray(obs)) return obs;
  const batch = obs.length;
  const flat: number[] = [];
  for (const hist of obs) for (const step of hist) flat.push(...step);
  return { batch, data: { [key]: Float32Array.from(flat) } };
}

/** (batch * steps * dim) flat values to nested arrays. */
export function nest(flat: Float32Array, batch: number, steps: number, dim: number, from = 0, count = steps): number[][][] {
  const out: number[][][] = [];
  for (let b = 0; b < batch; b++) {
    const seq: number[][] = [];
    for (let t = from; t < from + count; t++) seq.push(Array.from(flat.subarray((b * steps + t) * dim, (b * steps + t + 1) * dim)));
    out.push(seq);
  }
  return out;
}

/** The noise source of one predictAction call. */
export function noiseFor(batch: number, opts: { seed?: number; rngs?: Rng[] }, fallback: Rng): NoiseSource {
  if (opts.rngs) {
    if (opts.rngs.length !== batch) throw new Error(`predictAction: ${opts.rngs.length} generators for a batch of ${batch}`);
    return new RowNoise(opts.rngs);
  }
  return opts.seed !== undefined ? new Rng(opts.seed) : fallback;
}

/**
 * Sizes far beyond any published policy (horizon 16, 2048 channels), so a corrupt config or
 * export is an error rather than an allocation that takes the process down.
 */
export const POLICY_SIZE_LIMITS = { obsDim: 1 << 16, actionDim: 1024, horizon: 1024, nObsSteps: 64 } as const;

/**
 * The shared interface of onedp's noise schedules and samplers, in the spirit of diffusers:
 * one file per scheduler, each knowing its training noise law, its network preconditioning and
 * its sampling steps. A sampler calls the network through a `Denoiser` and counts evaluations.
 */
import type { tf } from '../engine/index.js';
import type { Rng } from '../util/rng.js';

/** What the network is asked to predict. */
export type Parameterisation = 'epsilon' | 'x0';

/**
 * One call of the underlying network: `x` noisy sample, `t` the network's time input per batch
 * element (DDPM: integer step; EDM: c_noise), returns the raw network output.
 */
export type NetworkFn = (x: tf.Tensor, t: tf.Tensor) => tf.Tensor;

export interface SampleResult {
  sample: tf.Tensor;
  /** Network evaluations used. */
  nfe: number;
}

/** A network evaluation a sampler asks for; the driver answers with the raw network output. */
export interface NetworkRequest {
  x: tf.Tensor;
  t: tf.Tensor;
}

/**
 * A sampler's reverse process as a generator of network requests, returning the sample. One
 * loop serves a synchronous tfjs network (`runSampler`) and an asynchronous onnxruntime one
 * (`runSamplerAsync`). The loop owns the request tensors and the outputs it is answered with.
 */
export type SamplerLoop = Generator<NetworkRequest, tf.Tensor, tf.Tensor>;

/** Drives a loop with a synchronous network; intermediate tensors of each call are freed. */
export function runSampler(loop: SamplerLoop, net: NetworkFn, tfm: typeof tf): SampleResult {
  let nfe = 0;
  let r = loop.next();
  while (!r.done) {
    const { x, t } = r.value;
    const out = tfm.tidy(() => net(x, t));
    nfe++;
    r = loop.next(out);
  }
  return { sample: r.value, nfe };
}

/** Drives a loop with an asynchronous network (e.g. an onnxruntime session). */
export async function runSamplerAsync(loop: SamplerLoop, net: (x: tf.Tensor, t: tf.Tensor) => Promise<tf.Tensor>): Promise<SampleResult> {
  let nfe = 0;
  let r = loop.next();
  while (!r.done) {
    let out: tf.Tensor;
    try {
      out = await net(r.value.x, r.value.t);
    } catch (e) {
      loop.return(undefined as unknown as tf.Tensor);
      throw e;
    }
    nfe++;
    r = loop.next(out);
  }
  return { sample: r.value, nfe };
}

export interface TrainingBatch {
  /** Network input. */
  input: tf.Tensor;
  /** Network time input, (B,). */
  t: tf.Tensor;
  /** Per-element loss from the network output (B, ...). */
  loss: (output: tf.Tensor) => tf.Tensor;
}

export interface NoiseScheduler {
  readonly kind: 'ddpm' | 'ddim' | 'edm';
  /** Network evaluations one `sample` call makes. */
  readonly nfe: number;
  /** Draws a training example's noise level and noise and returns the loss to minimise. */
  trainingBatch(x0: tf.Tensor, rng: Rng): TrainingBatch;
  /** Runs the reverse process from `noise` ~ N(0, I) of the sample's shape. */
  sample(net: NetworkFn, noise: tf.Tensor, rng: NoiseSource): SampleResult;
  /** The same process as a loop of network requests (`sample` drives it with `net`). */
  loop(noise: tf.Tensor, rng: NoiseSource): SamplerLoop;
  /** Serialisable description, stored in checkpoints. */
  toJSON(): SchedulerConfig;
}

export type SchedulerConfig =
  | { kind: 'ddpm'; numTrainTimesteps: number; clipSample: boolean }
  | { kind: 'ddim'; numTrainTimesteps: number; numInferenceSteps: number; clipSample: boolean }
  | { kind: 'edm'; numSteps: number; sigmaMin: number; sigmaMax: number; sigmaData: number; rho: number; pMean: number; pStd: number };

/** Anything that fills arrays with standard normal draws (an `Rng`, or one `Rng` per batch row). */
export interface NoiseSource {
  fillNormal(out: Float32Array): Float32Array;
}

/**
 * One generator per batch row: row i of every draw comes from `rngs[i]`, so a sample does not
 * depend on which other rows share its batch (evaluation batches episodes in lockstep).
 */
export class RowNoise implements NoiseSource {
  constructor(readonly rngs: Rng[]) {}
  fillNormal(out: Float32Array): Float32Array {
    const rows = this.rngs.length;
    if (out.length % rows !== 0) throw new Error(`RowNoise: ${out.length} values do not split into ${rows} rows`);
    const per = out.length / rows;
    this.rngs.forEach((r, i) => r.fillNormal(out.subarray(i * per, (i + 1) * per)));
    return out;
  }
}

/** Standard normal noise of a shape from onedp's seeded RNG (reproducible across backends). */
export function randn(rng: NoiseSource, shape: number[], tfm: typeof tf): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tfm.tensor(rng.fillNormal(new Float32Array(n)), shape);
}

/**
 * DDPM (Ho et al. 2020) as Diffusion Policy configures it: 100 steps, `squaredcos_cap_v2`
 * betas, epsilon prediction, predicted x0 clipped to [-1, 1], `fixed_small` variance.
 */
import { tf } from '../engine/index.js';
import type { Rng } from '../util/rng.js';
import { randn, runSampler, type NoiseSource, type NetworkFn, type NoiseScheduler, type SampleResult, type SamplerLoop, type SchedulerConfig, type TrainingBatch } from './types.js';

/** alpha_bar(t) = cos^2(((t + 0.008) / 1.008) pi / 2) for t in [0, 1]. */
function cosineAlphaBar(t: number): number {
  return Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
}

/**
 * betas and their cumulative products in float64 (the spec's check values are float64; the
 * reference's float32 cumprod differs by under 1e-7).
 */
export function squaredCosCapV2(numTrainTimesteps: number): { betas: Float64Array; alphaBar: Float64Array } {
  const betas = new Float64Array(numTrainTimesteps);
  const alphaBar = new Float64Array(numTrainTimesteps);
  let p = 1;
  for (let i = 0; i < numTrainTimesteps; i++) {
    betas[i] = Math.min(1 - cosineAlphaBar((i + 1) / numTrainTimesteps) / cosineAlphaBar(i / numTrainTimesteps), 0.999);
    p *= 1 - betas[i];
    alphaBar[i] = p;
  }
  return { betas, alphaBar };
}

export interface DdpmOptions {
  numTrainTimesteps?: number;
  clipSample?: boolean;
}

/** Shared by DDPM and DDIM: the discrete schedule and the DDPM training loss. */
export class DiscreteSchedule {
  readonly numTrainTimesteps: number;
  readonly clipSample: boolean;
  readonly betas: Float64Array;
  readonly alphaBar: Float64Array;

  constructor(opts: DdpmOptions = {}) {
    this.numTrainTimesteps = opts.numTrainTimesteps ?? 100;
    this.clipSample = opts.clipSample ?? true;
    const s = squaredCosCapV2(this.numTrainTimesteps);
    this.betas = s.betas;
    this.alphaBar = s.alphaBar;
  }

  /** sigma_k = sqrt(1 - alpha_bar_k). */
  sigma(k: number): number {
    return Math.sqrt(1 - this.alphaBar[k]);
  }

  /** x_k = sqrt(abar_k) x0 + sigma_k eps, with k per batch element. */
  addNoise(x0: tf.Tensor, eps: tf.Tensor, ks: number[]): tf.Tensor {
    const b = x0.shape[0];
    const bshape = [b, ...x0.shape.slice(1).map(() => 1)];
    const a = tf.tensor(Float32Array.from(ks, (k) => Math.sqrt(this.alphaBar[k])), bshape);
    const s = tf.tensor(Float32Array.from(ks, (k) => this.sigma(k)), bshape);
    return x0.mul(a).add(eps.mul(s));
  }

  /** k ~ U{0..K-1}, MSE between predicted and true noise. */
  trainingBatch(x0: tf.Tensor, rng: Rng): TrainingBatch {
    const b = x0.shape[0];
    const ks = Array.from({ length: b }, () => rng.int(0, this.numTrainTimesteps));
    const eps = randn(rng, x0.shape, tf);
    return {
      input: this.addNoise(x0, eps, ks),
      t: tf.tensor1d(ks, 'float32'),
      loss: (out) => out.sub(eps).square(),
    };
  }

  /** x0 estimate from an epsilon prediction at step k, clipped when configured. */
  predictX0(x: tf.Tensor, eps: tf.Tensor, k: number): tf.Tensor {
    const x0 = x.sub(eps.mul(this.sigma(k))).div(Math.sqrt(this.alphaBar[k]));
    return this.clipSample ? x0.clipByValue(-1, 1) : x0;
  }
}

export class DDPMScheduler extends DiscreteSchedule implements NoiseScheduler {
  readonly kind = 'ddpm' as const;

  get nfe(): number {
    return this.numTrainTimesteps;
  }

  /** One ancestral step from k to k-1 (posterior mean plus fixed_small noise). */
  step(eps: tf.Tensor, k: number, x: tf.Tensor, noise: tf.Tensor | null): tf.Tensor {
    return tf.tidy(() => {
      const abarT = this.alphaBar[k];
      const abarPrev = k > 0 ? this.alphaBar[k - 1] : 1;
      const betaProdT = 1 - abarT;
      const betaProdPrev = 1 - abarPrev;
      const alphaT = abarT / abarPrev;
      const betaT = 1 - alphaT;
      const x0 = this.predictX0(x, eps, k);
      const mean = x0.mul((Math.sqrt(abarPrev) * betaT) / betaProdT).add(x.mul((Math.sqrt(alphaT) * betaProdPrev) / betaProdT));
      if (k === 0 || !noise) return mean;
      const variance = Math.max((betaProdPrev / betaProdT) * betaT, 1e-20);
      return mean.add(noise.mul(Math.sqrt(variance)));
    });
  }

  sample(net: NetworkFn, noise: tf.Tensor, rng: NoiseSource): SampleResult {
    return runSampler(this.loop(noise, rng), net, tf);
  }

  *loop(noise: tf.Tensor, rng: NoiseSource): SamplerLoop {
    let x = noise.clone();
    const b = x.shape[0];
    for (let k = this.numTrainTimesteps - 1; k >= 0; k--) {
      const t = tf.fill([b], k);
      const eps = yield { x, t };
      t.dispose();
      const z = k > 0 ? randn(rng, x.shape, tf) : null;
      const next = this.step(eps, k, x, z);
      tf.dispose(z ? [eps, z, x] : [eps, x]);
      x = next;
    }
    return x;
  }

  toJSON(): SchedulerConfig {
    return { kind: 'ddpm', numTrainTimesteps: this.numTrainTimesteps, clipSample: this.clipSample };
  }
}

/**
 * DDIM (Song et al. 2021) with eta 0 over the DDPM training schedule: n steps at
 * timesteps [(n-1) K/n, ..., K/n, 0], final alpha taken as 1. With n = 1 this is the "DP 1 NFE"
 * baseline, which returns little more than a rescaled noise sample.
 */
import { tf } from '../engine/index.js';
import type { Rng } from '../util/rng.js';
import { DiscreteSchedule, type DdpmOptions } from './ddpm.js';
import { runSampler, type NetworkFn, type NoiseScheduler, type NoiseSource, type SampleResult, type SamplerLoop, type SchedulerConfig } from './types.js';

export class DDIMScheduler extends DiscreteSchedule implements NoiseScheduler {
  readonly kind = 'ddim' as const;
  readonly numInferenceSteps: number;
  readonly timesteps: number[];
  private readonly stepRatio: number;

  constructor(opts: DdpmOptions & { numInferenceSteps?: number } = {}) {
    super(opts);
    const n = opts.numInferenceSteps ?? 10;
    if (!Number.isInteger(n) || n < 1 || n > this.numTrainTimesteps) {
      throw new Error(`DDIM steps must be an integer in [1, ${this.numTrainTimesteps}], got ${n}`);
    }
    this.numInferenceSteps = n;
    this.stepRatio = Math.floor(this.numTrainTimesteps / n);
    this.timesteps = Array.from({ length: n }, (_, i) => (n - 1 - i) * this.stepRatio);
  }

  get nfe(): number {
    return this.numInferenceSteps;
  }

  step(eps: tf.Tensor, k: number, x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const prev = k - this.stepRatio;
      const abarPrev = prev >= 0 ? this.alphaBar[prev] : 1;
      const x0 = this.predictX0(x, eps, k);
      return x0.mul(Math.sqrt(abarPrev)).add(eps.mul(Math.sqrt(1 - abarPrev)));
    });
  }

  sample(net: NetworkFn, noise: tf.Tensor, rng: NoiseSource): SampleResult {
    return runSampler(this.loop(noise, rng), net, tf);
  }

  *loop(noise: tf.Tensor, _rng: NoiseSource): SamplerLoop {
    let x = noise.clone();
    const b = x.shape[0];
    for (const k of this.timesteps) {
      const t = tf.fill([b], k);
      const eps = yield { x, t };
      t.dispose();
      const next = this.step(eps, k, x);
      tf.dispose([eps, x]);
      x = next;
    }
    return x;
  }

  toJSON(): SchedulerConfig {
    return { kind: 'ddim', numTrainTimesteps: this.numTrainTimesteps, numInferenceSteps: this.numInferenceSteps, clipSample: this.clipSample };
  }
}

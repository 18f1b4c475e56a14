/**
 * EDM (Karras et al. 2022): x0 prediction with preconditioning, log-normal training noise and
 * the second-order Heun sampler. The network sees c_in x and c_noise = ln(sigma)/4.
 */
import { tf } from '../engine/index.js';
import type { Rng } from '../util/rng.js';
import { randn, runSampler, type NetworkRequest, type NoiseSource, type NetworkFn, type NoiseScheduler, type SampleResult, type SamplerLoop, type SchedulerConfig, type TrainingBatch } from './types.js';

export interface EdmOptions {
  numSteps?: number;
  sigmaMin?: number;
  sigmaMax?: number;
  sigmaData?: number;
  rho?: number;
  /** Mean and std of ln(sigma) during training. */
  pMean?: number;
  pStd?: number;
}

export class EDMScheduler implements NoiseScheduler {
  readonly kind = 'edm' as const;
  readonly numSteps: number;
  readonly sigmaMin: number;
  readonly sigmaMax: number;
  readonly sigmaData: number;
  readonly rho: number;
  readonly pMean: number;
  readonly pStd: number;

  constructor(opts: EdmOptions = {}) {
    this.numSteps = opts.numSteps ?? 18;
    if (!Number.isInteger(this.numSteps) || this.numSteps < 1) throw new Error(`EDM steps must be a positive integer, got ${this.numSteps}`);
    this.sigmaMin = opts.sigmaMin ?? 0.002;
    this.sigmaMax = opts.sigmaMax ?? 80;
    this.sigmaData = opts.sigmaData ?? 0.5;
    this.rho = opts.rho ?? 7;
    this.pMean = opts.pMean ?? -1.2;
    this.pStd = opts.pStd ?? 1.2;
  }

  /** Heun: 2 evaluations per step except the last, which goes to sigma 0 with one. */
  get nfe(): number {
    return 2 * this.numSteps - 1;
  }

  /** sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, then 0. */
  sigmas(): number[] {
    const n = this.numSteps;
    const a = this.sigmaMax ** (1 / this.rho);
    const b = this.sigmaMin ** (1 / this.rho);
    const s = Array.from({ length: n }, (_, i) => (n === 1 ? this.sigmaMax : (a + (i / (n - 1)) * (b - a)) ** this.rho));
    return [...s, 0];
  }

  precondition(sigma: number): { cSkip: number; cOut: number; cIn: number; cNoise: number } {
    const sd = this.sigmaData;
    const s2 = sigma * sigma + sd * sd;
    return { cSkip: (sd * sd) / s2, cOut: (sigma * sd) / Math.sqrt(s2), cIn: 1 / Math.sqrt(s2), cNoise: Math.log(sigma) / 4 };
  }

  /** D(x; sigma) = c_skip x + c_out F(c_in x, c_noise), with sigma per batch element. */
  denoise(net: NetworkFn, x: tf.Tensor, sigmas: number[]): tf.Tensor {
    const b = x.shape[0];
    const bshape = [b, ...x.shape.slice(1).map(() => 1)];
    const pc = sigmas.map((s) => this.precondition(s));
    const col = (f: (p: ReturnType<EDMScheduler['precondition']>) => number) => tf.tensor(Float32Array.from(pc, f), bshape);
    const out = net(x.mul(col((p) => p.cIn)), tf.tensor1d(pc.map((p) => p.cNoise)));
    return x.mul(col((p) => p.cSkip)).add(out.mul(col((p) => p.cOut)));
  }

  trainingBatch(x0: tf.Tensor, rng: Rng): TrainingBatch {
    const b = x0.shape[0];
    const sigmas = Array.from({ length: b }, () => Math.exp(this.pMean + this.pStd * rng.normal()));
    const n = randn(rng, x0.shape, tf);
    const bshape = [b, ...x0.shape.slice(1).map(() => 1)];
    const noisy = x0.add(n.mul(tf.tensor(Float32Array.from(sigmas), bshape)));
    const pc = sigmas.map((s) => this.precondition(s));
    const col = (f: (p: ReturnType<EDMScheduler['precondition']>, s: number) => number) => tf.tensor(Float32Array.from(pc, (p, i) => f(p, sigmas[i])), bshape);
    const cIn = col((p) => p.cIn);
    const cSkip = col((p) => p.cSkip);
    const cOut = col((p) => p.cOut);
    const sd = this.sigmaData;
    const weight = col((_p, s) => (s * s + sd * sd) / (s * sd) ** 2);
    return {
      input: noisy.mul(cIn),
      t: tf.tensor1d(pc.map((p) => p.cNoise)),
      loss: (out) => noisy.mul(cSkip).add(out.mul(cOut)).sub(x0).square().mul(weight),
    };
  }

  sample(net: NetworkFn, noise: tf.Tensor, rng: NoiseSource): SampleResult {
    return runSampler(this.loop(noise, rng), net, tf);
  }

  /** `denoise` as a loop step: D(x; sigma) for one sigma, asking the driver for F. */
  *denoiseLoop(x: tf.Tensor, sigma: number): Generator<NetworkRequest, tf.Tensor, tf.Tensor> {
    const b = x.shape[0];
    const bshape = [b, ...x.shape.slice(1).map(() => 1)];
    const p = this.precondition(sigma);
    // The same float32 columns as `denoise`, so both paths round alike.
    const col = (v: number) => tf.fill(bshape, v);
    const [cIn, cSkip, cOut] = [col(p.cIn), col(p.cSkip), col(p.cOut)];
    const xin = x.mul(cIn);
    const t = tf.tensor1d(new Array<number>(b).fill(p.cNoise));
    const out = yield { x: xin, t };
    const d = tf.tidy(() => x.mul(cSkip).add(out.mul(cOut)));
    tf.dispose([xin, t, out, cIn, cSkip, cOut]);
    return d;
  }

  *loop(noise: tf.Tensor, _rng: NoiseSource): SamplerLoop {
    const sig = this.sigmas();
    let x = noise.mul(sig[0]);
    for (let i = 0; i < this.numSteps; i++) {
      const s = sig[i];
      const sNext = sig[i + 1];
      const den = yield* this.denoiseLoop(x, s);
      const d = tf.tidy(() => x.sub(den).div(s));
      const xEuler = tf.tidy(() => x.add(d.mul(sNext - s)));
      den.dispose();
      if (sNext === 0) {
        tf.dispose([d, x]);
        x = xEuler;
        continue;
      }
      const den2 = yield* this.denoiseLoop(xEuler, sNext);
      const next = tf.tidy(() => x.add(d.add(xEuler.sub(den2).div(sNext)).mul(0.5 * (sNext - s))));
      tf.dispose([den2, d, xEuler, x]);
      x = next;
    }
    return x;
  }

  toJSON(): SchedulerConfig {
    return { kind: 'edm', numSteps: this.numSteps, sigmaMin: this.sigmaMin, sigmaMax: this.sigmaMax, sigmaData: this.sigmaData, rho: this.rho, pMean: this.pMean, pStd: this.pStd };
  }
}

/**
 * Consistency Policy's sampling: its noise levels, chained jumps and the sampler names, apart from
 * its training (consistency.ts) so that runtimes that only sample (onnxruntime, the browser
 * demo) import this file alone.
 */
import { tf } from '../engine/index.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { randn, type NoiseSource, type SamplerLoop } from '../diffusion/types.js';

/** The discretisation and preconditioning the student was trained with; stored in checkpoints. */
export interface ConsistencySampling {
  /** Number of noise levels from sigmaMax down to sigmaMin (80); the terminal time 0 follows. */
  bins: number;
  sigmaMin: number;
  sigmaMax: number;
  rho: number;
  sigmaData: number;
}

/** CP's chained sampling uses bins 27 and 54 of 80 for 3 steps; other counts space them alike. */
export function chainBins(steps: number, bins: number): number[] {
  return Array.from({ length: steps - 1 }, (_, k) => Math.min(bins - 1, Math.round(((k + 1) * (bins + 1)) / steps)));
}

/** The EDM schedule over CP's noise levels (its sigmas and preconditioning). */
export function samplingEdm(c: ConsistencySampling): EDMScheduler {
  return new EDMScheduler({ numSteps: c.bins, sigmaMin: c.sigmaMin, sigmaMax: c.sigmaMax, rho: c.rho, sigmaData: c.sigmaData });
}

/** The bins noise levels from sigmaMax to sigmaMin with rho spacing, then the terminal 0. */
export function consistencySigmas(c: ConsistencySampling): number[] {
  return samplingEdm(c).sigmas();
}

export function checkSteps(c: ConsistencySampling, n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > c.bins) throw new Error(`consistency policy steps must be an integer in 1..${c.bins}, got ${n}`);
}

/** The noise levels each of `steps` chained jumps starts from (the first is sigmaMax). */
export function chainSigmas(c: ConsistencySampling, steps: number): number[] {
  checkSteps(c, steps);
  const sigmas = consistencySigmas(c);
  return [c.sigmaMax, ...chainBins(steps, c.bins).map((i) => sigmas[i])];
}

/**
 * Parses a sampler name for a consistency policy: `cp` or `cp-N` (N chained steps; CP publishes
 * 1 and 3). Returns the number of steps.
 */
export function parseConsistencySampler(name: string): number {
  const m = /^cp(?:[-:](\d+))?$/.exec(name.trim().toLowerCase());
  if (!m) throw new Error(`unknown sampler "${name}" for a consistency policy; use cp-1 or cp-3 (cp-N: N chained steps)`);
  return m[1] ? Number(m[1]) : 1;
}

/** The student's stop-time input for a jump to time 0: ln(sigmaMin) / 4, as `ctmDenoise` feeds it. */
export function consistencyStopInput(c: ConsistencySampling): number {
  return Math.log(c.sigmaMin) / 4;
}

/**
 * CP's chained sampling as a loop of network requests (`SamplerLoop`): jump from sigmaMax to time
 * 0, then for more steps re-noise the result to each chaining level and jump to 0 again. A jump
 * to 0 is the student's EDM-preconditioned denoiser (the blend G = (s/t) x + (1 - s/t) g is g at
 * s = 0); each request is its F at (c_in x, c_noise), and the driver adds the stop-time input
 * (`consistencyStopInput`). tfjs and onnxruntime drive the same loop.
 */
export function* consistencyLoop(c: ConsistencySampling, steps: number, shape: number[], noise: NoiseSource): SamplerLoop {
  const levels = chainSigmas(c, steps);
  const edm = samplingEdm(c);
  let x0: tf.Tensor | null = null;
  for (const t of levels) {
    const z = randn(noise, shape, tf);
    const xt: tf.Tensor = tf.tidy(() => (x0 ? x0.add(z.mul(t)) : z.mul(t)));
    z.dispose();
    const g: tf.Tensor = yield* edm.denoiseLoop(xt, Math.max(t, c.sigmaMin));
    xt.dispose();
    x0?.dispose();
    x0 = g;
  }
  return x0!;
}

/** Recipe building blocks shared by the CLI and the experiments: the two training noise schedules. */
import type { SchedulerConfig } from '../diffusion/types.js';

export type NoiseKind = 'ddpm' | 'edm';

/** DDPM with 100 steps and clipping, or EDM with the spec's constants (18 Heun steps to sample). */
export function noiseKind(kind: NoiseKind): SchedulerConfig {
  if (kind === 'ddpm') return { kind: 'ddpm', numTrainTimesteps: 100, clipSample: true };
  return { kind: 'edm', numSteps: 18, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 };
}

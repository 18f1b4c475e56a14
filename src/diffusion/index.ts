export * from './types.js';
export { DDPMScheduler, DiscreteSchedule, squaredCosCapV2 } from './ddpm.js';
export { DDIMScheduler } from './ddim.js';
export { EDMScheduler } from './edm.js';
import { DDPMScheduler } from './ddpm.js';
import { DDIMScheduler } from './ddim.js';
import { EDMScheduler } from './edm.js';
import type { NoiseScheduler, SchedulerConfig } from './types.js';

/**
 * Checks a stored schedule (from a checkpoint or an export) before anything is built from it:
 * the sizes are bounded so a corrupt file cannot ask for a giant table.
 */
export function validateNoiseConfig(c: unknown, source: string): void {
  const n = c as Record<string, unknown> | null;
  if (!n || typeof n !== 'object') throw new Error(`${source}: noise schedule must be an object, got ${JSON.stringify(c)}`);
  const optional = (key: string, ok: (v: number) => boolean, what: string) => {
    const v = n[key];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && ok(v))) throw new Error(`${source}: noise.${key} must be ${what}, got ${JSON.stringify(v)}`);
  };
  if (n.kind === 'ddpm' || n.kind === 'ddim') {
    optional('numTrainTimesteps', (v) => Number.isInteger(v) && v >= 2 && v <= 10000, 'an integer in 2..10000');
    if (n.kind === 'ddim') optional('numInferenceSteps', (v) => Number.isInteger(v) && v >= 1 && v <= 10000, 'an integer in 1..10000');
    if (n.clipSample !== undefined && typeof n.clipSample !== 'boolean') throw new Error(`${source}: noise.clipSample must be true or false`);
  } else if (n.kind === 'edm') {
    optional('numSteps', (v) => Number.isInteger(v) && v >= 1 && v <= 1000, 'an integer in 1..1000');
    for (const k of ['sigmaMin', 'sigmaMax', 'sigmaData', 'rho', 'pStd']) optional(k, (v) => v > 0 && v <= 1e4, 'a number in (0, 1e4]');
    optional('pMean', (v) => Math.abs(v) <= 100, 'a number in [-100, 100]');
  } else {
    throw new Error(`${source}: noise.kind must be ddpm, ddim or edm, got ${JSON.stringify(n.kind)}`);
  }
}

export function schedulerFromConfig(c: SchedulerConfig): NoiseScheduler {
  switch (c.kind) {
    case 'ddpm':
      return new DDPMScheduler(c);
    case 'ddim':
      return new DDIMScheduler(c);
    case 'edm':
      return new EDMScheduler(c);
  }
}

/**
 * Parses a sampler name as the CLI takes it: `ddpm` (100 steps), `ddim` / `ddim-10`,
 * `edm` / `edm-18`. The training schedule decides which are valid.
 */
export function parseSampler(name: string, training: 'ddpm' | 'edm'): NoiseScheduler {
  const m = /^(ddpm|ddim|edm)(?:[-:](\d+))?$/.exec(name.trim().toLowerCase());
  if (!m && /^cp(?:[-:]\d+)?$/.test(name.trim().toLowerCase())) throw new Error(`sampler "${name}" applies to consistency-policy checkpoints; for this diffusion policy use ddpm, ddim-N or edm-N`);
  if (!m) throw new Error(`unknown sampler "${name}"; use ddpm, ddim-N or edm-N`);
  const kind = m[1];
  const n = m[2] ? Number(m[2]) : undefined;
  if (training === 'edm' && kind !== 'edm') throw new Error(`sampler "${name}" needs a DDPM-trained policy; this one was trained with EDM (use edm-N)`);
  if (training === 'ddpm' && kind === 'edm') throw new Error(`sampler "${name}" needs an EDM-trained policy; this one was trained with DDPM (use ddpm or ddim-N)`);
  if (kind === 'ddpm') {
    if (n !== undefined && n !== 100) throw new Error('DDPM sampling always runs the 100 training steps; use ddim-N for fewer');
    return new DDPMScheduler();
  }
  if (kind === 'ddim') return new DDIMScheduler({ numInferenceSteps: n ?? 10 });
  return new EDMScheduler({ numSteps: n ?? 18 });
}

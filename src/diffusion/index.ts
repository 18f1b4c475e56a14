export * from './types.js';
export { DDPMScheduler, DiscreteSchedule, squaredCosCapV2 } from './ddpm.js';
export { DDIMScheduler } from './ddim.js';
export { EDMScheduler } from './edm.js';
import { DDPMScheduler } from './ddpm.js';
import { DDIMScheduler } from './ddim.js';
import { EDMScheduler } from './edm.js';
import type { NoiseScheduler, SchedulerConfig } from './types.js';

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

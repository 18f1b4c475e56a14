/**
 * Evaluation on the MuJoCo tasks (issue 18) with the same harness as PushT: receding-horizon
 * control on seeded initial states, an episode's score its highest reward (1 on success). The
 * policy observes the low-dimensional keys its training spec names (robomimic's by default),
 * concatenated per step as in training.
 */
import { loadMujoco } from '../envs/mujoco/sim.js';
import { LiftEnv } from '../envs/mujoco/lift.js';
import { parseObsSpec, ROBOMIMIC_LOWDIM_KEYS } from '../data/obs_spec.js';
import type { Policy } from '../policy/types.js';
import { evaluate, type EvalOptions, type EvalSummary, type StepObservation } from './harness.js';

/** robomimic's low-dimensional observation, as `defaultObsSpec` picks it for an HDF5 dataset. */
export const ROBOMIMIC_OBS_SPEC = ROBOMIMIC_LOWDIM_KEYS.join(',');

/** Builds a policy's per-step observation from a task observation, by its training spec. */
export function manipulationObserver(spec: string = ROBOMIMIC_OBS_SPEC): (o: unknown) => StepObservation {
  const parts = parseObsSpec(spec);
  return (o: unknown) => {
    const obs = o as Record<string, Float64Array>;
    const out: number[] = [];
    for (const p of parts) {
      const v = obs[p.key];
      if (!v) throw new Error(`observation spec names "${p.key}", which the task does not observe (it has ${Object.keys(obs).join(', ')})`);
      for (let i = p.from; i < (p.to ?? v.length); i++) out.push(v[i]);
    }
    return Float32Array.from(out);
  };
}

export interface ManipulationEvalOptions {
  seeds: number[];
  maxSteps?: number;
  obsSpec?: string;
  batchSize?: number;
  noiseSeed?: number;
  onEpisode?: EvalOptions['onEpisode'];
}

/** The Lift task's harness options; its environments are disposed when `dispose` is called. */
async function liftRun(opts: ManipulationEvalOptions) {
  const mj = await loadMujoco();
  // One environment per batch slot, reused: the harness asks for a batch's environments together
  // and is done with them before the next batch, and `reset` makes each one fresh.
  const slots = Math.max(1, Math.min(opts.batchSize ?? 25, opts.seeds.length));
  const envs: LiftEnv[] = [];
  let made = 0;
  const common = {
    makeEnv: () => {
      const i = made++ % slots;
      envs[i] ??= LiftEnv.createWith(mj);
      return envs[i];
    },
    observe: manipulationObserver(opts.obsSpec),
    seeds: opts.seeds,
    batchSize: opts.batchSize,
    noiseSeed: opts.noiseSeed,
    // robomimic's tasks act at 20 Hz.
    controlPeriodMs: 50,
    // The task's own horizon ends an episode unless a shorter limit is given.
    maxSteps: opts.maxSteps ?? Infinity,
    onEpisode: opts.onEpisode,
  };
  return { common, dispose: () => envs.forEach((e) => e.dispose()) };
}

export async function evaluateLift(policy: Policy, opts: ManipulationEvalOptions): Promise<EvalSummary> {
  const { common, dispose } = await liftRun(opts);
  try {
    return evaluate({ ...common, policy });
  } finally {
    dispose();
  }
}

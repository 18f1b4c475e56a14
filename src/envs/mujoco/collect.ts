/**
 * Scripted demonstrations of a MuJoCo task in robomimic's layout (`RobomimicDataset`, written as
 * HDF5 by `writeRobomimic`): per step the observation before the action, the action, the next
 * observation, the reward, `dones` (1 at a successful end) and the simulator state; `env_args`
 * describing the task; `mask/train` and `mask/valid` splitting the demos 90/10.
 */
import type { FrameArray, RobomimicDataset, RobomimicDemo } from '../../data/hdf5.js';
import type { ManipulationObs } from './gripper.js';
import { createManipulationEnv, manipulationTask, type DemoQuality } from './tasks.js';

export interface ManipulationCollectOptions {
  episodes: number;
  seed: number;
  quality: DemoQuality;
  /** Keep episodes that reach the horizon without success (default false: successes only, as robomimic's human demos). */
  keepFailures?: boolean;
  onEpisode?: (info: { index: number; seed: number; success: boolean; length: number }) => void;
}

export interface ManipulationCollectResult {
  dataset: RobomimicDataset;
  attempted: number;
  succeeded: number;
}

function stack(rows: Float64Array[]): FrameArray {
  const dim = rows[0].length;
  const values = new Float64Array(rows.length * dim);
  rows.forEach((r, i) => values.set(r, i * dim));
  return { values, frameShape: [dim] };
}

function stackObs(rows: ManipulationObs[]): Record<string, FrameArray> {
  return Object.fromEntries(Object.keys(rows[0]).map((k) => [k, stack(rows.map((o) => o[k as keyof ManipulationObs]))]));
}

export async function collectManipulation(task: string, opts: ManipulationCollectOptions): Promise<ManipulationCollectResult> {
  const def = manipulationTask(task);
  const env = await createManipulationEnv(task);
  const expert = def.expert(opts.quality);
  const demos: RobomimicDemo[] = [];
  let attempted = 0;
  let succeeded = 0;
  try {
    for (let seed = opts.seed; demos.length < opts.episodes; seed++) {
      attempted++;
      if (attempted > opts.episodes * 4 + 10) throw new Error(`collect: the ${opts.quality} expert failed too often (${succeeded} successes in ${attempted} attempts)`);
      expert.reset(seed);
      let o = env.reset(seed);
      const obs: ManipulationObs[] = [];
      const next: ManipulationObs[] = [];
      const actions: Float64Array[] = [];
      const states: Float64Array[] = [];
      const rewards: number[] = [];
      let success = false;
      for (;;) {
        const a = expert.act(o);
        obs.push(o);
        states.push(env.snapshot().state);
        actions.push(Float64Array.from(a));
        const r = env.step(a);
        next.push(r.observation);
        rewards.push(r.reward);
        o = r.observation;
        if (r.terminated || r.truncated) {
          success = r.terminated;
          break;
        }
      }
      opts.onEpisode?.({ index: demos.length, seed, success, length: actions.length });
      if (!success && !opts.keepFailures) continue;
      if (success) succeeded++;
      const dones = new Uint8Array(actions.length);
      if (success) dones[dones.length - 1] = 1;
      demos.push({ name: `demo_${demos.length}`, actions: stack(actions), rewards: Float64Array.from(rewards), dones, states: stack(states), obs: stackObs(obs), nextObs: stackObs(next) });
    }
  } finally {
    env.dispose();
  }
  const nValid = Math.max(demos.length >= 10 ? 1 : 0, Math.round(demos.length / 10));
  const names = demos.map((d) => d.name);
  return {
    dataset: {
      envArgs: { env_name: def.envName, type: 'onedp-mujoco', env_kwargs: { control_freq: 20, horizon: env.horizon, controller: 'mocap delta pose (5 cm, 0.5 rad)', quality: opts.quality, seed: opts.seed } },
      demos,
      masks: { train: names.slice(0, names.length - nValid), valid: names.slice(names.length - nValid) },
    },
    attempted,
    succeeded,
  };
}

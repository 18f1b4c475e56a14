/**
 * Evaluation on the MuJoCo tasks (issue 18) with the same harness as PushT: receding-horizon
 * control on seeded initial states, an episode's score its highest reward (1 on success). The
 * policy observes the low-dimensional keys its training spec names (robomimic's by default),
 * concatenated per step as in training.
 */
import { loadMujoco } from '../envs/mujoco/sim.js';
import type { ManipulationEnv } from '../envs/mujoco/gripper.js';
import { createManipulationEnv, manipulationTask } from '../envs/mujoco/tasks.js';
import { parseObsSpec, ROBOMIMIC_LOWDIM_KEYS } from '../data/obs_spec.js';
import type { AsyncPolicy, Policy } from '../policy/types.js';
import { evaluate, flatHistories, lowdimOf, measureLatency, type EvalOptions, type EvalSummary, type LatencyResult, type StepObservation } from './harness.js';
import { evaluateRealtime, type RealtimeOptions, type RealtimeSummary } from './realtime.js';

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
  /** Per-step hook (after reset and each step), e.g. to render frames (`renderManipulation(env.sim, size)`). */
  onStep?: (episode: number, env: ManipulationEnv, step: number) => void;
  /** Batch-1 latency repetitions after the episodes (default 10; 0 to skip). */
  latencyReps?: number;
  /** Real time: the world steps at 20 Hz while the policy computes (see `evaluateRealtime`). */
  realtime?: RealtimeOptions;
}

export interface ManipulationEvalResult extends EvalSummary {
  latency: LatencyResult | null;
  realtime: RealtimeSummary['realtime'] | null;
}

/**
 * The action that holds the robot still, from a policy observation: no motion, and the gripper
 * kept closing if its fingers are closed at all (on an object, they stop part way; commanding
 * their current opening would let go of it), open otherwise. The fingers are read from
 * `robot0_gripper_qpos` when the spec ends with it, as robomimic's default does; without them the
 * gripper opens.
 */
export function manipulationHold(spec: string = ROBOMIMIC_OBS_SPEC): (o: StepObservation) => number[] {
  const parts = parseObsSpec(spec);
  const last = parts[parts.length - 1];
  const readsGripper = last.key === 'robot0_gripper_qpos' && last.from === 0 && last.to === null;
  return (o: StepObservation) => {
    const v = lowdimOf(o);
    // 5 mm of the fingers' 35 mm travel: more than the open gripper's rest, less than any grasp.
    const closed = readsGripper && (v[v.length - 1] + v[v.length - 2]) / 2 > 0.005;
    return [0, 0, 0, 0, 0, 0, closed ? 1 : -1];
  };
}

/** A task's harness options; its environments are disposed when `dispose` is called. */
async function taskRun(task: string, opts: ManipulationEvalOptions) {
  const def = manipulationTask(task);
  const mj = await loadMujoco();
  // One environment per batch slot, reused: the harness asks for a batch's environments together
  // and is done with them before the next batch, and `reset` makes each one fresh.
  const slots = Math.max(1, Math.min(opts.batchSize ?? 25, opts.seeds.length));
  const envs: ManipulationEnv[] = [];
  let made = 0;
  const common = {
    makeEnv: () => {
      const i = made++ % slots;
      envs[i] ??= def.create(mj);
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
    onStep: opts.onStep,
  };
  return { common, dispose: () => envs.forEach((e) => e.dispose()) };
}

/** Evaluates a policy on a MuJoCo task (`lift`, `square`) over seeded initial states, then its batch-1 latency on the first starts' observations. */
export async function evaluateManipulation(task: string, policy: Policy, opts: ManipulationEvalOptions): Promise<ManipulationEvalResult> {
  const { common, dispose } = await taskRun(task, opts);
  try {
    const realtime = opts.realtime ? { holdAction: manipulationHold(opts.obsSpec), ...opts.realtime } : null;
    const summary: EvalSummary | RealtimeSummary = realtime ? evaluateRealtime({ ...common, policy, realtime }) : evaluate({ ...common, policy });
    const rt = realtime ? (summary as RealtimeSummary).realtime : null;
    const reps = opts.latencyReps ?? 10;
    return { ...summary, latency: reps > 0 ? latencyOn(common.makeEnv(), policy, opts.seeds, reps, common.observe) : null, realtime: rt };
  } finally {
    dispose();
  }
}

/** Batch-1 latency on real observations: the first (up to 5) starts of `seeds`, as PushT's. */
function latencyOn(env: ManipulationEnv, policy: Policy, seeds: number[], reps: number, observe: (o: unknown) => StepObservation): LatencyResult {
  const histories = seeds.slice(0, 5).map((s) => Array.from({ length: policy.nObsSteps }, () => observe(env.reset(s))));
  return measureLatency(policy, histories, reps);
}

/** `pushtLatency`'s twin: a policy's batch-1 latency on a MuJoCo task's first starts, without running episodes. */
export async function manipulationLatency(task: string, policy: Policy, seeds: number[], reps = 10, obsSpec?: string): Promise<LatencyResult> {
  const env = await createManipulationEnv(task);
  try {
    return latencyOn(env, policy, seeds, reps, manipulationObserver(obsSpec));
  } finally {
    env.dispose();
  }
}

/**
 * One episode in lockstep (the world waits for each chunk), with the policy's own noise stream:
 * the actions taken and the policy observation after each step. The browser demo and Node run
 * it on the same bundle to check that they act alike, as `pushtRollout` does for PushT.
 */
export async function manipulationRollout(task: string, policy: AsyncPolicy, seed: number, steps: number, obsSpec?: string): Promise<{ actions: number[][]; states: number[][]; success: boolean }> {
  const env = await createManipulationEnv(task);
  try {
    const observe = manipulationObserver(obsSpec);
    const first = observe(env.reset(seed));
    let hist = Array.from({ length: policy.nObsSteps }, () => first);
    const actions: number[][] = [];
    const states: number[][] = [];
    let success = false;
    while (actions.length < steps && !success) {
      const out = await policy.predict(flatHistories([{ hist }], policy.nObsSteps));
      for (const a of out.actions[0]) {
        if (actions.length >= steps || success) break;
        const r = env.step(a);
        actions.push([...a]);
        const o = observe(r.observation);
        states.push([...lowdimOf(o)]);
        hist = [...hist.slice(1), o];
        success = r.info.success;
      }
    }
    return { actions, states, success };
  } finally {
    env.dispose();
  }
}

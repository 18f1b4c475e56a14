/** Evaluation on PushT with low-dimensional observations (keypoints + agent position). */
import { PushTEnv } from '../envs/pusht.js';
import { PerturbedPushTEnv, type PerturbOptions } from '../envs/perturbed.js';
import type { Policy } from '../policy/types.js';
import { evaluate, measureLatency, type EvalOptions, type EvalSummary, type LatencyResult } from './harness.js';
import { evaluateRealtime, type RealtimeOptions, type RealtimeSummary } from './realtime.js';

/** The policy's 20-D observation: 9 block keypoints then the agent position, as in the datasets. */
export function keypointObs(obs: unknown): Float32Array {
  const o = obs as number[];
  if (!Array.isArray(o) || o.length !== 20) throw new Error(`expected a 20-D keypoint observation, got ${Array.isArray(o) ? o.length : typeof o}`);
  return Float32Array.from(o);
}

/** The agent position in a keypoint observation (its last two values). */
export function keypointAgentPosition(obs: Float32Array): [number, number] {
  return [obs[18], obs[19]];
}

export interface PushTEvalOptions {
  seeds: number[];
  batchSize?: number;
  noiseSeed?: number;
  maxSteps?: number;
  onEpisode?: EvalOptions['onEpisode'];
  /** Per-step hook (after reset and each step), e.g. to render frames. */
  onStep?: (episode: number, env: PushTEnv<'keypoints'>, step: number) => void;
  /** Batch-1 latency repetitions (0 to skip). */
  latencyReps?: number;
  /** Run in real time: the simulation advances while the policy computes. */
  realtime?: RealtimeOptions;
  /** Move the block when the agent comes close: a count (0 for the plain task) or full options. */
  perturb?: number | PerturbOptions;
}

export interface PushTEvalResult extends EvalSummary {
  latency: LatencyResult | null;
  /** The real-time settings and aggregate delays, when run in real time. */
  realtime: RealtimeSummary['realtime'] | null;
}

export function makePushTEnv(perturb: number | PerturbOptions = 0): PushTEnv<'keypoints'> {
  const p = typeof perturb === 'number' ? { count: perturb } : perturb;
  if ((p.count ?? 1) === 0) return new PushTEnv({ obsType: 'keypoints' });
  return new PerturbedPushTEnv({ obsType: 'keypoints', perturb: p });
}

/** Batch-1 latency on real observation histories from the first (up to 5) test starts. */
export function pushtLatency(policy: Policy, seeds: number[], reps = 10): LatencyResult {
  const hists = seeds.slice(0, 5).map((s) => {
    const env = new PushTEnv({ obsType: 'keypoints' });
    const o = keypointObs(env.reset(s));
    const h = new Float32Array(policy.nObsSteps * o.length);
    for (let t = 0; t < policy.nObsSteps; t++) h.set(o, t * o.length);
    return h;
  });
  return measureLatency(policy, hists, reps);
}

export function evaluatePushT(policy: Policy, opts: PushTEvalOptions): PushTEvalResult {
  const common: EvalOptions<PushTEnv<'keypoints'>> = {
    policy,
    makeEnv: () => makePushTEnv(opts.perturb),
    observe: keypointObs,
    seeds: opts.seeds,
    batchSize: opts.batchSize,
    noiseSeed: opts.noiseSeed,
    maxSteps: opts.maxSteps,
    onEpisode: opts.onEpisode,
    onStep: opts.onStep,
  };
  let summary: EvalSummary;
  let realtime: PushTEvalResult['realtime'] = null;
  if (opts.realtime) {
    const rt = evaluateRealtime({ ...common, realtime: { agentPosition: keypointAgentPosition, ...opts.realtime } });
    summary = rt;
    realtime = rt.realtime;
  } else {
    summary = evaluate(common);
  }
  const reps = opts.latencyReps ?? 10;
  const latency = reps > 0 ? pushtLatency(policy, opts.seeds, reps) : null;
  return { ...summary, latency, realtime };
}

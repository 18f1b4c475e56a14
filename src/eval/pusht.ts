/** Evaluation on PushT with low-dimensional observations (keypoints + agent position). */
import { PushTEnv } from '../envs/pusht.js';
import type { Policy } from '../policy/types.js';
import { evaluate, measureLatency, type EvalSummary, type LatencyResult } from './harness.js';

/** The policy's 20-D observation: 9 block keypoints then the agent position, as in the datasets. */
export function keypointObs(obs: unknown): Float32Array {
  const o = obs as number[];
  if (!Array.isArray(o) || o.length !== 20) throw new Error(`expected a 20-D keypoint observation, got ${Array.isArray(o) ? o.length : typeof o}`);
  return Float32Array.from(o);
}

export interface PushTEvalOptions {
  seeds: number[];
  batchSize?: number;
  noiseSeed?: number;
  onEpisode?: Parameters<typeof evaluate>[0]['onEpisode'];
  /** Batch-1 latency repetitions (0 to skip). */
  latencyReps?: number;
}

export interface PushTEvalResult extends EvalSummary {
  latency: LatencyResult | null;
}

export function evaluatePushT(policy: Policy, opts: PushTEvalOptions): PushTEvalResult {
  const summary = evaluate({
    policy,
    makeEnv: () => new PushTEnv({ obsType: 'keypoints' }),
    observe: keypointObs,
    seeds: opts.seeds,
    batchSize: opts.batchSize,
    noiseSeed: opts.noiseSeed,
    onEpisode: opts.onEpisode,
  });
  let latency: LatencyResult | null = null;
  if ((opts.latencyReps ?? 10) > 0) {
    // Real observation histories from the first test starts.
    const hists = opts.seeds.slice(0, 5).map((s) => {
      const env = new PushTEnv({ obsType: 'keypoints' });
      const o = keypointObs(env.reset(s));
      const h = new Float32Array(policy.nObsSteps * o.length);
      for (let t = 0; t < policy.nObsSteps; t++) h.set(o, t * o.length);
      return h;
    });
    latency = measureLatency(policy, hists, opts.latencyReps ?? 10);
  }
  return { ...summary, latency };
}

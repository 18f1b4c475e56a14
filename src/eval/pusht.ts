/**
 * Evaluation on PushT: state policies observe the 20-D keypoint vector, image policies the
 * 96x96 rendering (key "image") plus the agent position ("obs"), as in the datasets.
 */
import { PushTEnv, GOAL_POSE } from '../envs/pusht.js';
import { renderPushT } from '../envs/render.js';
import { PerturbedPushTEnv, type PerturbOptions } from '../envs/perturbed.js';
import type { AsyncPolicy, Policy } from '../policy/types.js';
import { evaluate, evaluateAsync, flatHistories, lowdimOf, measureLatency, measureLatencyAsync, type EvalOptions, type EvalSummary, type LatencyResult, type StepObservation } from './harness.js';
import { evaluateRealtime, evaluateRealtimeAsync, type RealtimeOptions, type RealtimeSummary } from './realtime.js';

/** The policy's 20-D observation: 9 block keypoints then the agent position, as in the datasets. */
export function keypointObs(obs: unknown): Float32Array {
  const o = obs as number[];
  if (!Array.isArray(o) || o.length !== 20) throw new Error(`expected a 20-D keypoint observation, got ${Array.isArray(o) ? o.length : typeof o}`);
  return Float32Array.from(o);
}

/** The agent position in a keypoint observation (its last two values). */
export function keypointAgentPosition(obs: StepObservation): [number, number] {
  const o = lowdimOf(obs);
  return [o[18], o[19]];
}

/** Camera key of PushT's rendering in image policies (the dataset stores it as "img"). */
export const PUSHT_CAMERA = 'image';

/** Which PushT observation a policy needs: image for camera policies, else keypoints. */
export function pushtObsType(policy: Pick<Policy, 'cameras'>): 'image' | 'keypoints' {
  const cams = policy.cameras ?? [];
  if (cams.length === 0) return 'keypoints';
  if (cams.length !== 1 || cams[0] !== PUSHT_CAMERA) throw new Error(`PushT renders one camera, "${PUSHT_CAMERA}"; this policy observes ${JSON.stringify(cams)}`);
  return 'image';
}

/**
 * Checks that PushT can feed a policy: the 20-D keypoints for a state policy, or the agent
 * position (2-D) beside the one camera for an image policy. Throws naming `source`.
 */
export function checkPushTPolicy(shape: { obsDim: number; cameras?: readonly string[] }, source: string): void {
  const image = (shape.cameras ?? []).length > 0;
  const want = image ? 2 : 20;
  const what = image ? 'the agent position (2-D) beside its camera' : 'the 20-D keypoint observation';
  if (shape.obsDim !== want) throw new Error(`${source}: policy observes ${shape.obsDim} values per step; PushT evaluation provides ${what}`);
  try {
    pushtObsType(shape);
  } catch (e) {
    throw new Error(`${source}: ${(e as Error).message}`);
  }
}

/**
 * An image policy's step observation from the state observation, with the frame rendered only
 * when read (and then kept): the harness keeps every step in its history but the policy reads
 * only To of every Ta frames, so evaluation renders a quarter of the frames.
 */
export function lazyImageObs(obs: unknown): Record<string, Float32Array | Uint8Array> {
  const s = obs as number[];
  if (!Array.isArray(s) || s.length !== 5) throw new Error('expected a PushT state observation');
  let frame: Uint8Array | null = null;
  const out = { obs: Float32Array.from([s[0], s[1]]) } as Record<string, Float32Array | Uint8Array>;
  Object.defineProperty(out, PUSHT_CAMERA, {
    enumerable: true,
    get: () => (frame ??= renderPushT({ agent: [s[0], s[1]], block: [s[2], s[3], s[4]], goal: GOAL_POSE }, 96)),
  });
  return out;
}

/** The environment's observation type and the policy's view of it. */
function observerFor(obsType: 'image' | 'keypoints'): { envObs: 'state' | 'keypoints'; observe: (obs: unknown) => StepObservation } {
  return obsType === 'image' ? { envObs: 'state', observe: lazyImageObs } : { envObs: 'keypoints', observe: keypointObs };
}

/**
 * How PushT feeds `policy`, for drivers outside the harness (the browser demo, a robot loop): the
 * environment's observation type, the policy's view of an observation, and the agent position
 * in that view (the action that holds the agent still).
 */
export function pushtObserver(policy: Pick<Policy, 'cameras'>): { envObs: 'state' | 'keypoints'; observe: (obs: unknown) => StepObservation; agentPosition: (o: StepObservation) => [number, number] } {
  const obsType = pushtObsType(policy);
  const agentPosition = obsType === 'image' ? (o: StepObservation) => [...lowdimOf(o)] as [number, number] : keypointAgentPosition;
  return { ...observerFor(obsType), agentPosition };
}

/**
 * One episode in lockstep, the world waiting for each chunk as in `onedp eval`, with the policy's
 * own noise stream (calls without a seed): the actions taken and the state after each. The
 * browser demo and Node run it on the same bundle to check that they act alike.
 */
export async function pushtRollout(policy: AsyncPolicy, seed: number, steps: number): Promise<{ actions: number[][]; states: number[][] }> {
  const { envObs, observe } = pushtObserver(policy);
  const env = new PushTEnv({ obsType: envObs });
  const first = observe(env.reset(seed));
  let hist = Array.from({ length: policy.nObsSteps }, () => first);
  const actions: number[][] = [];
  const states: number[][] = [];
  while (actions.length < steps) {
    const out = await policy.predict(flatHistories([{ hist }], policy.nObsSteps));
    for (const a of out.actions[0]) {
      if (actions.length >= steps) break;
      const r = env.step([a[0], a[1]]);
      actions.push([a[0], a[1]]);
      states.push(env.getState());
      hist = [...hist.slice(1), observe(r.observation)];
    }
  }
  return { actions, states };
}

export interface PushTEvalOptions {
  seeds: number[];
  batchSize?: number;
  noiseSeed?: number;
  maxSteps?: number;
  onEpisode?: EvalOptions['onEpisode'];
  /** Per-step hook (after reset and each step), e.g. to render frames. */
  onStep?: (episode: number, env: PushTEnv<'keypoints' | 'state'>, step: number) => void;
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

export function makePushTEnv<O extends 'keypoints' | 'image' | 'state' = 'keypoints'>(perturb: number | PerturbOptions = 0, obsType: O = 'keypoints' as O): PushTEnv<O> {
  const p = typeof perturb === 'number' ? { count: perturb } : perturb;
  if ((p.count ?? 1) === 0) return new PushTEnv({ obsType });
  return new PerturbedPushTEnv({ obsType, perturb: p });
}

/** Batch-1 latency histories: real observations from the first (up to 5) test starts. */
function latencyHistories(policy: Pick<Policy, 'cameras' | 'nObsSteps'>, seeds: number[]): StepObservation[][] {
  const { envObs, observe } = observerFor(pushtObsType(policy));
  return seeds.slice(0, 5).map((s) => {
    const env = new PushTEnv({ obsType: envObs });
    const o = observe(env.reset(s));
    return Array.from({ length: policy.nObsSteps }, () => o);
  });
}

export function pushtLatency(policy: Policy, seeds: number[], reps = 10): LatencyResult {
  return measureLatency(policy, latencyHistories(policy, seeds), reps);
}

/** What both PushT drivers share: the environment, the observer and the real-time settings. */
function pushtRun(policy: Pick<Policy, 'cameras'>, opts: PushTEvalOptions) {
  const { envObs, observe, agentPosition } = pushtObserver(policy);
  const common: Omit<EvalOptions<PushTEnv<'keypoints' | 'state'>>, 'policy'> = {
    makeEnv: () => makePushTEnv(opts.perturb, envObs),
    observe,
    seeds: opts.seeds,
    batchSize: opts.batchSize,
    noiseSeed: opts.noiseSeed,
    maxSteps: opts.maxSteps,
    onEpisode: opts.onEpisode,
    onStep: opts.onStep,
  };
  const realtime = opts.realtime ? { holdAction: agentPosition, ...opts.realtime } : null;
  return { common, realtime };
}

export function evaluatePushT(policy: Policy, opts: PushTEvalOptions): PushTEvalResult {
  const { common, realtime } = pushtRun(policy, opts);
  const summary: EvalSummary | RealtimeSummary = realtime ? evaluateRealtime({ ...common, policy, realtime }) : evaluate({ ...common, policy });
  const reps = opts.latencyReps ?? 10;
  const latency = reps > 0 ? pushtLatency(policy, opts.seeds, reps) : null;
  return { ...summary, latency, realtime: realtime ? (summary as RealtimeSummary).realtime : null };
}

/**
 * `evaluatePushT` for an asynchronous policy (an onnxruntime bundle, a policy server): the same
 * episodes, seeds and noise, ordinary or in real time.
 */
export async function evaluatePushTAsync(policy: AsyncPolicy, opts: PushTEvalOptions): Promise<PushTEvalResult> {
  const { common, realtime } = pushtRun(policy, opts);
  const summary: EvalSummary | RealtimeSummary = realtime ? await evaluateRealtimeAsync({ ...common, policy, realtime }) : await evaluateAsync({ ...common, policy });
  const reps = opts.latencyReps ?? 10;
  const latency = reps > 0 ? await measureLatencyAsync(policy, latencyHistories(policy, opts.seeds), reps) : null;
  return { ...summary, latency, realtime: realtime ? (summary as RealtimeSummary).realtime : null };
}

/**
 * Evaluating a policy the same way for every method: receding-horizon control (observe To
 * steps, predict a chunk, execute Ta actions, repeat) on seeded episodes. Episodes run in
 * lockstep batches for speed, each with its own noise generator, so an episode's result does
 * not depend on the batch it ran in. The simulation waits for the policy here, so inference takes
 * no simulated time; `evaluateRealtime` (realtime.ts) is the variant where it keeps running.
 */
import type { AsyncPolicy, Policy, ObservationBatch, PolicyOutput } from '../policy/types.js';
import { Rng } from '../util/rng.js';

/**
 * The environment surface the harness needs: PushT (2-D actions, coverage) and the MuJoCo tasks
 * (7-D actions, reward 1 on success) alike. An episode's score is its highest reward.
 */
export interface EvalEnv {
  reset(seed: number): unknown;
  step(action: number[]): {
    observation: unknown;
    reward: number;
    terminated: boolean;
    truncated: boolean;
    /**
     * `coverage`: PushT's goal coverage (tasks without one report their reward); `perturbations`:
     * how often the environment moved the task on its own (perturbed variants). Success is
     * `terminated`; `success` is declared so that every task's info fits this type.
     */
    info: { coverage?: number; perturbations?: number; success?: boolean };
  };
}

/**
 * One step's observation as the policy takes it: the low-dimensional vector (key "obs"), or
 * values per key ("obs" and one uint8 frame per camera).
 */
export type StepObservation = Float32Array | Record<string, Float32Array | Uint8Array>;

function stepRecord(o: StepObservation): Record<string, Float32Array | Uint8Array> {
  return o instanceof Float32Array ? { obs: o } : o;
}

/** The low-dimensional part ("obs") of a step observation. */
export function lowdimOf(o: StepObservation): Float32Array {
  const v = stepRecord(o).obs;
  if (!(v instanceof Float32Array)) throw new Error('step observation has no float "obs" values');
  return v;
}

/** PushT's control period: 10 Hz. */
export const CONTROL_PERIOD_MS = 100;

export interface EvalOptions<E extends EvalEnv = EvalEnv> {
  policy: Policy;
  makeEnv: () => E;
  /** Turns an environment observation into the policy's per-step observation values. */
  observe: (obs: unknown) => StepObservation;
  seeds: number[];
  /** Episodes stepped together (one batched policy call per replanning). */
  batchSize?: number;
  maxSteps?: number;
  /** Seed of the policy's noise; episode i uses Rng(noiseSeed ^ seed_i). */
  noiseSeed?: number;
  onEpisode?: (r: EpisodeResult) => void;
  /**
   * Called after each reset (step 0) and after every environment step, with the episode's index
   * in `seeds`: the hook for recording frames without the harness knowing how to render.
   */
  onStep?: (episode: number, env: E, step: number) => void;
  /** Simulated time per environment step, for `completionSeconds` (default 100 ms). */
  controlPeriodMs?: number;
}

export interface EpisodeResult {
  seed: number;
  /** Maximum reward over the episode (the reference's score). */
  score: number;
  success: boolean;
  /** Environment steps until success, or null. */
  stepsToSuccess: number | null;
  steps: number;
  finalCoverage: number;
  /**
   * Simulated seconds until success (steps x control period), or null. Here that excludes
   * inference, which the simulation waits for; in real-time evaluation it includes it.
   */
  completionSeconds: number | null;
  /** Policy calls made. */
  predictions: number;
  /** Perturbations the environment applied, when it reports them. */
  perturbations?: number;
}

export interface EvalSummary {
  episodes: EpisodeResult[];
  meanScore: number;
  stdScore: number;
  successRate: number;
  meanStepsToSuccess: number | null;
  /** Mean simulated seconds to success over the successful episodes. */
  meanCompletionSeconds: number | null;
  wallSeconds: number;
}

/** Mean and population standard deviation. */
export function meanStd(xs: number[]): [number, number] {
  if (xs.length === 0) return [NaN, NaN];
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  const v = xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length;
  return [m, Math.sqrt(v)];
}

export function summarize(episodes: EpisodeResult[], wallSeconds: number): EvalSummary {
  const [meanScore, stdScore] = meanStd(episodes.map((e) => e.score));
  const succ = episodes.filter((e) => e.success);
  return {
    episodes,
    meanScore,
    stdScore,
    successRate: succ.length / Math.max(1, episodes.length),
    meanStepsToSuccess: succ.length ? succ.reduce((a, e) => a + (e.stepsToSuccess ?? 0), 0) / succ.length : null,
    meanCompletionSeconds: succ.length ? succ.reduce((a, e) => a + (e.completionSeconds ?? 0), 0) / succ.length : null,
    wallSeconds,
  };
}

/** Simulated seconds for a step count; divided last so 37 steps read 3.7, not 3.7000000000000006. */
export function simulatedSeconds(steps: number, controlPeriodMs = CONTROL_PERIOD_MS): number {
  return (steps * controlPeriodMs) / 1000;
}

/** The per-episode noise generator, shared with the real-time harness so both draw the same noise. */
export function episodeRng(noiseSeed: number | undefined, seed: number): Rng {
  return new Rng(((noiseSeed ?? 0) ^ (seed * 2654435761)) >>> 0);
}

/** One batched policy call the episode loop asks for. */
export interface PolicyRequest {
  obs: ObservationBatch;
  rngs?: Rng[];
  seed?: number;
}

/**
 * The episode loop, written once as a generator: it yields each batched policy request and is
 * resumed with the policy's output, so the same loop serves a synchronous policy (tfjs,
 * `evaluate`) and an asynchronous one (onnxruntime, `evaluateAsync`).
 */
function* episodeLoop<E extends EvalEnv>(opts: Omit<EvalOptions<E>, 'policy'>, to: number): Generator<PolicyRequest, EvalSummary, PolicyOutput> {
  const started = performance.now();
  const { seeds } = opts;
  const batchSize = opts.batchSize ?? 25;
  const maxSteps = opts.maxSteps ?? 300;
  const results: EpisodeResult[] = [];
  for (let start = 0; start < seeds.length; start += batchSize) {
    const group = seeds.slice(start, start + batchSize);
    const envs = group.map(() => opts.makeEnv());
    const rngs = group.map((s) => episodeRng(opts.noiseSeed, s));
    const state = group.map((seed, i) => {
      const first = opts.observe(envs[i].reset(seed));
      opts.onStep?.(start + i, envs[i], 0);
      // The history starts as copies of the first observation, as the reference's wrapper does.
      return { seed, hist: Array.from({ length: to }, () => first), done: false, score: 0, success: false, stepsToSuccess: null as number | null, steps: 0, coverage: 0, predictions: 0, perturbations: undefined as number | undefined };
    });
    while (state.some((s) => !s.done)) {
      const active = state.map((s, i) => [s, i] as const).filter(([s]) => !s.done);
      const out = yield { obs: flatHistories(active.map(([s]) => s), to), rngs: active.map(([, i]) => rngs[i]) };
      active.forEach(([s, i], b) => {
        s.predictions++;
        for (const a of out.actions[b]) {
          stepEpisode(s, envs[i], a, opts, start + i, maxSteps);
          if (s.done) break;
        }
      });
    }
    for (const s of state) {
      const r = episodeResult(s, opts.controlPeriodMs);
      results.push(r);
      opts.onEpisode?.(r);
    }
  }
  results.sort((a, b) => a.seed - b.seed);
  return summarize(results, (performance.now() - started) / 1000);
}

/** Runs a loop to its end, answering its requests with a synchronous policy. */
export function drive<T>(loop: Generator<PolicyRequest, T, PolicyOutput>, policy: Policy): T {
  for (let r = loop.next(); ; ) {
    if (r.done) return r.value;
    r = loop.next(policy.predictAction(r.value.obs, { rngs: r.value.rngs, seed: r.value.seed }));
  }
}

/** Runs a loop to its end, awaiting an asynchronous policy's answers. */
export async function driveAsync<T>(loop: Generator<PolicyRequest, T, PolicyOutput>, policy: AsyncPolicy): Promise<T> {
  for (let r = loop.next(); ; ) {
    if (r.done) return r.value;
    r = loop.next(await policy.predict(r.value.obs, { rngs: r.value.rngs, seed: r.value.seed }));
  }
}

export function evaluate<E extends EvalEnv>(opts: EvalOptions<E>): EvalSummary {
  return drive(episodeLoop(opts, opts.policy.nObsSteps), opts.policy);
}

/** `evaluate` for a policy whose predictions are asynchronous (onnxruntime, a server); the same episodes. */
export function evaluateAsync<E extends EvalEnv>(opts: Omit<EvalOptions<E>, 'policy'> & { policy: AsyncPolicy }): Promise<EvalSummary> {
  return driveAsync(episodeLoop(opts, opts.policy.nObsSteps), opts.policy);
}

/** What both harnesses track per episode to report it. */
export interface EpisodeTally {
  seed: number;
  score: number;
  success: boolean;
  stepsToSuccess: number | null;
  steps: number;
  coverage: number;
  predictions: number;
  perturbations: number | undefined;
}

/** The episodes' observation histories as one policy batch: per key, (B, To, ...) values. */
export function flatHistories(rows: { hist: StepObservation[] }[], to: number): ObservationBatch {
  const data: Record<string, Float32Array | Uint8Array> = {};
  for (const [key, first] of Object.entries(stepRecord(rows[0].hist[0]))) {
    const dim = first.length;
    const flat = first instanceof Uint8Array ? new Uint8Array(rows.length * to * dim) : new Float32Array(rows.length * to * dim);
    rows.forEach((s, b) => s.hist.forEach((h, k) => {
      const v = stepRecord(h)[key];
      if (!v || v.length !== dim) throw new Error(`observation "${key}" changed size or vanished during an episode`);
      flat.set(v, (b * to + k) * dim);
    }));
    data[key] = flat;
  }
  return { batch: rows.length, data };
}

/** One environment step of an episode, tallied the same way by both harnesses; sets `done` at its end. */
export function stepEpisode<E extends EvalEnv>(
  s: EpisodeTally & { hist: StepObservation[]; done: boolean },
  env: E,
  action: number[],
  opts: Pick<EvalOptions<E>, 'observe' | 'onStep'>,
  episode: number,
  maxSteps: number,
): void {
  const r = env.step(action);
  s.steps++;
  s.score = Math.max(s.score, r.reward);
  s.coverage = r.info.coverage ?? r.reward;
  s.perturbations = r.info.perturbations;
  s.hist = [...s.hist.slice(1), opts.observe(r.observation)];
  opts.onStep?.(episode, env, s.steps);
  if (r.terminated && !s.success) {
    s.success = true;
    s.stepsToSuccess = s.steps;
  }
  if (r.terminated || r.truncated || s.steps >= maxSteps) s.done = true;
}

export function episodeResult(s: EpisodeTally, controlPeriodMs?: number): EpisodeResult {
  const r: EpisodeResult = {
    seed: s.seed,
    score: s.score,
    success: s.success,
    stepsToSuccess: s.stepsToSuccess,
    completionSeconds: s.stepsToSuccess === null ? null : simulatedSeconds(s.stepsToSuccess, controlPeriodMs),
    steps: s.steps,
    finalCoverage: s.coverage,
    predictions: s.predictions,
  };
  if (s.perturbations !== undefined) r.perturbations = s.perturbations;
  return r;
}

export interface LatencyResult {
  obsEncodingMs: number;
  actionPredictionMs: number;
  totalMs: number;
  hz: number;
  nfe: number;
}

/** Median batch-1 latency of a policy on given observation histories (as the paper reports). */
export function measureLatency(policy: Policy, histories: StepObservation[][], reps = 10): LatencyResult {
  const outs: PolicyOutput[] = [];
  for (let r = 0; r < reps + 2; r++) outs.push(policy.predictAction(flatHistories([{ hist: histories[r % histories.length] }], policy.nObsSteps), { seed: r }));
  return latencyOf(outs);
}

export async function measureLatencyAsync(policy: AsyncPolicy, histories: StepObservation[][], reps = 10): Promise<LatencyResult> {
  const outs: PolicyOutput[] = [];
  for (let r = 0; r < reps + 2; r++) outs.push(await policy.predict(flatHistories([{ hist: histories[r % histories.length] }], policy.nObsSteps), { seed: r }));
  return latencyOf(outs);
}

/** Medians over the calls after two warm-up calls. */
function latencyOf(outs: PolicyOutput[]): LatencyResult {
  const timed = outs.slice(2);
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const e = med(timed.map((o) => o.timing.obsEncodingMs));
  const a = med(timed.map((o) => o.timing.actionPredictionMs));
  return { obsEncodingMs: e, actionPredictionMs: a, totalMs: e + a, hz: 1000 / (e + a), nfe: outs[outs.length - 1].timing.nfe };
}

/** Parses "A:B" (B exclusive) or "A" seed ranges. */
export function parseSeedRange(spec: string): number[] {
  const m = /^(\d+)(?::(\d+))?$/.exec(spec.trim());
  if (!m) throw new Error(`seed range must look like A:B (B exclusive), got "${spec}"`);
  const a = Number(m[1]);
  const b = m[2] !== undefined ? Number(m[2]) : a + 1;
  if (b <= a) throw new Error(`seed range ${spec} is empty: B must be greater than A`);
  return Array.from({ length: b - a }, (_, i) => a + i);
}

/**
 * Real-time evaluation: the simulation keeps running at its control rate while the policy
 * computes, as it would on a robot.
 *
 * The model, per episode, in control periods (100 ms for PushT):
 *
 * - At time t the policy is called on the observation history ending at t. Its latency L gives a
 *   delay of d = ceil(L / period) periods (any latency above zero costs at least one period: the
 *   action meant for time t cannot be applied at t). With a compute budget B (a synchronous loop
 *   that waits inside its period for the policy), a call with L <= B costs none: its chunk acts
 *   from t on, B ms late within the period, which the model leaves out.
 * - During t .. t+d-1 the environment steps with the fill action: `previous` keeps following the
 *   previous chunk past its executed window (its remaining predicted actions, still aligned with
 *   the times they were predicted for; its last action once it runs out), `hold` commands the agent
 *   to stay where it was observed at t. Before the first chunk both hold.
 * - At t+d the chunk arrives. With `skip` (the default) it stays time-aligned: the chunk's actions
 *   are stamped t, t+1, ..., so the d stale ones are dropped and only the rest of the executed
 *   window [t, t+Ta) runs; if d >= Ta the single action stamped t+d runs (from the chunk beyond
 *   the window when the chunk is long enough, else its last). This is what the reference's
 *   real-robot evaluation does (it discards actions whose timestamps have passed). With `shift` the
 *   whole window of Ta actions runs late, from t+d to t+d+Ta-1.
 * - The next observation is taken when that window ends, so one inference is in flight at a time.
 *
 * With zero latency every chunk arrives at once and the schedule is exactly the ordinary
 * harness's: the same batched calls on the same histories with the same noise, so the same
 * episodes bit for bit.
 *
 * Latency is either measured (each call's obsEncodingMs + actionPredictionMs as the policy reports
 * them; inherently not reproducible) or a fixed cost per network evaluation, perNfeMs * nfe + obsMs,
 * which makes runs reproducible and lets one ask what a policy would score at a given speed. In
 * measured mode every call runs at batch 1, so each episode is charged what a single robot with
 * its own compute would wait: a batched call's time is neither one robot's latency nor, split
 * evenly, a fair share on hardware that runs rows in parallel.
 */
import type { AsyncPolicy, PolicyOutput } from '../policy/types.js';
import type { Rng } from '../util/rng.js';
import {
  CONTROL_PERIOD_MS,
  drive,
  driveAsync,
  type PolicyRequest,
  episodeResult,
  episodeRng,
  flatHistories,
  lowdimOf,
  stepEpisode,
  summarize,
  type EpisodeResult,
  type EpisodeTally,
  type EvalEnv,
  type EvalOptions,
  type EvalSummary,
  type StepObservation,
} from './harness.js';

export type LatencyModel =
  /** Each call's reported wall-clock (encoding + action prediction). */
  | { kind: 'measured' }
  /** perNfeMs per network evaluation the call reports, plus obsMs for encoding the observation. */
  | { kind: 'nfe'; perNfeMs: number; obsMs?: number };

/** What the agent does while a chunk is being computed. */
export type FillMode = 'previous' | 'hold';
/** How a late chunk is executed: drop its stale actions (`skip`) or run all of it late (`shift`). */
export type ChunkAlignment = 'skip' | 'shift';

export interface RealtimeOptions {
  latency: LatencyModel;
  /** Default `previous`. */
  fill?: FillMode;
  /** Default `skip`. */
  align?: ChunkAlignment;
  /**
   * The action that keeps the robot where it is, from one policy observation (for `hold`, and
   * before the first chunk arrives). Default: the last two values, the agent position at the end
   * of PushT's 20-D keypoint observation, as PushT's actions are target positions.
   */
  holdAction?: (obs: StepObservation) => number[];
  /** Untimed calls before a measured run, so one-off compilation is not charged to an episode (default 1). */
  warmupCalls?: number;
  /**
   * Milliseconds the loop waits inside a period for a call (default 0): a call within it delays
   * nothing (as `AsyncActor.actWithin`). Must be less than the control period.
   */
  budgetMs?: number;
}

export interface RealtimeEpisodeResult extends EpisodeResult {
  /** Mean latency of this episode's policy calls (ms). */
  meanLatencyMs: number;
  /** Mean delay of its chunks, in control periods. */
  meanDelayPeriods: number;
  /** Steps executed with the fill action while waiting for a chunk. */
  fillSteps: number;
}

export interface RealtimeSummary extends EvalSummary {
  episodes: RealtimeEpisodeResult[];
  realtime: {
    latency: LatencyModel;
    fill: FillMode;
    align: ChunkAlignment;
    controlPeriodMs: number;
    budgetMs: number;
    meanLatencyMs: number;
    meanDelayPeriods: number;
    /** Fraction of all environment steps spent on fill actions. */
    fillFraction: number;
  };
}

export interface RealtimeEvalOptions<E extends EvalEnv = EvalEnv> extends EvalOptions<E> {
  realtime: RealtimeOptions;
}

/** Control periods a chunk arrives after its observation (a hair of tolerance for float sums). */
export function delayPeriods(latencyMs: number, controlPeriodMs = CONTROL_PERIOD_MS, budgetMs = 0): number {
  if (!(latencyMs > budgetMs)) return 0;
  return Math.max(1, Math.ceil(latencyMs / controlPeriodMs - 1e-9));
}

export function callLatencyMs(model: LatencyModel, timing: PolicyOutput['timing']): number {
  if (model.kind === 'measured') return timing.obsEncodingMs + timing.actionPredictionMs;
  return model.perNfeMs * timing.nfe + (model.obsMs ?? 0);
}

/** Parses the CLI's `measured` or `nfe:<ms>` (optionally `nfe:<ms>+<obsMs>`). */
export function parseLatencyModel(spec: string): LatencyModel {
  const s = spec.trim();
  if (s === 'measured') return { kind: 'measured' };
  const m = /^nfe:(\d+(?:\.\d+)?)(?:\+(\d+(?:\.\d+)?))?$/.exec(s);
  if (!m) throw new Error(`latency must be measured or nfe:<ms per network evaluation>[+<ms for the observation>], got "${spec}"`);
  return m[2] !== undefined ? { kind: 'nfe', perNfeMs: Number(m[1]), obsMs: Number(m[2]) } : { kind: 'nfe', perNfeMs: Number(m[1]) };
}

/** Actions stamped from `origin` on; `end` is when the executed window closes. */
interface Plan {
  actions: number[][];
  origin: number;
  end: number;
}

interface Pending {
  actions: number[][];
  obsTime: number;
  arrival: number;
  window: number;
}

interface EpisodeState<E> extends EpisodeTally {
  index: number;
  env: E;
  rng: Rng;
  hist: StepObservation[];
  done: boolean;
  plan: Plan | null;
  pending: Pending | null;
  /** Time of the next policy call, or -1 while one is in flight. */
  nextCall: number;
  hold: number[];
  latencies: number[];
  delays: number[];
  fillSteps: number;
}

function actionAt(plan: Plan, t: number): number[] {
  const k = Math.min(Math.max(t - plan.origin, 0), plan.actions.length - 1);
  return plan.actions[k];
}

function lastTwo(step: StepObservation): [number, number] {
  const obs = lowdimOf(step);
  return [obs[obs.length - 2], obs[obs.length - 1]];
}

export function evaluateRealtime<E extends EvalEnv>(opts: RealtimeEvalOptions<E>): RealtimeSummary {
  return drive(realtimeLoop(opts, opts.policy.nObsSteps), opts.policy);
}

/** `evaluateRealtime` for an asynchronous policy (onnxruntime, a policy server): the same schedule. */
export function evaluateRealtimeAsync<E extends EvalEnv>(opts: Omit<RealtimeEvalOptions<E>, 'policy'> & { policy: AsyncPolicy }): Promise<RealtimeSummary> {
  return driveAsync(realtimeLoop(opts, opts.policy.nObsSteps), opts.policy);
}

/** The real-time episode loop, yielding each policy call (as harness.ts's episode loop does). */
function* realtimeLoop<E extends EvalEnv>(opts: Omit<RealtimeEvalOptions<E>, 'policy'>, to: number): Generator<PolicyRequest, RealtimeSummary, PolicyOutput> {
  const started = performance.now();
  const { seeds } = opts;
  const rt = opts.realtime;
  const fill = rt.fill ?? 'previous';
  const align = rt.align ?? 'skip';
  const period = opts.controlPeriodMs ?? CONTROL_PERIOD_MS;
  const holdAction = rt.holdAction ?? lastTwo;
  const budget = rt.budgetMs ?? 0;
  if (!(budget >= 0 && budget < period)) throw new Error(`real-time budgetMs must be at least 0 and less than the control period (${period} ms), got ${budget}`);
  if (rt.latency.kind === 'nfe' && !(rt.latency.perNfeMs >= 0 && (rt.latency.obsMs ?? 0) >= 0)) {
    throw new Error(`real-time latency costs must be >= 0, got ${JSON.stringify(rt.latency)}`);
  }
  const measured = rt.latency.kind === 'measured';
  const batchSize = opts.batchSize ?? 25;
  const maxSteps = opts.maxSteps ?? 300;
  const results: RealtimeEpisodeResult[] = [];
  let warmed = !measured;

  for (let start = 0; start < seeds.length; start += batchSize) {
    const group = seeds.slice(start, start + batchSize);
    const state: EpisodeState<E>[] = group.map((seed, i) => {
      const env = opts.makeEnv();
      const first = opts.observe(env.reset(seed));
      opts.onStep?.(start + i, env, 0);
      return {
        seed, index: start + i, env, rng: episodeRng(opts.noiseSeed, seed),
        hist: Array.from({ length: to }, () => first),
        done: false, score: 0, success: false, stepsToSuccess: null, steps: 0, coverage: 0, predictions: 0, perturbations: undefined,
        plan: null, pending: null, nextCall: 0, hold: holdAction(first), latencies: [], delays: [], fillSteps: 0,
      };
    });
    if (!warmed) {
      const h = flatHistories([state[0]], to);
      for (let w = 0; w < (rt.warmupCalls ?? 1); w++) yield { obs: h, seed: w };
      warmed = true;
    }

    // Every active episode steps once per tick, so an episode's step count is the tick.
    for (let t = 0; state.some((s) => !s.done); t++) {
      const callers = state.filter((s) => !s.done && s.nextCall === t);
      for (const rows of measured ? callers.map((s) => [s]) : callers.length ? [callers] : []) {
        const out = yield { obs: flatHistories(rows, to), rngs: rows.map((s) => s.rng) };
        const latency = callLatencyMs(rt.latency, out.timing);
        rows.forEach((s, b) => {
          const d = delayPeriods(latency, period, budget);
          const window = out.actions[b].length;
          s.predictions++;
          s.latencies.push(latency);
          s.delays.push(d);
          // The executed window, then the rest of the predicted chunk, all stamped from t on.
          s.pending = { actions: [...out.actions[b], ...out.chunk[b].slice(to - 1 + window)], obsTime: t, arrival: t + d, window };
          s.hold = holdAction(s.hist[to - 1]);
          s.nextCall = -1;
        });
      }
      for (const s of state) {
        if (s.done) continue;
        const p = s.pending;
        if (p && p.arrival <= t) {
          s.plan = align === 'shift' ? { actions: p.actions, origin: t, end: t + p.window } : { actions: p.actions, origin: p.obsTime, end: Math.max(p.obsTime + p.window, t + 1) };
          s.pending = null;
          s.nextCall = s.plan.end;
        }
        let a: number[];
        if (s.plan && t < s.plan.end) {
          a = actionAt(s.plan, t);
        } else {
          s.fillSteps++;
          a = fill === 'previous' && s.plan ? actionAt(s.plan, t) : s.hold;
        }
        stepEpisode(s, s.env, a, opts, s.index, maxSteps);
      }
    }
    for (const s of state) {
      const r: RealtimeEpisodeResult = {
        ...episodeResult(s, period),
        meanLatencyMs: mean(s.latencies),
        meanDelayPeriods: mean(s.delays),
        fillSteps: s.fillSteps,
      };
      results.push(r);
      opts.onEpisode?.(r);
    }
  }
  results.sort((a, b) => a.seed - b.seed);
  return summarizeRealtime(results, { latency: rt.latency, fill, align, controlPeriodMs: period, budgetMs: budget }, (performance.now() - started) / 1000);
}

/** The settings a real-time run reports beside its aggregate delays. */
export type RealtimeSettings = Pick<RealtimeSummary['realtime'], 'latency' | 'fill' | 'align' | 'controlPeriodMs' | 'budgetMs'>;

/**
 * The summary of real-time episodes (in the order given; the harness sorts them by seed), with
 * delays averaged over all policy calls: also how shards run on several threads are merged.
 */
export function summarizeRealtime(results: RealtimeEpisodeResult[], settings: RealtimeSettings, wallSeconds: number): RealtimeSummary {
  const base = summarize(results, wallSeconds);
  const calls = results.reduce((a, e) => a + e.predictions, 0);
  return {
    ...base,
    episodes: results,
    realtime: {
      ...settings,
      meanLatencyMs: results.reduce((a, e) => a + e.meanLatencyMs * e.predictions, 0) / Math.max(1, calls),
      meanDelayPeriods: results.reduce((a, e) => a + e.meanDelayPeriods * e.predictions, 0) / Math.max(1, calls),
      fillFraction: results.reduce((a, e) => a + e.fillSteps, 0) / Math.max(1, results.reduce((a, e) => a + e.steps, 0)),
    },
  };
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/**
 * Asynchronous chunk inference for a robot's control loop (as LeRobot's async inference): the
 * robot ticks at its control rate and always gets an action at once, while the next chunk is
 * requested before the current one runs out and computed meanwhile (on a policy server through
 * `RemotePolicy`, or in-process with an `OnnxPolicy`).
 *
 * Time is counted in control steps. A request made at step k carries the observation history
 * ending at k; its chunk's actions are stamped k, k+1, ... (the chunk from index To-1 on). The
 * Ta actions of the executed window are queued; the rest of the chunk is kept as spares. When
 * the reply arrives at step j > k, the window's actions stamped before j are stale and dropped,
 * as `onedp eval --realtime` does with `skip`, and the rest replace whatever older chunk was
 * queued for those steps. A step with nothing queued runs the newest chunk's spare for that
 * step (the harness's `previous` fill: the policy's own prediction past its window, while the
 * next chunk is late); with no spare either, the actor returns null and the robot holds.
 *
 * The next request goes out when fewer than `requestAhead` actions remain queued after the
 * current step. `auto` sets it from the round trips seen so far (the slowest of the last five, in
 * steps, plus one): a reply d steps away needs d - 1 queued actions to bridge the wait, and the
 * one more is margin. A fast policy thus asks just in time, with a fresh observation, and a slow
 * one asks early.
 *
 * `actWithin` is the synchronous robot loop's tick: with a compute budget (`budgetMs`), a tick
 * that sends a request waits up to that long for its reply, and a reply within the budget acts
 * at this very step (the chunk's first action, computed from this step's observation). While
 * replies keep coming within it, the next request waits until the window has run out, so the
 * actions are a lockstep evaluation's. A policy that needs longer is treated as `act` treats it. This
 * matters where a chunk's first action carries the motion: on the MuJoCo tasks' delta actions
 * at 20 Hz, always losing it fails nearly every episode even at 2 ms a chunk.
 */
import type { AsyncPolicy } from '../policy/types.js';
import { flatHistories, type StepObservation } from '../eval/harness.js';
import { Rng } from '../util/rng.js';

export interface AsyncActorOptions {
  /** The control period the robot ticks at (PushT: 100 ms). */
  controlPeriodMs?: number;
  /** Ask for the next chunk when fewer than this many actions remain queued; default `auto`. */
  requestAhead?: number | 'auto';
  /** Seed of the noise stream the policy's calls draw from (one generator, as one robot). */
  seed?: number;
  /** Called with each failed request; the actor keeps ticking and asks again. */
  onError?: (e: Error) => void;
  /** How long `actWithin` may wait for the chunk a tick asked for (ms; default 0: never wait). */
  budgetMs?: number;
}

export interface AsyncActorStats {
  /** Control steps ticked. */
  steps: number;
  /** Requests sent and replies used. */
  requests: number;
  replies: number;
  failures: number;
  /** Steps with nothing queued that ran a spare (past the window of the newest chunk). */
  spareSteps: number;
  /** Steps with neither (the robot held): before the first chunk, or when one came very late. */
  underruns: number;
  /** Actions dropped because their time had passed when their chunk arrived. */
  staleDropped: number;
  /** Round trips in control steps (arrival step - request step), and in milliseconds. */
  delaySteps: number[];
  latencyMs: number[];
}

export class AsyncActor {
  private readonly period: number;
  private readonly history: StepObservation[] = [];
  private readonly queue = new Map<number, number[]>();
  private readonly spare = new Map<number, number[]>();
  /** The request step of each queued or spare action's chunk. */
  private readonly origin = new Map<number, number>();
  private readonly rng: Rng;
  private step = -1;
  /** Bumped by `reset`, so a reply to the previous episode's request is ignored. */
  private epoch = 0;
  private inFlight: Promise<void> | null = null;
  /** The step of the request in flight, and the step `actWithin` is waiting at (null: none). */
  private requestStep = -1;
  private waitingAt: number | null = null;
  /**
   * How stale the action `act` last returned is: control steps since the observation its chunk
   * was computed from (0: from this step's own observation), null when it returned none.
   */
  actionAge: number | null = null;
  readonly stats: AsyncActorStats = { steps: 0, requests: 0, replies: 0, failures: 0, spareSteps: 0, underruns: 0, staleDropped: 0, delaySteps: [], latencyMs: [] };

  constructor(
    readonly policy: AsyncPolicy,
    private readonly opts: AsyncActorOptions = {},
  ) {
    this.period = opts.controlPeriodMs ?? 100;
    const ahead = opts.requestAhead ?? 'auto';
    if (ahead !== 'auto' && !(Number.isInteger(ahead) && ahead >= 1)) throw new Error(`AsyncActor: requestAhead must be a positive integer or "auto", got ${String(ahead)}`);
    if (!(this.period > 0)) throw new Error(`AsyncActor: controlPeriodMs must be positive, got ${this.period}`);
    const budget = opts.budgetMs ?? 0;
    if (!(budget >= 0 && budget < this.period)) throw new Error(`AsyncActor: budgetMs must be at least 0 and less than the control period (${this.period} ms), got ${budget}`);
    this.rng = new Rng(opts.seed ?? 0);
  }

  /** Actions queued from the current step on. */
  get queued(): number {
    let n = 0;
    while (this.queue.has(this.step + 1 + n)) n++;
    return n;
  }

  /**
   * The threshold in use: fixed, or from the last round trips. 0 (automatic, with a budget, when
   * the recent replies all came within it): ask only when nothing is queued for the current step,
   * so every chunk runs its whole window, as in lockstep.
   */
  get requestAhead(): number {
    const a = this.opts.requestAhead ?? 'auto';
    if (a !== 'auto') return a;
    const recent = this.stats.delaySteps.slice(-5);
    if (!recent.length) return 1;
    const worst = Math.max(...recent);
    return worst === 0 && (this.opts.budgetMs ?? 0) > 0 ? 0 : worst + 1;
  }

  /**
   * One control tick: records the observation of this step, sends the next request if it is
   * time, and returns the action for this step (null: nothing queued yet, hold).
   */
  act(observation: StepObservation): number[] | null {
    this.advance(observation);
    return this.take();
  }

  /**
   * `act` for a synchronous loop with a compute budget: when this tick sends a request, it waits
   * up to `budgetMs` for the reply, and a reply within it supplies this step's action.
   */
  async actWithin(observation: StepObservation): Promise<number[] | null> {
    this.advance(observation);
    const budget = this.opts.budgetMs ?? 0;
    const flight = this.inFlight;
    if (budget > 0 && flight && this.requestStep === this.step) {
      this.waitingAt = this.step;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([flight, new Promise<void>((r) => (timer = setTimeout(r, budget)))]);
      clearTimeout(timer);
      this.waitingAt = null;
    }
    return this.take();
  }

  /** Records this step's observation and sends the next request if it is time. */
  private advance(observation: StepObservation): void {
    this.step++;
    this.stats.steps++;
    this.history.push(observation);
    const to = this.policy.nObsSteps;
    // Before To observations exist the first one is repeated, as the harness pads an episode's start.
    while (this.history.length < to) this.history.unshift(this.history[0]);
    while (this.history.length > to) this.history.shift();
    for (const m of [this.queue, this.spare, this.origin]) for (const k of m.keys()) if (k < this.step) m.delete(k);
    // `queued` counts from the next step: this step's action is taken now.
    const ahead = this.requestAhead;
    if (!this.inFlight && (ahead === 0 ? !this.queue.has(this.step) : this.queued < ahead)) this.request();
  }

  /** The action for this step: queued, else a spare, else none (hold). */
  private take(): number[] | null {
    let a = this.queue.get(this.step) ?? null;
    if (!a) {
      a = this.spare.get(this.step) ?? null;
      if (a) this.stats.spareSteps++;
      else this.stats.underruns++;
    }
    const from = this.origin.get(this.step);
    this.actionAge = a && from !== undefined ? this.step - from : null;
    return a;
  }

  private request(): void {
    const at = this.step;
    this.requestStep = at;
    const epoch = this.epoch;
    const obs = flatHistories([{ hist: [...this.history] }], this.policy.nObsSteps);
    const t0 = performance.now();
    this.stats.requests++;
    this.inFlight = this.policy
      .predict(obs, { rngs: [this.rng] })
      .then((out) => {
        if (epoch !== this.epoch) return;
        const ms = performance.now() - t0;
        // The reply counts as arriving at the first tick after it lands (`step` has moved on by
        // then), or at its own step when that tick is still waiting for it (`actWithin`).
        const arrival = this.waitingAt === at && this.step === at ? at : this.step + 1;
        this.stats.replies++;
        this.stats.latencyMs.push(ms);
        this.stats.delaySteps.push(arrival - at);
        const chunk = out.chunk[0];
        const windowEnd = this.policy.nObsSteps - 1 + this.policy.nActionSteps;
        for (let i = this.policy.nObsSteps - 1, k = at; i < chunk.length; i++, k++) {
          const inWindow = i < windowEnd;
          if (k < arrival) {
            if (inWindow) this.stats.staleDropped++;
            continue;
          }
          this.origin.set(k, at);
          if (inWindow) {
            this.queue.set(k, chunk[i]);
            this.spare.delete(k);
          } else {
            this.spare.set(k, chunk[i]);
            this.queue.delete(k);
          }
        }
      })
      .catch((e: unknown) => {
        this.stats.failures++;
        this.opts.onError?.(e instanceof Error ? e : new Error(String(e)));
      })
      .finally(() => {
        this.inFlight = null;
      });
  }

  /** Resolves when no request is in flight (before shutting down). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  /** Forgets the history and queued actions (a new episode); a request in flight is ignored. */
  reset(): void {
    this.history.length = 0;
    this.queue.clear();
    this.spare.clear();
    this.origin.clear();
    this.actionAge = null;
    this.step = -1;
    this.requestStep = -1;
    this.waitingAt = null;
    this.epoch++;
  }
}

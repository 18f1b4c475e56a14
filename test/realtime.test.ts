import { describe, expect, it } from 'vitest';
import { evaluate, type EvalEnv } from '../src/eval/harness.js';
import { callLatencyMs, delayPeriods, evaluateRealtime, parseLatencyModel, type RealtimeOptions, type RealtimeSummary } from '../src/eval/realtime.js';
import { keypointObs } from '../src/eval/pusht.js';
import { PerturbedPushTEnv, agentGap, type PerturbedInfo } from '../src/envs/perturbed.js';
import { BLOCK_COG, PushTEnv, WALL_MAX, WALL_MIN, tCoverage, toWorld, type Pose } from '../src/envs/pusht.js';
import type { ObservationBatch, Policy, PolicyOutput } from '../src/policy/types.js';
import type { Rng } from '../src/util/rng.js';

/**
 * An environment whose observation is [time, agent x, agent y]; the agent sits on the last action
 * commanded (initially (-1, -1)). It logs every action, so a test can see what ran when.
 */
class ClockEnv implements EvalEnv {
  t = 0;
  agent: [number, number] = [-1, -1];
  log: number[][] = [];
  private successAt = Infinity;
  constructor(private readonly successAfter?: (seed: number) => number) {}
  reset(seed: number): number[] {
    this.t = 0;
    this.agent = [-1, -1];
    this.log = [];
    this.successAt = this.successAfter ? this.successAfter(seed) : Infinity;
    return this.obs();
  }
  step(a: [number, number]) {
    this.log.push([a[0], a[1]]);
    this.agent = [a[0], a[1]];
    this.t++;
    const terminated = this.t >= this.successAt;
    return { observation: this.obs(), reward: terminated ? 1 : 0, terminated, truncated: false, info: { coverage: terminated ? 1 : 0 } };
  }
  private obs(): number[] {
    return [this.t, ...this.agent];
  }
}

const OBS = (o: unknown) => Float32Array.from(o as number[]);

/**
 * Chunk action j is [1000 + t, j - (To - 1)], t being the time of the newest observation it was
 * given: every executed action names the observation it came from and its place in the chunk.
 */
class TagPolicy implements Policy {
  readonly kind = 'tag';
  readonly nObsSteps = 2;
  readonly nActionSteps = 4;
  readonly horizon = 8;
  readonly actionDim = 2;
  calls: { batch: number; obs: number[] }[] = [];
  constructor(
    private readonly nfe: number,
    private readonly reportedMs = 0,
  ) {}
  predictAction(obs: ObservationBatch | number[][][]): PolicyOutput {
    const o = obs as ObservationBatch;
    const x = o.data.obs as Float32Array;
    this.calls.push({ batch: o.batch, obs: Array.from(x) });
    const dim = x.length / (o.batch * this.nObsSteps);
    const chunk: number[][][] = [];
    for (let b = 0; b < o.batch; b++) {
      const t = x[(b * this.nObsSteps + this.nObsSteps - 1) * dim];
      chunk.push(Array.from({ length: this.horizon }, (_, j) => [1000 + t, j - (this.nObsSteps - 1)]));
    }
    return {
      actions: chunk.map((c) => c.slice(this.nObsSteps - 1, this.nObsSteps - 1 + this.nActionSteps)),
      chunk,
      timing: { obsEncodingMs: 0, actionPredictionMs: this.reportedMs, nfe: this.nfe },
    };
  }
  dispose(): void {}
}

function runClock(policy: Policy, rt: RealtimeOptions, opts: { seeds?: number[]; maxSteps?: number; batchSize?: number } = {}) {
  const envs: ClockEnv[] = [];
  const summary = evaluateRealtime({
    policy,
    makeEnv: () => {
      const e = new ClockEnv();
      envs.push(e);
      return e;
    },
    observe: OBS,
    seeds: opts.seeds ?? [0],
    maxSteps: opts.maxSteps ?? 40,
    batchSize: opts.batchSize,
    realtime: rt,
  });
  return { summary, envs };
}

/** For each chunk (by the observation time it used): the steps its actions ran at, and their indices. */
function chunksByObservation(log: number[][]): Map<number, { steps: number[]; indices: number[] }> {
  const m = new Map<number, { steps: number[]; indices: number[] }>();
  log.forEach(([tag, j], step) => {
    if (tag < 1000) return;
    const e = m.get(tag - 1000) ?? { steps: [], indices: [] };
    e.steps.push(step);
    e.indices.push(j);
    m.set(tag - 1000, e);
  });
  return m;
}

describe('real-time evaluation: latency', () => {
  for (const k of [1, 2, 3, 4, 6]) {
    it(`a policy declaring ${k} x 100 ms (k = ${k} periods) starts each chunk k periods after its observation`, () => {
      const policy = new TagPolicy(k);
      const { summary, envs } = runClock(policy, { latency: { kind: 'nfe', perNfeMs: 100 } });
      const log = envs[0].log;
      expect(log).toHaveLength(40);
      const chunks = chunksByObservation(log);
      // The next observation is taken when the window [t, t+Ta) closes, or right after the one
      // action a late chunk still gets.
      const cycle = Math.max(policy.nActionSteps, k + 1);
      // Each call saw the observation of the time it was made at (its history ends there).
      const callTimes = policy.calls.map((c) => c.obs[3]);
      expect(callTimes.slice(0, 4)).toEqual([0, cycle, 2 * cycle, 3 * cycle]);
      for (const t of callTimes.filter((t) => t + cycle <= 40)) {
        // Nothing of the chunk runs before t + k; from then to the end of its window it runs the
        // actions it planned for those times (the stale first k are skipped).
        expect(chunks.get(t)!.steps[0], `chunk observed at ${t}`).toBe(t + k);
        expect(log.slice(t + k, t + cycle)).toEqual(Array.from({ length: cycle - k }, (_, i) => [1000 + t, k + i]));
      }
      // Before the first chunk arrives the agent holds its start position.
      expect(log.slice(0, k)).toEqual(Array.from({ length: k }, () => [-1, -1]));
      expect(summary.episodes[0].meanDelayPeriods).toBe(k);
      expect(summary.episodes[0].meanLatencyMs).toBe(100 * k);
      expect(summary.realtime.meanDelayPeriods).toBe(k);
    });
  }

  it('with shift alignment the whole window runs late, first action k periods after the observation', () => {
    const k = 2;
    const policy = new TagPolicy(k);
    const { envs } = runClock(policy, { latency: { kind: 'nfe', perNfeMs: 100 }, align: 'shift' });
    const chunks = chunksByObservation(envs[0].log);
    const callTimes = policy.calls.map((c) => c.obs[3]);
    expect(callTimes.slice(0, 3)).toEqual([0, 6, 12]);
    for (const t of callTimes.slice(0, 3)) {
      expect(chunks.get(t)!.steps[0]).toBe(t + k);
      expect(envs[0].log.slice(t + k, t + k + 4)).toEqual([0, 1, 2, 3].map((j) => [1000 + t, j]));
    }
  });

  it('measured latency uses the reported wall clock of each call, at batch 1', () => {
    const policy = new TagPolicy(1, 250);
    const { summary, envs } = runClock(policy, { latency: { kind: 'measured' }, warmupCalls: 0 }, { seeds: [0, 1, 2], batchSize: 3 });
    expect(policy.calls.every((c) => c.batch === 1)).toBe(true);
    for (const e of envs) expect(chunksByObservation(e.log).get(0)!.steps[0]).toBe(3);
    expect(summary.episodes.map((e) => e.meanDelayPeriods)).toEqual([3, 3, 3]);
  });

  it('turns milliseconds into whole control periods', () => {
    expect(delayPeriods(0)).toBe(0);
    expect(delayPeriods(0.5)).toBe(1);
    expect(delayPeriods(100)).toBe(1);
    expect(delayPeriods(0.1 * 3 * 1000)).toBe(3); // 300.00000000000006
    expect(delayPeriods(100.5)).toBe(2);
    expect(delayPeriods(250, 50)).toBe(5);
    // A call within the loop's compute budget costs no period; past it, whole periods as before.
    expect(delayPeriods(20, 50, 25)).toBe(0);
    expect(delayPeriods(25, 50, 25)).toBe(0);
    expect(delayPeriods(26, 50, 25)).toBe(1);
    expect(delayPeriods(120, 50, 25)).toBe(3);
    expect(callLatencyMs({ kind: 'nfe', perNfeMs: 30, obsMs: 5 }, { obsEncodingMs: 99, actionPredictionMs: 99, nfe: 10 })).toBe(305);
    expect(callLatencyMs({ kind: 'measured' }, { obsEncodingMs: 2, actionPredictionMs: 40, nfe: 10 })).toBe(42);
    expect(parseLatencyModel('measured')).toEqual({ kind: 'measured' });
    expect(parseLatencyModel('nfe:12.5')).toEqual({ kind: 'nfe', perNfeMs: 12.5 });
    expect(parseLatencyModel('nfe:10+3')).toEqual({ kind: 'nfe', perNfeMs: 10, obsMs: 3 });
    for (const bad of ['', 'nfe', 'nfe:', 'nfe:-1', 'nfe:x', 'fast', 'nfe:1+']) expect(() => parseLatencyModel(bad)).toThrow(/latency must be measured or nfe:/);
  });
});

describe('real-time evaluation: a compute budget inside the period', () => {
  it('runs a call within the budget as lockstep (every chunk from its own observation), and a slower one as without a budget', () => {
    const fast = runClock(new TagPolicy(2), { latency: { kind: 'nfe', perNfeMs: 10 }, budgetMs: 25 });
    const lock = runClock(new TagPolicy(2), { latency: { kind: 'nfe', perNfeMs: 0 } });
    expect(fast.envs[0].log).toEqual(lock.envs[0].log);
    expect(fast.summary.realtime).toMatchObject({ budgetMs: 25, meanDelayPeriods: 0, fillFraction: 0 });
    // Chunk j's first action runs at the step of its observation.
    for (const [t, c] of chunksByObservation(fast.envs[0].log)) expect(c.steps[0]).toBe(t);
    const slow = runClock(new TagPolicy(2), { latency: { kind: 'nfe', perNfeMs: 30 }, budgetMs: 25 });
    const none = runClock(new TagPolicy(2), { latency: { kind: 'nfe', perNfeMs: 30 } });
    expect(slow.envs[0].log).toEqual(none.envs[0].log);
    expect(slow.summary.realtime.meanDelayPeriods).toBe(1);
    for (const bad of [-1, 100, NaN]) expect(() => runClock(new TagPolicy(2), { latency: { kind: 'measured' }, budgetMs: bad })).toThrow(/budgetMs must be at least 0 and less than the control period \(100 ms\)/);
  });
});

describe('real-time evaluation: filling the gap', () => {
  const k = 2;
  it('previous keeps following the last chunk past its window; hold stays where the agent was observed', () => {
    const prev = runClock(new TagPolicy(k), { latency: { kind: 'nfe', perNfeMs: 100 }, fill: 'previous' }).envs[0].log;
    const hold = runClock(new TagPolicy(k), { latency: { kind: 'nfe', perNfeMs: 100 }, fill: 'hold' }).envs[0].log;
    // First gap: no chunk yet, both hold the start.
    expect(prev.slice(0, 2)).toEqual([[-1, -1], [-1, -1]]);
    expect(hold.slice(0, 2)).toEqual([[-1, -1], [-1, -1]]);
    // Chunk 0 runs steps 2-3 (its actions for times 2 and 3); the next observation is at 4.
    expect(prev.slice(2, 4)).toEqual([[1000, 2], [1000, 3]]);
    expect(hold.slice(2, 4)).toEqual([[1000, 2], [1000, 3]]);
    // While chunk 4 is computed: chunk 0's actions for times 4 and 5, or the agent's position at 4.
    expect(prev.slice(4, 6)).toEqual([[1000, 4], [1000, 5]]);
    expect(hold.slice(4, 6)).toEqual([[1000, 3], [1000, 3]]);
    expect(prev[6]).toEqual([1004, 2]);
    expect(hold[6]).toEqual([1004, 2]);
  });

  it('previous holds the last action of a chunk that has run out', () => {
    // Chunks reach 6 steps ahead (horizon 8, To 2); a 9-period delay outlasts them.
    const log = runClock(new TagPolicy(9), { latency: { kind: 'nfe', perNfeMs: 100 }, fill: 'previous' }).envs[0].log;
    // Chunk 0 arrives at 9 (action for time 9 is beyond its end: its last, index 6), next call at 10.
    expect(log[9]).toEqual([1000, 6]);
    expect(log.slice(10, 19)).toEqual(Array.from({ length: 9 }, () => [1000, 6]));
    expect(log[19]).toEqual([1010, 6]);
  });
});

/** A noisy policy that chases the block: stochastic, so any change in noise or schedule shows. */
class ChaserPolicy implements Policy {
  readonly kind = 'chaser';
  readonly nObsSteps = 2;
  readonly nActionSteps = 8;
  readonly horizon = 16;
  readonly actionDim = 2;
  calls: { batch: number; obs: number[] }[] = [];
  constructor(private readonly nfe = 10) {}
  predictAction(obs: ObservationBatch | number[][][], opts: { rngs?: Rng[] } = {}): PolicyOutput {
    const o = obs as ObservationBatch;
    const x = o.data.obs as Float32Array;
    this.calls.push({ batch: o.batch, obs: Array.from(x) });
    const dim = 20;
    const chunk: number[][][] = [];
    for (let b = 0; b < o.batch; b++) {
      const cur = x.subarray((b * 2 + 1) * dim, (b * 2 + 2) * dim);
      const [bx, by] = [cur[16], cur[17]]; // the centre-of-gravity keypoint
      let [ax, ay] = [cur[18], cur[19]];
      const rng = opts.rngs![b];
      chunk.push(
        Array.from({ length: this.horizon }, () => {
          ax += 0.3 * (bx - ax) + 15 * rng.normal();
          ay += 0.3 * (by - ay) + 15 * rng.normal();
          return [ax, ay];
        }),
      );
    }
    return { actions: chunk.map((c) => c.slice(1, 9)), chunk, timing: { obsEncodingMs: 1, actionPredictionMs: 1, nfe: this.nfe } };
  }
  dispose(): void {}
}

function withoutRealtimeFields(e: object): object {
  const r: Record<string, unknown> = { ...e };
  for (const k of ['meanLatencyMs', 'meanDelayPeriods', 'fillSteps']) delete r[k];
  return r;
}

describe('real-time evaluation with zero delay', () => {
  it('reproduces the ordinary harness exactly on PushT (same calls, same episodes, same states)', () => {
    const run = (realtime: boolean, perturb: number) => {
      const policy = new ChaserPolicy();
      const states: number[][][] = [];
      const common = {
        policy,
        makeEnv: () => (perturb ? new PerturbedPushTEnv({ obsType: 'keypoints', perturb: { count: perturb } }) : new PushTEnv({ obsType: 'keypoints' })),
        observe: keypointObs,
        seeds: [3, 4, 5, 6, 7],
        batchSize: 3,
        maxSteps: 70,
        noiseSeed: 11,
        onStep: (i: number, env: PushTEnv<'keypoints'>) => void (states[i] ??= []).push(env.getState()),
      };
      const summary = realtime ? evaluateRealtime({ ...common, realtime: { latency: { kind: 'nfe', perNfeMs: 0 } } }) : evaluate(common);
      return { summary, calls: policy.calls, states };
    };
    for (const perturb of [0, 2]) {
      const a = run(false, perturb);
      const b = run(true, perturb);
      expect(b.calls).toEqual(a.calls);
      expect(b.states).toEqual(a.states);
      expect(b.summary.episodes.map(withoutRealtimeFields)).toEqual(a.summary.episodes);
      const rt = b.summary as RealtimeSummary;
      expect(rt.episodes.every((e) => e.fillSteps === 0 && e.meanDelayPeriods === 0)).toBe(true);
      expect(b.summary.meanScore).toBe(a.summary.meanScore);
      expect(a.states[0]).toHaveLength(71);
      if (perturb) expect(a.summary.episodes.some((e) => (e.perturbations ?? 0) > 0)).toBe(true);
    }
  });

  it('matches on episodes that end at different times, and reports completion time', () => {
    const run = (realtime: boolean) => {
      const policy = new TagPolicy(5);
      const common = { policy, makeEnv: () => new ClockEnv((seed) => 5 + 3 * seed), observe: OBS, seeds: [0, 1, 2, 3, 4, 5, 6], batchSize: 4, maxSteps: 30 };
      const summary = realtime ? evaluateRealtime({ ...common, realtime: { latency: { kind: 'nfe', perNfeMs: 0 } } }) : evaluate(common);
      return { summary, calls: policy.calls };
    };
    const a = run(false);
    const b = run(true);
    expect(b.calls).toEqual(a.calls);
    expect(a.calls.map((c) => c.batch)).toEqual([4, 4, 2, 1, 3, 3, 3, 3, 3, 1]);
    expect(b.summary.episodes.map((e) => [e.stepsToSuccess, e.completionSeconds])).toEqual(a.summary.episodes.map((e) => [e.stepsToSuccess, e.completionSeconds]));
    expect(a.summary.episodes.map((e) => e.completionSeconds)).toEqual([0.5, 0.8, 1.1, 1.4, 1.7, 2, 2.3]);
    expect(a.summary.meanCompletionSeconds).toBeCloseTo(1.4, 12);
    expect(b.summary.meanCompletionSeconds).toBe(a.summary.meanCompletionSeconds);
  });

  it('latency makes the same episodes take longer in simulated time', () => {
    const run = (perNfeMs: number) =>
      evaluateRealtime({ policy: new TagPolicy(3), makeEnv: () => new ClockEnv(() => 1e9), observe: OBS, seeds: [0], maxSteps: 30, realtime: { latency: { kind: 'nfe', perNfeMs } } });
    expect(run(0).episodes[0].fillSteps).toBe(0);
    expect(run(100).episodes[0].fillSteps).toBeGreaterThan(0);
    expect(run(100).realtime.fillFraction).toBeCloseTo(3 / 4, 1);
  });
});

/**
 * Steers the agent at the block's centre of gravity, so it reaches the block and perturbations
 * fire; with `stopWhilePerturbed` the agent halts where it is while the block is being moved.
 */
function chase(env: PerturbedPushTEnv, steps: number, stopWhilePerturbed = false): { states: number[][]; infos: PerturbedInfo[] } {
  const states: number[][] = [];
  const infos: PerturbedInfo[] = [];
  let halt: [number, number] | null = null;
  for (let i = 0; i < steps; i++) {
    const last = infos[infos.length - 1];
    if (!stopWhilePerturbed || !last?.perturbing) halt = null;
    else halt ??= env.agentPos();
    const r = env.step(halt ?? toWorld(env.blockPose(), BLOCK_COG));
    states.push(env.getState());
    infos.push(r.info);
    if (r.terminated) break;
  }
  return { states, infos };
}

describe('perturbed PushT', () => {
  const cogOf = (p: Pose) => toWorld(p, BLOCK_COG);

  it('is deterministic per seed, and different seeds move the block differently', () => {
    const run = (seed: number) => {
      const env = new PerturbedPushTEnv({ perturb: { count: 2 } });
      env.reset(seed);
      const r = chase(env, 150);
      return { ...r, events: env.perturbationEvents() };
    };
    const a = run(5);
    const b = run(5);
    expect(b.states).toEqual(a.states);
    expect(b.events).toEqual(a.events);
    expect(a.events.length).toBeGreaterThan(0);
    const c = run(6);
    expect(c.events[0].to).not.toEqual(a.events[0].to);
  });

  it('moves the block 40-100 units with a 15-45 degree turn, inside the walls and off the goal', () => {
    let fired = 0;
    for (let seed = 0; seed < 8; seed++) {
      const env = new PerturbedPushTEnv({ perturb: { count: 2 } });
      env.reset(seed);
      const { states } = chase(env, 120, true);
      for (const e of env.perturbationEvents()) {
        fired++;
        const [f, t] = [cogOf(e.from), cogOf(e.to)];
        const d = Math.hypot(t[0] - f[0], t[1] - f[1]);
        expect(d).toBeGreaterThanOrEqual(40 - 1e-9);
        expect(d).toBeLessThanOrEqual(100 + 1e-9);
        const turn = Math.abs(e.to[2] - e.from[2]);
        expect(turn).toBeGreaterThanOrEqual(Math.PI / 12 - 1e-9);
        expect(turn).toBeLessThanOrEqual(Math.PI / 4 + 1e-9);
        expect(tCoverage(e.to)).toBeLessThanOrEqual(0.5);
        for (const p of [[-60, 0], [60, 0], [15, 120], [-15, 120]] as const) {
          const [x, y] = toWorld(e.to, p);
          expect(x).toBeGreaterThan(WALL_MIN);
          expect(y).toBeGreaterThan(WALL_MIN);
          expect(x).toBeLessThan(WALL_MAX);
          expect(y).toBeLessThan(WALL_MAX);
        }
        // With the agent halted, the block ends the 4-step slide where the perturbation put it.
        const after = states[e.step + 4 - 1];
        const moved = cogOf([after[2], after[3], after[4]]);
        expect(Math.hypot(moved[0] - t[0], moved[1] - t[1])).toBeLessThan(1);
      }
    }
    expect(fired).toBeGreaterThanOrEqual(6);
  });

  it('fires when the agent comes close, at most the configured count, and reports it', () => {
    for (const count of [0, 1, 2]) {
      for (let seed = 0; seed < 4; seed++) {
        const env = new PerturbedPushTEnv({ perturb: { count } });
        env.reset(seed);
        const { infos } = chase(env, 300);
        const events = env.perturbationEvents();
        expect(events.length).toBeLessThanOrEqual(count);
        if (count > 0) expect(events.length).toBeGreaterThanOrEqual(1);
        expect(infos[infos.length - 1].perturbations).toBe(events.length);
        if (events.length === 2) expect(events[1].step).toBeGreaterThanOrEqual(events[0].step + 4 + 30);
      }
    }
  });

  it('does nothing until the agent is near the block', () => {
    const env = new PerturbedPushTEnv({ perturb: { count: 2 } });
    env.resetTo([50, 50, 350, 350, 0]);
    const plain = new PushTEnv();
    plain.resetTo([50, 50, 350, 350, 0]);
    for (let i = 0; i < 20; i++) {
      env.step([60, 60]);
      plain.step([60, 60]);
    }
    expect(env.perturbationEvents()).toHaveLength(0);
    expect(env.getState()).toEqual(plain.getState());
    expect(agentGap(env.agentPos(), env.blockPose())).toBeGreaterThan(30);
  });
});

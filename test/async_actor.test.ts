/**
 * AsyncActor, the robot-side chunk-ahead loop: the next chunk is requested before the executed
 * window runs out, a late reply's stale actions are dropped and the rest are used at the steps
 * they were predicted for, a chunk that does not come is bridged with the last one's spares,
 * failures are reported and retried, and a reset ignores the old episode's reply; with a compute
 * budget, a tick waits for the chunk it asked for and acts on it at once.
 * Time is driven by hand (ticks and replies), so nothing depends on the machine's speed.
 */
import { describe, expect, it } from 'vitest';
import { AsyncActor } from '../src/serve/async_actor.js';
import type { AsyncPolicy, ObservationBatch, PolicyOutput } from '../src/policy/types.js';

const TO = 2;
const TA = 8;
const H = 16;

/** A policy whose replies the test releases; chunk value [requestTag * 100 + i, obs] at index i. */
class ManualPolicy implements AsyncPolicy {
  readonly kind = 'manual';
  readonly nObsSteps = TO;
  readonly nActionSteps = TA;
  readonly horizon = H;
  readonly actionDim = 2;
  readonly pending: { obs: ObservationBatch; resolve: (o: PolicyOutput) => void; reject: (e: Error) => void }[] = [];
  predict(obs: ObservationBatch | number[][][]): Promise<PolicyOutput> {
    return new Promise((resolve, reject) => this.pending.push({ obs: obs as ObservationBatch, resolve, reject }));
  }
  /** Answers the oldest request, tagged `tag`. */
  async reply(tag: number): Promise<void> {
    const p = this.pending.shift()!;
    const last = (p.obs.data.obs as Float32Array)[TO - 1];
    const chunk = Array.from({ length: H }, (_, i) => [tag * 100 + i, last]);
    p.resolve({ actions: [chunk.slice(TO - 1, TO - 1 + TA)], chunk: [chunk], timing: { obsEncodingMs: 0, actionPredictionMs: 1, nfe: 1 } });
    await new Promise((r) => setTimeout(r, 0));
  }
  dispose(): void {}
}

const obsAt = (k: number) => Float32Array.from([k]);

describe('AsyncActor', () => {
  it('drops the stale actions of a late chunk, uses the rest at their steps, asks again before the window runs out, and bridges with spares', async () => {
    const p = new ManualPolicy();
    const actor = new AsyncActor(p);
    // Step 0 asks at once; the reply takes three steps.
    expect(actor.act(obsAt(0))).toBeNull();
    expect(actor.actionAge).toBeNull();
    expect(p.pending).toHaveLength(1);
    // The history is padded with the first observation, as the harness pads an episode's start.
    expect(Array.from(p.pending[0].obs.data.obs as Float32Array)).toEqual([0, 0]);
    expect(actor.act(obsAt(1))).toBeNull();
    expect(actor.act(obsAt(2))).toBeNull();
    expect(p.pending).toHaveLength(1);
    await p.reply(1);
    // Arrives for step 3: the window's actions stamped 0..2 are stale; step 3 takes chunk index To-1+3.
    expect(actor.act(obsAt(3))).toEqual([104, 0]);
    // That action came from the observation of step 0: three steps stale.
    expect(actor.actionAge).toBe(3);
    expect(actor.stats.staleDropped).toBe(3);
    expect(actor.stats.delaySteps).toEqual([3]);
    expect(actor.requestAhead).toBe(4);
    // The window covers steps 3..7; the next request goes out when fewer than 4 remain after a step.
    const got: (number[] | null)[] = [];
    const ages: (number | null)[] = [];
    let askedAt = -1;
    for (let k = 4; k <= 16; k++) {
      got.push(actor.act(obsAt(k)));
      ages.push(actor.actionAge);
      if (askedAt < 0 && p.pending.length) askedAt = k;
      if (k === askedAt + 2) await p.reply(2);
    }
    expect(askedAt).toBe(4);
    // Steps 4..6 from the first window; the second reply (asked at 4) lands for step 7 and its
    // window runs 7..11; the third request, asked at step 8, never returns, so steps 12..16 run
    // the second chunk's spares (indices 9..13) instead of holding.
    expect(got.map((a) => a![0])).toEqual([105, 106, 107, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213]);
    // Steps 4..6 run the chunk asked at 0, steps 7..16 the one asked at 4 (spares included).
    expect(ages).toEqual([4, 5, 6, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    // The second request carried the history ending at step 4.
    expect(got[3]![1]).toBe(4);
    expect(actor.stats).toMatchObject({ requests: 3, replies: 2, underruns: 3, spareSteps: 5, staleDropped: 6 });
  });

  it('a failed request is reported and asked again; reset ignores the old episode\'s reply', async () => {
    const p = new ManualPolicy();
    const errors: string[] = [];
    const actor = new AsyncActor(p, { requestAhead: 2, onError: (e) => errors.push(e.message) });
    actor.act(obsAt(0));
    p.pending.shift()!.reject(new Error('server gone'));
    await new Promise((r) => setTimeout(r, 0));
    expect(errors).toEqual(['server gone']);
    expect(actor.stats.failures).toBe(1);
    expect(actor.act(obsAt(1))).toBeNull();
    expect(p.pending).toHaveLength(1);
    actor.reset();
    await p.reply(7);
    // The reply belonged to the old episode: nothing queued, and the new episode asks afresh.
    expect(actor.act(obsAt(0))).toBeNull();
    expect(p.pending).toHaveLength(1);
    await p.reply(8);
    expect(actor.act(obsAt(1))).toEqual([802, 0]);
    await actor.idle();
    expect(() => new AsyncActor(p, { requestAhead: 0 })).toThrow(/requestAhead must be a positive integer/);
  });

  it('actWithin: a reply within the budget acts at its own step, as lockstep; a later one as act', async () => {
    const p = new ManualPolicy();
    const actor = new AsyncActor(p, { controlPeriodMs: 50, budgetMs: 40 });
    // The tick asks, the reply lands while it waits: the chunk's first action is this step's.
    const first = actor.actWithin(obsAt(0));
    await p.reply(1);
    expect(await first).toEqual([101, 0]);
    expect(actor.actionAge).toBe(0);
    expect(actor.stats.delaySteps).toEqual([0]);
    expect(actor.stats.staleDropped).toBe(0);
    expect(actor.stats.underruns).toBe(0);
    // With every reply in time, the next request goes out when the window has run out: all 8
    // actions of each chunk run, as in lockstep.
    expect(actor.requestAhead).toBe(0);
    for (let k = 1; k < 8; k++) expect(await actor.actWithin(obsAt(k))).toEqual([101 + k, 0]);
    expect(p.pending).toHaveLength(0);
    const ninth = actor.actWithin(obsAt(8));
    expect(p.pending).toHaveLength(1);
    expect(Array.from(p.pending[0].obs.data.obs as Float32Array)).toEqual([7, 8]);
    await p.reply(2);
    expect(await ninth).toEqual([201, 8]);
    // Ticks that send nothing do not wait: the action comes before any timer fires.
    const quick = await Promise.race([actor.actWithin(obsAt(9)), new Promise<'waited'>((r) => setTimeout(() => r('waited'), 0))]);
    expect(quick).toEqual([202, 8]);

    // Past the budget the tick goes on without the chunk, which then counts from the next tick.
    const slow = new AsyncActor(p, { controlPeriodMs: 50, budgetMs: 5 });
    expect(await slow.actWithin(obsAt(0))).toBeNull();
    expect(slow.stats.underruns).toBe(1);
    await p.reply(3);
    expect(await slow.actWithin(obsAt(1))).toEqual([302, 0]);
    expect(slow.stats.delaySteps).toEqual([1]);
    expect(slow.stats.staleDropped).toBe(1);
    // Plain act never waits, whatever the budget.
    const plain = new AsyncActor(p, { controlPeriodMs: 50, budgetMs: 40 });
    expect(plain.act(obsAt(0))).toBeNull();
    await p.reply(4);
    expect(plain.act(obsAt(1))).toEqual([402, 0]);
    for (const bad of [-1, 50, NaN]) expect(() => new AsyncActor(p, { controlPeriodMs: 50, budgetMs: bad })).toThrow(/budgetMs must be at least 0 and less than the control period \(50 ms\)/);
  });
});

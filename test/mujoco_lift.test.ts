/**
 * Lift on MuJoCo (issue 18's first task): the cube rests on the table without drift; a scripted
 * grasp (above the cube, yaw aligned, down, close, up) lifts it and counts as success, while
 * closing beside it does not; an episode is deterministic for its seed; snapshot/restore
 * continues exactly as the uninterrupted run; bad actions are one clear error. The scripted
 * experts: ph succeeds on at least 95 of 100 seeds, mh (slower, noisy, hesitant, regrasping) on
 * clearly fewer and in longer episodes; their demonstrations, written as robomimic HDF5, replay
 * from their stored simulator states.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LiftEnv, TABLE_TOP, CUBE_HALF } from '../src/envs/mujoco/lift.js';
import { LiftExpert, foldQuarterTurn, yawOf, type DemoQuality } from '../src/envs/mujoco/lift_expert.js';
import { collectManipulation } from '../src/envs/mujoco/collect.js';
import { readRobomimic, writeRobomimic } from '../src/data/hdf5.js';
import { onedp } from './helpers/cli.js';
import { evaluateManipulation, manipulationHold, manipulationObserver } from '../src/eval/manipulation.js';
import { renderManipulation } from '../src/envs/mujoco/render.js';
import type { ObservationBatch, Policy, PolicyOutput } from '../src/policy/types.js';

/**
 * A reactive Lift controller as a policy of the harness (one step a chunk), on Lift's 19-D
 * observation: align above the cube, descend, close, lift once the fingers hold it.
 */
class OraclePolicy implements Policy {
  readonly kind = 'oracle';
  readonly nObsSteps = 1;
  readonly nActionSteps = 1;
  readonly horizon = 1;
  readonly actionDim = 7;
  constructor(private readonly mode: 'oracle' | 'open' = 'oracle') {}
  predictAction(obs: ObservationBatch | number[][][]): PolicyOutput {
    const b = obs as ObservationBatch;
    const flat = b.data.obs as Float32Array;
    const actions = Array.from({ length: b.batch }, (_, i) => [this.act(flat.subarray(i * 19, (i + 1) * 19))]);
    return { actions, chunk: actions, timing: { obsEncodingMs: 0, actionPredictionMs: 0, nfe: 1 } };
  }
  private act(o: Float32Array): number[] {
    if (this.mode === 'open') return [0, 0, 0, 0, 0, 0, -1];
    const cube = [o[0], o[1], o[2]];
    const eef = [o[10], o[11], o[12]];
    const dyaw = foldQuarterTurn(yawOf(o, 3) - yawOf(o, 13));
    const to = (t: number[], grip: number) => [...t.map((v, i) => Math.max(-1, Math.min(1, (v - eef[i]) / 0.05))), 0, 0, Math.max(-1, Math.min(1, dyaw / 0.5)), grip];
    const holding = o[17] > 0.005 && o[18] > 0.005 && Math.abs(cube[2] - eef[2]) < 0.02;
    if (holding) return to([eef[0], eef[1], eef[2] + 0.05], 1);
    if (Math.hypot(cube[0] - eef[0], cube[1] - eef[1]) > 0.008 || Math.abs(dyaw) > 0.05) return to([cube[0], cube[1], cube[2] + 0.06], -1);
    if (eef[2] - cube[2] > 0.008) return to(cube, -1);
    return to(cube, 1);
  }
  dispose(): void {}
}

let env: LiftEnv;
beforeAll(async () => {
  env = await LiftEnv.create();
});
afterAll(() => env?.dispose());

/** The cube's yaw, folded to (-pi/4, pi/4]: the grasp is 4-fold symmetric. */
const cubeYaw = (object: Float64Array) => foldQuarterTurn(yawOf(object, 3));

/** A scripted grasp: steer the gripper to each target in turn; `offset` moves every target sideways. */
function scriptedLift(e: LiftEnv, seed: number, offset = 0): { success: boolean; maxHeight: number; actions: number[][] } {
  let o = e.reset(seed);
  const actions: number[][] = [];
  let success = false;
  let maxHeight = 0;
  const go = (target: (o: ReturnType<LiftEnv['observation']>) => number[], grip: number, n: number) => {
    for (let k = 0; k < n; k++) {
      const t = target(o);
      const eef = o.robot0_eef_pos;
      const dyaw = cubeYaw(o.object) - yawOf(o.robot0_eef_quat);
      const a = [...[0, 1, 2].map((i) => Math.max(-1, Math.min(1, (t[i] - eef[i]) / 0.05))), 0, 0, Math.max(-1, Math.min(1, dyaw / 0.5)), grip];
      const r = e.step(a);
      actions.push(a);
      o = r.observation;
      maxHeight = Math.max(maxHeight, r.info.cubeHeight);
      success ||= r.info.success;
    }
  };
  const c0 = Array.from(o.object.slice(0, 3));
  go(() => [c0[0] + offset, c0[1], c0[2] + 0.1], -1, 15);
  go(() => [c0[0] + offset, c0[1], c0[2]], -1, 15);
  go(() => [c0[0] + offset, c0[1], c0[2]], 1, 8);
  go(() => [c0[0] + offset, c0[1], c0[2] + 0.15], 1, 15);
  return { success, maxHeight, actions };
}

describe('Lift (MuJoCo)', () => {
  it('the cube rests on the table without drift', () => {
    env.reset(3);
    const p0 = env.cubePos();
    expect(p0[2]).toBeCloseTo(TABLE_TOP + CUBE_HALF, 6);
    for (let k = 0; k < 40; k++) env.step([0, 0, 0, 0, 0, 0, -1]);
    const p1 = env.cubePos();
    expect(Math.hypot(p1[0] - p0[0], p1[1] - p0[1])).toBeLessThan(1e-4);
    // Resting on the table, the contact's penetration apart.
    expect(Math.abs(p1[2] - p0[2])).toBeLessThan(1e-3);
    expect(env.success()).toBe(false);
  });

  it('a closed grasp lifts the cube (success); closing 6 cm beside it does not', () => {
    for (const seed of [0, 1, 2, 3]) {
      const r = scriptedLift(env, seed);
      expect(r.success, `seed ${seed}`).toBe(true);
      expect(r.maxHeight).toBeGreaterThan(0.1);
    }
    const miss = scriptedLift(env, 0, 0.06);
    expect(miss.success).toBe(false);
    expect(miss.maxHeight).toBeLessThan(0.01);
  });

  it('episodes are deterministic for a seed, and snapshot/restore continues exactly', async () => {
    const other = await LiftEnv.create();
    try {
      const a = scriptedLift(env, 5);
      const trace = (e: LiftEnv) => a.actions.map((x) => Array.from(e.step(x).observation.object));
      env.reset(5);
      other.reset(5);
      expect(trace(other)).toEqual(trace(env));
      // Snapshot mid-grasp, run on, restore, run the same actions again.
      env.reset(5);
      for (const x of a.actions.slice(0, 30)) env.step(x);
      const snap = env.snapshot();
      const rest = a.actions.slice(30);
      const first = rest.map((x) => Array.from(env.step(x).observation.object));
      env.restore(snap);
      const again = rest.map((x) => Array.from(env.step(x).observation.object));
      expect(again).toEqual(first);
    } finally {
      other.dispose();
    }
  });

  it('placeCube puts the cube at rest where asked; the picture shows it there and the lifted cube higher', () => {
    env.reset(5);
    const redAt = () => {
      const size = 128;
      const rgb = renderManipulation(env.sim, size);
      let n = 0;
      let sx = 0;
      let sy = 0;
      for (let i = 0; i < size * size; i++) {
        const [r, g, b] = [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]];
        if (r > 120 && g < 60 && b < 60) {
          n++;
          sx += i % size;
          sy += Math.floor(i / size);
        }
      }
      return { n, x: sx / n, y: sy / n, rgb };
    };
    env.placeCube(-0.05, 0.05);
    expect(env.cubePos()).toEqual([-0.05, 0.05, TABLE_TOP + CUBE_HALF].map((v) => expect.closeTo(v, 9)));
    const a = redAt();
    expect(a.n).toBeGreaterThan(10);
    // The same state draws the same picture.
    expect(redAt().rgb).toEqual(a.rgb);
    // The camera looks along +x+y from above: +x is to the right and away (up the picture).
    env.placeCube(0.05, 0.05);
    const b = redAt();
    expect(b.x).toBeGreaterThan(a.x + 3);
    expect(b.y).toBeLessThan(a.y - 3);
    // At rest: stepping with no motion leaves it there.
    for (let k = 0; k < 10; k++) env.step([0, 0, 0, 0, 0, 0, -1]);
    expect(Math.hypot(env.cubePos()[0] - 0.05, env.cubePos()[1] - 0.05)).toBeLessThan(1e-4);
    // Lifted by a grasp, the cube is drawn higher up the picture.
    const low = redAt();
    expect(scriptedLift(env, 5).success).toBe(true);
    expect(redAt().y).toBeLessThan(low.y - 5);
  });

  it('bad actions are one clear error', () => {
    env.reset(0);
    expect(() => env.step([0, 0, 0])).toThrow('Lift action must have 7 entries, got 3');
    expect(() => env.step([0, 0, NaN, 0, 0, 0, 0])).toThrow('Lift action has a non-finite entry');
  });

  it('experts: ph succeeds on >= 95 of 100 seeds; mh on fewer, in longer episodes', () => {
    const run = (q: DemoQuality) => {
      const ex = new LiftExpert(q);
      let ok = 0;
      let len = 0;
      for (let seed = 0; seed < 100; seed++) {
        ex.reset(seed);
        let o = env.reset(seed);
        for (;;) {
          const r = env.step(ex.act(o));
          o = r.observation;
          if (r.terminated || r.truncated) {
            if (r.terminated) {
              ok++;
              len += r.info.steps;
            }
            break;
          }
        }
      }
      return { rate: ok / 100, meanLength: len / ok };
    };
    const ph = run('ph');
    const mh = run('mh');
    console.log(`Lift experts on 100 seeds: ph ${ph.rate} (mean ${ph.meanLength.toFixed(1)} steps), mh ${mh.rate} (mean ${mh.meanLength.toFixed(1)} steps)`);
    expect(ph.rate).toBeGreaterThanOrEqual(0.95);
    expect(mh.rate).toBeLessThan(ph.rate - 0.1);
    expect(mh.rate).toBeGreaterThan(0.4);
    expect(mh.meanLength).toBeGreaterThan(2 * ph.meanLength);
  });

  it('collected demos in robomimic HDF5: round trip, next_obs is the next obs, stored states replay the actions', async () => {
    const { dataset, succeeded } = await collectManipulation('lift', { episodes: 4, seed: 10, quality: 'mh' });
    expect(succeeded).toBe(4);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-lift-'));
    try {
      const file = path.join(dir, 'lift.hdf5');
      await writeRobomimic(file, dataset);
      const back = await readRobomimic(file);
      expect(back).toEqual(dataset);
      for (const d of back.demos) {
        const t = d.rewards.length;
        expect(d.dones[t - 1]).toBe(1);
        expect(d.rewards[t - 1]).toBe(1);
        const obj = d.obs.object;
        const next = d.nextObs!.object;
        for (let i = 0; i + 1 < t; i++) expect(Array.from(obj.values.slice((i + 1) * 10, (i + 2) * 10))).toEqual(Array.from(next.values.slice(i * 10, (i + 1) * 10)));
        // Restore the state stored at a step, take that step's action: the recorded next observation.
        const i = Math.floor(t / 2);
        const sdim = d.states!.frameShape[0];
        env.reset(0);
        env.restore({ state: Float64Array.from(d.states!.values.slice(i * sdim, (i + 1) * sdim)), steps: i });
        const r = env.step(Array.from(d.actions.values.slice(i * 7, (i + 1) * 7)));
        expect(Array.from(r.observation.object)).toEqual(Array.from(next.values.slice(i * 10, (i + 1) * 10)));
      }
      expect(back.masks.train.length + back.masks.valid.length).toBe(4);
      // The CLI writes the same layout; a wrong quality is a usage error.
      const out = path.join(dir, 'cli.hdf5');
      const r = onedp(['collect', 'lift', '--episodes', '2', '--out', out]);
      expect(r.code, r.stderr).toBe(0);
      expect((await readRobomimic(out)).demos).toHaveLength(2);
      const bad = onedp(['collect', 'lift', '--quality', 'xx', '--out', out]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('--quality must be ph or mh, got "xx"');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('the evaluation harness runs Lift: a reactive oracle lifts on every seed, a policy that stays open scores 0 over the horizon', async () => {
    const seeds = [0, 1, 2, 3, 4, 5];
    const good = await evaluateManipulation('lift', new OraclePolicy(), { seeds, batchSize: 3, latencyReps: 0 });
    expect(good.successRate).toBe(1);
    expect(good.meanScore).toBe(1);
    const idle = await evaluateManipulation('lift', new OraclePolicy('open'), { seeds: [0, 1], batchSize: 2, latencyReps: 0 });
    expect(idle.successRate).toBe(0);
    expect(idle.episodes.map((e) => e.steps)).toEqual([200, 200]);
    // In real time at 120 ms a call, the world moves on for 3 of Lift's 50 ms control periods
    // while the policy thinks, holding still meanwhile: 3 of 8 steps wait for the first chunk.
    const up = [0, 0, 1, 0, 0, 0, -1];
    const chunky = { ...new OraclePolicy(), kind: 'up', nActionSteps: 8, horizon: 8 } as unknown as Policy;
    chunky.predictAction = (obs) => {
      const rows = Array.from({ length: (obs as ObservationBatch).batch }, () => Array.from({ length: 8 }, () => up));
      return { actions: rows, chunk: rows, timing: { obsEncodingMs: 0, actionPredictionMs: 0, nfe: 1 } };
    };
    const late = await evaluateManipulation('lift', chunky, { seeds: [0], batchSize: 1, maxSteps: 8, latencyReps: 0, realtime: { latency: { kind: 'nfe', perNfeMs: 120 }, fill: 'hold' } });
    expect(late.realtime).toMatchObject({ controlPeriodMs: 50, meanDelayPeriods: 3, fillFraction: 3 / 8 });
    // Holding still: no motion; a gripper closed on something keeps closing.
    const hold = manipulationHold();
    const obsWith = (q: number) => Float32Array.from([...new Array<number>(17).fill(0.3), q, q]);
    expect(hold(obsWith(0))).toEqual([0, 0, 0, 0, 0, 0, -1]);
    expect(hold(obsWith(0.012))).toEqual([0, 0, 0, 0, 0, 0, 1]);
    // The observation follows the training spec; a spec naming what Lift does not observe is an error.
    expect(() => manipulationObserver('keypoint,state[0:2]')(env.reset(0))).toThrow('observation spec names "keypoint", which the task does not observe');
  });
});

/**
 * Lift on MuJoCo (issue 18's first task): the cube rests on the table without drift; a scripted
 * grasp (above the cube, yaw aligned, down, close, up) lifts it and counts as success, while
 * closing beside it does not; an episode is deterministic for its seed; snapshot/restore
 * continues exactly as the uninterrupted run; bad actions are one clear error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LiftEnv, TABLE_TOP, CUBE_HALF } from '../src/envs/mujoco/lift.js';

let env: LiftEnv;
beforeAll(async () => {
  env = await LiftEnv.create();
});
afterAll(() => env?.dispose());

/** The cube's yaw from its quaternion (x, y, z, w), folded to (-pi/4, pi/4]: the grasp is 4-fold symmetric. */
function cubeYaw(o: Float64Array): number {
  const [x, y, z, w] = [o[3], o[4], o[5], o[6]];
  const yaw = Math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z));
  return yaw - (Math.PI / 2) * Math.round(yaw / (Math.PI / 2));
}

function gripperYaw(q: Float64Array): number {
  const [x, y, z, w] = [q[0], q[1], q[2], q[3]];
  return Math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z));
}

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
      const dyaw = cubeYaw(o.object) - gripperYaw(o.robot0_eef_quat);
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

  it('bad actions are one clear error', () => {
    env.reset(0);
    expect(() => env.step([0, 0, 0])).toThrow('Lift action must have 7 entries, got 3');
    expect(() => env.step([0, 0, NaN, 0, 0, 0, 0])).toThrow('Lift action has a non-finite entry');
  });
});

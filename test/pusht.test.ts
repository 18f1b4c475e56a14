import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  GOAL_POSE,
  KEYPOINTS_LOCAL,
  PushTEnv,
  T_RECTS,
  WORKSPACE_SIZE,
  tCoverage,
  type Pose,
} from '../src/envs/index.js';
import { Rng } from '../src/util/rng.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Actions that sweep through the middle of the workspace, so the agent meets the block. */
function sweepActions(n: number, seed: number): [number, number][] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => [100 + 312 * rng.uniform(), 100 + 312 * rng.uniform()]);
}

function trajectory(seed: number, actions: readonly [number, number][]): number[][] {
  const env = new PushTEnv();
  const out = [env.reset(seed)];
  for (const a of actions) out.push(env.step(a).observation);
  return out;
}

function inT(x: number, y: number): boolean {
  return T_RECTS.some(([x0, y0, x1, y1]) => x >= x0 && x <= x1 && y >= y0 && y <= y1);
}

/**
 * Coverage by counting a jittered fine grid over the goal T (independent of the polygon clipping).
 * The jitter (one random point per cell) avoids the bias a regular grid has when edges of the block
 * run parallel to its rows.
 */
function gridCoverage(pose: Pose, step = 0.2): number {
  const rng = new Rng(123);
  const [gx, gy, ga] = GOAL_POSE;
  const [bx, by, ba] = pose;
  let inside = 0;
  let total = 0;
  for (const [x0, y0, x1, y1] of T_RECTS) {
    for (let u = x0 + step / 2; u < x1; u += step) {
      for (let v = y0 + step / 2; v < y1; v += step) {
        const ju = u + (rng.uniform() - 0.5) * step;
        const jv = v + (rng.uniform() - 0.5) * step;
        const wx = gx + Math.cos(ga) * ju - Math.sin(ga) * jv;
        const wy = gy + Math.sin(ga) * ju + Math.cos(ga) * jv;
        const dx = wx - bx;
        const dy = wy - by;
        total++;
        if (inT(Math.cos(ba) * dx + Math.sin(ba) * dy, -Math.sin(ba) * dx + Math.cos(ba) * dy)) inside++;
      }
    }
  }
  return inside / total;
}

describe('PushT determinism', () => {
  const actions = sweepActions(40, 7);

  it('repeats a trajectory exactly in one process, and the block is pushed', () => {
    const a = trajectory(3, actions);
    const b = trajectory(3, actions);
    expect(b).toEqual(a);
    const moved = Math.hypot(a[a.length - 1][2] - a[0][2], a[a.length - 1][3] - a[0][3]);
    expect(moved).toBeGreaterThan(1);
  });

  it('repeats a trajectory exactly in another process', () => {
    const code = `
      import { PushTEnv } from ${JSON.stringify(path.join(ROOT, 'src/envs/index.js'))};
      const actions = ${JSON.stringify(actions)};
      const env = new PushTEnv();
      const out = [env.reset(3)];
      for (const a of actions) out.push(env.step(a).observation);
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual(trajectory(3, actions));
  });

  it('restores a simulator state exactly', () => {
    const env = new PushTEnv();
    env.reset(11);
    const first = sweepActions(20, 1);
    const rest = sweepActions(20, 2);
    for (const a of first) env.step(a);
    const snap = JSON.parse(JSON.stringify(env.getSimState()));
    const a = rest.map((act) => env.step(act));
    const other = new PushTEnv();
    other.reset(99);
    other.setSimState(snap);
    const b = rest.map((act) => other.step(act));
    expect(b).toEqual(a);
  });

  it('resets from a seed to integer positions in the documented ranges', () => {
    const env = new PushTEnv();
    for (let seed = 0; seed < 20; seed++) {
      const [ax, ay, , , angle] = env.reset(seed);
      expect(Number.isInteger(ax) && Number.isInteger(ay)).toBe(true);
      expect(ax).toBeGreaterThanOrEqual(50);
      expect(ay).toBeLessThan(450);
      expect(angle).toBeGreaterThanOrEqual(0);
      expect(angle).toBeLessThan(2 * Math.PI);
    }
    // Seed 1 starts with agent and block apart, so nothing moves in the settling substep.
    const rng = new Rng(1);
    const expected = [rng.int(50, 450), rng.int(50, 450), rng.int(100, 400), rng.int(100, 400)];
    const theta = rng.normal() * 2 * Math.PI - Math.PI;
    const obs = env.reset(1);
    expect(obs.slice(0, 4)).toEqual(expected);
    expect(obs[4]).toBeCloseTo(((theta % (2 * Math.PI)) + 2 * Math.PI) % (2 * Math.PI), 12);
  });
});

describe('PushT coverage and reward', () => {
  it('is 1 at the goal and 0 far away or flipped', () => {
    expect(tCoverage(GOAL_POSE)).toBeCloseTo(1, 12);
    expect(tCoverage([100, 100, 0])).toBe(0);
    // Rotating the goal T by pi about its origin leaves the bar and stem on the other side of y=0.
    expect(tCoverage([256, 256, GOAL_POSE[2] + Math.PI])).toBeCloseTo(0, 12);
  });

  it('matches the analytic overlap of shifts along the T axes', () => {
    // A shift by d < 30 along either body axis loses 120 d of the T's 6300 units of area.
    const [gx, gy, a] = GOAL_POSE;
    for (const d of [5, 15, 25]) {
      const alongX: Pose = [gx + d * Math.cos(a), gy + d * Math.sin(a), a];
      const alongY: Pose = [gx - d * Math.sin(a), gy + d * Math.cos(a), a];
      expect(tCoverage(alongX)).toBeCloseTo((6300 - 120 * d) / 6300, 12);
      expect(tCoverage(alongY)).toBeCloseTo((6300 - 120 * d) / 6300, 12);
    }
  });

  it('matches a fine grid count for world shifts and rotations', () => {
    // 157,500 jittered samples: only cells cut by a block edge (~1.5% of them) contribute noise, so
    // the count's standard error is about 1e-4.
    const poses: Pose[] = [
      [256 + 15, 256, Math.PI / 4],
      [250, 262, Math.PI / 4 + 0.2],
      [256, 256, 0],
      [270, 240, Math.PI / 2],
    ];
    for (const p of poses) expect(Math.abs(tCoverage(p) - gridCoverage(p))).toBeLessThan(1e-3);
  });

  it('rewards clip(coverage / 0.95) and terminates on success', () => {
    const env = new PushTEnv();
    env.resetTo([60, 60, 256, 256, Math.PI / 4]);
    const r = env.step([60, 60]);
    expect(r.info.coverage).toBeCloseTo(1, 12);
    expect(r.reward).toBe(1);
    expect(r.terminated && r.info.success).toBe(true);

    env.resetTo([60, 60, 266, 256, Math.PI / 4]);
    const s = env.step([60, 60]);
    expect(s.info.coverage).toBeCloseTo(tCoverage([266, 256, Math.PI / 4]), 12);
    expect(s.reward).toBeCloseTo(s.info.coverage / 0.95, 12);
    expect(s.terminated).toBe(false);
  });

  it('truncates at 300 steps', () => {
    const env = new PushTEnv();
    env.resetTo([60, 60, 300, 300, 0]);
    let last = env.step([60, 60]);
    for (let i = 1; i < 300; i++) {
      expect(last.truncated).toBe(false);
      last = env.step([60, 60]);
    }
    expect(last.truncated).toBe(true);
    expect(last.info.steps).toBe(300);
  });
});

describe('PushT physics', () => {
  it('leaves the block exactly where it is unless touched', () => {
    const env = new PushTEnv();
    env.resetTo([60, 60, 330, 330, 0.3]);
    const before = env.blockPose();
    const rng = new Rng(5);
    for (let i = 0; i < 40; i++) env.step([30 + 150 * rng.uniform(), 30 + 150 * rng.uniform()]);
    const after = env.blockPose();
    for (let k = 0; k < 3; k++) expect(Math.abs(after[k] - before[k])).toBeLessThan(1e-9);
  });

  it('moves the agent as the PD law predicts', () => {
    const env = new PushTEnv();
    env.resetTo([100, 120, 380, 380, 0]);
    const targets: [number, number][] = [
      [200, 150],
      [200, 150],
      [140, 90],
      [160, 200],
      [160, 200],
      [160, 200],
    ];
    // Semi-implicit Euler, 10 substeps of 0.01 s per action: v += a dt, then x += v dt.
    const x = [100, 120];
    const v = [0, 0];
    for (const t of targets) {
      const obs = env.step(t).observation;
      for (let s = 0; s < 10; s++) {
        for (let k = 0; k < 2; k++) {
          v[k] += (100 * (t[k] - x[k]) + 20 * (0 - v[k])) * 0.01;
          x[k] += v[k] * 0.01;
        }
      }
      expect(Math.abs(obs[0] - x[0])).toBeLessThan(1e-6);
      expect(Math.abs(obs[1] - x[1])).toBeLessThan(1e-6);
    }
  });

  it('stops the agent at the walls (and lets it through in reference mode)', () => {
    const env = new PushTEnv();
    env.resetTo([100, 100, 350, 350, 0]);
    let minX = Infinity;
    for (let i = 0; i < 30; i++) minX = Math.min(minX, env.step([-100, 100]).observation[0]);
    expect(minX).toBeGreaterThanOrEqual(5 + 2 + 15 - 1e-9);

    const ref = new PushTEnv({ agentBlockedByWalls: false });
    ref.resetTo([100, 100, 350, 350, 0]);
    let x = 100;
    for (let i = 0; i < 30; i++) x = ref.step([-100, 100]).observation[0];
    // The action is clipped to [0, 512], so the reference agent settles at x = 0.
    expect(x).toBeLessThan(1);
  });

  it('pushes the block along the push direction', () => {
    const env = new PushTEnv();
    // Block at angle 0: the stem's tip is at y = 300 + 120; push it up from below on the axis.
    env.resetTo([256, 470, 256, 300, 0]);
    for (let i = 0; i < 20; i++) env.step([256, 380]);
    const [bx, by, ba] = env.blockPose();
    expect(bx).toBeCloseTo(256, 6);
    expect(ba).toBeCloseTo(0, 6);
    // The agent's centre ends at 380, touching the tip from 15 units (plus Box2D's skin) below.
    expect(by + 120).toBeGreaterThan(380 - 15 - 0.3);
    expect(by + 120).toBeLessThan(380 - 15 + 0.1);
  });
});

describe('PushT observations and rendering', () => {
  it('gives keypoints in world coordinates plus the agent', () => {
    const env = new PushTEnv({ obsType: 'keypoints' });
    const obs = env.resetTo([60, 70, 200, 220, 0.5]);
    expect(obs).toHaveLength(20);
    const [kx, ky] = KEYPOINTS_LOCAL[8];
    expect(obs[16]).toBeCloseTo(200 + Math.cos(0.5) * kx - Math.sin(0.5) * ky, 9);
    expect(obs[17]).toBeCloseTo(220 + Math.sin(0.5) * kx + Math.cos(0.5) * ky, 9);
    expect(obs.slice(18)).toEqual([60, 70]);
  });

  it('draws the scene in the reference colours', () => {
    const env = new PushTEnv();
    // Block at angle 0 away from the goal; the agent is clear of both.
    env.resetTo([420, 100, 120, 300, 0]);
    const img = env.render(WORKSPACE_SIZE);
    expect(img).toHaveLength(512 * 512 * 3);
    const px = (x: number, y: number) => Array.from(img.subarray((y * 512 + x) * 3, (y * 512 + x) * 3 + 3));
    expect(px(420, 100)).toEqual([78, 126, 255]); // agent: lighter inner disc
    expect(px(420 + 13, 100)).toEqual([65, 105, 225]); // agent rim (radius 11..15)
    expect(px(120, 300 + 80)).toEqual([142, 163, 183]); // block stem interior
    expect(px(120 - 30, 300 + 15)).toEqual([142, 163, 183]); // block bar interior
    expect(px(120 + 15, 300 + 80)).toEqual([119, 136, 153]); // block outline on the stem's side
    // Goal stem centre: body (0, 75) rotated by pi/4 about (256, 256).
    const g = [256 - Math.sin(Math.PI / 4) * 75, 256 + Math.cos(Math.PI / 4) * 75].map(Math.round);
    expect(px(g[0], g[1])).toEqual([144, 238, 144]);
    expect(px(256, 60)).toEqual([255, 255, 255]); // background
    expect(px(5, 200)).toEqual([211, 211, 211]); // wall
  });

  it('renders 96x96 image observations', () => {
    const env = new PushTEnv({ obsType: 'image' });
    const obs = env.resetTo([420, 100, 120, 300, 0]);
    expect(obs.image).toHaveLength(96 * 96 * 3);
    expect(obs.agentPos).toEqual([420, 100]);
    const px = (x: number, y: number) => {
      const i = (Math.floor((y * 96) / 512) * 96 + Math.floor((x * 96) / 512)) * 3;
      return Array.from(obs.image.subarray(i, i + 3));
    };
    expect(px(420, 100)).toEqual([78, 126, 255]);
    expect(px(120, 380)).toEqual([142, 163, 183]);
    expect(px(256, 60)).toEqual([255, 255, 255]);
  });
});

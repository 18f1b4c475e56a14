import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FACE_NAMES, PushTEnv, PushTExpert, rolloutExpert, type ExpertEpisode } from '../src/envs/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SEEDS = Array.from({ length: 100 }, (_, i) => i);

describe('scripted PushT expert', () => {
  // The measurement: 100 seeded starts (scripts/expert_eval.ts also reports lengths and push variety).
  const episodes: ExpertEpisode[] = SEEDS.map((s) => rolloutExpert(s));

  it('solves at least 90% of 100 seeded starts within 300 steps', () => {
    const rate = episodes.filter((e) => e.success).length / episodes.length;
    expect(rate).toBeGreaterThanOrEqual(0.9);
    for (const e of episodes.filter((x) => x.success)) expect(e.maxCoverage).toBeGreaterThan(0.95);
  });

  it('pushes from different sides across seeds and across its own seeds', () => {
    const firstFaces = new Set(episodes.map((e) => e.pushFaces[0]));
    const allFaces = new Set(episodes.flatMap((e) => e.pushFaces));
    expect(firstFaces.size).toBeGreaterThanOrEqual(4);
    expect(allFaces.size).toBeGreaterThanOrEqual(6);
    expect([...allFaces].every((f) => f >= 0 && f < FACE_NAMES.length)).toBe(true);
    // The same start solved with different expert seeds: different sequences of sides.
    const sequences = new Set(
      [1, 2, 3, 4].map((k) => rolloutExpert(0, { expertSeed: 1000 + k }).pushFaces.slice(0, 4).join(',')),
    );
    expect(sequences.size).toBeGreaterThanOrEqual(2);
  });

  it('moves smoothly: the target never leads the agent by more than maxStep', () => {
    for (const e of episodes) {
      e.actions.forEach((a, i) => {
        const s = e.states[i];
        expect(Math.hypot(a[0] - s[0], a[1] - s[1])).toBeLessThanOrEqual(30 + 1e-9);
      });
    }
  });

  it('walks around the block without moving it', () => {
    // Only the first step of a walk may still move the block: the agent's momentum at the end of
    // the previous stroke. (At a reset the agent may start touching the block, so skip 10 steps.)
    let walked = 0;
    for (const seed of SEEDS.slice(0, 8)) {
      const env = new PushTEnv();
      const expert = new PushTExpert();
      expert.reset(seed);
      let obs = env.reset(seed);
      let wasWalking = false;
      for (let t = 0; t < 300; t++) {
        const action = expert.act(obs);
        const walking = expert.mode === 'approach';
        const r = env.step(action);
        if (walking && wasWalking && t >= 10) {
          walked++;
          expect(Math.hypot(r.observation[2] - obs[2], r.observation[3] - obs[3])).toBeLessThan(1e-9);
          expect(Math.abs(r.observation[4] - obs[4])).toBeLessThan(1e-9);
        }
        wasWalking = walking;
        obs = r.observation;
        if (r.terminated) break;
      }
    }
    expect(walked).toBeGreaterThan(50);
  });

  it('is deterministic within and across processes', () => {
    expect(rolloutExpert(2).actions).toEqual(episodes[2].actions);
    const code = `
      import { rolloutExpert } from ${JSON.stringify(path.join(ROOT, 'src/envs/index.js'))};
      console.log(JSON.stringify(rolloutExpert(2).actions));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual(episodes[2].actions);
  });
});

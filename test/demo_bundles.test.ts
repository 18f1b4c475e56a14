/**
 * The browser demo's committed policies (demo/public/policies, provenance in their README): the
 * trained DDPM teacher and its OneDP-S load with onnxruntime-node as PushT state policies, stay
 * small, and act like trained policies: on seed 100003 both move the block onto the goal within
 * 100 lockstep steps (measured: OneDP-S at 0.47 after 100 steps, DDIM-10 up to 0.93; a random or
 * untrained network leaves it near its start, 0.002). The Lift page's bundles (a DDPM teacher and
 * a one-step student from `onedp reproduce manipulation`) lift the cube.
 */
import { readFileSync, statSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { OnnxPolicy } from '../src/export/runtime.js';
import { checkPushTPolicy, pushtRollout } from '../src/eval/pusht.js';
import { tCoverage } from '../src/envs/pusht.js';
import { initEngine } from '../src/engine/index.js';
import { manipulationRollout } from '../src/eval/manipulation.js';

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'demo', 'public', 'policies');

describe('the demo policies', () => {
  it('are small PushT bundles of the expected kinds', () => {
    let bytes = 0;
    for (const sub of ['dp', 'onedp-s']) for (const f of readdirSync(path.join(dir, sub))) bytes += statSync(path.join(dir, sub, f)).size;
    expect(bytes).toBeLessThan(4 << 20);
    let liftBytes = 0;
    for (const sub of ['lift-dp', 'lift-onedp']) for (const f of readdirSync(path.join(dir, sub))) liftBytes += statSync(path.join(dir, sub, f)).size;
    expect(liftBytes).toBeLessThan(4 << 20);
    const kind = (sub: string) => (JSON.parse(readFileSync(path.join(dir, sub, 'policy.json'), 'utf8')) as { kind: string; obsDim: number; noise: { kind: string } });
    expect(kind('dp')).toMatchObject({ kind: 'diffusion-policy', obsDim: 20, noise: { kind: 'ddpm' } });
    expect(kind('onedp-s')).toMatchObject({ kind: 'onedp-s', obsDim: 20 });
    // Lift's: robomimic's low-dimensional observation (object 10, eef position 3 and quaternion 4, fingers 2).
    expect(kind('lift-dp')).toMatchObject({ kind: 'diffusion-policy', obsDim: 19, noise: { kind: 'ddpm' } });
    expect(kind('lift-onedp')).toMatchObject({ kind: 'onedp-d', obsDim: 19 });
  });

  it('Lift: the one-step policy and the teacher lift the cube (seed 200004, lockstep)', async () => {
    await initEngine();
    for (const [sub, sampler] of [['lift-onedp', undefined], ['lift-dp', 'ddim-10']] as const) {
      const p = await OnnxPolicy.load(path.join(dir, sub), { seed: 200004, sampler });
      const r = await manipulationRollout('lift', p, 200004, 100);
      await p.dispose();
      expect(r.success, sub).toBe(true);
    }
  });

  it('push the block onto the goal (seed 100003, 100 lockstep steps)', async () => {
    await initEngine();
    for (const [sub, kind, sampler] of [['onedp-s', 'onedp-s', undefined], ['dp', 'diffusion-policy', 'ddim-10']] as const) {
      const p = await OnnxPolicy.load(path.join(dir, sub), { seed: 100003, sampler });
      expect(p.kind).toBe(kind);
      checkPushTPolicy({ obsDim: p.manifest.obsDim, cameras: p.cameras }, sub);
      const { states } = await pushtRollout(p, 100003, 100);
      await p.dispose();
      const best = Math.max(...states.map((st) => tCoverage([st[2], st[3], st[4]])));
      expect(best, sub).toBeGreaterThan(0.3);
    }
  });
});

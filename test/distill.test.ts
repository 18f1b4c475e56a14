import { describe, expect, it, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasmEngine } from './helpers/engine.js';
import { modeStats, trainBimodalTeacher } from './helpers/bimodal.js';
import { bimodalDataset } from '../src/data/synthetic.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { distillOneDp } from '../src/distill/distill.js';
import type { OneDpPolicy } from '../src/distill/onedp.js';
import { stateDict } from '../src/nn/state_dict.js';
import { sameWeights } from './helpers/weights.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-distill-'));
const buffer = bimodalDataset({ episodes: 40 });
const START = Array.from({ length: 200 }, () => [[0, 0], [0, 0]]);

describe('OneDP distillation on the bimodal set', () => {
  let teacherDir = '';
  beforeAll(async () => {
    teacherDir = await tmp();
    await trainBimodalTeacher(buffer, teacherDir);
  });

  it('OneDP-S keeps both modes, stays close to the data, and leaves the teacher untouched', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const before = stateDict(teacher.unet);
    const out = await tmp();
    const res = await distillOneDp({ teacher, buffer, config: { method: 'onedp-s', steps: 200, batchSize: 64 }, outDir: out, progress: 'none' });
    expect(sameWeights(before, stateDict(teacher.unet))).toBe(true);
    const policy = await loadPolicy(out);
    const pred = policy.predictAction(START, { seed: 1 });
    expect(pred.timing.nfe).toBe(1);
    const s = modeStats(pred.chunk);
    expect(Math.min(s.right, 1 - s.right)).toBeGreaterThanOrEqual(0.25);
    // A mode-averaging policy errs by about 0.5 per coordinate here.
    expect(s.err).toBeLessThan(0.25);
    expect(res.scoreLosses.every(Number.isFinite)).toBe(true);
  });

  it('OneDP-D commits to one action chunk per observation and stays close to one mode', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const before = stateDict(teacher.unet);
    const out = await tmp();
    await distillOneDp({ teacher, buffer, config: { method: 'onedp-d', steps: 200, batchSize: 64 }, outDir: out, progress: 'none' });
    expect(sameWeights(before, stateDict(teacher.unet))).toBe(true);
    const policy = await loadPolicy(out);
    const a = policy.predictAction(START.slice(0, 20), { seed: 1 });
    const b = policy.predictAction(START.slice(0, 20), { seed: 2 });
    expect(a.chunk).toEqual(b.chunk); // no dependence on the noise
    const s = modeStats(a.chunk);
    expect(s.right === 0 || s.right === 1).toBe(true);
    expect(s.err).toBeLessThan(0.25);
  });

  it('the generator average: saved and seen by snapshots, which leave training undisturbed', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const base = { method: 'onedp-d' as const, steps: 6, batchSize: 32, lrSchedule: 'cosine' as const };
    const seen: ReturnType<typeof stateDict>[] = [];
    const withSnaps = await tmp();
    const a = await distillOneDp({ teacher, buffer, config: { ...base, emaDecay: 0.5 }, outDir: withSnaps, progress: 'none', snapshotEvery: 2, onSnapshot: (_s, p) => void seen.push(stateDict((p as OneDpPolicy).generator)) });
    const plain = await tmp();
    const b = await distillOneDp({ teacher, buffer, config: { ...base, emaDecay: 0.5 }, outDir: plain, progress: 'none' });
    const noEma = await tmp();
    await distillOneDp({ teacher, buffer, config: { ...base, emaDecay: 0 }, outDir: noEma, progress: 'none' });
    const saved = (dir: string) => loadPolicy(dir).then((p) => stateDict((p as OneDpPolicy).generator));
    // Swapping the average in for a snapshot and back changes nothing in training.
    expect(a.generatorLosses).toEqual(b.generatorLosses);
    expect(sameWeights(await saved(withSnaps), await saved(plain))).toBe(true);
    // The last snapshot saw what was saved: the average, which moved away from the teacher and
    // differs from the raw weights.
    expect(seen).toHaveLength(3);
    expect(sameWeights(seen[2], await saved(plain))).toBe(true);
    expect(sameWeights(seen[0], seen[2])).toBe(false);
    expect(sameWeights(await saved(plain), stateDict(teacher.model))).toBe(false);
    expect(sameWeights(await saved(plain), await saved(noEma))).toBe(false);
  });

  it('the cosine schedule starts at the full rates and then lowers them', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const run = async (lrSchedule: 'constant' | 'cosine') =>
      (await distillOneDp({ teacher, buffer, config: { method: 'onedp-d', steps: 3, batchSize: 32, emaDecay: 0, lrSchedule }, outDir: await tmp(), progress: 'none' })).generatorLosses;
    const constant = await run('constant');
    const cosine = await run('cosine');
    // Step 1 runs at the full rate in both, so the loss of step 2 agrees; step 2 runs at
    // 0.75 of it under the cosine, so the loss of step 3 does not.
    expect(cosine.slice(0, 2)).toEqual(constant.slice(0, 2));
    expect(cosine[2]).not.toBe(constant[2]);
  });
});

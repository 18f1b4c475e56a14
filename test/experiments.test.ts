/**
 * The experiment pipeline called as a library: presets and their checks, a tiny run with
 * curves, stage reuse, per-attempt timings and the report's plots.
 */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasmEngine } from './helpers/engine.js';
import { PRESETS, experimentOptions, type ExperimentOptions } from '../src/experiments/recipe.js';
import { rowSpecs, runExperiment, seedDir, type Curve, type Timing } from '../src/experiments/pipeline.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-exp-'));
const readJson = async <T>(p: string): Promise<T> => JSON.parse(await fs.readFile(p, 'utf8')) as T;

describe('experiment presets', () => {
  it('every preset validates, and quickstart is the pipeline with one DDPM teacher', () => {
    for (const name of Object.keys(PRESETS) as (keyof typeof PRESETS)[]) expect(() => experimentOptions(name, { out: '/tmp/x' })).not.toThrow();
    const q = experimentOptions('quickstart', { out: '/tmp/x' });
    expect(q.teachers).toEqual(['ddpm']);
    expect(rowSpecs(q).map((r) => r.slug)).toEqual(['dp-ddpm-100', 'dp-ddim-10', 'dp-ddim-1', 'onedp-d', 'onedp-s']);
    const s = experimentOptions('pusht-state', { out: '/tmp/x' });
    expect(rowSpecs(s)).toHaveLength(12);
    expect(rowSpecs({ ...s, teachers: ['edm'] }).every((r) => r.teacher === 'edm')).toBe(true);
  });

  it('overrides are copied, and bad combinations are refused with the reason', () => {
    const o = experimentOptions('quickstart', { out: '/tmp/x', downDims: [8, 16] });
    o.downDims.push(99);
    expect(PRESETS.quickstart.downDims).toEqual([32, 64]);
    expect(() => experimentOptions('pusht-state', { out: '/tmp/x', curveSeed: 7 })).toThrow(/curveSeed 7 is not one of the training seeds 0, 1/);
    expect(() => experimentOptions('pusht-state', { out: '/tmp/x', cpSteps: 0 })).toThrow(/Consistency Policy rows need cpSteps >= 1/);
    expect(() => experimentOptions('quickstart', { out: '/tmp/x', trainSteps: 0 })).toThrow(/trainSteps must be an integer >= 1/);
    expect(() => experimentOptions('quickstart', { out: '/tmp/x', perturb: 3 })).toThrow(/perturb must be 0, 1 or 2/);
  });
});

describe('runExperiment', () => {
  it('runs every stage with curves, reuses finished stages, times each attempt and draws the plots', async () => {
    const out = path.join(await tmp(), 'run');
    const base: ExperimentOptions = experimentOptions('quickstart', {
      out,
      episodes: 2,
      trainSteps: 4,
      batchSize: 8,
      downDims: [8, 16],
      stepEmbed: 16,
      distillSteps: 2,
      distillBatchSize: 4,
      curveEvery: 1,
      pretrainCurveEvery: 2,
      curveSeeds: 1,
      testSeeds: [100000, 100001],
      rows: ['dp-ddim-1', 'onedp-d', 'onedp-s'],
      latencyReps: 1,
      progress: 'none',
    });
    // A first attempt at pre-training stops at 4 steps (as if killed); the second goes on to 6.
    await runExperiment(base, 'train');
    const res = await runExperiment({ ...base, trainSteps: 6 });
    expect(res).not.toBeNull();
    expect(res!.rows.map((r) => r.method)).toEqual(['DP (DDIM, 1 step)', 'OneDP-D', 'OneDP-S']);
    for (const r of res!.rows) {
      expect(r.perSeed).toHaveLength(1);
      expect(r.score).toBeGreaterThanOrEqual(0);
      expect(r.nfe).toBe(1);
    }
    const dir = seedDir(res!.options, 0, 'ddpm');
    const timing = await readJson<Timing>(path.join(dir, 'timing.json'));
    expect(timing.pretraining).toHaveLength(2);
    // The students of the 4-step teacher were distilled again from the 6-step one, and evaluated again.
    expect(timing['distill onedp-s']).toHaveLength(2);
    expect(timing['eval onedp-s']).toHaveLength(2);
    const pre = await readJson<Curve>(path.join(dir, 'curve-pretrain.json'));
    expect(pre.points.map((p) => p.step)).toEqual([2, 4, 6]);
    // Seconds continue across the attempts.
    expect(pre.points[2].seconds).toBeGreaterThan(pre.points[1].seconds);
    const curve = await readJson<Curve>(path.join(dir, 'curve-onedp-s.json'));
    expect(curve.points.map((p) => p.step)).toEqual([1, 2]);
    const report = await fs.readFile(path.join(out, 'report.md'), 'utf8');
    expect(report).toMatch(/ddpm pretraining \(2 attempts\)/);
    for (const plot of ['learning-curves', 'pretraining', 'latency', 'scores']) {
      expect(report).toContain(`(plots/${plot}.svg)`);
      expect((await fs.readFile(path.join(out, 'plots', `${plot}.svg`), 'utf8')).startsWith('<svg')).toBe(true);
    }
    // Nothing is redone on a rerun.
    const before = await fs.readFile(path.join(dir, 'timing.json'), 'utf8');
    await runExperiment({ ...base, trainSteps: 6 });
    expect(await fs.readFile(path.join(dir, 'timing.json'), 'utf8')).toBe(before);
    // Other OneDP-S rates redo that student (and its evaluation) only.
    expect(report).toContain('OneDP-S lr 0.001 / 0.01, OneDP-D lr 0.0003');
    await runExperiment({ ...base, trainSteps: 6, lrScore: 5e-3 });
    const after = await readJson<Timing>(path.join(dir, 'timing.json'));
    expect(after['distill onedp-s']).toHaveLength(3);
    expect(after['eval onedp-s']).toHaveLength(3);
    expect(after['distill onedp-d']).toEqual(timing['distill onedp-d']);
    expect(after.pretraining).toEqual(timing.pretraining);
  });
});

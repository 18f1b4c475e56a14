/** Recipe studies: a tiny configuration end to end, its resume, the report and its plots. */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasmEngine } from './helpers/engine.js';
import { runStudyConfig, type StudyConfig } from '../src/experiments/study.js';
import { renderStudyReport } from '../src/experiments/study_report.js';
import { STUDIES, studyConfigs } from '../src/experiments/studies.js';
import { lineChartSvg, barChartSvg } from '../src/eval/plots.js';
import { onedp } from './helpers/cli.js';

useWasmEngine();

const tiny: StudyConfig = { name: 'tiny', episodes: 2, downDims: [8, 16], stepEmbed: 16, batchSize: 8, lr: 1e-3, steps: 4, warmupSteps: 1, noise: 'ddpm', evalEvery: 2, seed: 0 };

describe('recipe studies', () => {
  it('every study configuration is complete and named once', () => {
    for (const grid of Object.keys(STUDIES)) {
      const cs = studyConfigs(grid);
      expect(new Set(cs.map((c) => c.name)).size).toBe(cs.length);
      for (const c of cs) expect(c.steps % c.evalEvery).toBe(0);
    }
  });

  it('a configuration is evaluated at every checkpoint, resumes without re-measuring, and is plotted', async () => {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-study-'));
    const opts = { root, testSeeds: [100000], engine: 'test' };
    const c1 = await runStudyConfig(tiny, opts);
    expect(c1.points.map((p) => p.step)).toEqual([2, 4]);
    expect(c1.points[1].trainSeconds).toBeGreaterThan(c1.points[0].trainSeconds);
    expect(c1.points[1].epochs).toBeCloseTo((4 * 8) / c1.frames, 10);
    // Another configuration in the same directory is refused rather than mixed in.
    const c2 = await runStudyConfig({ ...tiny, steps: 6 }, opts).catch((e: Error) => e);
    expect(c2).toBeInstanceOf(Error);
    expect((c2 as Error).message).toMatch(/was made with another configuration/);
    const again = await runStudyConfig(tiny, opts);
    expect(again.points).toEqual(c1.points);
    const report = await renderStudyReport('unit', [again], root);
    expect(report).toContain('| tiny | 2 | 8/16 |');
    for (const f of ['score-vs-steps.svg', 'score-vs-time.svg', 'score-vs-epochs.svg']) {
      expect(report).toContain(`(${f})`);
      expect((await fs.readFile(path.join(root, f), 'utf8')).startsWith('<svg')).toBe(true);
    }
  });

  it('plots draw every series and label', async () => {
    const svg = await lineChartSvg({ title: 'T', xLabel: 'steps', yLabel: 'score', yDomain: [0, 1], series: [{ name: 'alpha', points: [{ x: 1, y: 0.2 }, { x: 2, y: 0.4 }] }, { name: 'beta', points: [{ x: 1, y: 0.5 }] }] });
    for (const s of ['alpha', 'beta', 'steps', 'score']) expect(svg).toContain(s);
    const bars = await barChartSvg({ title: 'B', yLabel: 'ms', logY: true, bars: [{ label: 'DDPM-100', value: 150 }, { label: 'OneDP', value: 1.5 }] });
    expect(bars).toContain('DDPM-100');
    expect(bars).toContain('OneDP');
  });

  it('the CLI rejects unknown studies and configurations', () => {
    const a = onedp(['study', 'nope']);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/unknown study "nope"; known: pusht-recipe/);
    const b = onedp(['study', 'pusht-recipe', '--only', 'base,zzz', '--report']);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--only: no configuration "zzz" in pusht-recipe/);
  });
});

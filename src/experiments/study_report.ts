/** The study's report: plots of score against steps and wall-clock, and a table of every point. */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { lineChartSvg } from '../eval/plots.js';
import type { StudyCurve } from './study.js';

export async function renderStudyReport(grid: string, curves: StudyCurve[], root: string): Promise<string> {
  const series = (x: (p: StudyCurve['points'][number]) => number) => curves.map((c) => ({ name: c.config.name, points: c.points.map((p) => ({ x: x(p), y: p.score })) }));
  const plots: [string, string][] = [];
  if (curves.some((c) => c.points.length)) {
    const charts = [
      ['score-vs-steps.svg', await lineChartSvg({ title: `${grid}: DP score against pre-training steps`, xLabel: 'pre-training steps', yLabel: 'mean coverage (test seeds)', yDomain: [0, 1], series: series((p) => p.step) })],
      ['score-vs-time.svg', await lineChartSvg({ title: `${grid}: DP score against pre-training wall-clock (one core each)`, xLabel: 'pre-training minutes', yLabel: 'mean coverage (test seeds)', yDomain: [0, 1], series: series((p) => p.trainSeconds / 60) })],
      ['score-vs-epochs.svg', await lineChartSvg({ title: `${grid}: DP score against epochs`, xLabel: 'epochs (samples / frames)', yLabel: 'mean coverage (test seeds)', yDomain: [0, 1], logX: true, series: series((p) => p.epochs) })],
    ] as const;
    for (const [file, svg] of charts) {
      await fs.writeFile(path.join(root, file), svg);
      plots.push([file, file.replace('.svg', '').replace(/-/g, ' ')]);
    }
  }
  const lines = [`# onedp study ${grid}`, '', ...plots.map(([f, t]) => `![${t}](${f})`), '', '| configuration | demos | U-Net | params | batch | lr | noise | step | epochs | train s | score | success |', '|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const c of curves) {
    const k = c.config;
    for (const p of c.points) {
      lines.push(`| ${k.name} | ${k.episodes} | ${k.downDims.join('/')} | ${(c.params / 1e6).toFixed(2)}M | ${k.batchSize} | ${k.lr} | ${k.noise} | ${p.step} | ${p.epochs.toFixed(1)} | ${p.trainSeconds.toFixed(0)} | ${p.score.toFixed(3)} | ${p.success.toFixed(2)} |`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The study's report: a table of every curve point and, where plotting is available, SVG plots. */
import type { StudyCurve } from './study.js';

export async function renderStudyReport(grid: string, curves: StudyCurve[], _root: string): Promise<string> {
  const lines = [`# onedp study ${grid}`, '', '| configuration | demos | U-Net | params | batch | lr | noise | step | epochs | train s | score | success |', '|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const c of curves) {
    for (const p of c.points) {
      const k = c.config;
      lines.push(`| ${k.name} | ${k.episodes} | ${k.downDims.join('/')} | ${(c.params / 1e6).toFixed(2)}M | ${k.batchSize} | ${k.lr} | ${k.noise} | ${p.step} | ${p.epochs.toFixed(1)} | ${p.trainSeconds.toFixed(0)} | ${p.score.toFixed(3)} | ${p.success.toFixed(2)} |`);
    }
  }
  return lines.join('\n') + '\n';
}

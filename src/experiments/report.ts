/**
 * The experiment report: the table in the shape of the paper's Table 1 with latency, stage
 * times, learning curves, the real-time table, and plots (SVG, drawn with Vega-Lite) of the
 * learning curves, the score against pre-training steps and the latencies.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { barChartSvg, lineChartSvg } from '../eval/plots.js';
import { meanStd } from '../eval/harness.js';
import { experimentTask } from './task.js';
import { resolveDistillConfig } from '../distill/distill.js';
import type { AggregateRow, Curve, ExperimentResult, RealtimeCell, Timing } from './pipeline.js';

const f = (v: number, d = 3) => v.toFixed(d);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** Row a's action time over row b's, as "12.3x" (`digits` decimals); '-' when either is missing. */
export function ratio(rows: AggregateRow[], a: string, b: string, digits = 1): string {
  const ra = rows.find((r) => r.method === a);
  const rb = rows.find((r) => r.method === b);
  return ra && rb && rb.actionMs > 0 ? `${(ra.actionMs / rb.actionMs).toFixed(digits)}x` : '-';
}

/** Stage seconds summed over attempts, averaged over seeds; attempts counted when more than one. */
function timingLines(timing: Record<string, Timing>): string[] {
  const perSeed = Object.entries(timing).filter(([k]) => k !== 'all');
  const stages = new Map<string, { totals: number[]; attempts: number }>();
  for (const [key, t] of perSeed) {
    const teacher = key.split('/')[1];
    for (const [stage, attempts] of Object.entries(t)) {
      const k = `${teacher} ${stage}`;
      const e = stages.get(k) ?? { totals: [], attempts: 0 };
      e.totals.push(sum(attempts));
      e.attempts = Math.max(e.attempts, attempts.length);
      stages.set(k, e);
    }
  }
  const mean = (k: string) => meanStd(stages.get(k)?.totals ?? [])[0];
  const secs = (v: number) => (v < 10 ? v.toFixed(1) : v.toFixed(0));
  const lines = ['| stage (mean over training seeds) | seconds | share of pre-training |', '|---|---|---|'];
  for (const [stage, attempts] of Object.entries(timing.all ?? {})) lines.push(`| ${stage} | ${secs(sum(attempts))} | - |`);
  for (const [k, e] of stages) {
    const teacher = k.split(' ')[0];
    const share = k.includes(' distill ') ? `${((100 * mean(k)) / mean(`${teacher} pretraining`)).toFixed(1)}%` : '-';
    lines.push(`| ${k}${e.attempts > 1 ? ` (${e.attempts} attempts)` : ''} | ${secs(mean(k))} | ${share} |`);
  }
  return lines;
}

function curveTable(curves: Curve[]): string[] {
  const distill = curves.filter((c) => c.kind === 'distill');
  if (distill.length === 0) return [];
  const steps = [...new Set(distill.flatMap((c) => c.points.map((p) => p.step)))].sort((a, b) => a - b);
  return [
    `Learning curves (curve seed, score on the first ${distill[0].seeds} test seeds, against distillation steps):`,
    '',
    `| steps | ${distill.map((c) => c.label).join(' | ')} |`,
    `|---|${distill.map(() => '---').join('|')}|`,
    ...steps.map((st) => `| ${st} | ${distill.map((c) => c.points.find((p) => p.step === st)?.score.toFixed(3) ?? '-').join(' | ')} |`),
    '',
  ];
}

function realtimeLines(r: ExperimentResult): string[] {
  if (r.realtime.rows.length === 0) return [];
  const o = r.options;
  const cell = (c: RealtimeCell) => `${c.score.toFixed(3)} / ${c.success.toFixed(2)} / ${c.completionSeconds === null ? '-' : `${c.completionSeconds.toFixed(1)} s`}${c.meanDelayPeriods === null ? '' : ` (delay ${c.meanDelayPeriods.toFixed(1)})`}`;
  return [
    `Perturbed PushT (the block is moved ${o.perturb === 1 ? 'once' : `${o.perturb} times`} per episode when the agent comes near it), curve seed, ${o.testSeeds.length} test seeds. ` +
      'Each cell: score / success / completion time (simulated seconds to success), and the mean delay in 100 ms control periods between an observation and the first action of its chunk.',
    '',
    `| method | ${r.realtime.columns.join(' | ')} |`,
    `|---|${r.realtime.columns.map(() => '---').join('|')}|`,
    ...r.realtime.rows.map((row) => `| ${row.method} | ${row.cells.map(cell).join(' | ')} |`),
    '',
  ];
}

/** Writes the plots under `<out>/plots` and returns Markdown image links to them. */
async function plots(r: ExperimentResult): Promise<string[]> {
  const dir = path.join(r.options.out, 'plots');
  await fs.mkdir(dir, { recursive: true });
  const out: string[] = [];
  const write = async (file: string, title: string, svg: string) => {
    await fs.writeFile(path.join(dir, file), svg);
    out.push(`![${title}](plots/${file})`);
  };
  const scoreName = experimentTask(r.options.experiment).scoreName;
  const distill = r.curves.filter((c) => c.kind === 'distill' && c.points.length);
  if (distill.length) {
    await write('learning-curves.svg', 'score against distillation steps', await lineChartSvg({ title: 'One-step students: score against distillation steps', xLabel: 'distillation steps', yLabel: `${scoreName} (${distill[0].seeds} test seeds)`, yDomain: [0, 1], series: distill.map((c) => ({ name: c.label, points: c.points.map((p) => ({ x: p.step, y: p.score })) })) }));
  }
  const pre = r.curves.filter((c) => c.kind === 'pretrain' && c.points.length);
  if (pre.length) {
    await write('pretraining.svg', 'score against pre-training steps', await lineChartSvg({ title: 'Teachers: score against pre-training steps', xLabel: 'pre-training steps', yLabel: `${scoreName} (${pre[0].seeds} test seeds)`, yDomain: [0, 1], series: pre.map((c) => ({ name: c.label, points: c.points.map((p) => ({ x: p.step, y: p.score })) })) }));
  }
  if (r.rows.length) {
    await write('latency.svg', 'batch-1 action latency', await barChartSvg({ title: 'Batch-1 action prediction time (log scale)', yLabel: 'ms per action chunk', logY: true, bars: r.rows.map((row) => ({ label: row.method, value: Math.max(row.actionMs, 1e-3), group: row.teacher.toUpperCase() })) }));
    await write('scores.svg', 'scores', await barChartSvg({ title: `${scoreName[0].toUpperCase()}${scoreName.slice(1)} on the test seeds`, yLabel: 'score', bars: r.rows.map((row) => ({ label: row.method, value: row.score, group: row.teacher.toUpperCase() })) }));
  }
  return out;
}

/** The OneDP learning rates the students ran with (the same from every teacher). */
function distillRates(o: ExperimentResult['options']): string {
  const sCfg = resolveDistillConfig({ method: 'onedp-s', lrGenerator: o.lrGenerator, lrScore: o.lrScore });
  const dCfg = resolveDistillConfig({ method: 'onedp-d', lrGenerator: o.lrGenerator });
  return `OneDP-S lr ${sCfg.lrGenerator} / ${sCfg.lrScore}, OneDP-D lr ${dCfg.lrGenerator}`;
}

export async function renderExperimentReport(r: ExperimentResult): Promise<string> {
  const o = r.options;
  const task = experimentTask(o.experiment);
  const image = task.image;
  const pusht = o.experiment.startsWith('pusht');
  const rows = r.rows;
  const lines = [
    `# onedp ${o.title}: ${task.title}`,
    '',
    `${r.info.episodes} scripted-expert demonstrations (${r.info.frames} frames); ` +
      (image
        ? `observation: 96x96 camera frames (random 84x84 crops in training, centre crops in evaluation) + agent position; ResNet-18 encoder of widths ${o.encoderWidths.join('/')} (GroupNorm, spatial softmax, ${(r.info.encoderParams / 1e6).toFixed(2)}M parameters); `
        : pusht
          ? 'observation: 9 block keypoints + agent position; '
          : `observation: robomimic's low-dimensional keys (${task.obsSpec}); `) +
      `ConditionalUnet1D ${o.downDims.join('/')} (step embedding ${o.stepEmbed}, ${(r.info.params / 1e6).toFixed(2)}M parameters), ` +
      `${o.trainSteps} steps at batch ${o.batchSize}, lr ${o.lr}; OneDP distillation ${o.distillSteps} steps at batch ${o.distillBatchSize} per method (${distillRates(o)})` +
      (rows.some((x) => x.slug.startsWith('cp')) ? `, CP ${o.cpSteps} steps at batch ${o.batchSize}` : '') +
      `; training seeds ${o.trainSeeds.join(', ')}; ${o.testSeeds.length} test seeds (${o.testSeeds[0]}..${o.testSeeds[o.testSeeds.length - 1]}), the same for every row. Engine: ${r.info.engine}.`,
    '',
    `Score: mean over training seeds of the ${pusht ? 'mean max-coverage over test episodes' : 'success rate over test episodes (1 for a success, 0 otherwise)'} (+- std across training seeds; episode std in brackets). ` +
      "Latency: median of batch-1 calls of the curve seed's policy, measured after training with nothing else running.",
    '',
    '| method | teacher | NFE | score | per seed | success | steps to success | obs ms | action ms | Hz |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (x) =>
        `| ${x.method} | ${x.teacher.toUpperCase()} | ${x.nfe} | ${f(x.score)} +- ${f(x.scoreSeedStd)} (${f(x.scoreEpisodeStd, 2)}) | ${x.perSeed.map((s) => f(s, 2)).join(' / ')} | ${f(x.success, 2)} | ${x.completionSteps === null ? '-' : x.completionSteps.toFixed(1)} | ${f(x.obsMs, 3)} | ${f(x.actionMs, 2)} | ${x.hz.toFixed(1)} |`,
    ),
    '',
    `Action-latency ratios: DDPM-100 / OneDP-S ${ratio(rows, 'DP (DDPM)', 'OneDP-S')}, DDIM-10 / OneDP-S ${ratio(rows, 'DP (DDIM)', 'OneDP-S')}, ` +
      `DDPM-100 / OneDP-D ${ratio(rows, 'DP (DDPM)', 'OneDP-D')}, DDIM-10 / OneDP-D ${ratio(rows, 'DP (DDIM)', 'OneDP-D')}.`,
    '',
    ...(await plots(r)),
    '',
    'Stage wall-clock as it ran (parallel processes share the cores; whatever else the machine did counts too), each stage summed over its attempts:',
    '',
    ...timingLines(r.timing),
    '',
    ...curveTable(r.curves),
    ...realtimeLines(r),
  ];
  return lines.join('\n') + '\n';
}

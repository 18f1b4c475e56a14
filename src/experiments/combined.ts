/**
 * The paper's Tables 1 and 2 across tasks (issue 18): one row per method, one column per task
 * (PushT beside the MuJoCo tasks), each cell the task's score of that method: PushT's mean
 * coverage, the manipulation tasks' success rate. Built from the results of separate
 * experiments, so a column can come from an earlier run (PushT's reproduction).
 */
import type { ExperimentResult } from './pipeline.js';
import { experimentTask } from './task.js';
import { ratio } from './report.js';

export interface CombinedColumn {
  title: string;
  result: ExperimentResult;
}

const f3 = (v: number) => v.toFixed(3);

export function combinedTable(columns: CombinedColumn[]): string[] {
  // Rows in the order the experiments list them, each method once.
  const methods: { method: string; nfe: number }[] = [];
  for (const c of columns) for (const r of c.result.rows) if (!methods.some((m) => m.method === r.method)) methods.push({ method: r.method, nfe: r.nfe });
  const cell = (c: CombinedColumn, method: string) => {
    const r = c.result.rows.find((x) => x.method === method);
    if (!r) return '-';
    return c.result.options.trainSeeds.length > 1 ? `${f3(r.score)} +- ${f3(r.scoreSeedStd)}` : f3(r.score);
  };
  const lines = [
    `| method | NFE | ${columns.map((c) => c.title).join(' | ')} |`,
    `|---|---|${columns.map(() => '---').join('|')}|`,
    ...methods.map((m) => `| ${m.method} | ${m.nfe} | ${columns.map((c) => cell(c, m.method)).join(' | ')} |`),
    '',
    'What each column scores, and on what:',
    '',
    ...columns.map((c) => {
      const o = c.result.options;
      const t = experimentTask(o.experiment);
      return `- ${c.title}: ${t.scoreName}, ${o.testSeeds.length} test seeds (${o.testSeeds[0]}..${o.testSeeds[o.testSeeds.length - 1]}), ${o.trainSeeds.length} training seed${o.trainSeeds.length > 1 ? 's (mean +- std across them)' : ''}; ${c.result.info.episodes} demonstrations, ${o.trainSteps} pre-training steps, ${o.distillSteps} distillation steps.`;
    }),
    '',
    'Batch-1 action time, one network evaluation against many (medians of batch-1 calls on this machine, each task measured after its training):',
    '',
    `| ratio | ${columns.map((c) => c.title).join(' | ')} |`,
    `|---|${columns.map(() => '---').join('|')}|`,
    `| DDPM-100 / OneDP-S | ${columns.map((c) => ratio(c.result.rows, 'DP (DDPM)', 'OneDP-S', 0)).join(' | ')} |`,
    `| DDIM-10 / OneDP-S | ${columns.map((c) => ratio(c.result.rows, 'DP (DDIM)', 'OneDP-S', 0)).join(' | ')} |`,
    `| EDM Heun-18 / OneDP-S (EDM teacher) | ${columns.map((c) => ratio(c.result.rows, 'DP-EDM (Heun 18)', 'OneDP-S (EDM teacher)', 0)).join(' | ')} |`,
    `| OneDP-S action ms | ${columns.map((c) => c.result.rows.find((x) => x.method === 'OneDP-S')?.actionMs.toFixed(2) ?? '-').join(' | ')} |`,
  ];
  return lines;
}

/**
 * Rows of the comparison table (the paper's Table 1 plus latency) and their Markdown, shared by
 * `onedp quickstart` and `onedp reproduce`.
 */
import { evaluatePushT, type PushTEvalResult } from './pusht.js';
import type { Policy } from '../policy/types.js';

export interface Row {
  method: string;
  nfe: number;
  score: number;
  std: number;
  success: number;
  stepsToSuccess: number | null;
  obsMs: number;
  actionMs: number;
  hz: number;
}

/** Evaluates one policy on the test seeds and returns its row with batch-1 latency. */
export function evalRow(label: string, policy: Policy, seeds: number[], opts: { batchSize?: number; latencyReps?: number } = {}): { row: Row; result: PushTEvalResult } {
  const result = evaluatePushT(policy, { seeds, batchSize: opts.batchSize ?? 50, latencyReps: opts.latencyReps ?? 10 });
  const lat = result.latency!;
  return {
    result,
    row: {
      method: label,
      nfe: lat.nfe,
      score: result.meanScore,
      std: result.stdScore,
      success: result.successRate,
      stepsToSuccess: result.meanStepsToSuccess,
      obsMs: lat.obsEncodingMs,
      actionMs: lat.actionPredictionMs,
      hz: lat.hz,
    },
  };
}

const f = (v: number, d = 3) => v.toFixed(d);

export function rowsTable(rows: Row[]): string[] {
  return [
    '| method | NFE | score (mean +- std) | success | steps to success | obs encoding ms | action ms | Hz |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.method} | ${r.nfe} | ${f(r.score)} +- ${f(r.std)} | ${f(r.success, 2)} | ${r.stepsToSuccess === null ? '-' : r.stepsToSuccess.toFixed(1)} | ${f(r.obsMs, 3)} | ${f(r.actionMs, 2)} | ${r.hz.toFixed(1)} |`,
    ),
  ];
}

export function timingTable(timing: Record<string, number>): string[] {
  return ['| stage | seconds |', '|---|---|', ...Object.entries(timing).map(([k, v]) => `| ${k} | ${v.toFixed(1)} |`)];
}

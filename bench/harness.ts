/** Small benchmarking helpers shared by the bench sections. */
import { tf } from '../src/engine/index.js';

export interface BenchRow {
  section: string;
  name: string;
  ms: number;
  gflops?: number;
  /** Extra figures (samples/s, speed-up, Hz, ...). */
  extra?: Record<string, number | string>;
}

/** Median wall-clock ms of `fn` (which must finish its work, e.g. by reading data). */
export function timeIt(fn: () => void, opts: { warmup?: number; reps?: number; minMs?: number } = {}): number {
  const warmup = opts.warmup ?? 2;
  const reps = opts.reps ?? 5;
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  const start = performance.now();
  for (let i = 0; i < reps || performance.now() - start < (opts.minMs ?? 0); i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
    if (i > 1000) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Runs a tensor-producing function and waits for its result. */
export function sync(fn: () => tf.Tensor | tf.Tensor[]): () => void {
  return () => {
    const out = tf.tidy(fn);
    const list = Array.isArray(out) ? out : [out];
    for (const t of list) {
      t.dataSync();
      t.dispose();
    }
  };
}

export function fmt(v: number | undefined, digits = 1): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return v >= 100 ? v.toFixed(0) : v.toFixed(digits);
}

/** One table per section, each with only the extra columns its rows have. */
export function table(rows: BenchRow[]): string {
  const sections = [...new Set(rows.map((r) => r.section))];
  return sections
    .map((section) => {
      const rs = rows.filter((r) => r.section === section);
      const extraKeys = [...new Set(rs.flatMap((r) => Object.keys(r.extra ?? {})))];
      const withFlops = rs.some((r) => r.gflops !== undefined);
      const head = ['benchmark', 'ms', ...(withFlops ? ['GFLOPS'] : []), ...extraKeys];
      const lines = [head, head.map(() => '---')];
      for (const r of rs) {
        const extra = extraKeys.map((k) => (typeof r.extra?.[k] === 'number' ? fmt(r.extra[k] as number, 2) : String(r.extra?.[k] ?? '')));
        lines.push([r.name, fmt(r.ms, 2), ...(withFlops ? [fmt(r.gflops)] : []), ...extra]);
      }
      return `## ${section}\n\n${lines.map((l) => `| ${l.join(' | ')} |`).join('\n')}\n`;
    })
    .join('\n');
}

/**
 * Median ms of an (a)synchronous call over at least `minMs` and `minReps` calls, after a warm-up
 * of 3 calls and at least `warmupMs`. In a browser, warm up as long as you measure: V8 runs wasm
 * first through its baseline compiler and optimises hot functions later, in the background.
 */
export async function medianMs(fn: () => unknown, minMs: number, opts: { minReps?: number; warmupMs?: number } = {}): Promise<number> {
  const minReps = opts.minReps ?? 10;
  for (let i = 0, t0 = performance.now(); i < 3 || performance.now() - t0 < (opts.warmupMs ?? 0); i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < minReps || performance.now() - start < minMs) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
    if (times.length > 20000) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

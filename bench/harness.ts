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

/**
 * Progress for long jobs: a cli-progress bar on a terminal, a line every few seconds
 * otherwise (CI logs), nothing when silenced.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  start(total: number, startValue: number, label: string): void;
  update(value: number, fields: Record<string, string | number>): void;
  stop(): void;
}

export function makeProgress(mode: 'auto' | 'bar' | 'lines' | 'none' = 'auto'): Progress {
  const m = mode === 'auto' ? (process.stderr.isTTY ? 'bar' : 'lines') : mode;
  if (m === 'none') return { start() {}, update() {}, stop() {} };
  if (m === 'bar') {
    let bar: cliProgress.SingleBar | null = null;
    return {
      start(total, startValue, label) {
        bar = new cliProgress.SingleBar(
          { format: `${label} [{bar}] {value}/{total} | {info} | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true, etaBuffer: 50 },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total, startValue, { info: '' });
      },
      update(value, fields) {
        bar?.update(value, { info: formatFields(fields) });
      },
      stop() {
        bar?.stop();
      },
    };
  }
  let last = 0;
  let total = 0;
  let label = '';
  return {
    start(t, _s, l) {
      total = t;
      label = l;
      last = 0;
    },
    update(value, fields) {
      const now = Date.now();
      if (now - last > 5000 || value === total) {
        last = now;
        process.stderr.write(`${label} ${value}/${total} | ${formatFields(fields)}\n`);
      }
    },
    stop() {},
  };
}

function formatFields(f: Record<string, string | number>): string {
  return Object.entries(f)
    .map(([k, v]) => `${k} ${typeof v === 'number' ? (Math.abs(v) < 0.01 && v !== 0 ? v.toExponential(2) : v.toFixed(Math.abs(v) >= 100 ? 0 : 4)) : v}`)
    .join(' | ');
}

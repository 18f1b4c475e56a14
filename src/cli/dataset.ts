/** `onedp dataset info PATH`. */
import type { Command } from 'commander';
import { datasetInfo } from '../data/zarr.js';
import { resolvePath } from './commands.js';

export function registerDatasetCommands(program: Command): void {
  const ds = program.command('dataset').description('inspect replay-buffer datasets');
  ds.command('info')
    .description('episodes, frames, arrays and value ranges of a zarr replay buffer')
    .argument('<path>', 'zarr dataset directory')
    .option('--json', 'print JSON')
    .action(async (p: string, f: { json?: boolean }) => {
      const info = await datasetInfo(resolvePath(p));
      if (f.json) {
        console.log(JSON.stringify(info, null, 1));
        return;
      }
      const lens = info.frames / Math.max(1, info.episodes);
      console.log(`${p}: ${info.episodes} episodes, ${info.frames} frames (mean ${lens.toFixed(1)} per episode)`);
      const rows = info.arrays.map((a) => [a.key, a.dtype, `(${a.shape.join(', ')})`, `(${a.chunks.join(', ')})`, a.compressor ?? 'none', fmt(a.min), fmt(a.max)]);
      const head = ['array', 'dtype', 'shape', 'chunks', 'compressor', 'min', 'max'];
      const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      for (const r of [head, ...rows]) console.log('  ' + r.map((c, i) => c.padEnd(w[i])).join('  '));
    });
}

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  return Number.isInteger(v) ? String(v) : v.toPrecision(6);
}

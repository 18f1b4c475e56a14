/** `onedp dataset info PATH`: zarr replay buffers and robomimic HDF5 files. */
import type { Command } from 'commander';
import { datasetInfo } from '../data/zarr.js';
import { robomimicInfo } from '../data/hdf5.js';
import { isHdf5Path } from '../data/load.js';
import { resolvePath } from './commands.js';

export function registerDatasetCommands(program: Command): void {
  const ds = program.command('dataset').description('inspect replay-buffer datasets');
  ds.command('info')
    .description('episodes, frames, arrays and value ranges of a zarr replay buffer or a robomimic HDF5 file')
    .argument('<path>', 'zarr dataset directory, or .hdf5 file')
    .option('--json', 'print JSON')
    .action(async (p: string, f: { json?: boolean }) => {
      if (isHdf5Path(p)) {
        const h = await robomimicInfo(resolvePath(p));
        if (f.json) {
          console.log(JSON.stringify(h, null, 1));
          return;
        }
        const masks = Object.entries(h.masks).map(([k, n]) => `${k} ${n}`).join(', ');
        console.log(`${p}: robomimic dataset${h.env ? ` of ${h.env}` : ''}, ${h.demos} demos, ${h.frames} frames (mean ${(h.frames / h.demos).toFixed(1)} per demo)${masks ? `; masks: ${masks}` : ''}`);
        table(['array', 'frame', 'min', 'max'], h.arrays.map((a) => [a.key, `(${a.frameShape.join(', ')})`, fmt(a.min), fmt(a.max)]));
        return;
      }
      const info = await datasetInfo(resolvePath(p));
      if (f.json) {
        console.log(JSON.stringify(info, null, 1));
        return;
      }
      const lens = info.frames / Math.max(1, info.episodes);
      console.log(`${p}: ${info.episodes} episodes, ${info.frames} frames (mean ${lens.toFixed(1)} per episode)`);
      const rows = info.arrays.map((a) => [a.key, a.dtype, `(${a.shape.join(', ')})`, `(${a.chunks.join(', ')})`, a.compressor ?? 'none', fmt(a.min), fmt(a.max)]);
      table(['array', 'dtype', 'shape', 'chunks', 'compressor', 'min', 'max'], rows);
    });
}

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  return Number.isInteger(v) ? String(v) : v.toPrecision(6);
}

function table(head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [head, ...rows]) console.log('  ' + r.map((c, i) => c.padEnd(w[i])).join('  '));
}

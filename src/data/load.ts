/** Opening a dataset by path: a zarr replay buffer, a robomimic HDF5 file, or a built-in synthetic set. */
import { promises as fs } from 'node:fs';
import { ReplayBuffer } from './replay.js';
import { bimodalDataset } from './synthetic.js';
import { readReplayBuffer } from './zarr.js';
import { readRobomimic, robomimicToReplay } from './hdf5.js';

/** HDF5 files by their extension (robomimic's are .hdf5). */
export const isHdf5Path = (p: string): boolean => /\.(hdf5|h5)$/i.test(p);

/**
 * `synthetic:bimodal` (optionally `synthetic:bimodal:EPISODES`), a path to a zarr replay
 * buffer, or a robomimic HDF5 file (`.hdf5`, `.h5`: `action` and its observation keys). `keys` restricts which arrays are read (images are large).
 */
export async function openDataset(spec: string, keys?: string[]): Promise<ReplayBuffer> {
  const m = /^synthetic:bimodal(?::(\d+))?$/.exec(spec);
  if (m) return bimodalDataset({ episodes: m[1] ? Number(m[1]) : 40 });
  if (spec.startsWith('synthetic:')) throw new Error(`unknown synthetic dataset "${spec}" (known: synthetic:bimodal)`);
  try {
    await fs.stat(spec);
  } catch {
    throw new Error(`${spec}: dataset not found`);
  }
  if (isHdf5Path(spec)) {
    const rb = robomimicToReplay(await readRobomimic(spec, { trainingOnly: true }), { source: spec });
    if (!keys) return rb;
    const missing = keys.filter((k) => !rb.arrays.has(k));
    if (missing.length) throw new Error(`${spec}: no ${missing.join(', ')} (has ${[...rb.arrays.keys()].join(', ')})`);
    return new ReplayBuffer(new Map(keys.map((k) => [k, rb.arrays.get(k)!])), rb.episodeEnds, spec);
  }
  return readReplayBuffer(spec, keys ? { keys } : undefined);
}

/** Opening a dataset by path: a zarr replay buffer, or a built-in synthetic set. */
import { promises as fs } from 'node:fs';
import { ReplayBuffer } from './replay.js';
import { bimodalDataset } from './synthetic.js';
import { readReplayBuffer } from './zarr.js';

/**
 * `synthetic:bimodal` (optionally `synthetic:bimodal:EPISODES`) or a path to a zarr replay
 * buffer. `keys` restricts which arrays are read (images are large).
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
  return readReplayBuffer(spec, keys ? { keys } : undefined);
}

/** Issue 3 benchmark: trainer throughput for the default PushT-state policy config. */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { ReplayBuffer } from '../src/data/replay.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { trainPolicy } from '../src/train/trainer.js';
import { Rng } from '../src/util/rng.js';
import type { BenchRow } from './harness.js';

/** PushT-shaped random data: 20-D observations (keypoints + agent), 2-D actions. */
export function pushtShaped(episodes: number, length: number): ReplayBuffer {
  const rng = new Rng(0);
  const n = episodes * length;
  return new ReplayBuffer(
    { obs: { data: rng.fillUniform(new Float32Array(n * 20), 0, 512), frameShape: [20] }, action: { data: rng.fillUniform(new Float32Array(n * 2), 0, 512), frameShape: [2] } },
    Array.from({ length: episodes }, (_, i) => (i + 1) * length),
  );
}

export async function benchTrain(rows: BenchRow[], opts: { quick: boolean }): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-bench-'));
  for (const batch of opts.quick ? [256] : [64, 256]) {
    const steps = 6;
    const times: number[] = [];
    let last = performance.now();
    await trainPolicy({
      policy: defaultPolicyConfig(20, 2),
      buffer: pushtShaped(50, 120),
      outDir: path.join(dir, `b${batch}`),
      train: { steps, batchSize: batch, checkpointEvery: 1000 },
      progress: 'none',
      onStep: () => {
        const now = performance.now();
        times.push(now - last);
        last = now;
      },
    });
    // The first step includes kernel warm-up; the last includes the final checkpoint.
    const steady = times.slice(1, -1).sort((a, b) => a - b);
    const ms = steady[Math.floor(steady.length / 2)];
    rows.push({ section: 'train', name: `trainer step, default PushT-state policy (4.56M), batch ${batch}`, ms, extra: { 'samples/s': (1000 * batch) / ms } });
  }
  await fs.rm(dir, { recursive: true, force: true });
}

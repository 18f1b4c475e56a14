/**
 * Distillation cost against pre-training, per step, measured back to back in one process on
 * the recipe-size network (`onedp reproduce pusht-state`: U-Net 32/64, step embedding 64;
 * pre-training and CP at batch 64, OneDP at its default batch 32 and at 64). Wall-clock totals of a long run on a shared machine swing with whatever else runs;
 * per-step medians taken together give the ratio the recipe's step counts imply.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { trainPolicy } from '../src/train/trainer.js';
import { distillOneDp } from '../src/distill/distill.js';
import { distillConsistency } from '../src/distill/consistency.js';
import { noiseConfig } from '../src/cli/train.js';
import { pushtShaped } from './train.js';
import type { BenchRow } from './harness.js';

/** Median step time of a loop that calls `tick` after each step (first and last dropped). */
async function stepMs(run: (tick: () => void) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  let last = performance.now();
  await run(() => {
    const now = performance.now();
    times.push(now - last);
    last = now;
  });
  const steady = times.slice(1, -1).sort((a, b) => a - b);
  return steady[Math.floor(steady.length / 2)];
}

export async function benchDistill(rows: BenchRow[], opts: { quick: boolean }): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-bench-'));
  const steps = opts.quick ? 8 : 40;
  const buffer = pushtShaped(50, 120);
  const unet = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
  const ms: Record<string, number> = {};
  for (const kind of ['ddpm', 'edm'] as const) {
    let teacher: Awaited<ReturnType<typeof trainPolicy>>['policy'] | null = null;
    ms[`pretrain ${kind}`] = await stepMs(async (tick) => {
      const r = await trainPolicy({ policy: defaultPolicyConfig(20, 2, { unet, noise: noiseConfig(kind) }), buffer, outDir: path.join(dir, kind), train: { steps, batchSize: 64, checkpointEvery: 10_000 }, progress: 'none', onStep: tick });
      teacher = r.policy;
    });
    const t = teacher!;
    for (const method of ['onedp-s', 'onedp-d'] as const) {
      for (const batchSize of [32, 64]) {
        ms[`${method} ${kind} ${batchSize}`] = await stepMs(async (tick) => {
          const r = await distillOneDp({ teacher: t, buffer, config: { method, steps, batchSize }, outDir: path.join(dir, `${kind}-${method}`), progress: 'none', onStep: tick });
          r.policy.dispose();
        });
      }
    }
    if (kind === 'edm') {
      ms['cp edm 64'] = await stepMs(async (tick) => {
        const r = await distillConsistency({ teacher: t, buffer, config: { steps, batchSize: 64 }, outDir: path.join(dir, 'cp'), progress: 'none', onStep: tick });
        r.policy.dispose();
      });
    }
    t.dispose();
  }
  for (const [name, v] of Object.entries(ms)) {
    const [what, kind, batch] = name.split(' ');
    const pre = what === 'pretrain';
    const extra: Record<string, number> = pre ? {} : { 'x pre-training step': v / ms[`pretrain ${kind}`] };
    rows.push({ section: 'distill', name: `${pre ? 'pre-training' : what} step, ${kind.toUpperCase()} teacher, recipe U-Net 32/64, batch ${pre ? 64 : batch}`, ms: v, extra });
  }
  await fs.rm(dir, { recursive: true, force: true });
}

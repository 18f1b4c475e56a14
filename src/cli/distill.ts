/** `onedp distill`: a one-step OneDP policy from a trained diffusion policy. */
import type { Command } from 'commander';
import { initEngine } from '../engine/index.js';
import { openDataset } from '../data/load.js';
import { defaultObsSpec, lowdimBuffer } from '../data/obs_spec.js';
import { loadDiffusionPolicy } from '../policy/load.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { distillOneDp, DEFAULT_DISTILL_CONFIG, type DistillConfig } from '../distill/distill.js';
import { UsageError, parseFloatFlag, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';

export function registerDistillCommand(program: Command): void {
  program
    .command('distill')
    .description('distil a trained diffusion policy into a one-step policy (OneDP-S or OneDP-D)')
    .requiredOption('--teacher <ckpt>', 'diffusion-policy checkpoint or run directory')
    .requiredOption('--out <dir>', 'output run directory')
    .option('--method <m>', 'onedp-s or onedp-d', 'onedp-s')
    .option('--dataset <path>', 'training data (default: the teacher\'s dataset)')
    .option('--steps <n>', `distillation steps (default ${DEFAULT_DISTILL_CONFIG.steps})`)
    .option('--batch-size <n>', `batch size (default ${DEFAULT_DISTILL_CONFIG.batchSize})`)
    .option('--lr-generator <x>', `generator learning rate (default ${DEFAULT_DISTILL_CONFIG.lrGenerator}; paper 1e-6)`)
    .option('--lr-score <x>', `score-network learning rate (default ${DEFAULT_DISTILL_CONFIG.lrScore}; paper 2e-5)`)
    .option('--seed <n>', 'seed', '0')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .action(async (f: { teacher: string; out: string; method: string; dataset?: string; steps?: string; batchSize?: string; lrGenerator?: string; lrScore?: string; seed: string; progress: string }) => {
      if (f.method !== 'onedp-s' && f.method !== 'onedp-d') throw new UsageError(`--method must be onedp-s or onedp-d, got "${f.method}"`);
      const config: Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' } = { method: f.method, seed: parseIntFlag('seed', f.seed, 0) };
      if (f.steps) config.steps = parseIntFlag('steps', f.steps);
      if (f.batchSize) config.batchSize = parseIntFlag('batch-size', f.batchSize);
      if (f.lrGenerator) config.lrGenerator = parseFloatFlag('lr-generator', f.lrGenerator, { min: 0, exclusiveMin: true });
      if (f.lrScore) config.lrScore = parseFloatFlag('lr-score', f.lrScore, { min: 0, exclusiveMin: true });
      await initEngine();
      const teacherPath = resolvePath(f.teacher);
      const ck = await loadCheckpoint(teacherPath);
      if (ck.meta.kind !== 'diffusion-policy') throw new UsageError(`${ck.path}: is a ${JSON.stringify(ck.meta.kind)} checkpoint; --teacher needs a diffusion-policy checkpoint`);
      const prov = (ck.meta.provenance ?? {}) as { dataset?: string; obsSpec?: string };
      const datasetPath = f.dataset ?? prov.dataset;
      if (!datasetPath) throw new UsageError(`${ck.path}: does not record its dataset; pass --dataset`);
      const raw = await openDataset(datasetPath);
      const buffer = lowdimBuffer(raw, prov.obsSpec ?? defaultObsSpec(raw));
      const teacher = await loadDiffusionPolicy(ck.path);
      const res = await distillOneDp({ teacher, buffer, config, outDir: resolvePath(f.out), progress: f.progress as 'auto', provenance: { teacher: ck.path, dataset: datasetPath, obsSpec: prov.obsSpec } });
      console.log(JSON.stringify({ checkpoint: res.checkpoint, method: f.method, steps: res.generatorLosses.length, seconds: Number(res.wallSeconds.toFixed(1)) }));
    });
}

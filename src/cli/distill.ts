/** `onedp distill`: a one-step OneDP policy (or the Consistency Policy baseline) from a trained diffusion policy. */
import type { Command } from 'commander';
import { startEngine, THREADS_OPTION } from './engine.js';
import { openDataset } from '../data/load.js';
import { defaultObsSpec, policyBuffer } from '../data/obs_spec.js';
import { loadDiffusionPolicy } from '../policy/load.js';
import type { DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { distillOneDp, DEFAULT_DISTILL_CONFIG, ONEDP_S_RATES, type DistillConfig } from '../distill/distill.js';
import { distillConsistency, DEFAULT_CONSISTENCY_CONFIG, type ConsistencyConfig } from '../distill/consistency.js';
import { UsageError, parseFloatFlag, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';

interface DistillFlags {
  teacher: string;
  out: string;
  method: string;
  dataset?: string;
  steps?: string;
  batchSize?: string;
  lrGenerator?: string;
  lrScore?: string;
  lrSchedule?: string;
  ema?: string;
  lr?: string;
  dropout?: string;
  seed: string;
  progress: string;
  threads?: string;
}

export function registerDistillCommand(program: Command): void {
  program
    .command('distill')
    .description('distil a trained diffusion policy into a one-step policy (OneDP-S, OneDP-D) or a Consistency Policy (cp, EDM teachers)')
    .requiredOption('--teacher <ckpt>', 'diffusion-policy checkpoint or run directory')
    .requiredOption('--out <dir>', 'output run directory')
    .option('--method <m>', 'onedp-s, onedp-d or cp (Consistency Policy baseline)', 'onedp-s')
    .option('--dataset <path>', 'training data (default: the teacher\'s dataset)')
    .option('--steps <n>', `distillation steps (default ${DEFAULT_DISTILL_CONFIG.steps})`)
    .option('--batch-size <n>', `batch size (default ${DEFAULT_DISTILL_CONFIG.batchSize})`)
    .option('--lr-generator <x>', `OneDP generator learning rate (default ${ONEDP_S_RATES.lrGenerator} for OneDP-S, ${DEFAULT_DISTILL_CONFIG.lrGenerator} for OneDP-D; paper 1e-6)`)
    .option('--lr-score <x>', `OneDP-S score-network learning rate (default ${ONEDP_S_RATES.lrScore}; paper 2e-5)`)
    .option('--lr-schedule <s>', `OneDP: constant or cosine (decay both rates to 0 over the run; default ${DEFAULT_DISTILL_CONFIG.lrSchedule})`)
    .option('--ema <decay>', `OneDP: cap of the generator's weight average that is saved, in [0, 1); 0 saves the raw weights (default ${DEFAULT_DISTILL_CONFIG.emaDecay})`)
    .option('--lr <x>', `cp: student learning rate (default ${DEFAULT_CONSISTENCY_CONFIG.lr}, AdamW betas 0.95/0.999)`)
    .option('--dropout <x>', `cp: student dropout (default ${DEFAULT_CONSISTENCY_CONFIG.dropout})`)
    .option('--seed <n>', 'seed', '0')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .option(...THREADS_OPTION)
    .action(async (f: DistillFlags) => {
      if (f.method !== 'onedp-s' && f.method !== 'onedp-d' && f.method !== 'cp') throw new UsageError(`--method must be onedp-s, onedp-d or cp, got "${f.method}"`);
      const isCp = f.method === 'cp';
      const misplaced = isCp ? [f.lrGenerator && '--lr-generator', f.lrScore && '--lr-score', f.lrSchedule && '--lr-schedule', f.ema && '--ema'] : [f.lr && '--lr', f.dropout && '--dropout'];
      const bad = misplaced.filter(Boolean);
      if (bad.length) throw new UsageError(`${bad.join(', ')} ${bad.length > 1 ? 'do' : 'does'} not apply to --method ${f.method}`);
      const seed = parseIntFlag('seed', f.seed, 0);
      const cpConfig: Partial<ConsistencyConfig> = { seed };
      const onedpConfig: Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' } = { method: isCp ? 'onedp-s' : (f.method as 'onedp-s' | 'onedp-d'), seed };
      const common = isCp ? cpConfig : onedpConfig;
      if (f.steps) common.steps = parseIntFlag('steps', f.steps);
      if (f.batchSize) common.batchSize = parseIntFlag('batch-size', f.batchSize);
      if (f.lrGenerator) onedpConfig.lrGenerator = parseFloatFlag('lr-generator', f.lrGenerator, { min: 0, exclusiveMin: true });
      if (f.lrScore) onedpConfig.lrScore = parseFloatFlag('lr-score', f.lrScore, { min: 0, exclusiveMin: true });
      if (f.lrSchedule) {
        if (f.lrSchedule !== 'constant' && f.lrSchedule !== 'cosine') throw new UsageError(`--lr-schedule must be constant or cosine, got "${f.lrSchedule}"`);
        onedpConfig.lrSchedule = f.lrSchedule;
      }
      if (f.ema) {
        onedpConfig.emaDecay = parseFloatFlag('ema', f.ema, { min: 0 });
        if (onedpConfig.emaDecay >= 1) throw new UsageError(`--ema must be below 1, got "${f.ema}"`);
      }
      if (f.lr) cpConfig.lr = parseFloatFlag('lr', f.lr, { min: 0, exclusiveMin: true });
      if (f.dropout) {
        cpConfig.dropout = parseFloatFlag('dropout', f.dropout, { min: 0 });
        if (cpConfig.dropout >= 1) throw new UsageError(`--dropout must be below 1, got "${f.dropout}"`);
      }
      const { engine } = await startEngine(f.threads);
      process.stderr.write(`onedp distill: ${f.method}, engine ${engine}\n`);
      const teacherPath = resolvePath(f.teacher);
      const ck = await loadCheckpoint(teacherPath);
      if (ck.meta.kind !== 'diffusion-policy') throw new UsageError(`${ck.path}: is a ${JSON.stringify(ck.meta.kind)} checkpoint; --teacher needs a diffusion-policy checkpoint`);
      const teacherNoise = (ck.meta.policyConfig as DiffusionPolicyConfig | undefined)?.noise?.kind;
      if (isCp && teacherNoise !== 'edm') throw new UsageError(`${ck.path}: --method cp needs an EDM-trained teacher; this one was trained with ${String(teacherNoise).toUpperCase()} (train with --schedule edm)`);
      const prov = (ck.meta.provenance ?? {}) as { dataset?: string; obsSpec?: string };
      const datasetPath = f.dataset ?? prov.dataset;
      if (!datasetPath) throw new UsageError(`${ck.path}: does not record its dataset; pass --dataset`);
      const raw = await openDataset(datasetPath);
      const buffer = policyBuffer(raw, prov.obsSpec ?? defaultObsSpec(raw), datasetPath);
      const teacher = await loadDiffusionPolicy(ck.path);
      const provenance = { teacher: ck.path, dataset: datasetPath, obsSpec: prov.obsSpec, engine };
      const outDir = resolvePath(f.out);
      const progress = f.progress as 'auto';
      if (isCp) {
        const res = await distillConsistency({ teacher, buffer, config: cpConfig, outDir, progress, provenance });
        console.log(JSON.stringify({ checkpoint: res.checkpoint, method: f.method, steps: res.ctmLosses.length, seconds: Number(res.wallSeconds.toFixed(1)) }));
        return;
      }
      const res = await distillOneDp({ teacher, buffer, config: onedpConfig, outDir, progress, provenance });
      console.log(JSON.stringify({ checkpoint: res.checkpoint, method: f.method, steps: res.generatorLosses.length, seconds: Number(res.wallSeconds.toFixed(1)) }));
    });
}

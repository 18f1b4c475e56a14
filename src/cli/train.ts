/** `onedp train` and `onedp sample`. */
import type { Command } from 'commander';
import { initEngine } from '../engine/index.js';
import { startEngine, THREADS_OPTION } from './engine.js';
import { openDataset } from '../data/load.js';
import { defaultObsSpec, isImageSpec, parseObsSpec, policyBuffer } from '../data/obs_spec.js';
import { defaultVisionConfig } from '../policy/obs_encoder.js';
import { defaultPolicyConfig, type DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { DEFAULT_TRAIN_CONFIG, trainPolicy, type TrainConfig } from '../train/trainer.js';
import { loadDiffusionPolicy } from '../policy/load.js';
import { parseSampler } from '../diffusion/index.js';
import { SequenceSampler } from '../data/sequence.js';
import { UsageError, parseFloatFlag, parseIntFlag, parseIntList } from './errors.js';
import { readJsonFile, resolvePath } from './commands.js';
import type { SchedulerConfig } from '../diffusion/types.js';
import { noiseKind } from '../experiments/recipe.js';

interface TrainFlags {
  dataset: string;
  out: string;
  config?: string;
  schedule: string;
  obs?: string;
  steps?: string;
  batchSize?: string;
  lr?: string;
  seed?: string;
  checkpointEvery?: string;
  downDims?: string;
  stepEmbed?: string;
  encoderWidths?: string;
  resume?: boolean;
  progress?: string;
  threads?: string;
}

/** `--schedule`: the training noise schedule by name (a usage error for any other). */
export function noiseConfig(kind: string): SchedulerConfig {
  if (kind === 'ddpm' || kind === 'edm') return noiseKind(kind);
  throw new UsageError(`--schedule must be ddpm or edm, got "${kind}"`);
}

export function registerTrainCommands(program: Command): void {
  program
    .command('train')
    .description('train a diffusion policy on a replay buffer (zarr) and write checkpoints')
    .requiredOption('--dataset <path>', 'zarr replay buffer, or synthetic:bimodal')
    .requiredOption('--out <dir>', 'run directory (checkpoints go to <dir>/checkpoints)')
    .option('--config <file>', 'JSON file with {"policy": {...}, "train": {...}} overrides')
    .option('--schedule <kind>', 'training noise schedule: ddpm or edm', 'ddpm')
    .option('--obs <spec>', 'observation columns, e.g. "keypoint,state[0:2]" (default: PushT keypoints + agent position), or "image" for the camera frames + agent position')
    .option('--steps <n>', `optimisation steps (default ${DEFAULT_TRAIN_CONFIG.steps})`)
    .option('--batch-size <n>', `batch size (default ${DEFAULT_TRAIN_CONFIG.batchSize})`)
    .option('--lr <x>', `peak learning rate (default ${DEFAULT_TRAIN_CONFIG.lr})`)
    .option('--seed <n>', 'seed for initialisation, batches and noise (default 0)')
    .option('--checkpoint-every <n>', `steps between checkpoints (default ${DEFAULT_TRAIN_CONFIG.checkpointEvery})`)
    .option('--down-dims <list>', 'U-Net channels per level (default 64,128,256)')
    .option('--step-embed <n>', 'timestep embedding size (default 128)')
    .option('--encoder-widths <list>', 'image policies: ResNet-18 stage widths (default 16,32,64,128; the spec\'s full ResNet-18 is 64,128,256,512)')
    .option('--resume', 'continue from the latest checkpoint in --out')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .option(...THREADS_OPTION)
    .action(async (f: TrainFlags) => {
      const file = f.config ? ((await readJsonFile(resolvePath(f.config))) as { policy?: Partial<DiffusionPolicyConfig>; train?: Partial<TrainConfig> }) : {};
      if (f.config && (typeof file !== 'object' || file === null)) throw new UsageError(`${f.config}: expected a JSON object`);
      const train: Partial<TrainConfig> = { ...file.train };
      if (f.steps) train.steps = parseIntFlag('steps', f.steps);
      if (f.batchSize) train.batchSize = parseIntFlag('batch-size', f.batchSize);
      if (f.lr) train.lr = parseFloatFlag('lr', f.lr, { min: 0, exclusiveMin: true });
      if (f.seed) train.seed = parseIntFlag('seed', f.seed, 0);
      if (f.checkpointEvery) train.checkpointEvery = parseIntFlag('checkpoint-every', f.checkpointEvery);
      const raw = await openDataset(f.dataset);
      const spec = f.obs ?? defaultObsSpec(raw);
      const image = isImageSpec(spec);
      if (!image) parseObsSpec(spec);
      if (f.encoderWidths && !image) throw new UsageError('--encoder-widths applies to image policies (--obs image)');
      const buffer = policyBuffer(raw, spec, f.dataset);
      const vision = image ? { vision: defaultVisionConfig(f.encoderWidths ? { widths: parseIntList('encoder-widths', f.encoderWidths) } : {}) } : {};
      const base = defaultPolicyConfig(buffer.frameSize('obs'), buffer.frameSize('action'), { noise: noiseConfig(f.schedule), ...vision });
      const policy: DiffusionPolicyConfig = { ...base, ...file.policy, unet: { ...base.unet, ...file.policy?.unet } };
      if (f.downDims) policy.unet.downDims = parseIntList('down-dims', f.downDims);
      if (f.stepEmbed) policy.unet.diffusionStepEmbedDim = parseIntFlag('step-embed', f.stepEmbed);
      const { engine } = await startEngine(f.threads);
      process.stderr.write(`onedp train: ${buffer.numEpisodes} episodes, ${buffer.numFrames} frames, obs "${spec}" (${policy.obsDim}-D), ${policy.noise.kind}, engine ${engine}\n`);
      const res = await trainPolicy({
        policy,
        train,
        buffer,
        outDir: resolvePath(f.out),
        resume: !!f.resume,
        progress: f.progress as 'auto',
        provenance: { dataset: f.dataset, obsSpec: spec, argv: process.argv.slice(2), engine },
      });
      console.log(JSON.stringify({ checkpoint: res.checkpoint, steps: res.step, finalLoss: res.losses[res.losses.length - 1], seconds: Number(res.wallSeconds.toFixed(1)) }));
    });

  program
    .command('sample')
    .description('print action chunks a trained diffusion policy predicts')
    .requiredOption('--checkpoint <dir>', 'checkpoint or run directory')
    .option('--dataset <path>', 'take the observation history from this dataset')
    .option('--index <n>', 'training window index in the dataset', '0')
    .option('--obs <values>', 'observation history as JSON, e.g. [[0,0],[0,0]]')
    .option('--sampler <name>', 'ddpm, ddim-N or edm-N (default: the training schedule)')
    .option('-n, --num <n>', 'number of chunks to draw', '4')
    .option('--seed <n>', 'noise seed', '0')
    .action(async (f: { checkpoint: string; dataset?: string; index: string; obs?: string; sampler?: string; num: string; seed: string }) => {
      await initEngine();
      const policy = await loadDiffusionPolicy(resolvePath(f.checkpoint));
      const n = parseIntFlag('num', f.num);
      const { nObsSteps: to, obsDim } = policy.config;
      const cameras = policy.config.vision?.cameras ?? [];
      let hist: number[][];
      const frames: Record<string, Float32Array | Uint8Array> = {};
      if (f.obs) {
        if (cameras.length) throw new UsageError(`${f.checkpoint}: an image policy takes its observation from --dataset, not --obs`);
        try {
          hist = JSON.parse(f.obs) as number[][];
        } catch {
          throw new UsageError(`--obs must be JSON, got ${f.obs}`);
        }
        if (!Array.isArray(hist) || hist.length !== to || hist.some((r) => !Array.isArray(r) || r.length !== obsDim || r.some((v) => typeof v !== 'number'))) {
          throw new UsageError(`--obs must be ${to} rows of ${obsDim} numbers`);
        }
      } else if (f.dataset) {
        const raw = await openDataset(f.dataset);
        const ck = (await import('../train/checkpoint.js')).loadCheckpoint;
        const meta = (await ck(resolvePath(f.checkpoint))).meta;
        const spec = ((meta.provenance as { obsSpec?: string } | undefined)?.obsSpec) ?? defaultObsSpec(raw);
        const buf = policyBuffer(raw, spec, f.dataset);
        const sampler = new SequenceSampler(buf, { sequenceLength: policy.horizon, padBefore: to - 1, padAfter: policy.nActionSteps - 1 });
        const i = parseIntFlag('index', f.index, 0);
        if (i >= sampler.length) throw new UsageError(`--index ${i} is beyond the dataset's ${sampler.length} windows`);
        const w = sampler.batch('obs', [i]);
        hist = Array.from({ length: to }, (_, t) => Array.from(w.subarray(t * obsDim, (t + 1) * obsDim)));
        for (const cam of cameras) frames[cam] = sampler.frames(cam, [i], to);
      } else {
        throw new UsageError('give --obs or --dataset');
      }
      const sampler = f.sampler ? parseSampler(f.sampler, policy.config.noise.kind as 'ddpm' | 'edm') : undefined;
      // n copies of the one history: per key, the values repeated along the batch.
      const repeat = <T extends Float32Array | Uint8Array>(v: T): T => {
        const out = new (v.constructor as { new (n: number): T })(v.length * n);
        for (let k = 0; k < n; k++) out.set(v, k * v.length);
        return out;
      };
      const data: Record<string, Float32Array | Uint8Array> = { obs: repeat(Float32Array.from(hist.flat())) };
      for (const [k, v] of Object.entries(frames)) data[k] = repeat(v);
      const out = policy.predictAction({ batch: n, data }, { seed: parseIntFlag('seed', f.seed, 0), sampler });
      console.log(JSON.stringify({ observation: hist, timing: out.timing, chunks: out.chunk.map((c) => c.map((a) => a.map((v) => Number(v.toFixed(3))))) }, null, 1));
    });
}

/**
 * `onedp quickstart` (the main job, `npm start`): the whole PushT pipeline on a small default.
 * Expert demonstrations -> DDPM diffusion policy on keypoint observations -> OneDP-S and
 * OneDP-D distillation -> evaluation of DP (DDPM-100, DDIM-10, DDIM-1) and both one-step
 * policies on the same test seeds -> a table in the shape of the paper's Table 1 with latency,
 * runs/<name>/report.md and results.json.
 */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseThreadsFlag, startEngine, THREADS_OPTION } from './engine.js';
import { collectPushT } from '../envs/collect.js';
import { writeReplayBuffer, readReplayBuffer } from '../data/zarr.js';
import { IMAGE_OBS_SPEC, policyBuffer, specKeys } from '../data/obs_spec.js';
import { defaultVisionConfig } from '../policy/obs_encoder.js';
import { defaultPolicyConfig, DiffusionPolicy } from '../policy/diffusion_policy.js';
import { trainPolicy } from '../train/trainer.js';
import { loadDiffusionPolicy, loadPolicy } from '../policy/load.js';
import { distillOneDp, DEFAULT_DISTILL_CONFIG } from '../distill/distill.js';
import { DDIMScheduler, DDPMScheduler } from '../diffusion/index.js';
import { parseSeedRange } from '../eval/harness.js';
import type { PushTEvalResult } from '../eval/pusht.js';
import { evalRow, rowsTable, timingTable, type Row } from '../eval/report.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { UsageError, parseIntFlag, parseIntList } from './errors.js';
import { resolvePath } from './commands.js';
import type { Policy } from '../policy/types.js';

export interface QuickstartOptions {
  /** Keypoint state observations, or camera frames + agent position. */
  obs: 'state' | 'image';
  name: string;
  runsDir: string;
  episodes: number;
  trainSteps: number;
  batchSize: number;
  downDims: number[];
  /** Image policies: ResNet-18 stage widths. */
  encoderWidths?: number[];
  distillSteps: number;
  testSeeds: number[];
  progress: 'auto' | 'bar' | 'lines' | 'none';
  /** Native kernel threads (default: ONEDP_THREADS, else all cores). */
  threads?: number;
}

const log = (s: string) => process.stderr.write(`[quickstart] ${s}\n`);

export async function quickstart(o: QuickstartOptions): Promise<{ rows: Row[]; dir: string }> {
  const dir = path.join(o.runsDir, o.name);
  await fs.mkdir(dir, { recursive: true });
  const { engine: backend } = await startEngine(o.threads);
  log(`engine: ${backend}`);
  const timing: Record<string, number> = {};
  const clock = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const t0 = performance.now();
    const r = await f();
    timing[name] = (performance.now() - t0) / 1000;
    log(`${name}: ${timing[name].toFixed(1)} s`);
    return r;
  };

  // 1. Demonstrations.
  const dataPath = path.join(dir, 'pusht.zarr');
  const image = o.obs === 'image';
  const spec = image ? IMAGE_OBS_SPEC : 'keypoint,state[0:2]';
  const demos = await clock('demonstrations', async () => {
    const res = collectPushT({ episodes: o.episodes, seed: 0, images: image });
    await writeReplayBuffer(dataPath, res.buffer);
    return res;
  });
  log(`${demos.buffer.numEpisodes} expert episodes, ${demos.buffer.numFrames} frames, mean length ${demos.meanLength.toFixed(1)}`);
  const buffer = policyBuffer(await readReplayBuffer(dataPath, { keys: specKeys(spec) }), spec, dataPath);

  // 2. Diffusion policy (DDPM).
  const dpDir = path.join(dir, 'dp');
  const policyConfig = defaultPolicyConfig(image ? 2 : 20, 2, {
    unet: { diffusionStepEmbedDim: 64, downDims: o.downDims, kernelSize: 5, nGroups: 8, condPredictScale: true },
    ...(image ? { vision: defaultVisionConfig(o.encoderWidths ? { widths: o.encoderWidths } : {}) } : {}),
  });
  await clock('pretraining', () =>
    trainPolicy({
      policy: policyConfig,
      buffer,
      outDir: dpDir,
      train: { steps: o.trainSteps, batchSize: o.batchSize, lr: 1e-3, warmupSteps: Math.min(500, Math.floor(o.trainSteps / 10)), checkpointEvery: Math.max(500, Math.floor(o.trainSteps / 4)) },
      progress: o.progress,
      provenance: { dataset: dataPath, obsSpec: spec },
    }),
  );

  // 3. Distillation.
  for (const method of ['onedp-s', 'onedp-d'] as const) {
    const teacher = await loadDiffusionPolicy(dpDir);
    await clock(`distill ${method}`, () =>
      distillOneDp({ teacher, buffer, config: { method, steps: o.distillSteps }, outDir: path.join(dir, method), progress: o.progress, provenance: { teacher: dpDir, dataset: dataPath, obsSpec: spec } }),
    );
    teacher.dispose();
  }

  // 4. Evaluation on the same test seeds.
  const rows: Row[] = [];
  const results: Record<string, PushTEvalResult> = {};
  const evalOne = async (label: string, policy: Policy) => {
    const { row, result } = await clock(`eval ${label}`, () => evalRow(label, policy, o.testSeeds));
    results[label] = result;
    rows.push(row);
    log(`${label}: score ${row.score.toFixed(3)} +- ${row.std.toFixed(3)}, success ${row.success.toFixed(2)}, action ${row.actionMs.toFixed(2)} ms`);
  };
  const dp = await loadDiffusionPolicy(dpDir);
  for (const [label, sampler] of [
    ['DP (DDPM)', new DDPMScheduler()],
    ['DP (DDIM)', new DDIMScheduler({ numInferenceSteps: 10 })],
    ['DP (DDIM, 1 step)', new DDIMScheduler({ numInferenceSteps: 1 })],
  ] as const) {
    dp.sampler = sampler;
    await evalOne(label, dp);
  }
  for (const [label, m] of [['OneDP-D', 'onedp-d'], ['OneDP-S', 'onedp-s']] as const) {
    await evalOne(label, await loadPolicy(path.join(dir, m)));
  }

  const report = renderReport(o, rows, timing, { backend, frames: demos.buffer.numFrames, episodes: demos.buffer.numEpisodes, meanLength: demos.meanLength, params: dp.unet.numParameters(), encoderParams: dp.model.obsEncoder?.numParameters() ?? 0 });
  await writeFileAtomic(path.join(dir, 'report.md'), report);
  await writeFileAtomic(path.join(dir, 'results.json'), JSON.stringify({ options: o, rows, timing, episodes: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.episodes])) }, null, 1));
  console.log(report);
  return { rows, dir };
}

function renderReport(o: QuickstartOptions, rows: Row[], timing: Record<string, number>, info: { backend: string; frames: number; episodes: number; meanLength: number; params: number; encoderParams: number }): string {
  const image = o.obs === 'image';
  const lines = [
    `# onedp quickstart: PushT (${image ? 'image' : 'keypoints'}), ${o.testSeeds.length} test seeds`,
    '',
    `Demonstrations: ${info.episodes} scripted-expert episodes (${info.frames} frames, mean ${info.meanLength.toFixed(1)} steps). ` +
      (image ? `Observation: 96x96 camera frames (random 84x84 crops in training, centre crops in evaluation) + agent position, ResNet-18 encoder of widths ${(o.encoderWidths ?? defaultVisionConfig().encoder.widths).join('/')} (${(info.encoderParams / 1e6).toFixed(2)}M parameters). ` : '') +
      `Diffusion policy: ConditionalUnet1D ${o.downDims.join('/')} (${(info.params / 1e6).toFixed(2)}M parameters), DDPM, ${o.trainSteps} steps at batch ${o.batchSize}. ` +
      `Distillation: ${o.distillSteps} steps each at batch ${DEFAULT_DISTILL_CONFIG.batchSize}. Engine: ${info.backend}. Test seeds ${o.testSeeds[0]}..${o.testSeeds[o.testSeeds.length - 1]}.`,
    '',
    ...rowsTable(rows),
    '',
    'Latency is the median of batch-1 calls on this machine; score is the maximum coverage reward of each episode.',
    '',
    ...timingTable(timing),
    '',
  ];
  return lines.join('\n');
}

export function registerQuickstartCommand(program: Command): void {
  program
    .command('quickstart')
    .description('the end-to-end PushT pipeline on a small default (state: about 2.5 minutes on 2 cores with the native kernels; image: longer)')
    .option('--obs <kind>', 'state (keypoints + agent position) or image (camera frames + agent position)', 'state')
    .option('--name <name>', 'run name under --runs (default quickstart, or quickstart-image)')
    .option('--runs <dir>', 'runs directory', 'runs')
    .option('--episodes <n>', 'expert demonstrations (default: state 100, image 30)')
    .option('--train-steps <n>', 'diffusion-policy training steps (default: state 3000, image 600)')
    .option('--batch-size <n>', 'batch size (default: state 64, image 32)')
    .option('--down-dims <list>', 'U-Net channels', '32,64')
    .option('--encoder-widths <list>', 'image: ResNet-18 stage widths (the spec\'s: 64,128,256,512)', '16,32,64,128')
    .option('--distill-steps <n>', 'distillation steps per method (default: state 120, image 60)')
    .option('--test-seeds <A:B>', 'test seeds', '100000:100050')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .option(...THREADS_OPTION)
    .action(async (f: Record<string, string>) => {
      if (f.obs !== 'state' && f.obs !== 'image') throw new UsageError(`--obs must be state or image, got "${f.obs}"`);
      const image = f.obs === 'image';
      const dflt = (v: string | undefined, state: string, img: string) => v ?? (image ? img : state);
      let seeds: number[];
      try {
        seeds = parseSeedRange(f.testSeeds);
      } catch (e) {
        throw new UsageError(`--test-seeds: ${(e as Error).message}`);
      }
      await quickstart({
        obs: f.obs,
        name: dflt(f.name, 'quickstart', 'quickstart-image'),
        runsDir: resolvePath(f.runs),
        episodes: parseIntFlag('episodes', dflt(f.episodes, '100', '30')),
        trainSteps: parseIntFlag('train-steps', dflt(f.trainSteps, '3000', '600')),
        batchSize: parseIntFlag('batch-size', dflt(f.batchSize, '64', '32')),
        downDims: parseIntList('down-dims', f.downDims),
        encoderWidths: parseIntList('encoder-widths', f.encoderWidths),
        distillSteps: parseIntFlag('distill-steps', dflt(f.distillSteps, '120', '60')),
        testSeeds: seeds,
        progress: f.progress as 'auto',
        threads: parseThreadsFlag(f.threads),
      });
    });
}

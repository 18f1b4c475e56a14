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
import { initEngine } from '../engine/index.js';
import { collectPushT } from '../envs/collect.js';
import { writeReplayBuffer, readReplayBuffer } from '../data/zarr.js';
import { lowdimBuffer } from '../data/obs_spec.js';
import { defaultPolicyConfig, DiffusionPolicy } from '../policy/diffusion_policy.js';
import { trainPolicy } from '../train/trainer.js';
import { loadDiffusionPolicy, loadPolicy } from '../policy/load.js';
import { distillOneDp } from '../distill/distill.js';
import { DDIMScheduler, DDPMScheduler } from '../diffusion/index.js';
import { parseSeedRange } from '../eval/harness.js';
import type { PushTEvalResult } from '../eval/pusht.js';
import { evalRow, rowsTable, timingTable, type Row } from '../eval/report.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { UsageError, parseIntFlag, parseIntList } from './errors.js';
import { resolvePath } from './commands.js';
import type { Policy } from '../policy/types.js';

export interface QuickstartOptions {
  name: string;
  runsDir: string;
  episodes: number;
  trainSteps: number;
  batchSize: number;
  downDims: number[];
  distillSteps: number;
  testSeeds: number[];
  progress: 'auto' | 'bar' | 'lines' | 'none';
}

const log = (s: string) => process.stderr.write(`[quickstart] ${s}\n`);

export async function quickstart(o: QuickstartOptions): Promise<{ rows: Row[]; dir: string }> {
  const dir = path.join(o.runsDir, o.name);
  await fs.mkdir(dir, { recursive: true });
  const backend = await initEngine();
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
  const demos = await clock('demonstrations', async () => {
    const res = collectPushT({ episodes: o.episodes, seed: 0 });
    await writeReplayBuffer(dataPath, res.buffer);
    return res;
  });
  log(`${demos.buffer.numEpisodes} expert episodes, ${demos.buffer.numFrames} frames, mean length ${demos.meanLength.toFixed(1)}`);
  const buffer = lowdimBuffer(await readReplayBuffer(dataPath, { keys: ['keypoint', 'state', 'action'] }), 'keypoint,state[0:2]');

  // 2. Diffusion policy (DDPM).
  const dpDir = path.join(dir, 'dp');
  const policyConfig = defaultPolicyConfig(20, 2, { unet: { diffusionStepEmbedDim: 64, downDims: o.downDims, kernelSize: 5, nGroups: 8, condPredictScale: true } });
  await clock('pretraining', () =>
    trainPolicy({
      policy: policyConfig,
      buffer,
      outDir: dpDir,
      train: { steps: o.trainSteps, batchSize: o.batchSize, lr: 1e-3, warmupSteps: Math.min(500, Math.floor(o.trainSteps / 10)), checkpointEvery: Math.max(500, Math.floor(o.trainSteps / 4)) },
      progress: o.progress,
      provenance: { dataset: dataPath, obsSpec: 'keypoint,state[0:2]' },
    }),
  );

  // 3. Distillation.
  for (const method of ['onedp-s', 'onedp-d'] as const) {
    const teacher = await loadDiffusionPolicy(dpDir);
    await clock(`distill ${method}`, () =>
      distillOneDp({ teacher, buffer, config: { method, steps: o.distillSteps, batchSize: o.batchSize }, outDir: path.join(dir, method), progress: o.progress, provenance: { teacher: dpDir, dataset: dataPath, obsSpec: 'keypoint,state[0:2]' } }),
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

  const report = renderReport(o, rows, timing, { backend, frames: demos.buffer.numFrames, episodes: demos.buffer.numEpisodes, meanLength: demos.meanLength, params: dp.unet.numParameters() });
  await writeFileAtomic(path.join(dir, 'report.md'), report);
  await writeFileAtomic(path.join(dir, 'results.json'), JSON.stringify({ options: o, rows, timing, episodes: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.episodes])) }, null, 1));
  console.log(report);
  return { rows, dir };
}

function renderReport(o: QuickstartOptions, rows: Row[], timing: Record<string, number>, info: { backend: string; frames: number; episodes: number; meanLength: number; params: number }): string {
  const lines = [
    `# onedp quickstart: PushT (keypoints), ${o.testSeeds.length} test seeds`,
    '',
    `Demonstrations: ${info.episodes} scripted-expert episodes (${info.frames} frames, mean ${info.meanLength.toFixed(1)} steps). ` +
      `Diffusion policy: ConditionalUnet1D ${o.downDims.join('/')} (${(info.params / 1e6).toFixed(2)}M parameters), DDPM, ${o.trainSteps} steps at batch ${o.batchSize}. ` +
      `Distillation: ${o.distillSteps} steps each. Backend: ${info.backend}. Test seeds ${o.testSeeds[0]}..${o.testSeeds[o.testSeeds.length - 1]}.`,
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
    .description('the end-to-end PushT pipeline on a small default (10-14 minutes on 2 cores)')
    .option('--name <name>', 'run name under --runs', 'quickstart')
    .option('--runs <dir>', 'runs directory', 'runs')
    .option('--episodes <n>', 'expert demonstrations', '100')
    .option('--train-steps <n>', 'diffusion-policy training steps', '3000')
    .option('--batch-size <n>', 'batch size', '64')
    .option('--down-dims <list>', 'U-Net channels', '32,64')
    .option('--distill-steps <n>', 'distillation steps per method', '120')
    .option('--test-seeds <A:B>', 'test seeds', '100000:100050')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .action(async (f: Record<string, string>) => {
      let seeds: number[];
      try {
        seeds = parseSeedRange(f.testSeeds);
      } catch (e) {
        throw new UsageError(`--test-seeds: ${(e as Error).message}`);
      }
      await quickstart({
        name: f.name,
        runsDir: resolvePath(f.runs),
        episodes: parseIntFlag('episodes', f.episodes),
        trainSteps: parseIntFlag('train-steps', f.trainSteps),
        batchSize: parseIntFlag('batch-size', f.batchSize),
        downDims: parseIntList('down-dims', f.downDims),
        distillSteps: parseIntFlag('distill-steps', f.distillSteps),
        testSeeds: seeds,
        progress: f.progress as 'auto',
      });
    });
}

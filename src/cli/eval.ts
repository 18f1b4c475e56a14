/** `onedp eval`: success, score, completion time and latency of any policy checkpoint on PushT. */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine } from '../engine/index.js';
import { applySampler, loadPolicy } from '../policy/load.js';
import { ConsistencyPolicy } from '../distill/consistency.js';
import { DiffusionPolicy } from '../policy/diffusion_policy.js';
import { parseSeedRange, type EpisodeResult } from '../eval/harness.js';
import { evaluatePushT, evaluatePushTAsync, pushtObsType, type PushTEvalResult } from '../eval/pusht.js';
import { exportOnnx } from '../export/export.js';
import { OnnxPolicy, loadOnnxRuntime } from '../export/runtime.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import * as os from 'node:os';
import { evaluatePushTParallel, workerCount } from '../eval/parallel.js';
import { ChunkPolicy } from '../policy/chunk_policy.js';
import { parseLatencyModel, type ChunkAlignment, type FillMode, type RealtimeOptions } from '../eval/realtime.js';
import { encodeGif } from '../io/gif.js';
import { rgbToRgba, writePngStrip } from '../io/png.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';

/** Side of rendered episode frames, and frames in a PNG strip. */
const RENDER_SIZE = 128;
const STRIP_FRAMES = 8;

interface EvalFlags {
  policy: string;
  env: string;
  seeds: string;
  sampler?: string;
  batch: string;
  maxSteps: string;
  out?: string;
  realtime?: boolean;
  latency?: string;
  fill?: string;
  align?: string;
  perturb: string;
  render?: string;
  workers: string;
  runtime: string;
}

/** The real-time settings from the flags; they make sense only together with --realtime. */
export function parseRealtimeFlags(f: Pick<EvalFlags, 'realtime' | 'latency' | 'fill' | 'align'>): RealtimeOptions | undefined {
  if (!f.realtime) {
    for (const [flag, v] of [['latency', f.latency], ['fill', f.fill], ['align', f.align]] as const) {
      if (v !== undefined) throw new UsageError(`--${flag} applies only with --realtime`);
    }
    return undefined;
  }
  let latency: RealtimeOptions['latency'];
  try {
    latency = parseLatencyModel(f.latency ?? 'measured');
  } catch (e) {
    throw new UsageError(`--${(e as Error).message}`);
  }
  const fill = f.fill ?? 'previous';
  if (fill !== 'previous' && fill !== 'hold') throw new UsageError(`--fill must be previous or hold, got "${fill}"`);
  const align = f.align ?? 'skip';
  if (align !== 'skip' && align !== 'shift') throw new UsageError(`--align must be skip or shift, got "${align}"`);
  return { latency, fill: fill as FillMode, align: align as ChunkAlignment };
}

/** n items spread evenly from first to last (all of them when there are fewer). */
function evenlySpaced<T>(xs: T[], n: number): T[] {
  if (xs.length <= n) return xs;
  return Array.from({ length: n }, (_, k) => xs[Math.round((k * (xs.length - 1)) / (n - 1))]);
}

function episodeLine(e: EpisodeResult): string {
  const done = e.success ? ` success at step ${e.stepsToSuccess} (${e.completionSeconds} s)` : '';
  const moved = e.perturbations !== undefined ? `, ${e.perturbations} perturbation${e.perturbations === 1 ? '' : 's'}` : '';
  return `seed ${e.seed}: score ${e.score.toFixed(3)}${done}${moved}\n`;
}

/**
 * The onnxruntime policy to evaluate, or null for tfjs. An exported bundle runs on onnxruntime;
 * a one-step checkpoint does when asked (exported to a temporary bundle first).
 */
async function chooseRuntime(f: EvalFlags): Promise<OnnxPolicy | null> {
  const which = f.runtime;
  if (!['auto', 'tfjs', 'onnx'].includes(which)) throw new UsageError(`--runtime must be auto, tfjs or onnx, got "${which}"`);
  const dir = resolvePath(f.policy);
  const isBundle = await fs.stat(path.join(dir, 'policy.json')).then(() => true, () => false);
  if (which === 'tfjs' && isBundle) throw new UsageError(`${f.policy}: an exported bundle runs on onnxruntime (--runtime onnx); give the checkpoint for tfjs`);
  if (which === 'tfjs' || (which === 'auto' && !isBundle)) return null;
  for (const [flag, v] of [['sampler', f.sampler], ['realtime', f.realtime]] as const) {
    if (v !== undefined) throw new UsageError(`--${flag} is not offered with --runtime onnx yet (one-step policies have no sampler); use --runtime tfjs`);
  }
  if (f.workers !== '1') throw new UsageError('--workers is not offered with --runtime onnx; onnxruntime runs the one-step policy in this thread');
  if (!(await loadOnnxRuntime())) throw new UsageError('onnxruntime-node cannot load on this machine; use --runtime tfjs');
  let bundle = dir;
  if (!isBundle) {
    const ck = await loadCheckpoint(dir);
    if (ck.meta.kind !== 'onedp') throw new UsageError(`${f.policy}: --runtime onnx runs one-step OneDP policies; this is a ${JSON.stringify(ck.meta.kind)} checkpoint (use --runtime tfjs)`);
    bundle = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-onnx-'));
    await exportOnnx(dir, bundle);
  }
  const policy = await OnnxPolicy.load(bundle);
  if (policy.manifest.obsDim !== 20 || (policy.manifest.policyConfig.vision ?? null) !== null) throw new UsageError(`${f.policy}: PushT evaluation provides the 20-D keypoint observation; this policy observes ${policy.manifest.obsDim} values per step`);
  if (!isBundle) await fs.rm(bundle, { recursive: true, force: true });
  return policy;
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate a policy checkpoint on PushT (receding horizon, seeded starts)')
    .requiredOption('--policy <ckpt>', 'diffusion-policy or onedp checkpoint / run directory')
    .option('--env <name>', 'environment', 'pusht')
    .option('--seeds <A:B>', 'test seeds, B exclusive', '100000:100050')
    .option('--sampler <name>', 'diffusion policies: ddpm, ddim-N or edm-N (default: the training schedule); consistency policies: cp-1 or cp-3')
    .option('--batch <n>', 'episodes stepped together', '25')
    .option('--max-steps <n>', 'steps per episode at most', '300')
    .option('--out <dir>', 'write episodes.json and summary.json here')
    .option('--realtime', 'keep the simulation running at 10 Hz while the policy computes')
    .option('--latency <mode>', 'with --realtime: measured (wall clock of each call at batch 1; varies from run to run) or nfe:<ms> per network evaluation, nfe:<ms>+<ms> adding a cost for the observation (reproducible); default measured')
    .option('--fill <mode>', 'with --realtime, while waiting for a chunk: previous (keep following the last chunk) or hold (stay put); default previous')
    .option('--align <mode>', 'with --realtime: skip (drop the actions a late chunk planned for times already past) or shift (run all of it late); default skip')
    .option('--perturb <n>', 'times the block is moved away when the agent comes close: 0, 1 or 2', '0')
    .option('--render <n>', 'write a PNG strip and an animated GIF of the first n episodes to --out')
    .option('--runtime <name>', 'auto (onnx for an exported bundle, else tfjs), tfjs, or onnx (onnxruntime; one-step OneDP policies, exported on the fly from a checkpoint)', 'auto')
    .option('--workers <n>', 'evaluate episodes on n worker threads (results do not depend on n; at most one per seed); latency is measured afterwards in the main thread', '1')
    .action(async (f: EvalFlags) => {
      if (f.env !== 'pusht') throw new UsageError(`--env must be pusht, got "${f.env}"`);
      let seeds: number[];
      try {
        seeds = parseSeedRange(f.seeds);
      } catch (e) {
        throw new UsageError(`--seeds: ${(e as Error).message}`);
      }
      const batch = parseIntFlag('batch', f.batch);
      const maxSteps = parseIntFlag('max-steps', f.maxSteps);
      const realtime = parseRealtimeFlags(f);
      if (!/^[012]$/.test(f.perturb.trim())) throw new UsageError(`--perturb must be 0, 1 or 2, got "${f.perturb}"`);
      const perturb = Number(f.perturb);
      const render = f.render === undefined ? 0 : parseIntFlag('render', f.render);
      if (render > 0 && !f.out) throw new UsageError('--render needs --out <dir> to write the frames to');
      const workers = workerCount(parseIntFlag('workers', f.workers), seeds.length);
      if (render > 0 && workers > 1) throw new UsageError('--render records frames in the main thread; use it without --workers (or with --workers 1)');

      const backend = await initEngine();
      const runtime = await chooseRuntime(f);
      if (runtime) {
        if (render > 0) throw new UsageError('--render is not offered with --runtime onnx yet; use --runtime tfjs');
        const res = await evaluatePushTAsync(runtime, { seeds, batchSize: batch, maxSteps, perturb, onEpisode: (e) => process.stderr.write(episodeLine(e)) });
        const summary = { policy: f.policy, kind: runtime.kind, runtime: 'onnx', sampler: null, seeds: f.seeds, episodes: res.episodes.length, maxSteps, perturb, meanScore: res.meanScore, stdScore: res.stdScore, successRate: res.successRate, meanStepsToSuccess: res.meanStepsToSuccess, meanCompletionSeconds: res.meanCompletionSeconds, realtime: null, latency: res.latency, wallSeconds: res.wallSeconds, workers: 1 };
        await runtime.dispose();
        if (f.out) {
          const dir = resolvePath(f.out);
          await writeFileAtomic(path.join(dir, 'episodes.json'), JSON.stringify(res.episodes, null, 1));
          await writeFileAtomic(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
        }
        console.log(JSON.stringify(summary, null, 1));
        return;
      }
      const policy = await loadPolicy(resolvePath(f.policy));
      if (f.sampler) {
        try {
          applySampler(policy, f.sampler);
        } catch (e) {
          throw new UsageError(`--sampler: ${(e as Error).message}`);
        }
      }
      if (policy instanceof ChunkPolicy) {
        const want = policy.config.vision ? 2 : 20;
        const what = policy.config.vision ? 'the agent position (2-D) beside its camera' : 'the 20-D keypoint observation';
        if (policy.config.obsDim !== want) throw new UsageError(`${f.policy}: policy observes ${policy.config.obsDim} values per step; PushT evaluation provides ${what}`);
        try {
          pushtObsType(policy);
        } catch (e) {
          throw new UsageError(`${f.policy}: ${(e as Error).message}`);
        }
      }
      const frames: Uint8Array[][] = Array.from({ length: Math.min(render, seeds.length) }, () => []);
      const onEpisode = (e: EpisodeResult) => process.stderr.write(episodeLine(e));
      let res: PushTEvalResult;
      if (workers === 1) {
        res = evaluatePushT(policy, {
          seeds,
          batchSize: batch,
          maxSteps,
          realtime,
          perturb,
          onStep: (i, env) => {
            if (i < frames.length) frames[i].push(env.render(RENDER_SIZE));
          },
          onEpisode,
        });
      } else {
        if (realtime?.latency.kind === 'measured') {
          process.stderr.write(`onedp: note: --realtime with measured latency on ${workers} workers: the workers share the CPU, so latencies (and the episodes they shape) include that contention\n`);
        }
        // Each worker loads the same checkpoint with the same sampler; this thread's copy
        // (checked above) measures the batch-1 latency once the workers are done.
        res = await evaluatePushTParallel(
          { checkpoint: resolvePath(f.policy), sampler: f.sampler },
          { seeds, workers, batchSize: batch, maxSteps, realtime, perturb, onEpisode, policy, engine: { backend } },
        );
      }
      const summary = {
        policy: f.policy,
        kind: policy.kind,
        runtime: 'tfjs',
        sampler: policy instanceof DiffusionPolicy ? policy.sampler.toJSON() : policy instanceof ConsistencyPolicy ? { kind: 'cp', steps: policy.steps } : null,
        seeds: f.seeds,
        episodes: res.episodes.length,
        maxSteps,
        perturb,
        meanScore: res.meanScore,
        stdScore: res.stdScore,
        successRate: res.successRate,
        meanStepsToSuccess: res.meanStepsToSuccess,
        meanCompletionSeconds: res.meanCompletionSeconds,
        realtime: res.realtime,
        latency: res.latency,
        wallSeconds: res.wallSeconds,
        workers,
      };
      if (f.out) {
        const dir = resolvePath(f.out);
        await fs.mkdir(dir, { recursive: true });
        await writeFileAtomic(path.join(dir, 'episodes.json'), JSON.stringify(res.episodes, null, 1));
        await writeFileAtomic(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
        for (let i = 0; i < frames.length; i++) {
          const all = frames[i];
          const base = path.join(dir, 'episodes', `seed-${seeds[i]}`);
          await writePngStrip(`${base}.png`, evenlySpaced(all, STRIP_FRAMES), RENDER_SIZE);
          // One GIF frame per control step, shown at the 10 Hz the simulation runs at.
          const gif = encodeGif(all.map((rgb) => ({ width: RENDER_SIZE, height: RENDER_SIZE, rgba: rgbToRgba(rgb) })), { delayMs: 100 });
          await writeFileAtomic(`${base}.gif`, gif);
          process.stderr.write(`rendered seed ${seeds[i]}: ${path.relative(process.cwd(), base)}.png, .gif (${all.length} frames)\n`);
        }
      }
      console.log(JSON.stringify(summary, null, 1));
    });
}

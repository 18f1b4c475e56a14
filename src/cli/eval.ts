/** `onedp eval`: success, score, completion time and latency of any policy checkpoint on PushT. */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine } from '../engine/index.js';
import { applySampler, loadPolicy } from '../policy/load.js';
import { ConsistencyPolicy } from '../distill/consistency.js';
import { DiffusionPolicy } from '../policy/diffusion_policy.js';
import { parseSeedRange, type EpisodeResult } from '../eval/harness.js';
import { checkPushTPolicy, evaluatePushT, evaluatePushTAsync, type PushTEvalResult } from '../eval/pusht.js';
import { PolicyClient, RemotePolicy } from '../serve/client.js';
import { BundleError, openOnnxPolicy, planRuntime, type RuntimeChoice } from '../export/runtime.js';
import { evaluateParallel, workerCount } from '../eval/parallel.js';
import { ChunkPolicy } from '../policy/chunk_policy.js';
import { parseLatencyModel, type ChunkAlignment, type FillMode, type RealtimeOptions } from '../eval/realtime.js';
import { encodeGif } from '../io/gif.js';
import { rgbToRgba, writePngStrip } from '../io/png.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { MANIPULATION_TASKS, isManipulationTask } from '../envs/mujoco/tasks.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';

/** Side of rendered episode frames, and frames in a PNG strip. */
const RENDER_SIZE = 128;
const STRIP_FRAMES = 8;

interface EvalFlags {
  policy?: string;
  server?: string;
  token?: string;
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
  budget?: string;
  perturb: string;
  render?: string;
  workers: string;
  runtime: string;
}

/** The real-time settings from the flags; they make sense only together with --realtime. */
export function parseRealtimeFlags(f: Pick<EvalFlags, 'realtime' | 'latency' | 'fill' | 'align' | 'budget'>, defaultFill: FillMode = 'previous', controlPeriodMs = 100): RealtimeOptions | undefined {
  if (!f.realtime) {
    for (const [flag, v] of [['latency', f.latency], ['fill', f.fill], ['align', f.align], ['budget', f.budget]] as const) {
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
  const fill = f.fill ?? defaultFill;
  if (fill !== 'previous' && fill !== 'hold') throw new UsageError(`--fill must be previous or hold, got "${fill}"`);
  const align = f.align ?? 'skip';
  if (align !== 'skip' && align !== 'shift') throw new UsageError(`--align must be skip or shift, got "${align}"`);
  const out: RealtimeOptions = { latency, fill: fill as FillMode, align: align as ChunkAlignment };
  if (f.budget !== undefined) {
    const b = Number(f.budget);
    if (f.budget.trim() === '' || !(b >= 0)) throw new UsageError(`--budget must be a number of milliseconds >= 0, got "${f.budget}"`);
    if (b >= controlPeriodMs) throw new UsageError(`--budget must be less than the control period (${controlPeriodMs} ms), got ${b}`);
    out.budgetMs = b;
  }
  return out;
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

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate a policy checkpoint on PushT (receding horizon, seeded starts)')
    .option('--policy <ckpt>', 'checkpoint, run directory or exported bundle')
    .option('--server <url>', 'evaluate the policy a server (onedp serve) offers, in real time: ws://host:port')
    .option('--token <t>', 'with --server: the server\'s token')
    .option('--env <name>', 'environment: pusht, or lift or square (MuJoCo, on tfjs; --realtime applies)', 'pusht')
    .option('--seeds <A:B>', 'test seeds, B exclusive', '100000:100050')
    .option('--sampler <name>', 'diffusion policies: ddpm, ddim-N or edm-N (default: the training schedule); consistency policies: cp-1 or cp-3')
    .option('--batch <n>', 'episodes stepped together', '25')
    .option('--max-steps <n>', 'steps per episode at most', '300')
    .option('--out <dir>', 'write episodes.json and summary.json here')
    .option('--realtime', 'keep the simulation running at 10 Hz while the policy computes')
    .option('--latency <mode>', 'with --realtime: measured (wall clock of each call at batch 1; varies from run to run) or nfe:<ms> per network evaluation, nfe:<ms>+<ms> adding a cost for the observation (reproducible); default measured')
    .option('--fill <mode>', 'with --realtime, while waiting for a chunk: previous (keep following the last chunk) or hold (stay put); default previous for pusht, hold for the MuJoCo tasks')
    .option('--align <mode>', 'with --realtime: skip (drop the actions a late chunk planned for times already past) or shift (run all of it late); default skip')
    .option('--budget <ms>', 'with --realtime: milliseconds the loop waits inside a control period for the policy; a chunk within it acts at once, from its own observation (a synchronous robot loop); default 0')
    .option('--perturb <n>', 'times the block is moved away when the agent comes close: 0, 1 or 2', '0')
    .option('--render <n>', 'write a PNG strip and an animated GIF of the first n episodes to --out')
    .option('--runtime <name>', 'auto: onnxruntime for exported bundles and checkpoints (exported on the fly) when it loads, tfjs otherwise and with --workers; or tfjs, or onnx', 'auto')
    .option('--workers <n>', 'evaluate episodes on n worker threads (results do not depend on n; at most one per seed); latency is measured afterwards in the main thread', '1')
    .action(async (f: EvalFlags) => {
      if (f.env !== 'pusht' && !isManipulationTask(f.env)) throw new UsageError(`--env must be pusht, ${MANIPULATION_TASKS.join(' or ')}, got "${f.env}"`);
      let seeds: number[];
      try {
        seeds = parseSeedRange(f.seeds);
      } catch (e) {
        throw new UsageError(`--seeds: ${(e as Error).message}`);
      }
      const batch = parseIntFlag('batch', f.batch);
      if (f.env !== 'pusht') return evalManipulation(f.env, f, seeds, batch, parseIntFlag('max-steps', f.maxSteps));
      const maxSteps = parseIntFlag('max-steps', f.maxSteps);
      // --server implies real time, so its latency settings apply without --realtime.
      const realtime = parseRealtimeFlags(f.server ? { ...f, realtime: true } : f);
      if (!/^[012]$/.test(f.perturb.trim())) throw new UsageError(`--perturb must be 0, 1 or 2, got "${f.perturb}"`);
      const perturb = Number(f.perturb);
      const render = f.render === undefined ? 0 : parseIntFlag('render', f.render);
      if (render > 0 && !f.out) throw new UsageError('--render needs --out <dir> to write the frames to');
      const workers = workerCount(parseIntFlag('workers', f.workers), seeds.length);
      if (render > 0 && workers > 1) throw new UsageError('--render records frames in the main thread; use it without --workers (or with --workers 1)');
      // Every path records the first episodes' frames and logs episodes the same way.
      const frames: Uint8Array[][] = Array.from({ length: Math.min(render, seeds.length) }, () => []);
      const onStep = (i: number, env: { render(size: number): Uint8Array }) => {
        if (i < frames.length) frames[i].push(env.render(RENDER_SIZE));
      };
      const onEpisode = (e: EpisodeResult) => process.stderr.write(episodeLine(e));

      if (!!f.policy === !!f.server) throw new UsageError('give exactly one of --policy <ckpt> and --server <url>');
      if (f.token && !f.server) throw new UsageError('--token applies only with --server');
      if (f.server) {
        if (f.sampler || workers > 1 || f.runtime !== 'auto') throw new UsageError('--sampler, --workers and --runtime choose how a local policy runs; with --server the server decides');
        if (!/^wss?:\/\//.test(f.server)) throw new UsageError(`--server must be a ws:// or wss:// URL, got "${f.server}"`);
        let client: PolicyClient;
        try {
          client = await PolicyClient.connect(f.server, { token: f.token });
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
        const remote = new RemotePolicy(client);
        pushtCheck({ obsDim: client.policy.obsDim, cameras: remote.cameras }, f.server);
        const res = await evaluatePushTAsync(remote, {
          seeds, batchSize: batch, maxSteps, perturb,
          // A server is evaluated as a robot would use it: the world moves during the round trip.
          realtime: realtime ?? { latency: { kind: 'measured' } },
          onStep,
          onEpisode,
        });
        remote.dispose();
        await writeOutputs(f, seeds, res, frames, { server: f.server, policyId: client.policy.id, kind: client.policy.kind, runtime: client.policy.runtime, workers: 1, maxSteps, perturb });
        return;
      }
      const policyPath = f.policy!;
      const backend = await initEngine();
      let plan;
      try {
        plan = await planRuntime(resolvePath(policyPath), f.runtime as RuntimeChoice, workers > 1 ? 'worker threads evaluate on tfjs' : null);
      } catch (e) {
        throw e instanceof BundleError ? new UsageError(e.message) : e;
      }
      if (plan.runtime === 'onnx') {
        let onnx;
        try {
          onnx = await openOnnxPolicy(resolvePath(policyPath), plan.isBundle, { sampler: f.sampler });
        } catch (e) {
          throw f.sampler && !(e instanceof BundleError) ? new UsageError(`--sampler: ${(e as Error).message}`) : e;
        }
        pushtCheck({ obsDim: onnx.manifest.obsDim, cameras: onnx.cameras }, policyPath);
        const res = await evaluatePushTAsync(onnx, {
          seeds, batchSize: batch, maxSteps, realtime, perturb,
          onStep,
          onEpisode,
        });
        await onnx.dispose();
        await writeOutputs(f, seeds, res, frames, { policy: f.policy, kind: onnx.kind, runtime: 'onnx', sampler: onnx.sampler?.toJSON() ?? null, workers: 1, maxSteps, perturb });
        return;
      }
      const policy = await loadPolicy(resolvePath(policyPath));
      if (f.sampler) {
        try {
          applySampler(policy, f.sampler);
        } catch (e) {
          throw new UsageError(`--sampler: ${(e as Error).message}`);
        }
      }
      if (policy instanceof ChunkPolicy) pushtCheck({ obsDim: policy.config.obsDim, cameras: policy.cameras }, policyPath);
      let res: PushTEvalResult;
      if (workers === 1) {
        res = evaluatePushT(policy, {
          seeds,
          batchSize: batch,
          maxSteps,
          realtime,
          perturb,
          onStep,
          onEpisode,
        });
      } else {
        if (realtime?.latency.kind === 'measured') {
          process.stderr.write(`onedp: note: --realtime with measured latency on ${workers} workers: the workers share the CPU, so latencies (and the episodes they shape) include that contention\n`);
        }
        // Each worker loads the same checkpoint with the same sampler; this thread's copy
        // (checked above) measures the batch-1 latency once the workers are done.
        res = await evaluateParallel(
          { checkpoint: resolvePath(policyPath), sampler: f.sampler },
          { seeds, workers, batchSize: batch, maxSteps, realtime, perturb, onEpisode, policy, engine: { backend } },
        );
      }
      await writeOutputs(f, seeds, res, frames, {
        policy: f.policy,
        kind: policy.kind,
        runtime: 'tfjs',
        sampler: policy instanceof DiffusionPolicy ? policy.sampler.toJSON() : policy instanceof ConsistencyPolicy ? { kind: 'cp', steps: policy.steps } : null,
        workers,
        maxSteps,
        perturb,
      });
    });
}

/** `--env lift|square`: the MuJoCo task on tfjs, lockstep or in real time; the observation spec comes from the checkpoint. */
async function evalManipulation(task: string, f: EvalFlags, seeds: number[], batch: number, maxSteps: number): Promise<void> {
  if (f.server || f.perturb.trim() !== '0' || f.runtime === 'onnx') {
    throw new UsageError(`--env ${task} evaluates a local checkpoint on tfjs: --server, --perturb and --runtime onnx apply to pusht only`);
  }
  const workers = workerCount(parseIntFlag('workers', f.workers), seeds.length);
  const render = f.render === undefined ? 0 : parseIntFlag('render', f.render);
  if (render > 0 && !f.out) throw new UsageError('--render needs --out <dir> to write the frames to');
  if (render > 0 && workers > 1) throw new UsageError('--render records frames in the main thread; use it without --workers (or with --workers 1)');
  // Delta actions: following a spent chunk's last action would keep the arm moving, so waiting holds still.
  const realtime = parseRealtimeFlags(f, 'hold', 50);
  if (!f.policy) throw new UsageError('give --policy <ckpt>');
  const backend = await initEngine();
  const { loadCheckpoint } = await import('../train/checkpoint.js');
  const { evaluateManipulation, ROBOMIMIC_OBS_SPEC } = await import('../eval/manipulation.js');
  const ck = await loadCheckpoint(resolvePath(f.policy), { metaOnly: true });
  const spec = (ck.meta.provenance as { obsSpec?: string } | undefined)?.obsSpec ?? ROBOMIMIC_OBS_SPEC;
  const policy = await loadPolicy(resolvePath(f.policy));
  if (f.sampler) {
    try {
      applySampler(policy, f.sampler);
    } catch (e) {
      throw new UsageError(`--sampler: ${(e as Error).message}`);
    }
  }
  const onEpisode = (e: EpisodeResult) => process.stderr.write(episodeLine(e));
  const frames: Uint8Array[][] = Array.from({ length: Math.min(render, seeds.length) }, () => []);
  const { renderManipulation } = await import('../envs/mujoco/render.js');
  const onStep = (i: number, env: { sim: Parameters<typeof renderManipulation>[0] }) => {
    if (i < frames.length) frames[i].push(renderManipulation(env.sim, RENDER_SIZE));
  };
  let res: PushTEvalResult;
  if (workers === 1) {
    res = await evaluateManipulation(task, policy, { seeds, batchSize: batch, maxSteps, obsSpec: spec, realtime, onEpisode, onStep });
  } else {
    if (realtime?.latency.kind === 'measured') {
      process.stderr.write(`onedp: note: --realtime with measured latency on ${workers} workers: the workers share the CPU, so latencies (and the episodes they shape) include that contention\n`);
    }
    res = await evaluateParallel(
      { checkpoint: resolvePath(f.policy), sampler: f.sampler },
      { task, seeds, workers, batchSize: batch, maxSteps, obsSpec: spec, realtime, onEpisode, policy, engine: { backend } },
    );
  }
  // robomimic's tasks act at 20 Hz: the GIF plays at that rate.
  await writeOutputs(f, seeds, res, frames, { env: task, policy: f.policy, kind: policy.kind, runtime: 'tfjs', obsSpec: spec, workers, maxSteps }, 50);
}

/** summary.json, episodes.json and rendered episodes under --out; the summary on stdout. */
async function writeOutputs(f: EvalFlags, seeds: number[], res: PushTEvalResult, frames: Uint8Array[][], head: Record<string, unknown>, frameMs = 100): Promise<void> {
  const summary = {
    ...head,
    seeds: f.seeds,
    episodes: res.episodes.length,
    meanScore: res.meanScore,
    stdScore: res.stdScore,
    successRate: res.successRate,
    meanStepsToSuccess: res.meanStepsToSuccess,
    meanCompletionSeconds: res.meanCompletionSeconds,
    realtime: res.realtime,
    latency: res.latency,
    wallSeconds: res.wallSeconds,
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
      // One GIF frame per control step, shown at the task's control rate (PushT 10 Hz, MuJoCo 20 Hz).
      const gif = encodeGif(all.map((rgb) => ({ width: RENDER_SIZE, height: RENDER_SIZE, rgba: rgbToRgba(rgb) })), { delayMs: frameMs });
      await writeFileAtomic(`${base}.gif`, gif);
      process.stderr.write(`rendered seed ${seeds[i]}: ${path.relative(process.cwd(), base)}.png, .gif (${all.length} frames)\n`);
    }
  }
  console.log(JSON.stringify(summary, null, 1));
}

/** The policy's observation against what PushT provides, as a usage error. */
function pushtCheck(shape: { obsDim: number; cameras?: readonly string[] }, source: string): void {
  try {
    checkPushTPolicy(shape, source);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

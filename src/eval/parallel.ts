/**
 * Evaluation on several worker threads, for PushT and the MuJoCo tasks alike. The seeds are split
 * into contiguous shards; each worker initialises the engine, loads the policy from its checkpoint
 * (with the same sampler) and evaluates its shard with `evaluatePushT` or `evaluateManipulation`.
 * Every episode has its own noise generator and its result does not depend on the batch it ran
 * in, so the merged results are the single-thread results bit for bit, whatever the number of
 * workers. Batch-1 latency is measured afterwards in the calling thread, with no workers running.
 *
 * Workers run TypeScript sources through tsx: Node 20 does not apply the parent's `--import tsx`
 * hooks to worker threads, so each worker registers tsx itself before importing its entry.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { tf, type BackendName, type EngineOptions } from '../engine/index.js';
import { applySampler, loadPolicy, type LoadPolicyOptions } from '../policy/load.js';
import type { Policy } from '../policy/types.js';
import type { PerturbOptions } from '../envs/perturbed.js';
import type { EpisodeResult } from './harness.js';
import { evaluatePushT, pushtLatency, type PushTEvalResult } from './pusht.js';
import { evaluateManipulation, manipulationLatency } from './manipulation.js';
import { isManipulationTask, MANIPULATION_TASKS, type ManipulationTask } from '../envs/mujoco/tasks.js';
import { summarize } from './harness.js';
import { summarizeRealtime, type RealtimeEpisodeResult, type RealtimeOptions, type RealtimeSettings } from './realtime.js';

/** Where a policy comes from, in a form that can be sent to a worker thread. */
export interface PolicySource {
  /** Checkpoint or run directory, as `loadPolicy` takes it (relative paths: to the working directory). */
  checkpoint: string;
  /** As `onedp eval --sampler` takes it: ddpm, ddim-N, edm-N or cp-N. */
  sampler?: string;
  /** Weights and consistency steps, as `loadPolicy` takes them. */
  load?: LoadPolicyOptions;
}

/** Loads a policy from its source: the same policy in every thread. */
export async function loadPolicySource(src: PolicySource): Promise<Policy> {
  const policy = await loadPolicy(path.resolve(src.checkpoint), src.load);
  if (src.sampler) applySampler(policy, src.sampler);
  return policy;
}

/** Real-time settings that can cross threads (the hold action is the task's, as its evaluation picks it). */
export type PortableRealtimeOptions = Omit<RealtimeOptions, 'holdAction'>;

/** The evaluation settings of one shard, as sent to a worker. */
export interface ShardOptions {
  /** `pusht` (the default) or a MuJoCo task (`lift`, `square`). */
  task?: string;
  seeds: number[];
  batchSize?: number;
  noiseSeed?: number;
  maxSteps?: number;
  realtime?: PortableRealtimeOptions;
  /** PushT only: move the block when the agent comes close. */
  perturb?: number | PerturbOptions;
  /** MuJoCo tasks only: the policy's observation spec (default robomimic's low-dimensional keys). */
  obsSpec?: string;
}

export interface ParallelEvalOptions extends Omit<ShardOptions, 'seeds'> {
  seeds: number[];
  /** Worker threads (a positive integer; more than there are seeds is clamped). 1 runs in this thread. */
  workers: number;
  /** Batch-1 latency repetitions, measured in this thread after the workers finish (default 10; 0 to skip). */
  latencyReps?: number;
  /** Called for each finished episode, in the order they finish. */
  onEpisode?: (r: EpisodeResult) => void;
  /**
   * This thread's copy of the policy: what runs with 1 worker and what latency is measured on.
   * Loaded from the source when needed and absent.
   */
  policy?: Policy;
  /** The workers' engine: default the backend this thread uses, with onedp's kernels (as `initEngine`). */
  engine?: { backend?: BackendName; customKernels?: boolean };
}

/** What the parent sends each worker (its `workerData`). */
export interface EvalWorkerData {
  source: PolicySource;
  engine: EngineOptions;
  shard: ShardOptions;
}

/** What a worker posts back: each episode as it finishes, then its results, or an error. */
export type EvalWorkerMessage =
  | { type: 'episode'; episode: EpisodeResult }
  | { type: 'done'; episodes: EpisodeResult[]; realtime: PushTEvalResult['realtime'] }
  | { type: 'error'; name: string; message: string; stack?: string };

/** n items split into k contiguous shards whose sizes differ by at most one. */
export function contiguousShards<T>(xs: readonly T[], k: number): T[][] {
  return Array.from({ length: k }, (_, i) => xs.slice(Math.floor((i * xs.length) / k), Math.floor(((i + 1) * xs.length) / k)));
}

/** Checks a worker count: a positive integer, clamped to the number of seeds (at least 1). */
export function workerCount(workers: number, seeds: number): number {
  if (!Number.isInteger(workers) || workers < 1) throw new Error(`workers must be a positive integer, got ${workers}`);
  return Math.max(1, Math.min(workers, seeds));
}

/** A worker that runs `eval_worker` from this folder, under tsx when running from TypeScript sources. */
function spawnEvalWorker(data: EvalWorkerData): Worker {
  const here = import.meta.url;
  if (!here.endsWith('.ts')) return new Worker(new URL('./eval_worker.js', here), { workerData: data });
  const resolve = (import.meta as ImportMeta & { resolve?: (s: string) => string }).resolve;
  if (typeof resolve !== 'function') throw new Error('evaluation on worker threads from TypeScript sources needs Node >= 20.6 (import.meta.resolve)');
  const tsxApi = resolve('tsx/esm/api');
  const entry = new URL('./eval_worker.ts', here).href;
  // The parent's own tsx preload does not reach worker threads on Node 20 (and would register
  // twice where it does), so it is left out and the worker registers tsx explicitly.
  const execArgv: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const a = process.execArgv[i];
    if ((a === '--import' || a === '--require' || a === '-r' || a === '--loader') && /(^|[\\/])tsx([\\/]|$)/.test(process.execArgv[i + 1] ?? '')) i++;
    else if (/^--(import|require|loader)=.*\btsx\b/.test(a)) continue;
    else execArgv.push(a);
  }
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData: data, execArgv });
}

interface ShardResult {
  episodes: EpisodeResult[];
  realtime: PushTEvalResult['realtime'];
}

function describeShard(k: number, n: number, seeds: number[]): string {
  const range = seeds.length === 1 ? `seed ${seeds[0]}` : `seeds ${seeds[0]}..${seeds[seeds.length - 1]}`;
  return `eval worker ${k + 1}/${n} (${range})`;
}

/** Runs one shard; resolves with its results, rejects with an error naming the shard. */
function runShard(worker: Worker, label: string, onEpisode: ((r: EpisodeResult) => void) | undefined): Promise<ShardResult> {
  return new Promise<ShardResult>((resolve, reject) => {
    let settled = false;
    const fail = (message: string, name?: string): void => {
      if (settled) return;
      settled = true;
      const e = new Error(`${label}: ${message}`);
      if (name && name !== 'Error') e.name = name;
      reject(e);
    };
    worker.on('message', (m: EvalWorkerMessage) => {
      if (settled) return;
      if (m.type === 'episode') onEpisode?.(m.episode);
      else if (m.type === 'error') fail(m.message, m.name);
      else if (m.type === 'done') {
        settled = true;
        resolve({ episodes: m.episodes, realtime: m.realtime });
      }
    });
    worker.on('error', (e: Error) => fail(e.message || String(e), e.name));
    worker.on('messageerror', (e: Error) => fail(`could not read a message: ${e.message}`));
    worker.on('exit', (code) => fail(`exited with code ${code} before finishing`));
  });
}

/** The task a shard names, checked with its task-specific options. */
function checkTask(o: Pick<ShardOptions, 'task' | 'perturb' | 'obsSpec'>): 'pusht' | ManipulationTask {
  const task = o.task ?? 'pusht';
  if (task === 'pusht') {
    if (o.obsSpec !== undefined) throw new Error('obsSpec applies to the MuJoCo tasks; PushT observes what its policy was trained on');
    return task;
  }
  if (!isManipulationTask(task)) throw new Error(`task must be pusht, ${MANIPULATION_TASKS.join(' or ')}, got "${task}"`);
  if (o.perturb !== undefined && o.perturb !== 0) throw new Error(`perturb is PushT's perturbed task; ${task} has none`);
  return task;
}

/**
 * Evaluates one shard in this thread, with the evaluation its task names (what a worker runs, and
 * what one worker means). `latencyReps` as `evaluatePushT` takes it.
 */
export async function evaluateShard(policy: Policy, shard: ShardOptions, latencyReps: number, onEpisode?: (r: EpisodeResult) => void): Promise<PushTEvalResult> {
  const task = checkTask(shard);
  if (task === 'pusht') return evaluatePushT(policy, { ...shard, latencyReps, onEpisode });
  const { perturb: _perturb, task: _task, ...rest } = shard;
  return evaluateManipulation(task, policy, { ...rest, latencyReps, onEpisode });
}

/**
 * `evaluatePushT` or `evaluateManipulation` (as `task` names) with its episodes spread over
 * worker threads. Results (per episode and in summary) do not depend on `workers`; `wallSeconds`
 * is the wall clock of the whole run, worker start-up included.
 */
export async function evaluateParallel(source: PolicySource, opts: ParallelEvalOptions): Promise<PushTEvalResult> {
  const n = workerCount(opts.workers, opts.seeds.length);
  const reps = opts.latencyReps ?? 10;
  const shardOptions = (seeds: number[]): ShardOptions => {
    const s: ShardOptions = { seeds };
    if (opts.task !== undefined) s.task = opts.task;
    if (opts.obsSpec !== undefined) s.obsSpec = opts.obsSpec;
    if (opts.batchSize !== undefined) s.batchSize = opts.batchSize;
    if (opts.noiseSeed !== undefined) s.noiseSeed = opts.noiseSeed;
    if (opts.maxSteps !== undefined) s.maxSteps = opts.maxSteps;
    if (opts.realtime !== undefined) {
      // Only the data: a caller's RealtimeOptions may carry a function, which cannot cross threads.
      const { latency, fill, align, warmupCalls, budgetMs } = opts.realtime;
      s.realtime = { latency };
      if (budgetMs !== undefined) s.realtime.budgetMs = budgetMs;
      if (fill !== undefined) s.realtime.fill = fill;
      if (align !== undefined) s.realtime.align = align;
      if (warmupCalls !== undefined) s.realtime.warmupCalls = warmupCalls;
    }
    if (opts.perturb !== undefined) s.perturb = opts.perturb;
    return s;
  };
  // A policy loaded here (not the caller's) is disposed here.
  const withPolicy = async <T>(f: (p: Policy) => T | Promise<T>): Promise<T> => {
    if (opts.policy) return f(opts.policy);
    const own = await loadPolicySource(source);
    try {
      return await f(own);
    } finally {
      own.dispose();
    }
  };
  // A bad task or option fails here, once, rather than in every worker.
  const task = checkTask(opts);
  if (n === 1) return withPolicy((policy) => evaluateShard(policy, shardOptions(opts.seeds), reps, opts.onEpisode));

  const engine: EngineOptions = { backend: opts.engine?.backend ?? (tf.getBackend() as BackendName), customKernels: opts.engine?.customKernels ?? true };
  const portable: PolicySource = { ...source, checkpoint: path.resolve(source.checkpoint) };
  const started = performance.now();
  const shards = contiguousShards(opts.seeds, n);
  const workers: Worker[] = [];
  let outs: ShardResult[];
  try {
    const runs: Promise<ShardResult>[] = [];
    shards.forEach((seeds, k) => {
      const w = spawnEvalWorker({ source: portable, engine, shard: shardOptions(seeds) });
      workers.push(w);
      runs.push(runShard(w, describeShard(k, n, seeds), opts.onEpisode));
    });
    outs = await Promise.all(runs);
  } finally {
    // Finished workers may still hold the engine; failed runs leave the others working.
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const wallSeconds = (performance.now() - started) / 1000;

  const episodes = outs.flatMap((o) => o.episodes).sort((a, b) => a.seed - b.seed);
  let result: PushTEvalResult;
  const rt = outs[0].realtime;
  if (rt) {
    const settings: RealtimeSettings = { latency: rt.latency, fill: rt.fill, align: rt.align, controlPeriodMs: rt.controlPeriodMs, budgetMs: rt.budgetMs };
    const s = summarizeRealtime(episodes as RealtimeEpisodeResult[], settings, wallSeconds);
    result = { ...s, latency: null, realtime: s.realtime };
  } else {
    result = { ...summarize(episodes, wallSeconds), latency: null, realtime: null };
  }
  if (reps > 0) result.latency = await withPolicy((policy) => (task === 'pusht' ? pushtLatency(policy, opts.seeds, reps) : manipulationLatency(task, policy, opts.seeds, reps, opts.obsSpec)));
  return result;
}

/**
 * Runs independent jobs (a training seed, a study configuration) as child processes, a few at a
 * time, the cores shared out between them. Processes rather than threads: each child owns a
 * whole tfjs engine and its native thread pool, and one that crashes cannot take the others'
 * memory with it.
 *
 * When a child fails or is killed, the run stops: no further job starts, the running siblings
 * are terminated (every stage writes its checkpoints atomically, so they lose at most the work
 * since their last checkpoint), and the error names the job and how it ended. Rerunning the
 * same command continues from the checkpoints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as os from 'node:os';

export interface ProcessJob {
  /** Names the job in errors ("training seed 1 (edm teacher)"). */
  label: string;
  /** Arguments after the node executable. */
  args: string[];
}

/**
 * Node's arguments for a child that runs `entry`: the parent's flags, plus tsx's loader when the
 * entry is TypeScript and the parent registered tsx in-process (as bin/onedp.js does) rather than
 * with a flag the child would inherit.
 */
export function childNodeArgs(entry: string): string[] {
  const argv = [...process.execArgv];
  const hasTsx = argv.some((a, i) => ['--import', '--require', '-r', '--loader'].includes(a) && /(^|[\\/])tsx([\\/]|$)/.test(argv[i + 1] ?? ''));
  if (/\.[cm]?ts$/.test(entry) && !hasTsx) argv.push('--import', import.meta.resolve('tsx'));
  return [...argv, entry];
}

/** Threads per child: the cores split between `slots` processes, unless ONEDP_THREADS says. */
function threadsPerProcess(slots: number): string {
  return process.env.ONEDP_THREADS || String(Math.max(1, Math.floor((os.availableParallelism?.() ?? os.cpus().length) / Math.max(1, slots))));
}

/** How a child ended, in words. */
function ending(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed (${signal})` : `failed (exit ${code})`;
}

/**
 * Runs every job, at most `slots` at once; resolves when all succeeded, rejects with the first
 * failure after the siblings it stopped have exited.
 */
export async function runInProcesses(jobs: ProcessJob[], slots: number): Promise<void> {
  const queue = [...jobs];
  const n = Math.max(1, Math.min(slots, queue.length));
  const env = { ...process.env, ONEDP_THREADS: threadsPerProcess(n) };
  const running = new Set<ChildProcess>();
  let failure: Error | null = null;
  const fail = (e: Error) => {
    if (failure) return;
    failure = e;
    for (const c of running) c.kill('SIGTERM');
  };
  const runOne = (job: ProcessJob) =>
    new Promise<void>((resolve) => {
      const child = spawn(process.execPath, job.args, { stdio: ['ignore', 'inherit', 'inherit'], env });
      running.add(child);
      // A child that cannot start emits 'error' and may never emit 'exit'.
      child.on('error', (e) => {
        running.delete(child);
        fail(new Error(`${job.label} could not start: ${e.message}`));
        resolve();
      });
      child.on('exit', (code, signal) => {
        running.delete(child);
        if (code !== 0) fail(new Error(`${job.label} ${ending(code, signal)}; its last checkpoint is kept: rerun the same command to continue`));
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let job = queue.shift(); job !== undefined && !failure; job = queue.shift()) await runOne(job);
    }),
  );
  if (failure) throw failure;
}

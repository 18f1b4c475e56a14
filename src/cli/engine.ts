/** The engine flags shared by the commands that train or evaluate: `--threads`. */
import { describeEngine, initEngine, parseThreads, setThreads, type BackendName } from '../engine/index.js';
import { UsageError } from './errors.js';

/** `.option(...THREADS_OPTION)` on a command. */
export const THREADS_OPTION = ['--threads <n>', 'threads for the native training kernels (default: ONEDP_THREADS, else all cores; the wasm fallback uses one)'] as const;

/** `--threads` as a number (undefined when absent); a usage error when bad. */
export function parseThreadsFlag(threads: string | undefined): number | undefined {
  if (threads === undefined) return undefined;
  try {
    return parseThreads(threads, '--threads');
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Starts the engine on `threads` (default: ONEDP_THREADS, else all cores) and describes it in one line. */
export async function startEngine(threads?: string | number): Promise<{ backend: BackendName; engine: string }> {
  const n = typeof threads === 'string' ? parseThreadsFlag(threads) : threads;
  const backend = await initEngine();
  if (n !== undefined) setThreads(n);
  return { backend, engine: describeEngine() };
}

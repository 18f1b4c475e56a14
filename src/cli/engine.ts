/** The engine flags shared by the commands that train or evaluate: `--threads`. */
import { describeEngine, initEngine, parseThreads, setThreads, type BackendName } from '../engine/index.js';
import { UsageError } from './errors.js';

/** `.option(...THREADS_OPTION)` on a command. */
export const THREADS_OPTION = ['--threads <n>', 'threads for the native training kernels (default: ONEDP_THREADS, else all cores; the wasm fallback uses one)'] as const;

/** Parses `--threads` (a usage error when bad), starts the engine and returns its one-line description. */
export async function startEngine(threads?: string): Promise<{ backend: BackendName; engine: string }> {
  let n: number | undefined;
  if (threads !== undefined) {
    try {
      n = parseThreads(threads, '--threads');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const backend = await initEngine();
  if (n !== undefined) setThreads(n);
  return { backend, engine: describeEngine() };
}

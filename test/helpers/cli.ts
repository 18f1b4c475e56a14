import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = path.join(ROOT, 'src', 'cli', 'main.ts');
/** tsx's loader by absolute URL, so a command can run from any working directory. */
const TSX = pathToFileURL(path.join(ROOT, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const BIN = path.join(ROOT, 'bin', 'onedp.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `onedp ...args` in a child process, as a user would. */
export function onedp(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, ['--import', TSX, MAIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, ONEDP_BACKEND: 'wasm' },
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `onedp ...args` through bin/onedp.js (what `npx onedp` runs), without waiting, for signal tests. */
export function onedpAsync(args: string[]) {
  return spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ONEDP_BACKEND: 'wasm' }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Runs `onedp ...args` in this process, for argument checks that fail before any work: the same
 * `runCli` as the binary, its stdout and stderr captured, without a child process's start-up
 * (seconds each on two cores).
 */
export async function onedpInProcess(args: string[]): Promise<CliResult> {
  const { runCli } = await import('../../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const [out, err] = [process.stdout.write, process.stderr.write];
  process.stdout.write = ((chunk: string | Uint8Array) => ((stdout += String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    return { code: await runCli(args), stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}

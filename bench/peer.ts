/**
 * Runs the PyTorch peer (bench/peer/bench.py) in a Python that has torch and returns its
 * median step times by id. The peer is optional: without PyTorch the result says why.
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface PeerOptions {
  quick: boolean;
  /** torch.set_num_threads; default: the script's (all cores). */
  threads?: number;
  /** Ids to run (default all): forward-b1-4.56M, forward-b1-65.8M, train-b256-4.56M, trainer-b64-recipe, onedp-s-b32-recipe. */
  only?: string[];
}

export type PeerResult = { ok: true; torch: string; threads: number; ms: Map<string, number> } | { ok: false; reason: string };

const SCRIPT = fileURLToPath(new URL('./peer/bench.py', import.meta.url));
const CANDIDATES = ['python3', '/usr/bin/python3'];
export const NO_TORCH = "PyTorch not found: `python3 -c 'import torch'` failed; on Debian: apt-get install python3-torch";

function hasTorch(python: string): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(python, ['-c', 'import torch'], { timeout: 120_000 }, (err) => resolve(err === null));
  });
}

/** The first candidate Python that imports torch, or null. */
export async function findTorchPython(): Promise<string | null> {
  for (const p of CANDIDATES) if (await hasTorch(p)) return p;
  return null;
}

interface PeerJson {
  torch: string;
  threads: number;
  rows: { id: string; ms: number; reps: number }[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parsePeerJson(text: string): PeerJson | string {
  const line = text.trim().split('\n').pop() ?? '';
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return `could not parse its output as JSON: ${JSON.stringify(line.slice(0, 200))}`;
  }
  if (!isRecord(v) || typeof v.torch !== 'string' || typeof v.threads !== 'number' || !Array.isArray(v.rows)) return 'its JSON lacks torch, threads or rows';
  const rows: PeerJson['rows'] = [];
  for (const r of v.rows as unknown[]) {
    if (!isRecord(r) || typeof r.id !== 'string' || typeof r.ms !== 'number' || !Number.isFinite(r.ms) || typeof r.reps !== 'number') return `malformed row ${JSON.stringify(r)}`;
    rows.push({ id: r.id, ms: r.ms, reps: r.reps });
  }
  return { torch: v.torch, threads: v.threads, rows };
}

function runScript(python: string, args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; error?: Error }> {
  return new Promise((resolve) => {
    const child = spawn(python, [SCRIPT, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.on('error', (error) => resolve({ code: null, signal: null, stdout, error }));
    child.on('close', (code, signal) => resolve({ code, signal, stdout }));
  });
}

export async function runPeer(opts: PeerOptions): Promise<PeerResult> {
  const python = await findTorchPython();
  if (!python) return { ok: false, reason: NO_TORCH };
  const args: string[] = [];
  if (opts.quick) args.push('--quick');
  if (opts.threads !== undefined) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) return { ok: false, reason: `peer: threads must be a positive integer, got ${opts.threads}` };
    args.push('--threads', String(opts.threads));
  }
  if (opts.only && opts.only.length > 0) args.push('--only', opts.only.join(','));
  const r = await runScript(python, args);
  const cmd = `${python} ${SCRIPT}${args.length ? ' ' + args.join(' ') : ''}`;
  if (r.error) return { ok: false, reason: `PyTorch peer could not start (${cmd}): ${r.error.message}` };
  if (r.code !== 0) return { ok: false, reason: `PyTorch peer failed (${cmd}): ${r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`}; see its stderr above` };
  const parsed = parsePeerJson(r.stdout);
  if (typeof parsed === 'string') return { ok: false, reason: `PyTorch peer (${cmd}): ${parsed}` };
  return { ok: true, torch: parsed.torch, threads: parsed.threads, ms: new Map(parsed.rows.map((row) => [row.id, row.ms])) };
}

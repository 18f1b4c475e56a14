/**
 * Training checkpoints: one directory per checkpoint, written complete under a temporary name
 * and renamed into place, then `latest.json` (also replaced atomically) points at it. A kill at
 * any moment leaves the previous checkpoint and pointer intact.
 *
 *   run/checkpoints/step-000500/{model,ema,optimizer}.safetensors + checkpoint.json
 *   run/checkpoints/latest.json  -> {"checkpoint": "step-000500"}
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parseSafetensors, serializeSafetensors, writeFileAtomic, type SafeTensor } from '../io/safetensors.js';

export const CHECKPOINT_FORMAT = 'onedp-checkpoint';
export const CHECKPOINT_VERSION = 1;

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export interface CheckpointData {
  /** JSON metadata: config, normaliser, schedule, step, RNG state, loss history... */
  meta: Record<string, unknown>;
  /** Named tensor files, e.g. model, ema, optimizer. */
  tensors: Record<string, Map<string, SafeTensor>>;
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const h = await fs.open(dir, 'r');
    await h.sync();
    await h.close();
  } catch {
    // Directory fsync is not supported everywhere; the rename is still atomic.
  }
}

/**
 * A killed writer leaves its temporary checkpoint or pointer behind; one run has one writer, so
 * a run that saves or resumes removes them (a resumed run may have nothing left to save).
 */
export async function removeWriterDebris(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    if (/^\.step-\d+\.tmp-\d+$/.test(n) || /^\.latest\.json\..*\.tmp$/.test(n)) await fs.rm(path.join(dir, n), { recursive: true, force: true });
  }
}

/** Writes a checkpoint named `name` under `dir` and points latest.json at it. */
export async function saveCheckpoint(dir: string, name: string, data: CheckpointData, keep = 3): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  await removeWriterDebris(dir);
  const final = path.join(dir, name);
  const tmp = path.join(dir, `.${name}.tmp-${process.pid}`);
  await fs.mkdir(tmp);
  for (const [file, tensors] of Object.entries(data.tensors)) {
    const h = await fs.open(path.join(tmp, `${file}.safetensors`), 'w');
    await h.writeFile(serializeSafetensors(tensors));
    await h.sync();
    await h.close();
  }
  const meta = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, files: Object.keys(data.tensors), ...data.meta };
  const h = await fs.open(path.join(tmp, 'checkpoint.json'), 'w');
  await h.writeFile(JSON.stringify(meta, null, 1));
  await h.sync();
  await h.close();
  await fs.rm(final, { recursive: true, force: true });
  await fs.rename(tmp, final);
  await fsyncDir(dir);
  await writeFileAtomic(path.join(dir, 'latest.json'), JSON.stringify({ checkpoint: name }));
  if (keep > 0) await prune(dir, keep, name);
  return final;
}

async function prune(dir: string, keep: number, current: string): Promise<void> {
  const names = (await fs.readdir(dir)).filter((n) => /^step-\d+$/.test(n)).sort();
  const old = names.filter((n) => n !== current).slice(0, Math.max(0, names.length - keep));
  for (const n of old) await fs.rm(path.join(dir, n), { recursive: true, force: true });
}

/** The checkpoint directory latest.json points at, or null when there is none. */
export async function latestCheckpoint(dir: string): Promise<string | null> {
  const pointer = path.join(dir, 'latest.json');
  let text: string;
  try {
    text = await fs.readFile(pointer, 'utf8');
  } catch {
    return null;
  }
  let name: unknown;
  try {
    name = (JSON.parse(text) as { checkpoint?: unknown }).checkpoint;
  } catch {
    throw new CheckpointError(`${pointer}: not valid JSON`);
  }
  if (typeof name !== 'string' || name.includes('/') || name.includes('..')) throw new CheckpointError(`${pointer}: no valid "checkpoint" entry`);
  return path.join(dir, name);
}

/**
 * Reads a checkpoint directory (or a run directory / checkpoints directory holding
 * latest.json). Every problem names the file. `metaOnly` reads checkpoint.json and no weights
 * (for deciding how to run a policy before loading it).
 */
export async function loadCheckpoint(p: string, opts: { metaOnly?: boolean } = {}): Promise<CheckpointData & { path: string }> {
  let dir = p;
  let stat;
  try {
    stat = await fs.stat(dir);
  } catch {
    throw new CheckpointError(`${p}: no such checkpoint (file or directory not found)`);
  }
  if (!stat.isDirectory()) {
    if (path.basename(p) === 'checkpoint.json') dir = path.dirname(p);
    else throw new CheckpointError(`${p}: not a checkpoint directory (expected a directory with checkpoint.json)`);
  }
  for (const candidate of [dir, path.join(dir, 'checkpoints')]) {
    const latest = await latestCheckpoint(candidate);
    if (latest) {
      dir = latest;
      break;
    }
  }
  const metaFile = path.join(dir, 'checkpoint.json');
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(await fs.readFile(metaFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(code === 'ENOENT' ? `${metaFile}: missing (not an onedp checkpoint)` : `${metaFile}: not valid JSON (${(e as Error).message})`);
  }
  if (!meta || typeof meta !== 'object' || Array.isArray(meta)) throw new CheckpointError(`${metaFile}: not an onedp checkpoint (expected a JSON object)`);
  if (meta.format !== CHECKPOINT_FORMAT) throw new CheckpointError(`${metaFile}: not an onedp checkpoint (format ${JSON.stringify(meta.format)})`);
  if (typeof meta.version !== 'number' || meta.version > CHECKPOINT_VERSION) throw new CheckpointError(`${metaFile}: checkpoint version ${String(meta.version)} is newer than this onedp supports (${CHECKPOINT_VERSION})`);
  const files = Array.isArray(meta.files) ? (meta.files as unknown[]) : [];
  // Weight files live beside checkpoint.json: a name is a plain file stem, never a path.
  const bad = files.find((f) => typeof f !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(f) || f.startsWith('.'));
  if (bad !== undefined) throw new CheckpointError(`${metaFile}: "files" entry ${JSON.stringify(bad)} is not a weight file name in the checkpoint's directory`);
  const tensors: Record<string, Map<string, SafeTensor>> = {};
  for (const f of opts.metaOnly ? [] : (files as string[])) {
    const file = path.join(dir, `${f}.safetensors`);
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch {
      throw new CheckpointError(`${file}: missing from the checkpoint`);
    }
    tensors[f] = parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file).tensors;
  }
  return { meta, tensors, path: dir };
}

import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onedp, onedpAsync, onedpInProcess } from './helpers/cli.js';

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-cli-'));

/** One line, the file or flag named, no stack trace. */
function expectCleanError(r: { code: number; stderr: string }, code: number, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('onedp CLI on bad input', () => {
  it('a missing dataset names the path', async () => {
    expectCleanError(onedp(['train', '--dataset', '/nonexistent/pusht.zarr', '--out', await tmp()]), 1, /onedp: error: \/nonexistent\/pusht\.zarr: dataset not found/);
  });
  it('malformed flags are usage errors (exit 2)', async () => {
    const out = await tmp();
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal', '--out', out, '--steps', 'ten']), 2, /--steps must be an integer >= 1, got "ten"/);
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal', '--out', out, '--schedule', 'ddim']), 2, /--schedule must be ddpm or edm/);
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal', '--out', out, '--down-dims', '32,x']), 2, /--down-dims must be a comma-separated list/);
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal']), 2, /required option '--out <dir>' not specified/);
    expectCleanError(await onedpInProcess(['frobnicate']), 2, /unknown command 'frobnicate'/);
    const d = ['distill', '--teacher', '/nonexistent/run', '--out', out];
    expectCleanError(await onedpInProcess([...d, '--lr-schedule', 'linear']), 2, /--lr-schedule must be constant or cosine, got "linear"/);
    expectCleanError(await onedpInProcess([...d, '--ema', '1']), 2, /--ema must be below 1, got "1"/);
    expectCleanError(await onedpInProcess([...d, '--ema', '-0.5']), 2, /--ema must be a number >= 0/);
    expectCleanError(await onedpInProcess([...d, '--method', 'cp', '--ema', '0.9']), 2, /--ema does not apply to --method cp/);
  });
  it('a bad config file names the file', async () => {
    const dir = await tmp();
    const cfg = path.join(dir, 'cfg.json');
    await fs.writeFile(cfg, '{"train": {');
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal', '--out', dir, '--config', cfg]), 2, new RegExp(`${cfg}: not valid JSON`));
    expectCleanError(await onedpInProcess(['train', '--dataset', 'synthetic:bimodal', '--out', dir, '--config', path.join(dir, 'none.json')]), 2, /none\.json: file not found/);
  });
  it('eval: a missing policy, a bad seed range and a checkpoint of the wrong kind are clear errors', async () => {
    expectCleanError(await onedpInProcess(['eval', '--policy', '/nonexistent/run']), 1, /\/nonexistent\/run: no such checkpoint/);
    expectCleanError(await onedpInProcess(['eval', '--policy', '/nonexistent/run', '--seeds', '5:2']), 2, /--seeds: seed range 5:2 is empty/);
    expectCleanError(await onedpInProcess(['eval', '--policy', '/nonexistent/run', '--seeds', 'a-b']), 2, /--seeds: seed range must look like A:B/);
    const notCkpt = await tmp();
    expectCleanError(await onedpInProcess(['eval', '--policy', notCkpt]), 1, /checkpoint\.json: missing \(not an onedp checkpoint\)/);
  });

  it('a missing checkpoint names the path', () => {
    expectCleanError(onedp(['sample', '--checkpoint', '/nonexistent/run', '--obs', '[[0,0],[0,0]]']), 1, /\/nonexistent\/run: no such checkpoint/);
  });
});

describe('onedp train and sample', () => {
  it('trains a small policy, then samples chunks from it', async () => {
    const out = await tmp();
    const t = onedp(['train', '--dataset', 'synthetic:bimodal:8', '--out', out, '--steps', '6', '--batch-size', '8', '--down-dims', '16,32', '--step-embed', '16', '--checkpoint-every', '3', '--progress', 'none']);
    expect(t.code, t.stderr).toBe(0);
    const summary = JSON.parse(t.stdout.trim().split('\n').pop()!);
    expect(summary.steps).toBe(6);
    expect(summary.checkpoint).toMatch(/step-0000006$/);
    const s = onedp(['sample', '--checkpoint', out, '--obs', '[[0,0],[0,0]]', '--sampler', 'ddim-5', '-n', '2']);
    expect(s.code, s.stderr).toBe(0);
    const res = JSON.parse(s.stdout);
    expect(res.timing.nfe).toBe(5);
    expect(res.chunks).toHaveLength(2);
    expect(res.chunks[0]).toHaveLength(16);
    expectCleanError(onedp(['sample', '--checkpoint', out, '--obs', '[[0,0]]']), 2, /--obs must be 2 rows of 2 numbers/);
    expectCleanError(onedp(['sample', '--checkpoint', out, '--obs', '[[0,0],[0,0]]', '--sampler', 'edm-5']), 1, /needs an EDM-trained policy/);
  });

  it('resumes after SIGKILL and finishes with an intact checkpoint', async () => {
    const out = await tmp();
    const args = ['train', '--dataset', 'synthetic:bimodal:8', '--out', out, '--steps', '400', '--batch-size', '8', '--down-dims', '16,32', '--step-embed', '16', '--checkpoint-every', '2', '--progress', 'none'];
    const child = onedpAsync(args);
    const latest = path.join(out, 'checkpoints', 'latest.json');
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      try {
        await fs.access(latest);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await new Promise((r) => setTimeout(r, 300)); // let it get into a later write
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const killedAt = JSON.parse(await fs.readFile(latest, 'utf8')).checkpoint as string;
    expect(killedAt).toMatch(/^step-\d+$/);
    const r = onedp([...args.slice(0, 5), '--steps', '12', ...args.slice(7), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!).steps).toBe(Math.max(12, Number(killedAt.slice(5))));
    // No temporary directories survive a completed run.
    expect((await fs.readdir(path.join(out, 'checkpoints'))).filter((n) => n.includes('.tmp'))).toHaveLength(0);
  });
});

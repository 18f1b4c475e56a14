import { beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onedp, onedpInProcess } from './helpers/cli.js';

function expectUsageError(r: { code: number; stderr: string }, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

describe('onedp eval: real-time, perturbation and rendering flags on bad input', () => {
  // Flags are checked before the checkpoint is opened, so a missing one never hides them.
  const base = ['eval', '--policy', '/nonexistent/run'];
  it('rejects bad values with one line and exit status 2', async () => {
    expectUsageError(await onedpInProcess([...base, '--latency', 'nfe:20']), /--latency applies only with --realtime/);
    expectUsageError(await onedpInProcess([...base, '--fill', 'hold']), /--fill applies only with --realtime/);
    expectUsageError(await onedpInProcess([...base, '--budget', '20']), /--budget applies only with --realtime/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--budget', '-1']), /--budget must be a number of milliseconds >= 0, got "-1"/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--budget', 'soon']), /--budget must be a number of milliseconds >= 0, got "soon"/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--latency', 'fast']), /--latency must be measured or nfe:<ms per network evaluation>.*got "fast"/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--latency', 'nfe:-3']), /--latency must be measured or nfe:/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--fill', 'later']), /--fill must be previous or hold, got "later"/);
    expectUsageError(await onedpInProcess([...base, '--realtime', '--align', 'early']), /--align must be skip or shift, got "early"/);
    expectUsageError(await onedpInProcess([...base, '--perturb', '3']), /--perturb must be 0, 1 or 2, got "3"/);
    expectUsageError(await onedpInProcess([...base, '--perturb', 'x']), /--perturb must be 0, 1 or 2, got "x"/);
    expectUsageError(await onedpInProcess([...base, '--render', '1']), /--render needs --out <dir>/);
    expectUsageError(await onedpInProcess([...base, '--render', '0', '--out', os.tmpdir()]), /--render must be an integer >= 1, got "0"/);
    expectUsageError(await onedpInProcess([...base, '--max-steps', '0']), /--max-steps must be an integer >= 1, got "0"/);
  });
});

describe('onedp eval on a trained PushT policy', () => {
  let dir = '';
  let run = '';
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-eval-'));
    const data = path.join(dir, 'pusht.zarr');
    const c = onedp(['collect', 'pusht', '--episodes', '1', '--out', data]);
    expect(c.code, c.stderr).toBe(0);
    run = path.join(dir, 'run');
    const t = onedp(['train', '--dataset', data, '--out', run, '--steps', '2', '--batch-size', '8', '--down-dims', '16,32', '--step-embed', '16', '--checkpoint-every', '2', '--progress', 'none']);
    expect(t.code, t.stderr).toBe(0);
  });

  it('--render 1 writes a PNG strip and an animated GIF of the first episode only', async () => {
    const out = path.join(dir, 'eval');
    const r = onedp(['eval', '--policy', run, '--seeds', '0:2', '--sampler', 'ddim-2', '--max-steps', '12', '--render', '1', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const png = await fs.readFile(path.join(out, 'episodes', 'seed-0.png'));
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    // 8 frames of 128 px side by side (IHDR width and height, big-endian).
    expect(png.readUInt32BE(16)).toBe(8 * 128);
    expect(png.readUInt32BE(20)).toBe(128);
    const gif = await fs.readFile(path.join(out, 'episodes', 'seed-0.gif'));
    expect(gif.subarray(0, 6).toString('latin1')).toBe('GIF89a');
    expect(gif.readUInt16LE(6)).toBe(128);
    expect(gif[gif.length - 1]).toBe(0x3b); // trailer
    // Reset frame + 12 steps.
    expect(r.stderr).toMatch(/rendered seed 0: .*seed-0\.png, \.gif \(13 frames\)/);
    expect((await fs.readdir(path.join(out, 'episodes'))).sort()).toEqual(['seed-0.gif', 'seed-0.png']);
    const summary = JSON.parse(await fs.readFile(path.join(out, 'summary.json'), 'utf8'));
    expect(summary).toMatchObject({ episodes: 2, maxSteps: 12, perturb: 0, realtime: null });
    expect(summary).toHaveProperty('meanCompletionSeconds');
    const episodes = JSON.parse(await fs.readFile(path.join(out, 'episodes.json'), 'utf8'));
    expect(episodes[0]).toHaveProperty('completionSeconds');
    expect(episodes[0].steps).toBe(12);
  });

  it('--realtime with a fixed per-NFE latency and a perturbed task reports delays and completion time', async () => {
    const out = path.join(dir, 'rt');
    const args = ['eval', '--policy', run, '--seeds', '0:2', '--sampler', 'ddim-2', '--max-steps', '20', '--realtime', '--latency', 'nfe:60', '--fill', 'hold', '--perturb', '1', '--out', out];
    const r = onedp(args);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    // 2 network evaluations x 60 ms = 120 ms: 2 control periods.
    expect(summary.realtime).toMatchObject({ latency: { kind: 'nfe', perNfeMs: 60 }, fill: 'hold', align: 'skip', controlPeriodMs: 100, meanLatencyMs: 120, meanDelayPeriods: 2 });
    expect(summary.perturb).toBe(1);
    const episodes = JSON.parse(await fs.readFile(path.join(out, 'episodes.json'), 'utf8'));
    for (const e of episodes) {
      expect(e).toMatchObject({ steps: 20, meanDelayPeriods: 2 });
      expect(e.fillSteps).toBeGreaterThanOrEqual(2);
      expect(e.perturbations).toBeGreaterThanOrEqual(0);
      expect(e).toHaveProperty('completionSeconds');
    }
    // Reproducible: the fixed latency model does not depend on the machine's speed.
    const again = onedp(args);
    expect(JSON.parse(again.stdout).meanScore).toBe(summary.meanScore);
    expect(JSON.parse(await fs.readFile(path.join(out, 'episodes.json'), 'utf8'))).toEqual(episodes);
  });
});

/**
 * The main job and the reproduction recipe end to end, on tiny settings: every stage runs,
 * the table has every row, and a finished recipe is not redone when run again.
 */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { onedp, onedpAsync, onedpInProcess } from './helpers/cli.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-pipeline-'));
const TINY = ['--episodes', '2', '--train-steps', '6', '--distill-steps', '2', '--down-dims', '16,32', '--test-seeds', '100000:100002', '--progress', 'none'];

describe('onedp quickstart and reproduce', () => {
  it('quickstart runs every stage and prints the table', async () => {
    const runs = await tmp();
    const r = onedp(['quickstart', '--name', 'tiny', '--runs', runs, ...TINY], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    for (const m of ['DP (DDPM) | DDPM | 100', 'DP (DDIM) | DDPM | 10', 'DP (DDIM, 1 step) | DDPM | 1', 'OneDP-D | DDPM | 1', 'OneDP-S | DDPM | 1']) expect(r.stdout).toContain(`| ${m} |`);
    const results = JSON.parse(await fs.readFile(path.join(runs, 'tiny', 'results.json'), 'utf8'));
    expect(results.rows).toHaveLength(5);
    const report = await fs.readFile(path.join(runs, 'tiny', 'report.md'), 'utf8');
    expect(report).toContain('| OneDP-S | DDPM | 1 |');
    // The plots it links exist and are SVG.
    for (const m of report.matchAll(/\]\((plots\/[\w-]+\.svg)\)/g)) expect((await fs.readFile(path.join(runs, 'tiny', m[1]), 'utf8')).startsWith('<svg')).toBe(true);
    expect([...report.matchAll(/plots\/[\w-]+\.svg/g)].length).toBeGreaterThanOrEqual(2);
  });

  it('quickstart --obs image runs the same pipeline on camera frames, with the encoding time in the table', async () => {
    const runs = await tmp();
    const r = onedp(['quickstart', '--obs', 'image', '--name', 'tiny-image', '--runs', runs, ...TINY, '--batch-size', '4', '--test-seeds', '100000:100001'], { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('PushT (image)');
    expect(r.stdout).toMatch(/ResNet-18 encoder of widths 16\/32\/64\/128/);
    for (const m of ['DP (DDPM) | DDPM | 100', 'DP (DDIM) | DDPM | 10', 'OneDP-D | DDPM | 1', 'OneDP-S | DDPM | 1']) expect(r.stdout).toContain(`| ${m} |`);
    const results = JSON.parse(await fs.readFile(path.join(runs, 'tiny-image', 'results.json'), 'utf8'));
    for (const row of results.rows) expect(row.obsMs).toBeGreaterThan(0.5); // a ResNet pass, not a reshape
    // The image checkpoints work through eval and sample too.
    const ev = onedp(['eval', '--policy', path.join(runs, 'tiny-image', 'seed-0', 'ddpm', 'onedp-s'), '--seeds', '100000:100002', '--max-steps', '8']);
    expect(ev.code, ev.stderr).toBe(0);
    const summary = JSON.parse(ev.stdout);
    expect(summary.episodes).toBe(2);
    expect(summary.latency.obsEncodingMs).toBeGreaterThan(0.5);
    const sm = onedp(['sample', '--checkpoint', path.join(runs, 'tiny-image', 'seed-0', 'ddpm', 'dp'), '--dataset', path.join(runs, 'tiny-image', 'pusht.zarr'), '--sampler', 'ddim-2', '-n', '2']);
    expect(sm.code, sm.stderr).toBe(0);
    expect(JSON.parse(sm.stdout).chunks).toHaveLength(2);
    const noImg = onedp(['sample', '--checkpoint', path.join(runs, 'tiny-image', 'seed-0', 'ddpm', 'dp'), '--obs', '[[0,0],[0,0]]']);
    expect(noImg.stderr).toMatch(/an image policy takes its observation from --dataset/);
  });

  it('image commands reject bad input clearly', () => {
    const bad = (args: string[], pattern: RegExp) => {
      const r = onedp(args);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr).toMatch(pattern);
    };
    bad(['quickstart', '--obs', 'depth'], /--obs must be state or image, got "depth"/);
    bad(['train', '--dataset', 'synthetic:bimodal', '--obs', 'image', '--out', os.tmpdir()], /synthetic:bimodal: has no "img" array/);
    bad(['train', '--dataset', 'synthetic:bimodal', '--encoder-widths', '16,32,64,128', '--out', os.tmpdir()], /--encoder-widths applies to image policies/);
  });

  it('reproduce trains seeds in parallel processes, aggregates them, and reuses finished stages', async () => {
    const out = path.join(await tmp(), 'rep');
    const args = ['reproduce', 'pusht-state', '--out', out, '--teachers', 'ddpm', '--train-seeds', '0,1', '--jobs', '2', '--latency-reps', '2', ...TINY];
    const r = onedp(args, { timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\| OneDP-S \| DDPM \| 1 \| [\d.]+ \+- [\d.]+ \([\d.]+\) \| [\d.]+ \/ [\d.]+ \|/);
    for (const seed of [0, 1]) {
      const evals = await fs.readdir(path.join(out, `seed-${seed}`, 'ddpm', 'eval'));
      expect(evals.sort()).toEqual(['dp-ddim-1.json', 'dp-ddim-10.json', 'dp-ddpm-100.json', 'onedp-d.json', 'onedp-s.json']);
    }
    const timing = await fs.readFile(path.join(out, 'seed-0', 'ddpm', 'timing.json'), 'utf8');
    const again = onedp(args, { timeoutMs: 300_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/pre-training|distilling/);
    expect(await fs.readFile(path.join(out, 'seed-0', 'ddpm', 'timing.json'), 'utf8')).toBe(timing);
    const results = JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8'));
    expect(results.rows.map((x: { method: string }) => x.method)).toEqual(['DP (DDPM)', 'DP (DDIM)', 'DP (DDIM, 1 step)', 'OneDP-D', 'OneDP-S']);
  });

  it('a seed process that is killed stops the run with a clear error, keeps its checkpoint, and a rerun continues', async () => {
    const out = path.join(await tmp(), 'rep');
    // 1000 steps: the trainer checkpoints at step 500 and at the end, so the kill comes mid-training.
    const args = ['reproduce', 'pusht-state', '--out', out, '--teachers', 'ddpm', '--train-seeds', '0,1', '--jobs', '2', '--latency-reps', '1', ...TINY, '--train-steps', '1000', '--batch-size', '4', '--pretrain-curve-every', '0', '--curve-every', '0', '--realtime-nfe-ms', ''];
    const cli = onedpAsync(args);
    let stderr = '';
    cli.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => cli.once('exit', (code) => r(code)));
    const latest = path.join(out, 'seed-0', 'ddpm', 'dp', 'checkpoints', 'latest.json');
    const options = path.join(out, 'options.json');
    const workers = (seed: number) => spawnSync('pgrep', ['-f', `${options} ${seed} ddpm`], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean).map(Number);
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && !(await fs.access(latest).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 50));
    const [victim] = workers(0);
    expect(victim, stderr).toBeGreaterThan(0);
    process.kill(victim, 'SIGKILL');
    expect(await exited).not.toBe(0);
    expect(stderr).toMatch(/training seed 0 \(ddpm teacher\) was killed \(SIGKILL\); its last checkpoint is kept: rerun the same command to continue/);
    // The sibling was stopped with the run, not left training on its own.
    expect(workers(1)).toEqual([]);
    const kept = await loadCheckpoint(path.join(out, 'seed-0', 'ddpm', 'dp', 'checkpoints'));
    expect(Number(kept.meta.step)).toBeGreaterThanOrEqual(500);
    const again = onedp(args, { timeoutMs: 300_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/seed 0 ddpm: pre-training resumes at step 500 of 1000/);
    expect(Number((await loadCheckpoint(path.join(out, 'seed-0', 'ddpm', 'dp', 'checkpoints'))).meta.step)).toBe(1000);
    expect(JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8')).rows).toHaveLength(5);
  });

  it('reproduce rejects unknown experiments, stages and teachers', async () => {
    const bad = async (args: string[], pattern: RegExp) => {
      const r = await onedpInProcess(['reproduce', ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(pattern);
    };
    await bad(['pusht-3d'], /unknown experiment "pusht-3d"; available: pusht-state/);
    await bad(['pusht-state', '--stage', 'train'], /--stage must be all, seed or report/);
    await bad(['pusht-state', '--teachers', 'ddim'], /--teachers: "ddim" is not ddpm or edm/);
    await bad(['pusht-state', '--test-seeds', '9:3'], /--test-seeds: seed range 9:3 is empty/);
  });
});

/**
 * `onedp reproduce manipulation` end to end on tiny settings (issue 18): the MuJoCo experiment
 * collects robomimic HDF5 demonstrations, trains, distils, evaluates every row on the task by
 * success, and the table across tasks is written; a PushT column comes from a given results.json;
 * `onedp eval --env lift` runs the distilled policy in real time and on worker threads; unknown task and environment
 * names are usage errors.
 */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onedp, onedpInProcess } from './helpers/cli.js';
import { readRobomimic } from '../src/data/hdf5.js';
import { evaluateParallel } from '../src/eval/parallel.js';

describe('onedp reproduce manipulation', () => {
  it('runs Lift through every stage and writes the table across tasks, with PushT as a column when given', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-manip-'));
    const out = path.join(dir, 'rep');
    const tiny = ['--tasks', 'lift-ph', '--teachers', 'ddpm', '--episodes', '3', '--train-steps', '6', '--distill-steps', '2', '--down-dims', '8,16', '--test-seeds', '100000:100001', '--latency-reps', '1', '--curve-every', '0', '--pretrain-curve-every', '0', '--progress', 'none'];
    // In a folder without runs/, so no PushT results are found by default.
    const r = onedp(['reproduce', 'manipulation', '--out', out, ...tiny], { cwd: dir, timeoutMs: 300_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('No PushT column');
    expect(r.stdout).toContain('| method | NFE | lift-ph |');
    for (const m of ['DP (DDPM) | 100', 'DP (DDIM) | 10', 'DP (DDIM, 1 step) | 1', 'OneDP-D | 1', 'OneDP-S | 1']) expect(r.stdout).toMatch(new RegExp(`\\| ${m.replace(/[()]/g, '\\$&')} \\| [\\d.]+ \\|`));
    expect(r.stdout).toMatch(/\| DDPM-100 \/ OneDP-S \| \d+x \|/);
    // robomimic demonstrations, and the task's own report scores success.
    const ds = await readRobomimic(path.join(out, 'lift-ph', 'lift-ph.hdf5'));
    expect(ds.demos).toHaveLength(3);
    const own = await fs.readFile(path.join(out, 'lift-ph', 'report.md'), 'utf8');
    expect(own).toContain('# onedp reproduce lift-ph: Lift (ph)');
    expect(own).toContain('success rate over test episodes');
    // A results.json of another task is not PushT's.
    const liftResults = path.join(out, 'lift-ph', 'results.json');
    const wrong = onedp(['reproduce', 'manipulation', '--out', out, ...tiny, '--stage', 'report', '--pusht', liftResults], { cwd: dir });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain(`${liftResults}: holds the results of lift-ph, not of a PushT experiment`);
    // Run again: every finished stage is reused, and a PushT experiment's results (here in the
    // shape the pipeline writes, from this run's rows) become a column.
    const results = JSON.parse(await fs.readFile(liftResults, 'utf8'));
    const pushtFile = path.join(dir, 'pusht-results.json');
    await fs.writeFile(pushtFile, JSON.stringify({ ...results, options: { ...results.options, experiment: 'pusht-state' } }));
    const again = onedp(['reproduce', 'manipulation', '--out', out, ...tiny, '--pusht', pushtFile], { cwd: dir, timeoutMs: 300_000 });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/pre-training|distilling|collecting/);
    expect(again.stdout).toContain('| method | NFE | PushT | lift-ph |');
    expect(JSON.parse(await fs.readFile(path.join(out, 'results.json'), 'utf8')).tasks).toHaveLength(1);
    // `onedp eval --env lift` on the distilled policy, in real time: 120 ms a call is 3 of Lift's 50 ms periods.
    const ev = onedp(['eval', '--env', 'lift', '--policy', path.join(out, 'lift-ph', 'seed-0', 'ddpm', 'onedp-s'), '--seeds', '0:2', '--max-steps', '6', '--realtime', '--latency', 'nfe:120']);
    expect(ev.code, ev.stderr).toBe(0);
    const summary = JSON.parse(ev.stdout);
    expect(summary).toMatchObject({ env: 'lift', kind: 'onedp-s', episodes: 2, realtime: { controlPeriodMs: 50, meanDelayPeriods: 3 } });
    expect(summary.latency.nfe).toBe(1);
    // Worker threads take the MuJoCo task unchanged: the same episodes on 1 and 2 workers.
    const student = path.join(out, 'lift-ph', 'seed-0', 'ddpm', 'onedp-s');
    const episodes = async (workers: string) => {
      const o = path.join(dir, `w${workers}`);
      // The single-thread run also draws its first episode (a GIF at Lift's 20 Hz and a PNG strip).
      const e = onedp(['eval', '--env', 'lift', '--policy', student, '--seeds', '0:3', '--max-steps', '12', '--batch', '2', '--workers', workers, '--out', o, ...(workers === '1' ? ['--render', '1'] : [])]);
      expect(e.code, e.stderr).toBe(0);
      expect(JSON.parse(e.stdout)).toMatchObject({ env: 'lift', workers: Number(workers), episodes: 3 });
      return JSON.parse(await fs.readFile(path.join(o, 'episodes.json'), 'utf8')) as { seed: number; score: number; steps: number }[];
    };
    const one = await episodes('1');
    expect(one.map((e) => e.seed)).toEqual([0, 1, 2]);
    const gif = await fs.readFile(path.join(dir, 'w1', 'episodes', 'seed-0.gif'));
    expect(gif.subarray(0, 6).toString('latin1')).toBe('GIF89a');
    expect((await fs.stat(path.join(dir, 'w1', 'episodes', 'seed-0.png'))).size).toBeGreaterThan(1000);
    expect(await episodes('2')).toEqual(one);
    // A task's options are checked once, before any worker starts.
    await expect(evaluateParallel({ checkpoint: student }, { task: 'lift', seeds: [0, 1], workers: 2, perturb: 1 })).rejects.toThrow(/perturb is PushT's perturbed task; lift has none/);
    await expect(evaluateParallel({ checkpoint: student }, { task: 'stack', seeds: [0, 1], workers: 2 })).rejects.toThrow(/task must be pusht, lift or square, got "stack"/);
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('rejects unknown tasks', async () => {
    const bad = async (args: string[], pattern: RegExp) => {
      const r = await onedpInProcess(['reproduce', ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(pattern);
    };
    await bad(['manipulation', '--tasks', 'lift-ph,stack-ph'], /--tasks: "stack-ph" is not one of lift-ph, lift-mh, square-ph, square-mh/);
    const ev = await onedpInProcess(['eval', '--env', 'stack', '--policy', 'x']);
    expect(ev.code).toBe(2);
    expect(ev.stderr).toMatch(/--env must be pusht, lift or square, got "stack"/);
  });
});

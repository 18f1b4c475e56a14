/**
 * robomimic HDF5 datasets (src/data/hdf5.ts): the independent fixture written by h5py (gzip
 * datasets, byte-string masks, float64 actions) reads exactly as its summary says; a dataset
 * round-trips through writeRobomimic and readRobomimic unchanged; it becomes a replay buffer with
 * robomimic's observation keys; and missing, foreign, truncated or inconsistent files get one
 * error naming the file and the problem, with libhdf5's own diagnostics kept off stderr.
 */
import nodeFs, { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { readRobomimic, robomimicToReplay, writeRobomimic, type RobomimicDataset } from '../src/data/hdf5.js';
import { FIXTURES } from './helpers/fixtures.js';
import { onedp } from './helpers/cli.js';

const FIXTURE = path.join(FIXTURES, 'interchange', 'robomimic_mini.hdf5');
const SUMMARY = JSON.parse(readFileSync(FIXTURE.replace('.hdf5', '.summary.json'), 'utf8')) as {
  total: number;
  demos: Record<string, { num_samples: number; actions_sum: number; actions_row0: number[]; object_sum: number }>;
};
const sum = (a: ArrayLike<number>) => Array.from(a).reduce((x, y) => x + y, 0);

let dir = '';
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-hdf5-'));
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('robomimic HDF5', () => {
  it('reads the h5py fixture exactly as its summary says', async () => {
    const ds = await readRobomimic(FIXTURE);
    expect(ds.demos.map((d) => d.name)).toEqual(Object.keys(SUMMARY.demos));
    let frames = 0;
    for (const d of ds.demos) {
      const s = SUMMARY.demos[d.name];
      const t = s.num_samples;
      frames += t;
      expect(d.actions.frameShape).toEqual([7]);
      expect(d.actions.values).toBeInstanceOf(Float64Array);
      expect(d.actions.values.length).toBe(7 * t);
      expect(sum(d.actions.values)).toBeCloseTo(s.actions_sum, 12);
      expect(Array.from(d.actions.values.slice(0, 7))).toEqual(s.actions_row0);
      expect(d.obs.object.frameShape).toEqual([14]);
      expect(sum(d.obs.object.values)).toBeCloseTo(s.object_sum, 12);
      expect(Object.keys(d.obs).sort()).toEqual(['object', 'robot0_eef_pos', 'robot0_eef_quat', 'robot0_gripper_qpos']);
      expect(d.obs.robot0_eef_quat.frameShape).toEqual([4]);
      expect(d.nextObs?.object.frameShape).toEqual([14]);
      expect(d.states?.frameShape).toEqual([45]);
      expect(d.rewards.at(-1)).toBe(1);
      expect(d.dones.at(-1)).toBe(1);
      expect(sum(d.dones)).toBe(1);
    }
    expect(frames).toBe(SUMMARY.total);
    expect(ds.masks).toEqual({ train: ['demo_0', 'demo_2'], valid: ['demo_1'] });
    expect((ds.envArgs as { env_name: string }).env_name).toBe('NutAssemblySquare');
  });

  it('round-trips: written by writeRobomimic, read back unchanged', async () => {
    const ds = await readRobomimic(FIXTURE);
    const out = path.join(dir, 'copy.hdf5');
    await writeRobomimic(out, ds);
    const back = await readRobomimic(out);
    expect(back).toEqual(ds);
    // Nothing left beside it.
    expect((await fs.readdir(dir)).filter((f) => f.startsWith('copy'))).toEqual(['copy.hdf5']);
  });

  it('becomes a replay buffer: action and the observation keys, demos as episodes, a mask as a split', async () => {
    const ds = await readRobomimic(FIXTURE);
    const rb = robomimicToReplay(ds);
    expect(rb.episodeEnds).toEqual([7, 18, 23]);
    expect(rb.arrays.get('action')!.frameShape).toEqual([7]);
    expect(rb.arrays.get('object')!.frameShape).toEqual([14]);
    expect(rb.arrays.get('action')!.data[0]).toBeCloseTo(SUMMARY.demos.demo_0.actions_row0[0], 6);
    const train = robomimicToReplay(ds, { split: 'train' });
    expect(train.episodeEnds).toEqual([7, 12]);
    expect(() => robomimicToReplay({ ...ds, masks: { ...ds.masks, empty: [] } }, { split: 'empty', source: 'x.hdf5' })).toThrow('x.hdf5: mask "empty" lists no demos');
    // Training reads neither next_obs nor the simulator states.
    const lean = await readRobomimic(FIXTURE, { trainingOnly: true });
    expect(lean.demos[0].nextObs).toBeUndefined();
    expect(lean.demos[0].states).toBeUndefined();
    expect(lean.demos[0].obs.object.values).toEqual(ds.demos[0].obs.object.values);
    expect(() => robomimicToReplay(ds, { split: 'test', source: 'x.hdf5' })).toThrow('x.hdf5: no mask "test" (has train, valid)');
  });

  it('bad files: one clear error naming the file and the problem, nothing on stderr', async () => {
    // libhdf5 (h5wasm's Node build) writes its diagnostics to fd 2 with fs.writeSync.
    const err = vi.spyOn(nodeFs, 'writeSync');
    const bytes = readFileSync(FIXTURE);
    const write = async (name: string, b: Uint8Array | string) => {
      const p = path.join(dir, name);
      await fs.writeFile(p, b);
      return p;
    };
    await expect(readRobomimic(path.join(dir, 'missing.hdf5'))).rejects.toThrow(/missing\.hdf5: no such file/);
    const text = await write('text.hdf5', 'hello, not HDF5');
    await expect(readRobomimic(text)).rejects.toThrow(`${text}: not an HDF5 file`);
    const cut = await write('cut.hdf5', bytes.subarray(0, 30000));
    await expect(readRobomimic(cut)).rejects.toThrow(`${cut}: libhdf5 cannot open it (File has been truncated; truncated or corrupt?)`);
    // A valid HDF5 file that is not a robomimic dataset.
    const other = path.join(dir, 'other.hdf5');
    const ds = await readRobomimic(FIXTURE);
    await writeRobomimic(other, { ...ds, demos: ds.demos.map((d) => ({ ...d, name: d.name.replace('demo', 'traj') })), masks: {} });
    await expect(readRobomimic(other)).rejects.toThrow(`${other}: data holds no demo_N groups`);
    // The writer refuses arrays of different lengths...
    const d0 = ds.demos[0];
    const short = path.join(dir, 'short.hdf5');
    await expect(writeRobomimic(short, { ...ds, demos: [{ ...d0, obs: { ...d0.obs, object: { values: d0.obs.object.values.slice(0, 14 * 3), frameShape: [14] } } }], masks: {} })).rejects.toThrow(`${short}: cannot write it`);
    await expect(fs.stat(short)).rejects.toThrow();
    // ...and the reader a demo whose arrays disagree with its num_samples (edited with h5wasm).
    const edited = path.join(dir, 'edited.hdf5');
    await fs.copyFile(FIXTURE, edited);
    const h5 = await import('h5wasm/node');
    await h5.ready;
    const f = new h5.File(edited, 'a');
    const g = f.get('data/demo_0') as InstanceType<typeof h5.Group>;
    g.delete_attribute('num_samples');
    g.create_attribute('num_samples', 8, null, '<i8');
    f.close();
    await expect(readRobomimic(edited)).rejects.toThrow(`${edited}: data/demo_0/actions has shape (7, 7), expected 8 frames (num_samples)`);
    // NaN in the actions.
    const nan = path.join(dir, 'nan.hdf5');
    const bad = Float64Array.from(d0.actions.values);
    bad[9] = NaN;
    await writeRobomimic(nan, { ...ds, demos: [{ ...d0, actions: { values: bad, frameShape: [7] } }], masks: {} });
    await expect(readRobomimic(nan)).rejects.toThrow(`${nan}: data/demo_0/actions has a non-finite value at index 9 (frame 1)`);
    const diag = err.mock.calls.filter((c) => c[0] === 2);
    err.mockRestore();
    expect(diag).toEqual([]);
  });

  it('the CLI: dataset info summarises it, train reads it with robomimic\'s low-dim keys, a truncated file is one line', async () => {
    const info = onedp(['dataset', 'info', FIXTURE]);
    expect(info.code).toBe(0);
    expect(info.stdout).toContain('robomimic dataset of NutAssemblySquare, 3 demos, 23 frames');
    expect(info.stdout).toMatch(/obs\/object\s+\(14\)/);
    const out = path.join(dir, 'run');
    const tr = onedp(['train', '--dataset', FIXTURE, '--out', out, '--steps', '2', '--batch-size', '4', '--down-dims', '16,32', '--step-embed', '16', '--progress', 'none']);
    expect(tr.code, tr.stderr).toBe(0);
    expect(tr.stderr).toContain('3 episodes, 23 frames, obs "object,robot0_eef_pos,robot0_eef_quat,robot0_gripper_qpos" (23-D)');
    const meta = JSON.parse(await fs.readFile(path.join(out, 'checkpoints', 'step-0000002', 'checkpoint.json'), 'utf8')) as { policyConfig: { obsDim: number; actionDim: number } };
    expect([meta.policyConfig.obsDim, meta.policyConfig.actionDim]).toEqual([23, 7]);
    const cut = path.join(dir, 'cut-cli.hdf5');
    await fs.writeFile(cut, readFileSync(FIXTURE).subarray(0, 30000));
    const bad = onedp(['dataset', 'info', cut]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr.trim()).toBe(`onedp: error: ${cut}: libhdf5 cannot open it (File has been truncated; truncated or corrupt?)`);
  });
});

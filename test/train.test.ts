import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { modeStats } from './helpers/bimodal.js';
import { bimodalDataset } from '../src/data/synthetic.js';
import { trainPolicy, batchIndices, TrainingDivergedError } from '../src/train/trainer.js';
import { defaultPolicyConfig, type DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { loadDiffusionPolicy } from '../src/policy/load.js';
import { loadCheckpoint, latestCheckpoint } from '../src/train/checkpoint.js';
import { stateDict } from '../src/nn/state_dict.js';
import { cosineWithWarmup } from '../src/train/lr.js';
import { Ema } from '../src/train/ema.js';
import { AdamW } from '../src/train/adamw.js';
import { DDIMScheduler } from '../src/diffusion/index.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-train-'));

function smallConfig(kind: 'ddpm' | 'edm', dims = [32, 64], dsed = 32): DiffusionPolicyConfig {
  const noise =
    kind === 'ddpm'
      ? ({ kind: 'ddpm', numTrainTimesteps: 100, clipSample: true } as const)
      : ({ kind: 'edm', numSteps: 18, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 } as const);
  return defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: dsed, downDims: dims, kernelSize: 5, nGroups: 8, condPredictScale: true }, noise });
}

describe('training building blocks', () => {
  it('cosine schedule warms up linearly and decays to zero', () => {
    expect(cosineWithWarmup(0, 500, 5000)).toBe(0);
    expect(cosineWithWarmup(250, 500, 5000)).toBeCloseTo(0.5, 12);
    expect(cosineWithWarmup(500, 500, 5000)).toBeCloseTo(1, 12);
    expect(cosineWithWarmup(2750, 500, 5000)).toBeCloseTo(0.5, 12);
    expect(cosineWithWarmup(5000, 500, 5000)).toBeCloseTo(0, 12);
  });

  it('EMA decay follows 1 - (1+step)^-0.75 capped at 0.9999', () => {
    const v = tf.variable(tf.tensor1d([1]));
    const ema = new Ema([v]);
    expect(ema.decay(0)).toBe(0);
    expect(ema.decay(1)).toBeCloseTo(1 - 2 ** -0.75, 12);
    expect(ema.decay(1e9)).toBe(0.9999);
    ema.update(); // decay 0: copies
    v.assign(tf.tensor1d([3]));
    ema.update(); // decay 0.405
    expect(ema.shadow[0].dataSync()[0]).toBeCloseTo(1 * (1 - 2 ** -0.75) + 3 * 2 ** -0.75, 6);
  });

  it('AdamW matches a hand computation of PyTorch AdamW (decoupled weight decay)', () => {
    const p = tf.variable(tf.tensor1d([1, -2]));
    const opt = new AdamW([p], { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.5 });
    const g = [0.5, -1];
    opt.step([tf.tensor1d(g)]);
    opt.step([tf.tensor1d(g)]);
    // Reference, in float64, following torch.optim.AdamW.
    let w = [1, -2];
    let m = [0, 0];
    let v = [0, 0];
    for (let t = 1; t <= 2; t++) {
      w = w.map((x) => x * (1 - 0.1 * 0.5));
      m = m.map((x, i) => 0.9 * x + 0.1 * g[i]);
      v = v.map((x, i) => 0.99 * x + 0.01 * g[i] ** 2);
      const step = 0.1 / (1 - 0.9 ** t);
      const bc2 = Math.sqrt(1 - 0.99 ** t);
      w = w.map((x, i) => x - (step * m[i]) / (Math.sqrt(v[i]) / bc2 + 1e-8));
    }
    const got = p.dataSync();
    expect(got[0]).toBeCloseTo(w[0], 6);
    expect(got[1]).toBeCloseTo(w[1], 6);
  });

  it('batches cover every window once per epoch, reproducibly', () => {
    const n = 37;
    const seen: number[] = [];
    for (let s = 0; s < 37; s++) seen.push(...batchIndices(n, 4, 3, s)); // 4 epochs
    for (let e = 0; e < 4; e++) expect(new Set(seen.slice(e * n, (e + 1) * n)).size).toBe(n);
    expect(batchIndices(n, 4, 3, 10)).toEqual(batchIndices(n, 4, 3, 10));
    expect(batchIndices(n, 4, 3, 10)).not.toEqual(batchIndices(n, 4, 4, 10));
  });
});

describe('training a diffusion policy', () => {
  it('learns both modes of a bimodal demonstration set and stays close to the data', async () => {
    const out = await tmp();
    const r = await trainPolicy({
      policy: smallConfig('ddpm'),
      buffer: bimodalDataset({ episodes: 40 }),
      outDir: out,
      train: { steps: 400, batchSize: 64, warmupSteps: 50, lr: 1e-3, checkpointEvery: 400 },
      progress: 'none',
    });
    expect(r.losses[r.losses.length - 1]).toBeLessThan(0.2 * r.losses[0]);
    const policy = await loadDiffusionPolicy(out);
    const obs = Array.from({ length: 200 }, () => [[0, 0], [0, 0]]);
    const ddpm = policy.predictAction(obs, { seed: 1 });
    expect(ddpm.timing.nfe).toBe(100);
    expect(ddpm.actions[0]).toHaveLength(8);
    const s = modeStats(ddpm.chunk);
    expect(s.right).toBeGreaterThanOrEqual(0.3);
    expect(s.right).toBeLessThanOrEqual(0.7);
    // Demonstrations differ by +-1 between modes; a mode-averaging policy errs by ~0.5.
    expect(s.err).toBeLessThan(0.15);
    const ddim = modeStats(policy.predictAction(obs, { seed: 2, sampler: new DDIMScheduler({ numInferenceSteps: 10 }) }).chunk);
    expect(Math.min(ddim.right, 1 - ddim.right)).toBeGreaterThanOrEqual(0.3);
  });

  it('learns with the EDM schedule too', async () => {
    const out = await tmp();
    await trainPolicy({
      policy: smallConfig('edm'),
      buffer: bimodalDataset({ episodes: 40 }),
      outDir: out,
      train: { steps: 400, batchSize: 64, warmupSteps: 50, lr: 1e-3, checkpointEvery: 400 },
      progress: 'none',
    });
    const policy = await loadDiffusionPolicy(out);
    const res = policy.predictAction(Array.from({ length: 100 }, () => [[0, 0], [0, 0]]), { seed: 3 });
    expect(res.timing.nfe).toBe(35);
    const s = modeStats(res.chunk);
    expect(Math.min(s.right, 1 - s.right)).toBeGreaterThanOrEqual(0.25);
    expect(s.err).toBeLessThan(0.2);
  });

  it('resumes after a kill with the same weights and loss curve as an uninterrupted run', async () => {
    const cfg = smallConfig('ddpm', [16, 32], 16);
    const buffer = bimodalDataset({ episodes: 10 });
    const train = { steps: 20, batchSize: 16, warmupSteps: 5, lr: 1e-3, checkpointEvery: 10 };
    const straight = await trainPolicy({ policy: cfg, buffer, outDir: await tmp(), train, progress: 'none' });

    const dir = await tmp();
    // Killed at step 14: the work after the step-10 checkpoint is lost.
    await expect(
      trainPolicy({
        policy: cfg,
        buffer,
        outDir: dir,
        train,
        progress: 'none',
        onStep: ({ step }) => {
          if (step === 14) throw new Error('simulated kill');
        },
      }),
    ).rejects.toThrow('simulated kill');
    expect(path.basename((await latestCheckpoint(path.join(dir, 'checkpoints')))!)).toBe('step-0000010');
    const resumed = await trainPolicy({ policy: cfg, buffer, outDir: dir, train, resume: true, progress: 'none' });

    expect(resumed.step).toBe(20);
    expect(resumed.losses).toHaveLength(20);
    resumed.losses.forEach((l, i) => expect(Math.abs(l - straight.losses[i]), `loss at step ${i + 1}`).toBeLessThan(1e-6));
    const a = stateDict(straight.policy.unet);
    for (const [k, t] of stateDict(resumed.policy.unet)) {
      const ref = a.get(k)!.data as Float32Array;
      const got = t.data as Float32Array;
      let d = 0;
      for (let i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i] - ref[i]));
      expect(d, k).toBeLessThan(1e-6);
    }
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.step).toBe(20);
    expect((ck.meta.losses as number[]).length).toBe(20);
  });

  it('stops on a NaN loss with a clear message and keeps the last good checkpoint', async () => {
    const dir = await tmp();
    const cfg = smallConfig('ddpm', [16, 32], 16);
    const train = { steps: 12, batchSize: 8, warmupSteps: 2, lr: 1e-3, checkpointEvery: 5 };
    let err: unknown;
    try {
      await trainPolicy({
        policy: cfg,
        buffer: bimodalDataset({ episodes: 4 }),
        outDir: dir,
        train,
        progress: 'none',
        lossHook: (step, l) => (step === 7 ? l.mul(NaN) : l),
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toMatch(/training loss became NaN at step 8; stopped without updating the weights\. The last good checkpoint is intact: .*step-0000005/);
    const ck = await loadCheckpoint(dir);
    expect(ck.meta.step).toBe(5);
    for (const t of ck.tensors.model.values()) expect(Array.from(t.data as Float32Array).every(Number.isFinite)).toBe(true);
  });
});

describe('corrupt checkpoints', () => {
  async function goodCheckpoint(): Promise<string> {
    const dir = await tmp();
    await trainPolicy({
      policy: smallConfig('ddpm', [16, 32], 16),
      buffer: bimodalDataset({ episodes: 4 }),
      outDir: dir,
      train: { steps: 2, batchSize: 4, warmupSteps: 1, checkpointEvery: 2 },
      progress: 'none',
    });
    return (await latestCheckpoint(path.join(dir, 'checkpoints')))!;
  }

  it('a truncated weights file is reported with its path and nothing is overwritten', async () => {
    const ck = await goodCheckpoint();
    const file = path.join(ck, 'ema.safetensors');
    const bytes = await fs.readFile(file);
    await fs.writeFile(file, bytes.subarray(0, bytes.length - 100));
    await expect(loadDiffusionPolicy(ck)).rejects.toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor ".*" ends at byte`));
    expect((await fs.stat(file)).size).toBe(bytes.length - 100);
  });

  it('weights of the wrong shape name the tensor and both shapes', async () => {
    const ck = await goodCheckpoint();
    const meta = JSON.parse(await fs.readFile(path.join(ck, 'checkpoint.json'), 'utf8'));
    meta.policyConfig.unet.downDims = [16, 48];
    await fs.writeFile(path.join(ck, 'checkpoint.json'), JSON.stringify(meta));
    await expect(loadDiffusionPolicy(ck)).rejects.toThrow(/ema\.safetensors: state dict does not match the model:\n.*tensor "mid_modules\.0\.blocks\.0\.block\.0\.weight" has shape \[32,32,5\] but the model expects \[48,48,5\]/);
  });

  it('missing files, bad JSON and foreign directories give clear errors', async () => {
    const ck = await goodCheckpoint();
    await expect(loadDiffusionPolicy(path.join(ck, 'nope'))).rejects.toThrow(/nope: no such checkpoint/);
    const empty = await tmp();
    await expect(loadDiffusionPolicy(empty)).rejects.toThrow(/checkpoint\.json: missing \(not an onedp checkpoint\)/);
    const meta = await fs.readFile(path.join(ck, 'checkpoint.json'), 'utf8');
    await fs.writeFile(path.join(ck, 'checkpoint.json'), '{"format": "onedp-checkpoint", ');
    await expect(loadDiffusionPolicy(ck)).rejects.toThrow(/checkpoint\.json: not valid JSON/);
    // Two inputs the fuzzing found: valid JSON that is not an object, and a weight file named by a path.
    await fs.writeFile(path.join(ck, 'checkpoint.json'), 'null');
    await expect(loadDiffusionPolicy(ck)).rejects.toThrow(/checkpoint\.json: not an onedp checkpoint \(expected a JSON object\)/);
    await fs.writeFile(path.join(ck, 'checkpoint.json'), JSON.stringify({ ...JSON.parse(meta), files: ['../../etc/ema'] }));
    await expect(loadDiffusionPolicy(ck)).rejects.toThrow(/checkpoint\.json: "files" entry "\.\.\/\.\.\/etc\/ema" is not a weight file name/);
  });
});

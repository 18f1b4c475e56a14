import { describe, expect, it, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { modeStats } from './helpers/bimodal.js';
import { bimodalDataset } from '../src/data/synthetic.js';
import { trainPolicy } from '../src/train/trainer.js';
import { DiffusionPolicy, defaultPolicyConfig, type DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { applySampler, loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { ConsistencyPolicy, chainBins, consistencySigmas, distillConsistency, huberConstant, parseConsistencySampler, pseudoHuber } from '../src/distill/consistency.js';
import { distillOneDp } from '../src/distill/distill.js';
import { ConditionalUnet1D } from '../src/nn/unet1d.js';
import { buildContext } from '../src/nn/module.js';
import { stateDict } from '../src/nn/state_dict.js';
import { sameWeights } from './helpers/weights.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-cp-'));
const buffer = bimodalDataset({ episodes: 40 });
const START = Array.from({ length: 200 }, () => [[0, 0], [0, 0]]);
const UNET = { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
const EDM = { kind: 'edm', numSteps: 18, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 } as const;

describe('Consistency Policy building blocks', () => {
  it('pseudo-Huber is sqrt(||a - b||^2 + c^2) - c per sample, with c = 0.00054 sqrt(dim)', () => {
    const a = tf.tensor([0, 0, 0, 0, 1, 2, 3, 4], [2, 2, 2]);
    const b = tf.tensor([3, 4, 0, 0, 1, 2, 3, 4], [2, 2, 2]);
    const c = 0.5;
    const d = Array.from(pseudoHuber(a, b, c).dataSync());
    expect(d[0]).toBeCloseTo(Math.sqrt(25 + 0.25) - 0.5, 5);
    expect(d[1]).toBe(0);
    expect(huberConstant(32)).toBeCloseTo(0.00054 * Math.sqrt(32), 12);
    // Quadratic near 0 (|x|^2 / 2c), linear far away.
    const small = pseudoHuber(tf.tensor([1e-4], [1, 1]), tf.tensor([0], [1, 1]), 0.01).dataSync()[0];
    expect(small).toBeCloseTo(1e-8 / 0.02, 9);
  });

  it('the 80-bin EDM discretisation runs from sigma_max to sigma_min with rho-7 spacing, then 0', () => {
    const s = consistencySigmas({ bins: 80, sigmaMin: 0.002, sigmaMax: 80, rho: 7, sigmaData: 0.5 });
    expect(s).toHaveLength(81);
    expect(s[0]).toBeCloseTo(80, 4);
    expect(s[79]).toBeCloseTo(0.002, 8);
    expect(s[80]).toBe(0);
    const r = s.slice(0, 80).map((v) => v ** (1 / 7));
    const step = r[1] - r[0];
    for (let i = 1; i < 80; i++) expect(r[i] - r[i - 1]).toBeCloseTo(step, 9);
    // CP's 3-step chain restarts from bins 27 and 54.
    expect(chainBins(3, 80)).toEqual([27, 54]);
    expect(chainBins(1, 80)).toEqual([]);
  });

  it('parses cp-N samplers', () => {
    expect(parseConsistencySampler('cp')).toBe(1);
    expect(parseConsistencySampler('cp-3')).toBe(3);
    expect(() => parseConsistencySampler('edm-18')).toThrow(/use cp-1 or cp-3/);
  });

  it('dropout acts only in training mode and leaves the initial weights and the default unchanged', () => {
    const cfg = { inputDim: 2, globalCondDim: 4, diffusionStepEmbedDim: 8, downDims: [8, 16], kernelSize: 3, nGroups: 4, condPredictScale: true };
    const plain = new ConditionalUnet1D(cfg, buildContext({ seed: 3 }));
    const drop = new ConditionalUnet1D({ ...cfg, dropout: 0.5 }, buildContext({ seed: 3 }));
    expect(sameWeights(stateDict(plain), stateDict(drop))).toBe(true);
    const x = tf.randomNormal([2, 8, 2], 0, 1, 'float32', 1);
    const c = tf.randomNormal([2, 4], 0, 1, 'float32', 2);
    const ref = plain.forward(x, 3, c).dataSync();
    const a = drop.forward(x, 3, c).dataSync();
    const b = drop.forward(x, 3, c).dataSync();
    expect(Array.from(a)).not.toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(ref));
    drop.eval();
    expect(Array.from(drop.forward(x, 3, c).dataSync())).toEqual(Array.from(ref));
  });
});

describe('Consistency Policy distillation on the bimodal set', () => {
  let teacherDir = '';
  beforeAll(async () => {
    teacherDir = await tmp();
    await trainPolicy({
      policy: defaultPolicyConfig(2, 2, { unet: UNET, noise: EDM }),
      buffer,
      outDir: teacherDir,
      train: { steps: 300, batchSize: 64, warmupSteps: 50, lr: 1e-3, checkpointEvery: 300 },
      progress: 'none',
    });
  });

  it('rejects a DDPM teacher with a clear error', async () => {
    const cfg: DiffusionPolicyConfig = defaultPolicyConfig(2, 2, { unet: UNET });
    const normalizer = LinearNormalizer.fit({ obs: { values: Float32Array.from([0, 1]), dim: 2 }, action: { values: Float32Array.from([0, 1]), dim: 2 } });
    const ddpm = new DiffusionPolicy(cfg, normalizer);
    await expect(distillConsistency({ teacher: ddpm, buffer, outDir: await tmp(), progress: 'none' })).rejects.toThrow(/EDM-trained teacher; this teacher was trained with DDPM/);
  });

  it('1-step CP keeps both modes and stays close to the data; 3 steps use 3 NFE; the teacher is untouched; the checkpoint round-trips', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const before = stateDict(teacher.unet);
    const out = await tmp();
    const snapshots: number[] = [];
    // Dropout 0.2 regularises the paper's 65M-parameter U-Net; this 32/64-channel one, trained for
    // 100 steps, only loses capacity to it. lr 1e-3 as the teacher: 1e-4 needs ~10x the steps.
    const res = await distillConsistency({
      teacher,
      buffer,
      config: { steps: 100, batchSize: 64, lr: 1e-3, dropout: 0 },
      outDir: out,
      progress: 'none',
      snapshotEvery: 50,
      onSnapshot: (step, p) => {
        snapshots.push(step);
        expect(p.predictAction(START.slice(0, 2), { seed: 0 }).timing.nfe).toBe(1);
      },
    });
    expect(snapshots).toEqual([50, 100]);
    expect(sameWeights(before, stateDict(teacher.unet))).toBe(true);
    expect(res.ctmLosses.every(Number.isFinite) && res.dsmLosses.every(Number.isFinite)).toBe(true);

    const one = res.policy.predictAction(START, { seed: 1 });
    expect(one.timing.nfe).toBe(1);
    const s1 = modeStats(one.chunk);
    expect(Math.min(s1.right, 1 - s1.right)).toBeGreaterThanOrEqual(0.25);
    // A mode-averaging policy errs by about 0.5 per coordinate here.
    expect(s1.err).toBeLessThan(0.2);

    const three = res.policy.predictAction(START, { seed: 1, steps: 3 });
    expect(three.timing.nfe).toBe(3);
    const s3 = modeStats(three.chunk);
    expect(Math.min(s3.right, 1 - s3.right)).toBeGreaterThanOrEqual(0.25);
    expect(s3.err).toBeLessThan(0.2);

    const loaded = await loadPolicy(out);
    expect(loaded).toBeInstanceOf(ConsistencyPolicy);
    expect(loaded.predictAction(START.slice(0, 8), { seed: 4 }).chunk).toEqual(res.policy.predictAction(START.slice(0, 8), { seed: 4 }).chunk);
    expect((await loadPolicy(out, { steps: 3 })).predictAction(START.slice(0, 2), { seed: 4 }).timing.nfe).toBe(3);
    expect(applySampler(loaded, 'cp-3').predictAction(START.slice(0, 2), { seed: 4 }).timing.nfe).toBe(3);
    await expect(loadPolicy(teacherDir, { steps: 3 })).rejects.toThrow(/steps apply to consistency-policy checkpoints/);
    const meta = JSON.parse(await fs.readFile(path.join(res.checkpoint, 'checkpoint.json'), 'utf8')) as { kind: string; sampling: { bins: number; sigmaMax: number; rho: number; sigmaData: number; sigmaMin: number } };
    expect(meta.kind).toBe('consistency-policy');
    expect(meta.sampling).toEqual({ bins: 80, sigmaMin: 0.002, sigmaMax: 80, rho: 7, sigmaData: 0.5 });
    console.log(`CP on the bimodal set, ${res.wallSeconds.toFixed(1)} s for 100 steps: 1-step right ${s1.right.toFixed(3)} err ${s1.err.toFixed(3)}; 3-step right ${s3.right.toFixed(3)} err ${s3.err.toFixed(3)}`);
  });

  it('OneDP distillation calls the snapshot hook with a usable one-step policy', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const seen: number[] = [];
    await distillOneDp({
      teacher,
      buffer,
      config: { method: 'onedp-d', steps: 2, batchSize: 8 },
      outDir: await tmp(),
      progress: 'none',
      snapshotEvery: 1,
      onSnapshot: (step, p) => {
        seen.push(step);
        expect(p.predictAction(START.slice(0, 2), { seed: 0 }).timing.nfe).toBe(1);
      },
    });
    expect(seen).toEqual([1, 2]);
  });
});

/**
 * ONNX export and the onnxruntime backend: every exported kind (OneDP-S/D from DDPM and EDM
 * teachers, the diffusion policy's denoiser with and without FiLM scale, Consistency Policy's
 * student) gives tfjs's output within 1e-4 in normalised units, with every weight randomised so
 * that no layer passes by being at its initial value; image policies' encoders (ResNet with
 * GroupNorm, spatial softmax, the centre crop of uint8 frames) give tfjs's conditioning; a
 * diffusion policy's sampler loops (DDPM-100, DDIM-N, EDM Heun) around the onnxruntime denoiser
 * give tfjs's chunks for the same seed; bad bundles and observations get errors
 * naming the problem; a failing atomic write leaves the old file and no debris.
 */
import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { onedp } from './helpers/cli.js';
import { buildContext, type Module } from '../src/nn/module.js';
import { loadStateDict, stateDict } from '../src/nn/state_dict.js';
import { DiffusionPolicy, type DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { OneDpPolicy, type OneDpMethod } from '../src/distill/onedp.js';
import { ConsistencyPolicy } from '../src/distill/consistency.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { writeFileAtomic } from '../src/io/safetensors.js';
import { exportOnnx } from '../src/export/export.js';
import { OnnxPolicy, planRuntime } from '../src/export/runtime.js';
import { OnnxGraph, describeModel } from '../src/export/graph.js';
import { quantizeRows } from '../src/export/quantize.js';
import { Rng } from '../src/util/rng.js';
import { evaluatePushT, evaluatePushTAsync } from '../src/eval/pusht.js';
import { toPolicyObs } from '../src/policy/obs_encoder.js';
import { parseSampler } from '../src/diffusion/index.js';
import type { PolicyOutput } from '../src/policy/types.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-export-'));
const OBS_DIM = 5;
const B = 3;

function config(noise: 'ddpm' | 'edm', condPredictScale = true): DiffusionPolicyConfig {
  return {
    obsDim: OBS_DIM,
    actionDim: 2,
    horizon: 8,
    nObsSteps: 2,
    nActionSteps: 4,
    unet: { diffusionStepEmbedDim: 16, downDims: [8, 16], kernelSize: 5, nGroups: 4, condPredictScale },
    noise: noise === 'ddpm' ? { kind: 'ddpm', numTrainTimesteps: 100, clipSample: true } : { kind: 'edm', numSteps: 5, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 },
  };
}

/** Actions in pixels (0..512), observations in their own ranges: scales far from 1. */
const NORMALIZER = LinearNormalizer.fit({
  obs: { values: Float32Array.from({ length: 4 * OBS_DIM }, (_, i) => (i % OBS_DIM) * 40 + (i < 2 * OBS_DIM ? -30 : 300)), dim: OBS_DIM },
  action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 },
});

/** Every weight random (GroupNorm gains around 1), so a misplaced layer cannot hide. */
function randomise(m: Module, seed: number): void {
  const rng = new Rng(seed);
  const sd = stateDict(m);
  for (const [name, t] of sd) {
    const gain = /block\.1\.weight$/.test(name);
    t.data = Float32Array.from(t.data as Float32Array, () => (gain ? 1 : 0) + 0.3 * rng.normal());
  }
  loadStateDict(m, sd);
}

const obsBatch = (seed: number) => {
  const rng = new Rng(seed);
  return Float32Array.from({ length: B * 2 * OBS_DIM }, (_, i) => (i % OBS_DIM) * 40 + 300 * rng.uniform());
};

async function onedpCheckpoint(dir: string, noise: 'ddpm' | 'edm', method: OneDpMethod): Promise<OneDpPolicy> {
  const pc = config(noise);
  const gen = { method, tInit: 65, sigmaInit: 2.5 };
  const p = new OneDpPolicy(pc, gen, NORMALIZER, 3);
  randomise(p.generator, 11);
  await saveCheckpoint(dir, 'step-0000001', {
    meta: { kind: 'onedp', method, policyConfig: pc, generator: gen, normalizer: NORMALIZER.toJSON(), step: 1 },
    tensors: { generator: stateDict(p.generator) },
  });
  return p;
}

/** Largest difference of two predictions' chunks, in normalised units. */
function chunkGap(a: PolicyOutput, b: PolicyOutput, scale: ArrayLike<number>): number {
  let max = 0;
  const fb = b.chunk.flat(1);
  a.chunk.flat(1).forEach((row, i) => row.forEach((v, d) => (max = Math.max(max, Math.abs(v - fb[i][d]) * scale[d]))));
  return max;
}

/** An image policy on 72x72 frames cropped to 64 (a 2x2 keypoint map), narrow ResNet widths. */
function imageConfig(noise: 'ddpm' | 'edm'): DiffusionPolicyConfig {
  return { ...config(noise), obsDim: 2, vision: { cameras: ['image'], frameSize: 72, cropSize: 64, encoder: { numKeypoints: 8, featureDim: 12, widths: [16, 32, 64, 128] } } };
}

const IMAGE_NORMALIZER = LinearNormalizer.fit({
  obs: { values: Float32Array.from([10, 20, 500, 400, 250, 30]), dim: 2 },
  action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 },
});

function imageObs(seed: number, batch = 2) {
  const rng = new Rng(seed);
  return {
    batch,
    data: {
      obs: Float32Array.from({ length: batch * 2 * 2 }, () => 500 * rng.uniform()),
      image: Uint8Array.from({ length: batch * 2 * 72 * 72 * 3 }, () => Math.floor(256 * rng.uniform())),
    },
  };
}

describe('ONNX export and onnxruntime', () => {
  for (const noise of ['ddpm', 'edm'] as const) {
    for (const method of ['onedp-s', 'onedp-d'] as const) {
      it(`${method} from a ${noise} teacher: onnxruntime actions equal tfjs's within 1e-4 (normalised)`, async () => {
        const dir = await tmp();
        const p = await onedpCheckpoint(path.join(dir, 'ck'), noise, method);
        const r = await exportOnnx(path.join(dir, 'ck'), path.join(dir, 'bundle'));
        expect(r.manifest.kind).toBe(method);
        const o = await OnnxPolicy.load(path.join(dir, 'bundle'));
        const obs = { batch: B, data: { obs: obsBatch(1) } };
        const want = p.predictAction(obs, { seed: 9 });
        const got = await o.predict(obs, { seed: 9 });
        const scale = NORMALIZER.params.action.scale;
        let max = 0;
        want.chunk.flat(1).forEach((row, i) => row.forEach((v, d) => (max = Math.max(max, Math.abs(v - got.chunk.flat(1)[i][d]) * scale[d]))));
        expect(max).toBeLessThan(1e-4);
        // Not a constant: the batch rows differ, and OneDP-S depends on its noise.
        expect(Math.abs(got.chunk[0][0][0] - got.chunk[1][0][0])).toBeGreaterThan(1e-3);
        const again = await o.predict(obs, { seed: 10 });
        if (method === 'onedp-s') expect(again.chunk[0][0][0]).not.toBeCloseTo(got.chunk[0][0][0], 4);
        else expect(again.chunk).toEqual(got.chunk);
        expect(got.actions[0]).toEqual(got.chunk[0].slice(1, 5));
        expect(got.timing.nfe).toBe(1);
        await o.dispose();
        p.dispose();
      });
    }
  }

  it('an action dimension constant in the training data comes out as that constant, on tfjs and in the exported graph', async () => {
    // The second action dimension never varied (a demonstrator that never tilts, say).
    const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from({ length: 4 * OBS_DIM }, (_, i) => (i % OBS_DIM) * 40 + (i < 2 * OBS_DIM ? -30 : 300)), dim: OBS_DIM }, action: { values: Float32Array.from([0, 0.25, 512, 0.25]), dim: 2 } });
    expect(norm.constants('action')).toEqual([null, 0.25]);
    expect(Array.from(norm.unnormalize('action', Float32Array.from([0, 0.7, 1, -0.3])))).toEqual([256, 0.25, 512, 0.25]);
    const dir = await tmp();
    const pc = config('ddpm');
    const gen = { method: 'onedp-s' as const, tInit: 65, sigmaInit: 2.5 };
    const p = new OneDpPolicy(pc, gen, norm, 3);
    randomise(p.generator, 11);
    await saveCheckpoint(path.join(dir, 'ck'), 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: pc, generator: gen, normalizer: norm.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
    await exportOnnx(path.join(dir, 'ck'), path.join(dir, 'bundle'));
    const o = await OnnxPolicy.load(path.join(dir, 'bundle'));
    const obs = { batch: B, data: { obs: obsBatch(1) } };
    const want = p.predictAction(obs, { seed: 9 });
    const got = await o.predict(obs, { seed: 9 });
    for (const out of [want, got]) for (const row of out.chunk.flat(1)) expect(Math.fround(row[1])).toBe(Math.fround(0.25));
    expect(chunkGap(want, got, norm.params.action.scale)).toBeLessThan(1e-4);
    // The other dimension still varies.
    expect(Math.abs(got.chunk[0][0][0] - got.chunk[1][0][0])).toBeGreaterThan(1e-3);
    await o.dispose();
    p.dispose();
  });

  it('the diffusion policy denoiser (with and without FiLM scale) and the CP student match tfjs', async () => {
    const dir = await tmp();
    const rng = new Rng(4);
    const x = Float32Array.from({ length: B * 8 * 2 }, () => rng.normal());
    const t = Float32Array.from([3, 40, 97]);
    const stop = Float32Array.from([0.1, -0.5, 1.2]);
    const check = async (ckDir: string, run: (cond: tf.Tensor) => tf.Tensor, feeds: Record<string, ort.Tensor>) => {
      const r = await exportOnnx(ckDir, path.join(ckDir, 'bundle'));
      const enc = await ort.InferenceSession.create(path.join(ckDir, 'bundle', 'encoder.onnx'));
      const act = await ort.InferenceSession.create(path.join(ckDir, 'bundle', r.manifest.files.action));
      const obs = obsBatch(2);
      const { cond } = await enc.run({ obs: new ort.Tensor('float32', obs, [B, 2, OBS_DIM]) });
      const { output } = await act.run({ ...feeds, cond });
      const want = tf.tidy(() => run(tf.tensor(NORMALIZER.normalize('obs', obs), [B, 2 * OBS_DIM])).dataSync() as Float32Array);
      const got = output.data as Float32Array;
      expect(got.length).toBe(want.length);
      let max = 0;
      want.forEach((v, i) => (max = Math.max(max, Math.abs(v - got[i]))));
      expect(max).toBeLessThan(1e-4);
      expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(0.1);
      return r.manifest;
    };
    const sample = new ort.Tensor('float32', x, [B, 8, 2]);
    const timestep = new ort.Tensor('float32', t, [B]);
    for (const scale of [true, false]) {
      const pc = config('ddpm', scale);
      const p = new DiffusionPolicy(pc, NORMALIZER, buildContext({ seed: 1 }));
      randomise(p.model, 12);
      const ck = path.join(dir, `dp-${scale}`);
      await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'diffusion-policy', policyConfig: pc, normalizer: NORMALIZER.toJSON(), step: 1 }, tensors: { ema: stateDict(p.model) } });
      const m = await check(ck, (cond) => p.model.unet.forward(tf.tensor(x, [B, 8, 2]), tf.tensor1d(t), cond), { sample, timestep });
      expect(m.kind).toBe('diffusion-policy');
      p.dispose();
    }
    const pc = config('edm');
    const sampling = { bins: 80, sigmaMin: 0.002, sigmaMax: 80, rho: 7, sigmaData: 0.5 };
    const cp = new ConsistencyPolicy(pc, sampling, NORMALIZER);
    randomise(cp.student, 13);
    const ck = path.join(dir, 'cp');
    await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'consistency-policy', policyConfig: pc, sampling, normalizer: NORMALIZER.toJSON(), step: 1 }, tensors: { student: stateDict(cp.student) } });
    const m = await check(ck, (cond) => cp.student.unet.forward(tf.tensor(x, [B, 8, 2]), tf.tensor1d(t), cond, [tf.tensor1d(stop)]), { sample, timestep, stop: new ort.Tensor('float32', stop, [B]) });
    expect(m.sampling).toEqual(sampling);
    const header = describeModel(await fs.readFile(path.join(ck, 'bundle', 'consistency.onnx')));
    expect(header.inputs).toEqual(['sample', 'timestep', 'stop', 'cond']);
    expect(header.opset).toBe(17);
    // The CP bundle acts through the same chained loop as tfjs: 1 and 3 steps give its chunks.
    for (const steps of [1, 3]) {
      const o = await OnnxPolicy.load(path.join(ck, 'bundle'), { sampler: `cp-${steps}` });
      cp.steps = steps;
      const obs = { batch: B, data: { obs: obsBatch(6) } };
      const want = cp.predictAction(obs, { seed: 12 });
      const got = await o.predict(obs, { seed: 12 });
      expect(got.timing.nfe).toBe(steps);
      expect(chunkGap(want, got, NORMALIZER.params.action.scale)).toBeLessThan(1e-4);
      await o.dispose();
    }
    await expect(OnnxPolicy.load(path.join(ck, 'bundle'), { sampler: 'ddim-3' })).rejects.toThrow(/use cp-1 or cp-3/);
    expect((await planRuntime(ck, 'auto')).runtime).toBe('onnx');
    cp.dispose();
  });

  it('image policies: the exported encoder (uint8 frames, centre crop, ResNet/GroupNorm, spatial softmax) and the one-step generator match tfjs', async () => {
    const dir = await tmp();
    const pc = imageConfig('edm');
    const gen = { method: 'onedp-s' as const, tInit: 65, sigmaInit: 2.5 };
    const p = new OneDpPolicy(pc, gen, IMAGE_NORMALIZER, 3);
    randomise(p.generator, 21);
    await saveCheckpoint(path.join(dir, 'ck'), 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: pc, generator: gen, normalizer: IMAGE_NORMALIZER.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
    const r = await exportOnnx(path.join(dir, 'ck'), path.join(dir, 'bundle'));
    expect(r.manifest.vision?.cameras).toEqual(['image']);
    expect(r.manifest.io.encoder.inputs.image).toEqual(['batch', 2, 72, 72, 3]);
    const obs = imageObs(5);
    // The conditioning itself, before the generator: features of both frames and the position.
    const enc = await ort.InferenceSession.create(path.join(dir, 'bundle', 'encoder.onnx'));
    const { cond } = await enc.run({ obs: new ort.Tensor('float32', obs.data.obs, [2, 2, 2]), image: new ort.Tensor('uint8', obs.data.image, [2, 2, 72, 72, 3]) });
    const want = tf.tidy(() => p.generator.encode(toPolicyObs(pc, IMAGE_NORMALIZER, 2, obs.data, 'center')).dataSync() as Float32Array);
    expect(cond.dims).toEqual([2, 2 * (12 + 2)]);
    let max = 0;
    want.forEach((v, i) => (max = Math.max(max, Math.abs(v - (cond.data as Float32Array)[i]))));
    expect(max).toBeLessThan(1e-4);
    expect(Math.max(...want.map(Math.abs))).toBeGreaterThan(0.1);
    // Frames matter: another image changes the features.
    const other = imageObs(6);
    const { cond: cond2 } = await enc.run({ obs: new ort.Tensor('float32', obs.data.obs, [2, 2, 2]), image: new ort.Tensor('uint8', other.data.image, [2, 2, 72, 72, 3]) });
    expect(Math.abs((cond2.data as Float32Array)[0] - (cond.data as Float32Array)[0])).toBeGreaterThan(1e-3);
    const o = await OnnxPolicy.load(path.join(dir, 'bundle'));
    expect(o.cameras).toEqual(['image']);
    expect(chunkGap(p.predictAction(obs, { seed: 4 }), await o.predict(obs, { seed: 4 }), IMAGE_NORMALIZER.params.action.scale)).toBeLessThan(1e-4);
    await expect(o.predict({ batch: 2, data: { obs: obs.data.obs } })).rejects.toThrow(/predict: expected camera "image" with 2 x 2 frames of 72x72x3 values, got none/);
    await o.dispose();
    p.dispose();
  });

  it('diffusion policies on onnxruntime: DDPM-100, DDIM-3 and EDM Heun loops around the denoiser give the tfjs chunks, without leaking tensors', async () => {
    const dir = await tmp();
    for (const [noise, samplers] of [['ddpm', [undefined, 'ddim-3']], ['edm', [undefined]]] as const) {
      for (const image of [false, true]) {
        const pc = image ? imageConfig(noise) : config(noise);
        const norm = image ? IMAGE_NORMALIZER : NORMALIZER;
        const p = new DiffusionPolicy(pc, norm, buildContext({ seed: 2 }));
        randomise(p.model, 15);
        const ck = path.join(dir, `${noise}-${image}`);
        await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'diffusion-policy', policyConfig: pc, normalizer: norm.toJSON(), step: 1 }, tensors: { ema: stateDict(p.model) } });
        await exportOnnx(ck, path.join(ck, 'bundle'));
        for (const sampler of samplers) {
          const o = await OnnxPolicy.load(path.join(ck, 'bundle'), { sampler });
          if (sampler) p.sampler = parseSampler(sampler, noise);
          const obs = image ? imageObs(7) : { batch: B, data: { obs: obsBatch(3) } };
          const want = p.predictAction(obs, { seed: 8 });
          const before = tf.memory().numTensors;
          const got = await o.predict(obs, { seed: 8 });
          expect(tf.memory().numTensors).toBe(before);
          expect(got.timing.nfe).toBe(want.timing.nfe);
          expect(got.timing.nfe).toBe(sampler === 'ddim-3' ? 3 : noise === 'ddpm' ? 100 : 9);
          expect(chunkGap(want, got, norm.params.action.scale), `${noise} ${sampler ?? 'default'} image=${image}`).toBeLessThan(1e-4);
          await o.dispose();
        }
        p.dispose();
      }
    }
    await expect(OnnxPolicy.load(path.join(dir, 'edm-false', 'bundle'), { sampler: 'ddim-3' })).rejects.toThrow(/needs a DDPM-trained policy/);
  });

  it('weight quantisation: MatMulNBits computes with exactly the dequantised weights, and int8 / int4 bundles act close to float32', async () => {
    const dir = await tmp();
    const rng = new Rng(31);
    // K = 70 is not a multiple of the block: the last block is padded with zero weights.
    const [n, k] = [6, 70];
    const w = Float32Array.from({ length: n * k }, () => rng.normal());
    for (const bits of [8, 4] as const) {
      const q = quantizeRows(w, n, k, bits, 32);
      const err = Math.max(...w.map((v, i) => Math.abs(v - q.dequantized[i])));
      // Half a step of the grid at most: amax / (2^(bits-1) - 1) / 2 per block.
      expect(err).toBeLessThan(bits === 8 ? 0.03 : 0.5);
      expect(err).toBeGreaterThan(0);
      const g = new OnnxGraph('q');
      const a = g.input('a', 'float32', [2, k]);
      g.output(g.op('MatMulNBits', [a, g.uint8('b', q.packed, [n, q.kBlocks, q.blob]), g.float('s', q.scales, [n * q.kBlocks])], { K: k, N: n, bits, block_size: 32 }, 1, 'com.microsoft'), 'y', 'float32', [2, n]);
      const file = path.join(dir, `q${bits}.onnx`);
      await fs.writeFile(file, g.toBytes('test'));
      const x = Float32Array.from({ length: 2 * k }, () => rng.normal());
      const { y } = await (await ort.InferenceSession.create(file)).run({ a: new ort.Tensor('float32', x, [2, k]) });
      for (let r = 0; r < 2; r++) for (let c = 0; c < n; c++) {
        let want = 0;
        for (let i = 0; i < k; i++) want += x[r * k + i] * q.dequantized[c * k + i];
        expect((y.data as Float32Array)[r * n + c]).toBeCloseTo(want, 4);
      }
    }
    // A whole policy whose layers are large enough to be quantised (U-Net 32/64).
    const pc = { ...config('ddpm'), unet: { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true } };
    const p = new OneDpPolicy(pc, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, NORMALIZER, 3);
    randomise(p.generator, 32);
    await saveCheckpoint(path.join(dir, 'ck'), 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: pc, generator: p.gen, normalizer: NORMALIZER.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
    const obs = { batch: B, data: { obs: obsBatch(4) } };
    const want = p.predictAction(obs, { seed: 5 });
    const scale = NORMALIZER.params.action.scale;
    const gaps: Record<string, number> = {};
    for (const weights of ['float32', 'int8', 'int4'] as const) {
      const r = await exportOnnx(path.join(dir, 'ck'), path.join(dir, weights), { weights });
      expect(r.manifest.weights).toBe(weights);
      const header = describeModel(await fs.readFile(path.join(dir, weights, 'generator.onnx')));
      const o = await OnnxPolicy.load(path.join(dir, weights));
      gaps[weights] = chunkGap(want, await o.predict(obs, { seed: 5 }), scale);
      await o.dispose();
      if (weights !== 'float32') expect(header.nodes).toBeGreaterThan(describeModel(await fs.readFile(path.join(dir, 'float32', 'generator.onnx'))).nodes);
    }
    expect(gaps.float32).toBeLessThan(1e-4);
    // Quantised: close to the float policy (normalised units, actions in [-1, 1]) but not equal to it.
    expect(gaps.int8).toBeGreaterThan(1e-4);
    expect(gaps.int8).toBeLessThan(0.05);
    expect(gaps.int4).toBeGreaterThan(gaps.int8);
    expect(gaps.int4).toBeLessThan(0.5);
    p.dispose();
    const bad = onedp(['export', '--policy', path.join(dir, 'ck'), '--out', path.join(dir, 'x'), '--weights', 'int2']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--weights must be float32, int8 or int4/);
  });

  it('bad bundles and observations get errors naming the file and the problem', async () => {
    const dir = await tmp();
    const p = await onedpCheckpoint(path.join(dir, 'ck'), 'ddpm', 'onedp-s');
    p.dispose();
    const bundle = path.join(dir, 'bundle');
    await exportOnnx(path.join(dir, 'ck'), bundle);
    await expect(OnnxPolicy.load(path.join(dir, 'nothing'))).rejects.toThrow(/no policy\.json/);
    const manifest = JSON.parse(await fs.readFile(path.join(bundle, 'policy.json'), 'utf8'));
    const broken = async (name: string, edit: (m: Record<string, unknown>) => void, pattern: RegExp) => {
      const d = path.join(dir, name);
      await fs.cp(bundle, d, { recursive: true });
      const m = structuredClone(manifest);
      edit(m);
      await fs.writeFile(path.join(d, 'policy.json'), JSON.stringify(m));
      await expect(OnnxPolicy.load(d)).rejects.toThrow(pattern);
    };
    await broken('version', (m) => (m.version = 99), /policy\.json: bundle version 99/);
    await broken('horizon', (m) => (m.horizon = -1), /"horizon" must be a positive integer/);
    await broken('escape', (m) => (m.files = { encoder: '../x.onnx', action: 'generator.onnx' }), /"files" must name/);
    await broken('norm', (m) => ((m.normalizer as { action: { scale: number[] } }).action.scale = [0, 1]), /action normaliser/);
    const trunc = path.join(dir, 'trunc');
    await fs.cp(bundle, trunc, { recursive: true });
    const g = await fs.readFile(path.join(trunc, 'generator.onnx'));
    await fs.writeFile(path.join(trunc, 'generator.onnx'), g.subarray(0, g.length >> 1));
    await expect(OnnxPolicy.load(trunc)).rejects.toThrow(/generator\.onnx: onnxruntime cannot load it/);
    await fs.writeFile(path.join(trunc, 'policy.json'), '{"format": ');
    await expect(OnnxPolicy.load(trunc)).rejects.toThrow(/policy\.json: not valid JSON/);
    const o = await OnnxPolicy.load(bundle);
    await expect(o.predict({ batch: 2, data: { obs: new Float32Array(7) } })).rejects.toThrow(/bundle: predict: expected "obs" with 2 x 2 x 5 values \(policy.json\), got 7/);
    await o.dispose();
  });

  it('onedp export: writes a bundle onnxruntime loads; a missing checkpoint or wrong format is one clear line', async () => {
    const dir = await tmp();
    (await onedpCheckpoint(path.join(dir, 'ck'), 'edm', 'onedp-d')).dispose();
    const ok = onedp(['export', '--policy', path.join(dir, 'ck'), '--out', path.join(dir, 'b')]);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(/exported onedp-d .*encoder\.onnx, generator\.onnx, policy\.json\nonnxruntime loads it/);
    const missing = onedp(['export', '--policy', path.join(dir, 'none'), '--out', path.join(dir, 'c')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^onedp: error: .*none/);
    const fmt = onedp(['export', '--policy', path.join(dir, 'ck'), '--out', path.join(dir, 'c'), '--format', 'tflite']);
    expect(fmt.code).toBe(2);
    expect(fmt.stderr).toMatch(/--format must be onnx/);
  });

  it('evaluateAsync (onnxruntime) runs the same loop as evaluate (tfjs): identical episodes for the same policy', async () => {
    const pc = { ...config('edm'), obsDim: 20 };
    const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from({ length: 40 }, (_, i) => (i * 37) % 500), dim: 20 }, action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 } });
    const p = new OneDpPolicy(pc, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, norm, 3);
    randomise(p.generator, 14);
    const opts = { seeds: [5, 6, 7], batchSize: 2, maxSteps: 24, latencyReps: 2 };
    const sync = evaluatePushT(p, opts);
    const wrapped = { kind: p.kind, nObsSteps: p.nObsSteps, nActionSteps: p.nActionSteps, horizon: p.horizon, actionDim: p.actionDim, predict: async (o: Parameters<typeof p.predictAction>[0], q?: { seed?: number; rngs?: Rng[] }) => p.predictAction(o, q), dispose: () => {} };
    const asyncRes = await evaluatePushTAsync(wrapped, opts);
    expect(asyncRes.episodes).toEqual(sync.episodes);
    expect(asyncRes.episodes.every((e) => e.steps === 24 && e.predictions === 6)).toBe(true);
    expect(asyncRes.latency?.nfe).toBe(1);
    // And the CLI: a bundle evaluates on onnxruntime by default; tfjs refuses a bundle, onnx a multi-step checkpoint.
    const dir = await tmp();
    await saveCheckpoint(path.join(dir, 'ck'), 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: pc, generator: p.gen, normalizer: norm.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
    await exportOnnx(path.join(dir, 'ck'), path.join(dir, 'b'));
    const ok = onedp(['eval', '--policy', path.join(dir, 'b'), '--seeds', '5:8', '--max-steps', '24', '--batch', '2']);
    expect(ok.code, ok.stderr).toBe(0);
    const summary = JSON.parse(ok.stdout);
    expect(summary.runtime).toBe('onnx');
    // onnxruntime's rounding differs from tfjs's in the last bits, which the contact physics can amplify; over 24 steps the scores agree closely.
    expect(Math.abs(summary.meanScore - sync.meanScore)).toBeLessThan(0.02);
    const refused = onedp(['eval', '--policy', path.join(dir, 'b'), '--runtime', 'tfjs', '--seeds', '5:6']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/an exported bundle runs on onnxruntime/);
    p.dispose();
  });

  it('a write that fails after its temporary file exists leaves the old file and no debris', async () => {
    const dir = await tmp();
    const file = path.join(dir, 'state.json');
    await writeFileAtomic(file, 'old');
    // Not a string or bytes: fails inside the write, after the temporary file was opened.
    await expect(writeFileAtomic(file, 42 as unknown as string)).rejects.toThrow();
    expect(await fs.readFile(file, 'utf8')).toBe('old');
    expect(await fs.readdir(dir)).toEqual(['state.json']);
  });
});

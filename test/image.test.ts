import { describe, expect, it, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { sameWeights } from './helpers/weights.js';
import { centerCropOffset, cropAndNormalize, randomCropOffsets } from '../src/data/image.js';
import { ReplayBuffer } from '../src/data/replay.js';
import { SequenceSampler } from '../src/data/sequence.js';
import { policyBuffer } from '../src/data/obs_spec.js';
import { Rng } from '../src/util/rng.js';
import { defaultPolicyConfig, DiffusionPolicy, type DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { defaultVisionConfig, toPolicyObs, condDim, obsFeatureDim } from '../src/policy/obs_encoder.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { buildContext } from '../src/nn/module.js';
import { stateDict } from '../src/nn/state_dict.js';
import { trainPolicy } from '../src/train/trainer.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { distillOneDp } from '../src/distill/distill.js';
import { distillConsistency } from '../src/distill/consistency.js';
import { OneDpPolicy } from '../src/distill/onedp.js';
import { evaluatePushT, lazyImageObs } from '../src/eval/pusht.js';
import { PushTEnv } from '../src/envs/pusht.js';
import { decodePng } from '../src/io/png_decode.js';
import * as zlib from 'node:zlib';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import type { ObservationBatch } from '../src/policy/types.js';
import type { SafeTensor } from '../src/io/safetensors.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-image-'));

describe('image preprocessing (spec: uint8 -> [-1, 1], random 84x84 crops in training, centre crops in evaluation)', () => {
  it('maps 0, 127.5 and 255 to -1, 0 and 1 and takes exactly the pixels of the crop', () => {
    // 4x4 frames, 1 channel... the code is channel-generic; use 3 channels with distinct values.
    const size = 4;
    const frame = new Uint8Array(size * size * 3);
    for (let i = 0; i < frame.length; i++) frame[i] = (i * 7) % 256;
    const out = cropAndNormalize(frame, 1, size, 3, 2, [[1, 2]]);
    const expected: number[] = [];
    for (let r = 1; r < 3; r++) for (let c = 2; c < 4; c++) for (let ch = 0; ch < 3; ch++) expected.push(frame[(r * size + c) * 3 + ch] / 127.5 - 1);
    expect(Array.from(out)).toEqual(expected.map((v) => Math.fround(v)));
    const ends = cropAndNormalize(Uint8Array.from([0, 255, 0, 255, 0, 255, 0, 255, 0, 255, 0, 255]), 1, 2, 3, 2, [[0, 0]]);
    expect(ends[0]).toBe(-1);
    expect(ends[1]).toBe(1);
    expect(cropAndNormalize(Float32Array.from([127.5, 127.5, 127.5]), 1, 1, 3, 1, [[0, 0]])[0]).toBe(0);
  });

  it('centre crop of 84 in 96 starts at (6, 6); random crops cover 0..12 on both axes, uniformly and reproducibly', () => {
    expect(centerCropOffset(96, 84)).toEqual([6, 6]);
    const offs = randomCropOffsets(13 * 13 * 40, 96, 84, new Rng(5));
    const counts = new Array(13).fill(0);
    for (const [r, c] of offs) {
      expect(r >= 0 && r <= 12 && c >= 0 && c <= 12).toBe(true);
      counts[r]++;
    }
    // 520 expected per value; every offset, the last included, occurs.
    expect(Math.min(...counts)).toBeGreaterThan(420);
    expect(Math.max(...counts)).toBeLessThan(620);
    expect(randomCropOffsets(10, 96, 84, new Rng(5))).toEqual(offs.slice(0, 10));
    expect(() => centerCropOffset(96, 97)).toThrow(/does not fit/);
    expect(() => cropAndNormalize(new Uint8Array(10), 1, 96, 3, 84, [[6, 6]])).toThrow(/expected 1 frames of 96x96x3/);
    expect(() => cropAndNormalize(new Uint8Array(96 * 96 * 3), 1, 96, 3, 84, [[13, 0]])).toThrow(/leaves the 96x96 frame/);
  });

  it('policies centre-crop in predictAction and crop every history frame independently in training', () => {
    const config = defaultPolicyConfig(2, 2, { vision: defaultVisionConfig() });
    const norm = new LinearNormalizer({ obs: { scale: [1, 1], offset: [0, 0], min: [], max: [] } });
    const frames = new Uint8Array(2 * 96 * 96 * 3);
    for (let i = 0; i < frames.length; i++) frames[i] = (i * 31 + (i >> 7)) % 256;
    const data = { obs: new Float32Array(4), image: frames };
    const centre = toPolicyObs(config, norm, 1, data, 'center');
    expect(centre.images.image.shape).toEqual([2, 84, 84, 3]);
    expect(Array.from(centre.images.image.dataSync())).toEqual(Array.from(cropAndNormalize(frames, 2, 96, 3, 84, [[6, 6], [6, 6]])));
    const rng = new Rng(3);
    const offs = randomCropOffsets(2, 96, 84, new Rng(3));
    const random = toPolicyObs(config, norm, 1, data, rng);
    expect(Array.from(random.images.image.dataSync())).toEqual(Array.from(cropAndNormalize(frames, 2, 96, 3, 84, offs)));
    expect(offs[0]).not.toEqual(offs[1]);
    tf.dispose([centre.lowdim, centre.images.image, random.lowdim, random.images.image]);
    expect(() => toPolicyObs(config, norm, 1, { obs: new Float32Array(4) }, 'center')).toThrow(/camera "image"/);
  });

  it('sequence windows keep uint8 frames and pad at episode edges; image datasets map img to the "image" camera', () => {
    const n = 3;
    const img = new Uint8Array(n * 2 * 2 * 3).map((_, i) => Math.floor(i / 12) * 10 + 1);
    const raw = new ReplayBuffer({ img: { data: img, frameShape: [2, 2, 3] }, state: { data: new Float32Array(n * 5), frameShape: [5] }, action: { data: new Float32Array(n * 2), frameShape: [2] } }, [n]);
    const buf = policyBuffer(raw, 'image');
    expect([...buf.arrays.keys()].sort()).toEqual(['action', 'image', 'obs']);
    expect(buf.frameSize('obs')).toBe(2);
    const s = new SequenceSampler(buf, { sequenceLength: 4, padBefore: 1, padAfter: 1 });
    const w = s.frames('image', [0], 2);
    expect(w).toBeInstanceOf(Uint8Array);
    expect([w[0], w[12]]).toEqual([1, 1]); // the window starts before the episode: frame 0 repeated
    const noImg = new ReplayBuffer({ state: { data: new Float32Array(n * 5), frameShape: [5] }, action: { data: new Float32Array(n * 2), frameShape: [2] } }, [n]);
    expect(() => policyBuffer(noImg, 'image', 'demo.zarr')).toThrow(/demo.zarr: has no "img" array/);
  });
});

/** 40x40 frames (36x36 crops, a 2x2 map at the end of the trunk): bright left half or bright right half. */
const SIZE = 40;
function frame(side: 'left' | 'right', rng: Rng): Uint8Array {
  const f = new Uint8Array(SIZE * SIZE * 3);
  for (let r = 0; r < SIZE; r++)
    for (let c = 0; c < SIZE; c++) {
      const bright = side === 'left' ? c < SIZE / 2 : c >= SIZE / 2;
      for (let ch = 0; ch < 3; ch++) f[(r * SIZE + c) * 3 + ch] = (bright ? 200 : 30) + rng.int(0, 20);
    }
  return f;
}

/** Episodes whose frames show the bright side and whose actions go right (+) for left, left (-) for right. */
function twoSceneDataset(episodes: number, len = 12): ReplayBuffer {
  const rng = new Rng(11);
  const eps = Array.from({ length: episodes }, (_, e) => {
    const side = e % 2 === 0 ? 'left' : 'right';
    const img = new Uint8Array(len * SIZE * SIZE * 3);
    for (let t = 0; t < len; t++) img.set(frame(side, rng), t * SIZE * SIZE * 3);
    const obs = new Float32Array(len * 2).map(() => rng.uniform() * 0.1);
    const action = new Float32Array(len * 2).map((_, i) => (side === 'left' ? 1 : -1) * (i % 2 === 0 ? 0.8 : 0.4) + rng.normal() * 0.05);
    return { obs: { data: obs, frameShape: [2] }, image: { data: img, frameShape: [SIZE, SIZE, 3] }, action: { data: action, frameShape: [2] } };
  });
  return ReplayBuffer.concat(eps, 'two scenes');
}

function tinyImageConfig(kind: 'ddpm' | 'edm'): DiffusionPolicyConfig {
  const noise = kind === 'ddpm' ? ({ kind: 'ddpm', numTrainTimesteps: 100, clipSample: true } as const) : ({ kind: 'edm', numSteps: 18, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 } as const);
  return defaultPolicyConfig(2, 2, {
    horizon: 8,
    nActionSteps: 4,
    unet: { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 3, nGroups: 8, condPredictScale: true },
    noise,
    vision: { cameras: ['image'], frameSize: SIZE, cropSize: 36, encoder: { numKeypoints: 8, featureDim: 16, widths: [16, 16, 16, 32] } },
  });
}

function sceneObs(side: 'left' | 'right', batch: number): ObservationBatch {
  const rng = new Rng(side === 'left' ? 101 : 202);
  const image = new Uint8Array(batch * 2 * SIZE * SIZE * 3);
  for (let i = 0; i < batch * 2; i++) image.set(frame(side, rng), i * SIZE * SIZE * 3);
  return { batch, data: { obs: new Float32Array(batch * 4), image } };
}

const meanX = (chunks: number[][][]) => chunks.reduce((s, c) => s + c.reduce((a, st) => a + st[0], 0) / c.length, 0) / chunks.length;

describe('a tiny image policy', () => {
  const buffer = twoSceneDataset(16);
  let teacherDir = '';
  beforeAll(async () => {
    teacherDir = await tmp();
    await trainPolicy({ policy: tinyImageConfig('ddpm'), buffer, outDir: teacherDir, train: { steps: 300, batchSize: 16, warmupSteps: 20, lr: 1e-3, checkpointEvery: 300 }, progress: 'none' });
  }, 300_000);

  it('has the spec\'s shapes and names: per step [image features, agent position], encoders under obs_encoder.obs_nets.<camera>', () => {
    const config = tinyImageConfig('ddpm');
    expect(obsFeatureDim(config)).toBe(16 + 2);
    expect(condDim(config)).toBe(36);
    const p = new DiffusionPolicy(config, new LinearNormalizer({}), buildContext({ seed: 0 }));
    const names = [...p.model.namedParameters()].map(([n]) => n);
    expect(names).toContain('obs_encoder.obs_nets.image.backbone.0.weight');
    expect(names).toContain('obs_encoder.obs_nets.image.pool.nets.weight');
    expect(names).toContain('diffusion_step_encoder.1.weight');
    p.dispose();
    // A state policy's names are the U-Net's alone, as before image support.
    const s = new DiffusionPolicy(defaultPolicyConfig(2, 2), new LinearNormalizer({}), buildContext({ seed: 0 }));
    expect([...s.model.namedParameters()].every(([n]) => !n.startsWith('obs_encoder'))).toBe(true);
    s.dispose();
  });

  it('acts differently on two visually different observations, and its checkpoint round-trips', async () => {
    const policy = await loadDiffusionPolicy(teacherDir);
    const left = policy.predictAction(sceneObs('left', 8), { seed: 1 });
    const right = policy.predictAction(sceneObs('right', 8), { seed: 1 });
    // Demonstrations: x = +0.8 after bright-left frames, -0.8 after bright-right ones.
    expect(meanX(left.chunk)).toBeGreaterThan(0.4);
    expect(meanX(right.chunk)).toBeLessThan(-0.4);
    expect(left.timing.obsEncodingMs).toBeGreaterThan(0);
    const again = await loadPolicy(teacherDir);
    expect(again.predictAction(sceneObs('left', 8), { seed: 1 }).chunk).toEqual(left.chunk);
    expect(() => policy.predictAction({ batch: 1, data: { obs: new Float32Array(4) } })).toThrow(/camera "image"/);
  });

  it('distils into OneDP-D whose own encoder keeps training, with the teacher untouched', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const before = stateDict(teacher.model);
    const out = await tmp();
    const res = await distillOneDp({ teacher, buffer, config: { method: 'onedp-d', steps: 30, batchSize: 32 }, outDir: out, progress: 'none' });
    expect(sameWeights(before, stateDict(teacher.model))).toBe(true);
    const enc = (sd: Map<string, SafeTensor>) => new Map([...sd].filter(([k]) => k.startsWith('obs_encoder.')));
    const genEnc = enc(stateDict((res.policy as OneDpPolicy).generator));
    expect(genEnc.size).toBeGreaterThan(0);
    expect(sameWeights(enc(before), genEnc)).toBe(false);
    const policy = await loadPolicy(out);
    const l = policy.predictAction(sceneObs('left', 4), { seed: 1 });
    const r = policy.predictAction(sceneObs('right', 4), { seed: 1 });
    expect(l.timing.nfe).toBe(1);
    expect(meanX(l.chunk)).toBeGreaterThan(0.3);
    expect(meanX(r.chunk)).toBeLessThan(-0.3);
  });

  it('trains the encoders of OneDP-S (generator and score network) and of a Consistency Policy student', async () => {
    const teacher = await loadDiffusionPolicy(teacherDir);
    const before = stateDict(teacher.model);
    const s = await distillOneDp({ teacher, buffer, config: { method: 'onedp-s', steps: 3, batchSize: 8 }, outDir: await tmp(), progress: 'none' });
    const gen = stateDict(s.policy.generator);
    const key = 'obs_encoder.obs_nets.image.backbone.0.weight';
    expect(Array.from(gen.get(key)!.data as Float32Array)).not.toEqual(Array.from(before.get(key)!.data as Float32Array));
    const scoreNet = (await loadCheckpoint(s.checkpoint)).tensors.score!;
    expect(Array.from(scoreNet.get(key)!.data as Float32Array)).not.toEqual(Array.from(before.get(key)!.data as Float32Array));
    const ck = await loadPolicy(s.checkpoint);
    expect(ck.predictAction(sceneObs('left', 2), { seed: 3 }).chunk).toEqual(s.policy.predictAction(sceneObs('left', 2), { seed: 3 }).chunk);

    const edmDir = await tmp();
    await trainPolicy({ policy: tinyImageConfig('edm'), buffer, outDir: edmDir, train: { steps: 3, batchSize: 8, warmupSteps: 1, lr: 1e-3, checkpointEvery: 3 }, progress: 'none' });
    const edmTeacher = await loadDiffusionPolicy(edmDir);
    const edmBefore = stateDict(edmTeacher.model);
    const cp = await distillConsistency({ teacher: edmTeacher, buffer, config: { steps: 3, batchSize: 8 }, outDir: await tmp(), progress: 'none' });
    const student = stateDict(cp.policy.student);
    expect(Array.from(student.get(key)!.data as Float32Array)).not.toEqual(Array.from(edmBefore.get(key)!.data as Float32Array));
    expect(sameWeights(edmBefore, stateDict(edmTeacher.model))).toBe(true);
    expect(cp.policy.predictAction(sceneObs('right', 2), { seed: 1 }).chunk.length).toBe(2);
  });
});

describe('image policies on PushT', () => {
  it('evaluation frames equal the environment\'s own image observation, rendered only when read', () => {
    const img = new PushTEnv({ obsType: 'image' });
    const st = new PushTEnv({ obsType: 'state' });
    const a = img.reset(7);
    const lazy = lazyImageObs(st.reset(7));
    expect(Array.from(lazy.obs as Float32Array)).toEqual(a.agentPos);
    expect(Buffer.from(lazy.image as Uint8Array).equals(Buffer.from(a.image))).toBe(true);
    const b = img.step([300, 120]).observation;
    const lazy2 = lazyImageObs(st.step([300, 120]).observation);
    expect(Buffer.from(lazy2.image as Uint8Array).equals(Buffer.from(b.image))).toBe(true);
    expect(lazy2.image).toBe(lazy2.image); // rendered once, then kept
  });

  it('reads canvas pixels back through PNG exactly as getImageData gives them', async () => {
    const { createCanvas } = await import('@napi-rs/canvas');
    const canvas = createCanvas(64, 48);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = 'rgb(255,255,255)';
    ctx.fillRect(0, 0, 64, 48);
    ctx.fillStyle = 'rgb(65,105,225)';
    ctx.beginPath();
    ctx.arc(20, 20, 13.3, 0, 6.3);
    ctx.fill();
    ctx.fillStyle = 'rgb(142,163,183)';
    ctx.fillRect(30.5, 10.25, 20, 30);
    const direct = ctx.getImageData(0, 0, 64, 48).data;
    const png = decodePng(canvas.toBuffer('image/png'), (d) => zlib.inflateSync(d));
    expect([png.width, png.height]).toEqual([64, 48]);
    expect(Buffer.from(png.rgba).equals(Buffer.from(direct))).toBe(true);
    expect(() => decodePng(new Uint8Array(10), (d) => d)).toThrow(/not a PNG/);
  });

  it('evaluate on rendered frames with the encoding time reported apart from the action time', () => {
    const config = defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: 16, downDims: [16, 32], kernelSize: 3, nGroups: 8, condPredictScale: true }, vision: defaultVisionConfig() });
    const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from([0, 0, 512, 512]), dim: 2 }, action: { values: Float32Array.from([0, 0, 512, 512]), dim: 2 } });
    const policy = new OneDpPolicy(config, { method: 'onedp-d', tInit: 65, sigmaInit: 2.5 }, norm, 0);
    const res = evaluatePushT(policy, { seeds: [100000, 100001], maxSteps: 16, latencyReps: 2 });
    expect(res.episodes.map((e) => e.steps)).toEqual([16, 16]);
    expect(res.latency!.nfe).toBe(1);
    expect(res.latency!.obsEncodingMs).toBeGreaterThan(0);
    expect(res.latency!.actionPredictionMs).toBeGreaterThan(0);
    policy.dispose();
  });
});

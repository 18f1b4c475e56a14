import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf, useBackend, installWasmKernels, loadNative, setThreads, defaultThreads, engineInfo, CUSTOM_KERNELS, NATIVE_KERNELS } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { firstBitDifference, randArray, relErr } from './helpers/compare.js';
import { groupNorm, groupNormComposed, type GroupNormAct } from '../src/engine/group_norm.js';
import { film, filmComposed } from '../src/engine/film.js';
import { mish, mishComposed } from '../src/engine/activations.js';
import { AdamW } from '../src/train/adamw.js';
import { Ema } from '../src/train/ema.js';
import { trainPolicy } from '../src/train/trainer.js';
import { distillOneDp } from '../src/distill/distill.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { noiseConfig } from '../src/cli/train.js';
import { stateDict } from '../src/nn/state_dict.js';
import { bimodalDataset } from '../src/data/synthetic.js';
import { onedp } from './helpers/cli.js';

useWasmEngine();

const status = loadNative();
const addon = status.addon;
const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-native-'));

function hasCompiler(): boolean {
  try {
    execFileSync('g++', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('the native addon', () => {
  it('is built and loaded wherever the machine can build it (g++ and Node headers present)', () => {
    const headers = existsSync(path.join(path.dirname(process.execPath), '..', 'include', 'node', 'node_api.h'));
    const disabled = ['0', 'false', 'off'].includes(process.env.ONEDP_NATIVE ?? '');
    if (!headers || !hasCompiler() || disabled) {
      // Nothing to assert: this machine takes the wasm path by design.
      expect(status.addon).toBeNull();
      return;
    }
    expect(status.addon, status.detail).not.toBeNull();
    expect(engineInfo().kernels).toBe('native');
  });

  it('ONEDP_NATIVE=0 keeps onedp on its wasm kernels and says so', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '-e', "import('./src/engine/index.js').then(async (e) => { await e.initEngine({ backend: 'wasm' }); console.log(JSON.stringify(e.engineInfo())); })"], {
      env: { ...process.env, ONEDP_NATIVE: '0' },
      encoding: 'utf8',
    });
    const info = JSON.parse(out.trim().split('\n').pop()!);
    expect(info.kernels).toBe('wasm');
    expect(info.detail).toMatch(/ONEDP_NATIVE=0/);
  });

  it('reads ONEDP_THREADS and rejects bad thread counts clearly', () => {
    const old = process.env.ONEDP_THREADS;
    try {
      process.env.ONEDP_THREADS = '3';
      expect(defaultThreads()).toBe(3);
      process.env.ONEDP_THREADS = 'many';
      expect(() => defaultThreads()).toThrow(/ONEDP_THREADS must be an integer from 1 to 256, got "many"/);
    } finally {
      if (old === undefined) delete process.env.ONEDP_THREADS;
      else process.env.ONEDP_THREADS = old;
    }
    expect(() => setThreads(0)).toThrow(/threads must be an integer from 1 to 256/);
    const r = onedp(['train', '--dataset', 'synthetic:bimodal:2', '--out', path.join(os.tmpdir(), 'onedp-never'), '--threads', '0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--threads must be an integer from 1 to 256, got "0"/);
  });
});

const describeNative = addon ? describe : describe.skip;

/** Runs f with the native kernels on n threads, restoring the default afterwards. */
function onThreads<T>(n: number, f: () => T): T {
  setThreads(n);
  try {
    return f();
  } finally {
    setThreads(defaultThreads());
  }
}

async function onThreadsAsync<T>(n: number, f: () => Promise<T>): Promise<T> {
  setThreads(n);
  try {
    return await f();
  } finally {
    setThreads(defaultThreads());
  }
}

/** Values, then gradients of sum(f(inputs) * gy) for every input, as arrays. */
function valueAndGrads(f: (...xs: tf.Tensor[]) => tf.Tensor, shapes: number[][], seed: number, scale = 1): Float32Array[] {
  return tf.tidy(() => {
    const xs = shapes.map((s, i) => tf.tensor(randArray(s.reduce((a, b) => a * b, 1), seed + i), s).mul(scale));
    const y = f(...xs);
    const gy = tf.tensor(randArray(y.size, seed + 99), y.shape);
    const grads = tf.grads((...a: tf.Tensor[]) => f(...a).mul(gy).sum())(xs);
    return [y, ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

interface OpCase {
  name: string;
  shapes: number[][];
  /** The op as onedp runs it (native kernels on wasm). */
  op: (...xs: tf.Tensor[]) => tf.Tensor;
  /** The reference, run on the cpu backend with tfjs' own kernels. */
  ref: (...xs: tf.Tensor[]) => tf.Tensor;
  /** Kernels that must show up in the op's profile on wasm. */
  kernels: string[];
  scale?: number;
}

const pad1 = (p: number): tf.backend_util.ExplicitPadding => [[0, 0], [0, 0], [p, p], [0, 0]];
const pad2 = (p: number): tf.backend_util.ExplicitPadding => [[0, 0], [p, p], [p, p], [0, 0]];

const opCases: OpCase[] = [
  {
    name: 'FusedConv2D (conv1d k5 + bias)',
    shapes: [[6, 1, 16, 12], [1, 5, 12, 20], [20]],
    op: (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: [1, 1], pad: pad1(2), bias: b }),
    ref: (x, w, b) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, [1, 1], pad1(2)).add(b),
    kernels: ['FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'Sum'],
  },
  {
    name: 'FusedConv2D (conv2d 3x3 stride 2 + bias)',
    shapes: [[2, 11, 11, 8], [3, 3, 8, 16], [16]],
    op: (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 2, pad: pad2(1), bias: b }),
    ref: (x, w, b) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(1)).add(b),
    kernels: ['FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter'],
  },
  {
    name: '_FusedMatMul (linear + bias)',
    shapes: [[37, 29], [29, 53], [53]],
    op: (a, b, c) => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: c }),
    ref: (a, b, c) => tf.matMul(a, b).add(c),
    kernels: ['_FusedMatMul', 'BatchMatMul'],
  },
  {
    name: 'BatchMatMul, batched, B transposed',
    shapes: [[4, 7, 9], [4, 5, 9]],
    op: (a, b) => tf.matMul(a, b, false, true),
    ref: (a, b) => tf.matMul(a, b, false, true),
    kernels: ['BatchMatMul'],
  },
  ...(['none', 'mish', 'relu'] as GroupNormAct[]).map(
    (act): OpCase => ({
      name: `GroupNorm + ${act}`,
      shapes: [[5, 16, 32], [32], [32]],
      op: (x, g, b) => groupNorm(x, g, b, 8, 1e-5, act),
      ref: (x, g, b) => groupNormComposed(x, g, b, 8, 1e-5, act),
      kernels: ['OnedpGroupNorm', 'OnedpGroupNormGrad'],
      scale: 2,
    }),
  ),
  {
    name: 'GroupNorm + relu over an image, C not a multiple of the vector width',
    shapes: [[2, 5, 6, 36], [36], [36]],
    op: (x, g, b) => groupNorm(x, g, b, 4, 1e-5, 'relu'),
    ref: (x, g, b) => groupNormComposed(x, g, b, 4, 1e-5, 'relu'),
    kernels: ['OnedpGroupNorm', 'OnedpGroupNormGrad'],
  },
  {
    name: 'FiLM with scale',
    shapes: [[5, 8, 24], [5, 48]],
    op: (h, e) => film(h, e, true),
    ref: (h, e) => filmComposed(h, e, true),
    kernels: ['OnedpFilm', 'OnedpFilmGrad'],
  },
  {
    name: 'FiLM, bias only',
    shapes: [[5, 8, 24], [5, 24]],
    op: (h, e) => film(h, e, false),
    ref: (h, e) => filmComposed(h, e, false),
    kernels: ['OnedpFilm', 'OnedpFilmGrad'],
  },
  {
    name: 'Mish (large magnitudes too)',
    shapes: [[3, 37]],
    op: (x) => mish(x),
    ref: (x) => x.mul(tf.tanh(tf.softplus(x))),
    kernels: ['OnedpMish', 'OnedpMishGrad'],
    scale: 12,
  },
  {
    name: 'MaxPool 3x3 stride 2 pad 1 (the encoder stem) and its gradient',
    shapes: [[2, 9, 10, 5]],
    op: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 1),
    ref: (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 1),
    kernels: ['MaxPoolGrad'],
  },
  {
    name: 'Conv2D 7x7 stride 2 on 3 channels (the encoder stem; whole filter rows packed at once)',
    shapes: [[2, 21, 19, 3], [7, 7, 3, 8]],
    op: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(3)),
    ref: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(3)),
    kernels: ['Conv2D', 'Conv2DBackpropFilter', 'Conv2DBackpropInput'],
  },
  {
    name: 'Sum over leading axes (a bias gradient)',
    shapes: [[6, 7, 13]],
    op: (x) => x.sum([0, 1]),
    ref: (x) => x.sum([0, 1]),
    kernels: ['Sum'],
  },
  {
    name: 'Sum over trailing axes, keepDims',
    shapes: [[6, 7, 13]],
    op: (x) => x.sum([1, 2], true),
    ref: (x) => x.sum([1, 2], true),
    kernels: ['Sum'],
  },
  {
    name: 'Sum over a middle axis (falls back)',
    shapes: [[6, 7, 13]],
    op: (x) => x.sum(1),
    ref: (x) => x.sum(1),
    kernels: ['Sum'],
  },
];

const byName = (name: string): OpCase => {
  const c = opCases.find((o) => o.name === name);
  if (!c) throw new Error(`no op case "${name}"`);
  return c;
};

describeNative('native kernels', () => {
  beforeAll(() => installWasmKernels(CUSTOM_KERNELS, { native: true }));

  it('replace the wasm kernels they cover', () => {
    expect(engineInfo().kernels).toBe('native');
    for (const name of NATIVE_KERNELS) expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
  });

  it.each(opCases)('$name: values and gradients equal the reference within 1e-4', async (c) => {
    await useBackend('cpu');
    const ref = valueAndGrads(c.ref, c.shapes, 7, c.scale);
    await useBackend('wasm');
    const got = valueAndGrads(c.op, c.shapes, 7, c.scale);
    got.forEach((g, i) => expect(relErr(g, ref[i]), `output ${i}`).toBeLessThan(1e-4));
    const prof = await tf.profile(() => valueAndGrads(c.op, c.shapes, 7, c.scale).length);
    const names = new Set(prof.kernels.map((k) => k.name));
    for (const k of c.kernels) expect(names.has(k), `${k} in ${[...names].join(', ')}`).toBe(true);
  });

  it('BatchMatMul broadcasts a batch-less operand (forward)', async () => {
    const a = randArray(4 * 7 * 9, 1);
    const b = randArray(9 * 5, 2);
    await useBackend('cpu');
    const ref = tf.tidy(() => tf.matMul(tf.tensor(a, [4, 7, 9]), tf.tensor(b, [9, 5])).dataSync() as Float32Array);
    await useBackend('wasm');
    const got = tf.tidy(() => tf.matMul(tf.tensor(a, [4, 7, 9]), tf.tensor(b, [9, 5])).dataSync() as Float32Array);
    expect(relErr(got, ref)).toBeLessThan(1e-5);
  });

  it('AdamW and EMA update in place exactly as their tfjs versions, and leave a shared buffer intact', async () => {
    const shapes = [[7, 5], [5], [300, 40]];
    const run = (nativeOn: boolean) => {
      installWasmKernels(CUSTOM_KERNELS, { native: nativeOn });
      const params = shapes.map((s, i) => tf.variable(tf.tensor(randArray(s.reduce((a, b) => a * b), 20 + i), s)));
      // A clone shares its buffer with the parameter: an in-place update must not reach it.
      const before = params.map((p) => p.clone());
      const opt = new AdamW(params, { lr: 1e-2, betas: [0.9, 0.99], weightDecay: 0.1 });
      const ema = new Ema(params, 0.75, 0.9);
      for (let s = 0; s < 4; s++) {
        const grads = shapes.map((sh, i) => tf.tensor(randArray(sh.reduce((a, b) => a * b), 40 + 10 * s + i), sh));
        opt.step(grads);
        ema.update();
        tf.dispose(grads);
      }
      const out = [...params, ...ema.shadow, ...before].map((t) => t.dataSync().slice() as Float32Array);
      const state = opt.getState();
      tf.dispose([...params, ...before]);
      opt.dispose();
      ema.dispose();
      return { out, m: state.m, v: state.v };
    };
    const tfjs = run(false);
    const nat = run(true);
    nat.out.forEach((a, i) => expect(relErr(a, tfjs.out[i]), `tensor ${i}`).toBeLessThan(1e-6));
    nat.m.forEach((a, i) => expect(relErr(a, tfjs.m[i]), `m ${i}`).toBeLessThan(1e-6));
    nat.v.forEach((a, i) => expect(relErr(a, tfjs.v[i]), `v ${i}`).toBeLessThan(1e-6));
    // The clones still hold the initial values.
    shapes.forEach((s, i) => expect(firstBitDifference(nat.out[2 * shapes.length + i], randArray(s.reduce((a, b) => a * b), 20 + i))).toBe(-1));
  });

  it('every kernel gives bit-identical results on 1, 2 and 3 threads (inputs large enough to be shared out)', async () => {
    await useBackend('wasm');
    const big: OpCase[] = [
      { ...byName('FusedConv2D (conv1d k5 + bias)'), shapes: [[64, 1, 16, 64], [1, 5, 64, 96], [96]] },
      { ...byName('FusedConv2D (conv2d 3x3 stride 2 + bias)'), shapes: [[8, 21, 21, 32], [3, 3, 32, 64], [64]] },
      { ...byName('_FusedMatMul (linear + bias)'), shapes: [[256, 168], [168, 512], [512]] },
      { ...byName('GroupNorm + mish'), shapes: [[64, 16, 256], [256], [256]] },
      { ...byName('FiLM with scale'), shapes: [[256, 16, 64], [256, 128]] },
      { ...byName('Mish (large magnitudes too)'), shapes: [[256, 300]] },
      { ...byName('Sum over leading axes (a bias gradient)'), shapes: [[256, 16, 64]] },
      {
        name: 'ConvTranspose1d k4 stride 2',
        shapes: [[64, 1, 8, 128], [1, 4, 128, 128]],
        op: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [64, 1, 16, 128], [1, 2], pad1(1) as unknown as number),
        ref: (x) => x,
        kernels: [],
      },
    ];
    for (const c of big) {
      const runsBefore = addon!.info().parallelRuns;
      const one = onThreads(1, () => valueAndGrads(c.op, c.shapes, 3, c.scale));
      const two = onThreads(2, () => valueAndGrads(c.op, c.shapes, 3, c.scale));
      const three = onThreads(3, () => valueAndGrads(c.op, c.shapes, 3, c.scale));
      expect(addon!.info().parallelRuns, `${c.name} was shared out`).toBeGreaterThan(runsBefore);
      one.forEach((a, i) => {
        expect(firstBitDifference(two[i], a), `${c.name} output ${i}, 2 threads`).toBe(-1);
        expect(firstBitDifference(three[i], a), `${c.name} output ${i}, 3 threads`).toBe(-1);
      });
    }
  });

  it('a kernel run right after the thread count changes completes (the pool cannot miss a run)', async () => {
    await useBackend('wasm');
    const a = tf.tensor(randArray(256 * 168, 1), [256, 168]);
    const b = tf.tensor(randArray(168 * 512, 2), [168, 512]);
    const ref = onThreads(1, () => tf.tidy(() => tf.matMul(a, b).dataSync() as Float32Array));
    for (let i = 0; i < 60; i++) {
      // New workers start while the run is already being shared out.
      setThreads(2 + (i % 3));
      const got = tf.tidy(() => tf.matMul(a, b).dataSync() as Float32Array);
      if (i % 20 === 0) expect(firstBitDifference(got, ref), `round ${i}`).toBe(-1);
    }
    setThreads(defaultThreads());
    tf.dispose([a, b]);
  }, 60_000);

  it('convolutions, products, FiLM and sums give the same results while the wasm heap grows', async () => {
    await useBackend('cpu');
    const cases = ['FusedConv2D (conv1d k5 + bias)', 'FusedConv2D (conv2d 3x3 stride 2 + bias)', '_FusedMatMul (linear + bias)', 'GroupNorm + mish', 'FiLM with scale', 'Sum over leading axes (a bias gradient)'].map(byName);
    const refs = cases.map((c) => valueAndGrads(c.ref, c.shapes, 5, c.scale));
    await useBackend('wasm');
    type WasmBackend = { makeOutput: (...a: unknown[]) => unknown; wasm: { HEAPU8: Uint8Array; _malloc(n: number): number; _free(p: number): void } };
    const backend = tf.backend() as unknown as WasmBackend;
    const orig = backend.makeOutput;
    const blocks: number[] = [];
    let growths = 0;
    backend.makeOutput = function (this: WasmBackend, ...a: unknown[]) {
      const out = orig.apply(this, a);
      const heap = backend.wasm.HEAPU8.buffer;
      for (let i = 0; growths < 12 && i < 64 && backend.wasm.HEAPU8.buffer === heap; i++) blocks.push(backend.wasm._malloc(4 << 20));
      if (backend.wasm.HEAPU8.buffer !== heap) growths++;
      return out;
    };
    try {
      cases.forEach((c, k) => {
        const got = valueAndGrads(c.op, c.shapes, 5, c.scale);
        got.forEach((g, i) => expect(relErr(g, refs[k][i]), `${c.name} output ${i}`).toBeLessThan(1e-4));
      });
    } finally {
      backend.makeOutput = orig;
      blocks.forEach((p) => backend.wasm._free(p));
    }
    expect(growths).toBeGreaterThan(0);
  });
});

describeNative('training on the native kernels does not depend on the thread count', () => {
  const buffer = bimodalDataset({ episodes: 12 });
  const unet = { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
  const teachers: Record<string, Awaited<ReturnType<typeof trainPolicy>>['policy']> = {};
  afterAll(() => Object.values(teachers).forEach((t) => t.dispose()));

  async function train(kind: 'ddpm' | 'edm', threads: number) {
    return onThreadsAsync(threads, async () =>
      trainPolicy({ policy: defaultPolicyConfig(2, 2, { unet, noise: noiseConfig(kind) }), buffer, outDir: await tmp(), train: { steps: 20, batchSize: 64, warmupSteps: 2, lr: 1e-3, checkpointEvery: 100 }, progress: 'none' }),
    );
  }

  function expectSameWeights(a: Map<string, { data: unknown }>, b: Map<string, { data: unknown }>): void {
    expect([...a.keys()]).toEqual([...b.keys()]);
    for (const [k, t] of a) expect(firstBitDifference(t.data as Float32Array, b.get(k)!.data as Float32Array), k).toBe(-1);
  }

  for (const kind of ['ddpm', 'edm'] as const) {
    it(`${kind.toUpperCase()}: 20 steps on 1 and 2 threads give identical losses, weights and EMA`, async () => {
      const runsBefore = addon!.info().parallelRuns;
      const one = await train(kind, 1);
      const two = await train(kind, 2);
      expect(addon!.info().parallelRuns).toBeGreaterThan(runsBefore);
      expect(two.losses).toEqual(one.losses);
      expect(one.losses.every(Number.isFinite)).toBe(true);
      expectSameWeights(stateDict(one.policy.unet), stateDict(two.policy.unet));
      one.ema.shadow.forEach((s, i) => expect(firstBitDifference(s.dataSync() as Float32Array, two.ema.shadow[i].dataSync() as Float32Array), `ema ${i}`).toBe(-1));
      teachers[kind] = one.policy;
      two.policy.dispose();
    });
  }

  it('OneDP-S: 20 distillation steps on 1 and 2 threads give identical losses and generators', async () => {
    const teacher = teachers.ddpm;
    expect(teacher, 'the DDPM test above trains the teacher').toBeDefined();
    const run = (threads: number) =>
      onThreadsAsync(threads, async () => distillOneDp({ teacher, buffer, config: { method: 'onedp-s', steps: 20, batchSize: 64 }, outDir: await tmp(), progress: 'none' }));
    const one = await run(1);
    const two = await run(2);
    expect(two.generatorLosses).toEqual(one.generatorLosses);
    expect(two.scoreLosses).toEqual(one.scoreLosses);
    expectSameWeights(stateDict(one.policy.generator.unet), stateDict(two.policy.generator.unet));
    one.policy.dispose();
    two.policy.dispose();
  });
});

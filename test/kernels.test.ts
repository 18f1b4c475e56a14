import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, useBackend, installWasmKernels, loadNative, CUSTOM_KERNELS } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { groupNorm, groupNormComposed } from '../src/engine/group_norm.js';
import { randArray, relErr } from './helpers/compare.js';

useWasmEngine();

type Op = (x: tf.Tensor, w: tf.Tensor) => tf.Tensor;

/** Output, dx and dw of sum(op(x, w) * gy) on one backend. */
async function gradsOn(backend: 'wasm' | 'cpu', xs: number[], ws: number[], op: Op, seed: number): Promise<Float32Array[]> {
  await useBackend(backend);
  return tf.tidy(() => {
    const x = tf.tensor(randArray(xs.reduce((a, b) => a * b), seed), xs);
    const w = tf.tensor(randArray(ws.reduce((a, b) => a * b), seed + 1), ws);
    const y = op(x, w);
    const gy = tf.tensor(randArray(y.size, seed + 2), y.shape);
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => op(a, b).mul(gy).sum())([x, w]);
    return [y, dx, dw].map((t) => t.dataSync() as Float32Array);
  });
}

const pad1 = (p: number): tf.backend_util.ExplicitPadding => [[0, 0], [0, 0], [p, p], [0, 0]];
const pad2 = (p: number): tf.backend_util.ExplicitPadding => [[0, 0], [p, p], [p, p], [0, 0]];

const cases: [string, number[], number[], Op][] = [
  ['conv1d k5 stride 1', [8, 1, 16, 12], [1, 5, 12, 24], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, [1, 1], pad1(2))],
  ['conv1d k5 stride 2', [8, 1, 16, 12], [1, 5, 12, 24], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, [1, 2], pad1(2))],
  ['conv1d k3 stride 2 (Downsample1d)', [8, 1, 16, 12], [1, 3, 12, 12], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, [1, 2], pad1(1))],
  ['conv2d 7x7 stride 2 pad 3', [2, 22, 22, 3], [7, 7, 3, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(3))],
  ['conv2d 7x7 stride 2 pad 3, odd size', [2, 21, 21, 3], [7, 7, 3, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(3))],
  ['conv2d 3x3 stride 1', [2, 11, 11, 8], [3, 3, 8, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, pad2(1))],
  ['conv2d 3x3 stride 2', [2, 11, 11, 8], [3, 3, 8, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(1))],
  ['conv2d 3x3 stride 2, even size', [2, 12, 12, 8], [3, 3, 8, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, pad2(1))],
  ['conv2d 1x1 stride 1', [2, 9, 9, 8], [1, 1, 8, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid')],
  ['conv2d 1x1 stride 2', [2, 11, 11, 8], [1, 1, 8, 16], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'valid')],
  [
    'ConvTranspose1d k4 stride 2 pad 1',
    [4, 1, 8, 12],
    [1, 4, 10, 12],
    (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [4, 1, 16, 10], [1, 2], pad1(1) as unknown as number),
  ],
  ['matmul, A transposed', [3, 17, 9], [3, 17, 5], (x, w) => tf.matMul(x, w, true, false)],
  ['matmul, B transposed', [3, 9, 17], [3, 5, 17], (x, w) => tf.matMul(x, w, false, true)],
  ['matmul, both transposed', [3, 17, 9], [3, 5, 17], (x, w) => tf.matMul(x, w, true, true)],
  ['matmul 2-D, B transposed', [9, 17], [5, 17], (x, w) => tf.matMul(x, w, false, true)],
];

// Every case runs twice: on onedp's wasm kernels (the fallback, and what runs where the native
// addon cannot be built) and on the native kernels.
const modes: [string, boolean][] = [
  ['onedp wasm kernels', false],
  ['native kernels', true],
];
const nativeMissing = !loadNative().addon;

describe.each(modes)('%s', (label, native) => {
  beforeAll(() => installWasmKernels(CUSTOM_KERNELS, { native }));
  afterAll(() => installWasmKernels());
  if (native && nativeMissing) {
    it.skip(`native addon not loaded: ${loadNative().detail}`, () => {});
    return;
  }

  describe(`${label}: training kernels`, () => {
    it('are registered on the wasm backend', () => {
      for (const name of CUSTOM_KERNELS) expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
    });

    it.each(cases)('%s: forward and gradients equal the cpu backend within 1e-4', async (_name, xs, ws, op) => {
      const onWasm = await gradsOn('wasm', xs, ws, op, 11);
      const onCpu = await gradsOn('cpu', xs, ws, op, 11);
      await useBackend('wasm');
      const [y, dx, dw] = onWasm.map((v, i) => relErr(v, onCpu[i]));
      expect(y).toBeLessThan(1e-4);
      expect(dx).toBeLessThan(1e-4);
      expect(dw).toBeLessThan(1e-4);
    });

    it('UnsortedSegmentSum sums rows per segment and drops out-of-range ids', async () => {
      await useBackend('wasm');
      const x = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
      const out = tf.unsortedSegmentSum(x, tf.tensor1d([1, 0, 1, 5], 'int32'), 3);
      expect(out.arraySync()).toEqual([[3, 4], [6, 8], [0, 0]]);
    });

    it('the gather gradient (UnsortedSegmentSum) equals the cpu backend', async () => {
      const run = async (b: 'wasm' | 'cpu') => {
        await useBackend(b);
        return tf.tidy(() => {
          const p = tf.tensor(randArray(7 * 3, 4), [7, 3]);
          const idx = tf.tensor1d([0, 6, 6, 2, 0, 3], 'int32');
          const gy = tf.tensor(randArray(6 * 3, 5), [6, 3]);
          return tf.grad((q: tf.Tensor) => tf.gather(q, idx).mul(gy).sum())(p).dataSync() as Float32Array;
        });
      };
      const a = await run('wasm');
      const b = await run('cpu');
      await useBackend('wasm');
      expect(relErr(a, b)).toBeLessThan(1e-6);
    });
  });

  describe(`${label}: GroupNorm kernels`, () => {
    // The composed-ops GroupNorm on the cpu backend is the reference; the loop kernels run on
    // wasm (as in training) and on cpu, with gradients of sum(y * gy) for x, gamma and beta.
    const shapes: [string, number[], number][] = [
      ['(B, L, C) 8 groups of 4', [5, 16, 32], 8],
      ['(B, L, C) odd length', [3, 7, 24], 8],
      ['(B, H, W, C) encoder-style', [2, 6, 5, 64], 4],
      ['one group', [2, 9, 6], 1],
    ];
    async function run(backend: 'wasm' | 'cpu', fused: boolean, shape: number[], groups: number, seed: number): Promise<Float32Array[]> {
      await useBackend(backend);
      const C = shape[shape.length - 1];
      return tf.tidy(() => {
        // An offset mean and uneven scale stress the statistics.
        const x = tf.tensor(randArray(shape.reduce((a, b) => a * b), seed), shape).mul(3).add(1.5);
        const g = tf.tensor(randArray(C, seed + 1), [C]);
        const b = tf.tensor(randArray(C, seed + 2), [C]);
        const f = (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => (fused ? groupNorm(xx, gg, bb, groups) : groupNormComposed(xx, gg, bb, groups, 1e-5));
        const y = f(x, g, b);
        const gy = tf.tensor(randArray(y.size, seed + 3), y.shape);
        const grads = tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => f(xx, gg, bb).mul(gy).sum())([x, g, b]);
        return [y, ...grads].map((t) => t.dataSync() as Float32Array);
      });
    }
    for (const [name, shape, groups] of shapes) {
      it(`${name}: forward and gradients match composed ops`, async () => {
        const ref = await run('cpu', false, shape, groups, 11);
        for (const backend of ['wasm', 'cpu'] as const) {
          const got = await run(backend, true, shape, groups, 11);
          for (let i = 0; i < 4; i++) expect(relErr(got[i], ref[i]), `${backend} output ${i}`).toBeLessThan(1e-5);
        }
        await useBackend('wasm');
      });
    }
    it('is what GroupNorm layers use on wasm (one kernel forward, one backward)', async () => {
      await useBackend('wasm');
      const x = tf.randomNormal([2, 8, 16]);
      const g = tf.ones([16]);
      const b = tf.zeros([16]);
      const prof = await tf.profile(() => tf.grads((xx: tf.Tensor) => groupNorm(xx, g, b, 4).sum())([x]));
      const names = prof.kernels.map((k) => k.name);
      expect(names).toContain('OnedpGroupNorm');
      expect(names).toContain('OnedpGroupNormGrad');
      expect(names.filter((n) => n === 'Mean' || n === 'Rsqrt')).toHaveLength(0);
      tf.dispose([x, g, b]);
      prof.result && tf.dispose(prof.result as tf.Tensor[]);
    });
    it('rejects channels that do not split into groups', () => {
      expect(() => groupNorm(tf.zeros([1, 2, 6]), tf.ones([6]), tf.zeros([6]), 4)).toThrow(/6 channels do not split into 4 groups/);
    });
  });
});

describe('custom kernels and a growing wasm heap', () => {
  // An allocation can grow the wasm heap, which detaches every typed-array view taken before it.
  // Here every output allocation is followed by forced growth, so a kernel that takes a view and
  // then allocates reads undefined (NaN) or writes into the void.
  type WasmBackend = { makeOutput: (...a: unknown[]) => unknown; wasm: { HEAPU8: Uint8Array; _malloc(n: number): number; _free(p: number): void } };
  async function withGrowingHeap<T>(f: () => T): Promise<{ out: T; growths: number }> {
    await useBackend('wasm');
    const backend = tf.backend() as unknown as WasmBackend;
    const orig = backend.makeOutput;
    const blocks: number[] = [];
    let growths = 0;
    backend.makeOutput = function (this: WasmBackend, ...a: unknown[]) {
      const out = orig.apply(this, a);
      const before = backend.wasm.HEAPU8.buffer;
      // At most 8 growths of a few MB each: enough to hit every allocation of the kernels below.
      for (let i = 0; growths < 8 && i < 64 && backend.wasm.HEAPU8.buffer === before; i++) blocks.push(backend.wasm._malloc(4 << 20));
      if (backend.wasm.HEAPU8.buffer !== before) growths++;
      return out;
    };
    try {
      return { out: f(), growths };
    } finally {
      backend.makeOutput = orig;
      blocks.forEach((p) => backend.wasm._free(p));
    }
  }
  function groupNormKernels(): Float32Array[] {
    const shape = [3, 7, 24];
    const x = tf.tensor(randArray(3 * 7 * 24, 5), shape);
    const gamma = tf.tensor(randArray(24, 6), [24]);
    const beta = tf.tensor(randArray(24, 7), [24]);
    const dy = tf.tensor(randArray(3 * 7 * 24, 8), shape);
    const [y, stats] = tf.engine().runKernel('OnedpGroupNorm', { x, gamma, beta }, { groups: 8, eps: 1e-5 } as unknown as tf.NamedAttrMap) as tf.Tensor[];
    const grads = tf.engine().runKernel('OnedpGroupNormGrad', { dy, x, gamma, beta, stats }, { groups: 8 } as unknown as tf.NamedAttrMap) as tf.Tensor[];
    const out = [y, stats, ...grads].map((t) => t.dataSync().slice() as Float32Array);
    tf.dispose([x, gamma, beta, dy, y, stats, ...grads]);
    return out;
  }
  function convTranspose(): Float32Array[] {
    return tf.tidy(() => {
      const x = tf.tensor(randArray(4 * 8 * 12, 9), [4, 1, 8, 12]) as tf.Tensor4D;
      const w = tf.tensor(randArray(4 * 10 * 12, 10), [1, 4, 10, 12]) as tf.Tensor4D;
      return [tf.conv2dTranspose(x, w, [4, 1, 16, 10], [1, 2], pad1(1) as unknown as number).dataSync() as Float32Array];
    });
  }
  for (const [name, f] of [['GroupNorm forward and gradient', groupNormKernels], ['ConvTranspose (rotated filter)', convTranspose]] as const) {
    it(`${name}: same results while the heap grows`, async () => {
      await useBackend('cpu');
      const ref = f();
      const { out, growths } = await withGrowingHeap(f);
      expect(growths).toBeGreaterThan(0);
      for (let i = 0; i < ref.length; i++) expect(relErr(out[i], ref[i]), `output ${i}`).toBeLessThan(1e-5);
    });
  }
});

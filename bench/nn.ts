/**
 * Issue 2 benchmarks: U-Net forward and training step, encoder forward, and what onedp's wasm
 * kernels gain over the stock path.
 */
import { tf, useBackend, installWasmKernels, uninstallWasmKernels } from '../src/engine/index.js';
import { countFlops } from '../src/engine/flops.js';
import { ConditionalUnet1D, PUSHT_STATE_UNET, UNET_DEFAULTS, type UnetConfig } from '../src/nn/unet1d.js';
import { ImageEncoder } from '../src/nn/resnet.js';
import { buildContext } from '../src/nn/module.js';
import { timeIt, sync, type BenchRow } from './harness.js';

const CPU_DEFAULT: UnetConfig = { ...UNET_DEFAULTS, inputDim: 2, globalCondDim: 40 };

function inputs(b: number, cfg: UnetConfig) {
  return {
    x: tf.randomNormal([b, 16, cfg.inputDim], 0, 1, 'float32', 1),
    c: tf.randomNormal([b, cfg.globalCondDim], 0, 1, 'float32', 2),
    t: tf.randomUniform([b], 0, 100, 'float32', 3).floor(),
  };
}

/** One optimizer step: forward, backward, Adam update. */
function trainStep(net: ConditionalUnet1D, opt: tf.Optimizer, x: tf.Tensor, t: tf.Tensor, c: tf.Tensor): () => void {
  return () => {
    const loss = opt.minimize(() => net.forward(x, t, c).sub(x).square().mean() as tf.Scalar, true, net.variables());
    loss!.dataSync();
    loss!.dispose();
  };
}

async function unetTrain(name: string, cfg: UnetConfig, b: number, reps: number, rows: BenchRow[]): Promise<number> {
  const net = new ConditionalUnet1D(cfg, buildContext({ seed: 0 }));
  const opt = tf.train.adam(1e-4, 0.95, 0.999);
  const { x, c, t } = inputs(b, cfg);
  // Backward is counted from the kernels it runs (about twice the forward's GEMM FLOPs).
  const flops = await countFlops(() => {
    const { value, grads } = tf.variableGrads(() => net.forward(x, t, c).square().mean() as tf.Scalar, net.variables());
    return [value, ...Object.values(grads)];
  });
  const ms = timeIt(trainStep(net, opt, x, t, c), { warmup: 1, reps });
  rows.push({ section: 'unet', name: `train step B=${b}, ${name}`, ms, gflops: flops / ms / 1e6, extra: { 'samples/s': (1000 * b) / ms } });
  opt.dispose();
  net.dispose();
  return ms;
}

async function encoderForward(rows: BenchRow[]): Promise<void> {
  const enc = new ImageEncoder({}, buildContext({ seed: 0 }));
  const img = tf.randomUniform([1, 84, 84, 3], -1, 1, 'float32', 4);
  const flops = await countFlops(() => enc.forward(img));
  const ms = timeIt(sync(() => enc.forward(img)), { reps: 20, minMs: 300 });
  rows.push({ section: 'encoder', name: 'ResNet-18/GN encoder forward B=1, 84x84', ms, gflops: flops / ms / 1e6 });
  enc.dispose();
}

const pad = (p: number, twoD: boolean): tf.backend_util.ExplicitPadding => (twoD ? [[0, 0], [p, p], [p, p], [0, 0]] : [[0, 0], [0, 0], [p, p], [0, 0]]);

interface KernelCase {
  kernel: string;
  label: string;
  flops: number;
  make: () => () => tf.Tensor;
  /** Backend for the stock comparison: stock wasm where it has the kernel, else cpu. */
  stock: 'wasm' | 'cpu';
}

function kernelCases(): KernelCase[] {
  const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>) => () =>
    tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
  const cases: KernelCase[] = [];
  // U-Net conv1d k5 at the middle level, batch 256, and ResNet 3x3 layers at batch 64.
  for (const [b, h, w, ci, co, k, s, twoD, label] of [
    [64, 1, 8, 128, 128, 5, 1, false, 'conv1d k5 128ch L8 B64'],
    [64, 1, 16, 64, 64, 5, 1, false, 'conv1d k5 64ch L16 B64'],
    [16, 21, 21, 64, 64, 3, 1, true, 'conv2d 3x3 64ch 21x21 B16'],
    [16, 21, 21, 64, 128, 3, 2, true, 'conv2d 3x3 s2 64->128ch B16'],
  ] as [number, number, number, number, number, number, number, boolean, string][]) {
    const kh = twoD ? k : 1;
    const ho = twoD ? Math.floor((h + 2 * (k >> 1) - k) / s) + 1 : 1;
    const wo = Math.floor((w + 2 * (k >> 1) - k) / s) + 1;
    const flops = 2 * b * ho * wo * kh * k * ci * co;
    const strides: [number, number] = twoD ? [s, s] : [1, s];
    cases.push({
      kernel: 'Conv2DBackpropFilter',
      label,
      flops,
      stock: 'cpu',
      make: () => run('Conv2DBackpropFilter', { x: tf.randomNormal([b, h, w, ci]), dy: tf.randomNormal([b, ho, wo, co]) }, { strides, pad: pad(k >> 1, twoD), filterShape: [kh, k, ci, co], dataFormat: 'NHWC' }),
    });
    cases.push({
      kernel: 'Conv2DBackpropInput',
      label,
      flops,
      stock: 'wasm',
      make: () => run('Conv2DBackpropInput', { dy: tf.randomNormal([b, ho, wo, co]), filter: tf.randomNormal([kh, k, ci, co]) }, { inputShape: [b, h, w, ci], strides, pad: pad(k >> 1, twoD), dataFormat: 'NHWC' }),
    });
  }
  // Upsample1d (ConvTranspose1d k4 s2) forward is a Conv2DBackpropInput.
  cases.push({
    kernel: 'Conv2DBackpropInput',
    label: 'ConvTranspose1d k4 s2 128ch L8->16 B64',
    flops: 2 * 64 * 8 * 4 * 128 * 128,
    stock: 'wasm',
    make: () => run('Conv2DBackpropInput', { dy: tf.randomNormal([64, 1, 8, 128]), filter: tf.randomNormal([1, 4, 128, 128]) }, { inputShape: [64, 1, 16, 128], strides: [1, 2], pad: pad(1, false), dataFormat: 'NHWC' }),
  });
  // Linear-layer gradients: dW = x^T dy and dx = dy W^T.
  for (const [m, k, n, ta, tb] of [
    [256, 168, 512, true, false],
    [256, 512, 168, false, true],
  ] as [number, number, number, boolean, boolean][]) {
    cases.push({
      kernel: 'BatchMatMul',
      label: `${ta ? 'A^T' : 'A'}${tb ? ' B^T' : ' B'} (${m}x${k}, ${k}x${n})`,
      flops: 2 * m * k * n,
      stock: 'wasm',
      make: () => {
        const a = tf.randomNormal(ta ? [1, k, m] : [1, m, k]);
        const bb = tf.randomNormal(tb ? [1, n, k] : [1, k, n]);
        return run('BatchMatMul', { a, b: bb }, { transposeA: ta, transposeB: tb });
      },
    });
  }
  cases.push({
    kernel: 'UnsortedSegmentSum',
    label: 'gather grad, 256 rows of 64 into 100',
    flops: 2 * 256 * 64 * 100,
    stock: 'cpu',
    make: () => run('UnsortedSegmentSum', { x: tf.randomNormal([256, 64]), segmentIds: tf.randomUniform([256], 0, 100, 'int32') }, { numSegments: 100 }),
  });
  return cases;
}

async function kernelSpeedups(rows: BenchRow[]): Promise<void> {
  for (const kc of kernelCases()) {
    await useBackend('wasm');
    installWasmKernels();
    const ours = timeIt(sync(kc.make()), { reps: 5, minMs: 200 });
    let stock: number;
    if (kc.stock === 'wasm') {
      uninstallWasmKernels();
      stock = timeIt(sync(kc.make()), { warmup: 1, reps: 2 });
      installWasmKernels();
    } else {
      // The cpu backend's loops take seconds here: one warm-up only when a run is short.
      await useBackend('cpu');
      const f = sync(kc.make());
      const t0 = performance.now();
      f();
      stock = performance.now() - t0;
      if (stock < 2000) stock = timeIt(f, { warmup: 0, reps: 3 });
      await useBackend('wasm');
    }
    rows.push({
      section: 'kernels',
      name: `${kc.kernel}: ${kc.label}`,
      ms: ours,
      gflops: kc.flops / ours / 1e6,
      extra: { baseline: kc.stock === 'wasm' ? 'stock wasm' : 'cpu backend', 'baseline ms': stock, 'speed-up': stock / ours },
    });
  }
}

/** The whole training step with onedp's kernels on wasm against the cpu backend. */
async function trainStepVsCpu(rows: BenchRow[]): Promise<void> {
  const b = 16;
  await useBackend('wasm');
  const ours = await unetTrain('CPU default (wasm + onedp kernels)', CPU_DEFAULT, b, 3, rows);
  await useBackend('cpu');
  const tmp: BenchRow[] = [];
  const cpu = await unetTrain('CPU default (cpu backend)', CPU_DEFAULT, b, 1, tmp);
  await useBackend('wasm');
  rows.push({ ...tmp[0], extra: { ...tmp[0].extra, baseline: 'this row', 'speed-up': cpu / ours } });
}

/** The U-Net's forward and training step are in the speed section; here the encoder and kernels. */
export async function benchNn(rows: BenchRow[]): Promise<void> {
  await useBackend('wasm');
  await encoderForward(rows);
  await kernelSpeedups(rows);
  await trainStepVsCpu(rows);
}

/**
 * The published PushT-state U-Net's training step, in a process of its own (`--only big`): the
 * wasm backend addresses about 2 GB and its heap never shrinks, so after the other sections the
 * 65.8M model's step (weights, Adam moments, gradients, the tape's activations) overruns it.
 * Batch 16: batch 64 or 256 overruns it even in a fresh process.
 */
export async function benchBig(rows: BenchRow[]): Promise<void> {
  await useBackend('wasm');
  await unetTrain('PushT-state', PUSHT_STATE_UNET, 16, 2, rows);
}

/**
 * Training kernels for the wasm backend, composed from its fast kernels (XNNPACK Conv2D,
 * Transpose, plain BatchMatMul). The stock backend has no Conv2DBackpropFilter or
 * UnsortedSegmentSum at all, and its Conv2DBackpropInput and transposed BatchMatMul are scalar
 * loops that dominate a training step.
 */
import * as tf from '@tensorflow/tfjs';
import { loadNative } from './native.js';
import { nativeKernels } from './native_kernels.js';
import { GROUP_NORM_GRAD_KERNEL, GROUP_NORM_KERNEL } from './group_norm.js';
import { FILM_GRAD_KERNEL, FILM_KERNEL } from './film.js';
import { MISH_GRAD_KERNEL, MISH_KERNEL } from './activations.js';
import { setFusedElementwise } from './fusion.js';

type TensorInfo = tf.TensorInfo;
type Attrs = tf.NamedAttrMap;
type KernelFunc = tf.KernelFunc;

interface WasmBackendLike {
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Runs backend kernels by name and frees the intermediates it made. */
class KernelScope {
  private made: TensorInfo[] = [];
  constructor(
    private readonly backend: WasmBackendLike,
    private readonly funcs: Map<string, KernelFunc>,
  ) {}

  run(name: string, inputs: Record<string, TensorInfo>, attrs: Attrs = {}): TensorInfo {
    const fn = this.funcs.get(name);
    if (!fn) throw new Error(`onedp engine: wasm kernel ${name} is not available`);
    const out = fn({ inputs, backend: this.backend as unknown as object, attrs } as never) as TensorInfo;
    this.made.push(out);
    return out;
  }

  /** Frees every intermediate except `keep`, which the engine takes ownership of. */
  finish(keep: TensorInfo): TensorInfo {
    for (const t of this.made) if (t !== keep) this.backend.disposeData(t.dataId);
    this.made = [];
    return keep;
  }
}

interface ExplicitPads {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

function padsOf(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: unknown,
  dimRoundingMode: unknown,
): { pads: ExplicitPads; outH: number; outW: number; sh: number; sw: number } {
  const info = tf.backend_util.computeConv2DInfo(
    xShape,
    filterShape,
    strides,
    1,
    pad as 'valid',
    dimRoundingMode as 'floor' | undefined,
  );
  return {
    pads: { top: info.padInfo.top, bottom: info.padInfo.bottom, left: info.padInfo.left, right: info.padInfo.right },
    outH: info.outHeight,
    outW: info.outWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
  };
}

function explicit(p: ExplicitPads): tf.backend_util.ExplicitPadding {
  return [
    [0, 0],
    [p.top, p.bottom],
    [p.left, p.right],
    [0, 0],
  ];
}

/**
 * dW[kh,kw,ci,co] = sum_{b,i,j} x[b, i*s+kh-p, j*s+kw-p, ci] dy[b,i,j,co]: a Conv2D of x with
 * batch and channels swapped, using dy as a filter dilated by the forward stride.
 */
function backpropFilter(funcs: Map<string, KernelFunc>): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
    const a = attrs as unknown as { strides: number | [number, number]; pad: unknown; dimRoundingMode: unknown; filterShape: [number, number, number, number]; dataFormat?: string };
    if (a.dataFormat && a.dataFormat !== 'NHWC') throw new Error('Conv2DBackpropFilter: only NHWC is supported');
    const [kh, kw] = a.filterShape;
    const xs = x.shape as [number, number, number, number];
    const { pads, sh, sw, outH, outW } = padsOf(xs, a.filterShape, a.strides, a.pad, a.dimRoundingMode);
    const s = new KernelScope(backend as WasmBackendLike, funcs);
    let xT = s.run('Transpose', { x }, { perm: [3, 1, 2, 0] }); // (ci, H, W, B)
    const dyT = s.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] }); // (oh, ow, B, co)
    // Padding after the data so the output is exactly (kh, kw); negative means the forward conv
    // never reached the last rows, so they are cut off instead.
    let bottom = kh - xs[1] - pads.top + (outH - 1) * sh;
    let right = kw - xs[2] - pads.left + (outW - 1) * sw;
    if (bottom < 0 || right < 0) {
      const h = xs[1] + Math.min(bottom, 0);
      const w = xs[2] + Math.min(right, 0);
      xT = s.run('Slice', { x: xT }, { begin: [0, 0, 0, 0], size: [xs[3], h, w, xs[0]] });
      bottom = Math.max(bottom, 0);
      right = Math.max(right, 0);
    }
    const r = s.run(
      'Conv2D',
      { x: xT, filter: dyT },
      {
        strides: [1, 1],
        pad: explicit({ top: pads.top, bottom, left: pads.left, right }) as never,
        dilations: [sh, sw],
        dataFormat: 'NHWC',
        dimRoundingMode: undefined as never,
      },
    ); // (ci, kh, kw, co)
    const out = s.run('Transpose', { x: r }, { perm: [1, 2, 0, 3] });
    return s.finish(out);
  };
}

interface WasmHeapBackend extends WasmBackendLike {
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

/**
 * W'[kh-1-a, kw-1-b, o, i] = W[a, b, i, o] in one pass over the heap. The backend's Reverse
 * kernel indexes element by element and costs as much as the convolution that follows.
 */
function flipFilter(backend: WasmHeapBackend, filter: TensorInfo): TensorInfo {
  const [kh, kw, ci, co] = filter.shape;
  // Allocate before taking views: growing the heap detaches views taken earlier.
  const out = backend.makeOutput([kh, kw, co, ci], 'float32');
  const src = backend.typedArrayFromHeap(filter);
  const dst = backend.typedArrayFromHeap(out);
  for (let a = 0; a < kh; a++)
    for (let b = 0; b < kw; b++) {
      const sBase = (a * kw + b) * ci * co;
      const dBase = ((kh - 1 - a) * kw + (kw - 1 - b)) * co * ci;
      for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) dst[dBase + o * ci + i] = src[sBase + i * co + o];
    }
  return out;
}

/**
 * dx = Conv2D(zero-dilated dy, rotated filter with in/out swapped), stride 1. Dilation by the
 * stride wastes s^2 of the multiply-adds on zeros, but XNNPACK's GEMM is still far faster than
 * the stock scalar loop.
 */
function backpropInput(funcs: Map<string, KernelFunc>): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = attrs as unknown as { inputShape: [number, number, number, number]; strides: number | [number, number]; pad: unknown; dimRoundingMode: unknown; dataFormat?: string };
    if (a.dataFormat && a.dataFormat !== 'NHWC') throw new Error('Conv2DBackpropInput: only NHWC is supported');
    const fs = filter.shape as [number, number, number, number];
    const [kh, kw, ci, co] = fs;
    const xs = a.inputShape;
    const { pads, sh, sw } = padsOf(xs, fs, a.strides, a.pad, a.dimRoundingMode);
    const s = new KernelScope(backend as WasmBackendLike, funcs);
    const [B, oh, ow] = dy.shape as [number, number, number, number];
    let d = dy;
    let dh = oh;
    let dw = ow;
    if (sh > 1 || sw > 1) {
      const r6 = s.run('Reshape', { x: dy }, { shape: [B, oh, 1, ow, 1, co] });
      const p6 = s.run('PadV2', { x: r6 }, { paddings: [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]], constantValue: 0 });
      d = s.run('Reshape', { x: p6 }, { shape: [B, oh * sh, ow * sw, co] });
      dh = oh * sh;
      dw = ow * sw;
    }
    // The trailing (s-1) zero rows of the dilated dy act as padding, hence the subtraction.
    const top = kh - 1 - pads.top;
    const left = kw - 1 - pads.left;
    let bottom = xs[1] - dh - top + kh - 1;
    let right = xs[2] - dw - left + kw - 1;
    if (top < 0 || left < 0) throw new Error(`Conv2DBackpropInput: padding larger than kernel-1 is not supported`);
    if (bottom < 0 || right < 0) {
      d = s.run('Slice', { x: d }, { begin: [0, 0, 0, 0], size: [B, dh + Math.min(bottom, 0), dw + Math.min(right, 0), co] });
      bottom = Math.max(bottom, 0);
      right = Math.max(right, 0);
    }
    const f2 = flipFilter(backend as WasmHeapBackend, filter); // (kh, kw, co, ci), rotated
    const out = s.run(
      'Conv2D',
      { x: d, filter: f2 },
      { strides: [1, 1], pad: explicit({ top, bottom, left, right }) as never, dilations: [1, 1], dataFormat: 'NHWC', dimRoundingMode: undefined as never },
    );
    (backend as WasmBackendLike).disposeData(f2.dataId);
    if (out.shape[3] !== ci) throw new Error('Conv2DBackpropInput: internal shape error');
    return s.finish(out);
  };
}

/** Transposes explicitly, then runs the backend's fast non-transposed GEMM. */
function batchMatMul(funcs: Map<string, KernelFunc>, stock: KernelFunc): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    if (!transposeA && !transposeB) return stock({ inputs, backend, attrs });
    const s = new KernelScope(backend as WasmBackendLike, funcs);
    const swapLast = (t: TensorInfo): TensorInfo => {
      const r = t.shape.length;
      const perm = [...Array(r).keys()];
      perm[r - 2] = r - 1;
      perm[r - 1] = r - 2;
      return s.run('Transpose', { x: t }, { perm });
    };
    const a2 = transposeA ? swapLast(a) : a;
    const b2 = transposeB ? swapLast(b) : b;
    const out = stock({ inputs: { a: a2, b: b2 }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } }) as TensorInfo;
    return s.finish(out);
  };
}

/** out[s] = sum of rows of x whose segment id is s: one-hot(ids)^T @ x as a plain GEMM. */
function unsortedSegmentSum(funcs: Map<string, KernelFunc>): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    const { numSegments } = attrs as { numSegments: number };
    const n = segmentIds.shape.reduce((p, q) => p * q, 1);
    const total = x.shape.reduce((p, q) => p * q, 1);
    const rest = x.shape.slice(segmentIds.shape.length);
    const r = n === 0 ? 0 : total / n;
    const s = new KernelScope(backend as WasmBackendLike, funcs);
    const ids = s.run('Reshape', { x: segmentIds }, { shape: [n] });
    const idsI = segmentIds.dtype === 'int32' ? ids : s.run('Cast', { x: ids }, { dtype: 'int32' });
    // The wasm OneHot writes int32 whatever dtype it is asked for, so cast explicitly.
    const ohI = s.run('OneHot', { indices: idsI }, { depth: numSegments, onValue: 1, offValue: 0, dtype: 'int32' });
    const oh = s.run('Cast', { x: ohI }, { dtype: 'float32' });
    const ohT = s.run('Transpose', { x: oh }, { perm: [1, 0] });
    const xf = x.dtype === 'float32' ? x : s.run('Cast', { x }, { dtype: 'float32' });
    const x2 = s.run('Reshape', { x: xf }, { shape: [1, n, r] });
    const o3 = s.run('Reshape', { x: ohT }, { shape: [1, numSegments, n] });
    const prod = funcs.get('BatchMatMul')!({ inputs: { a: o3, b: x2 }, backend, attrs: { transposeA: false, transposeB: false } }) as TensorInfo;
    const outF = s.run('Reshape', { x: prod }, { shape: [numSegments, ...rest] });
    backendDispose(backend, prod);
    const out = x.dtype === 'float32' ? outF : s.run('Cast', { x: outF }, { dtype: x.dtype });
    return s.finish(out);
  };
}

function backendDispose(backend: unknown, t: TensorInfo): void {
  (backend as WasmBackendLike).disposeData(t.dataId);
}

/**
 * tfjs saves every tensor a gradient needs through Identity, which the wasm backend implements
 * as a copy (about 700 copies per U-Net backward pass). Sharing the buffer, as Reshape and the
 * cpu backend's Identity do, is safe because no kernel writes into its inputs.
 */
function sharedIdentity(stock: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype === 'string') return stock(args);
    (args.backend as unknown as { incRef(id: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

export const CUSTOM_KERNELS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'BatchMatMul', 'UnsortedSegmentSum', 'Identity'] as const;
export type CustomKernelName = (typeof CUSTOM_KERNELS)[number];
/** Kernels the native addon takes over in addition (their wasm versions stay the fallback). */
export const NATIVE_KERNELS = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropFilter',
  'Conv2DBackpropInput',
  'BatchMatMul',
  '_FusedMatMul',
  'Sum',
  'MaxPoolGrad',
  GROUP_NORM_KERNEL,
  GROUP_NORM_GRAD_KERNEL,
  FILM_KERNEL,
  FILM_GRAD_KERNEL,
  MISH_KERNEL,
  MISH_GRAD_KERNEL,
] as const;

const stockKernels = new Map<string, tf.KernelConfig | undefined>();
let installed = false;
let nativeInstalled = false;

export interface InstallOptions {
  /** Use the native addon where it loads (default true); false keeps the wasm-only kernels. */
  native?: boolean;
}

function replaceKernel(name: string, kernelFunc: KernelFunc): void {
  const prev = tf.getKernel(name, 'wasm');
  if (!stockKernels.has(name)) stockKernels.set(name, prev);
  if (prev) tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
}

/**
 * Registers onedp's kernels on the wasm backend, replacing the stock ones, and the native
 * addon's over those where it loads. Idempotent. `which` selects a subset of the wasm kernels,
 * so benchmarks can compare against the stock path.
 */
export function installWasmKernels(which: readonly CustomKernelName[] = CUSTOM_KERNELS, opts: InstallOptions = {}): void {
  uninstallWasmKernels();
  const needed = ['Conv2D', 'Transpose', 'Reshape', 'PadV2', 'Slice', 'OneHot', 'Cast', 'BatchMatMul', 'Identity'];
  const funcs = new Map<string, KernelFunc>();
  for (const n of needed) {
    const k = tf.getKernel(n, 'wasm');
    if (!k) throw new Error(`onedp engine: the wasm backend has no ${n} kernel; is @tensorflow/tfjs-backend-wasm loaded?`);
    funcs.set(n, k.kernelFunc);
  }
  const stockMatMul = funcs.get('BatchMatMul')!;
  const impls: Record<CustomKernelName, KernelFunc> = {
    Conv2DBackpropFilter: backpropFilter(funcs),
    Conv2DBackpropInput: backpropInput(funcs),
    BatchMatMul: batchMatMul(funcs, stockMatMul),
    UnsortedSegmentSum: unsortedSegmentSum(funcs),
    Identity: sharedIdentity(funcs.get('Identity')!),
  };
  for (const name of which) replaceKernel(name, impls[name]);
  installed = true;
  const addon = opts.native === false ? null : loadNative().addon;
  if (addon) {
    const current = (n: string): KernelFunc => {
      const k = tf.getKernel(n, 'wasm');
      if (!k) throw new Error(`onedp engine: the wasm backend has no ${n} kernel`);
      return k.kernelFunc;
    };
    const native = nativeKernels(addon, {
      Conv2D: current('Conv2D'),
      FusedConv2D: current('FusedConv2D'),
      Conv2DBackpropFilter: current('Conv2DBackpropFilter'),
      Conv2DBackpropInput: current('Conv2DBackpropInput'),
      BatchMatMul: current('BatchMatMul'),
      _FusedMatMul: current('_FusedMatMul'),
      Sum: current('Sum'),
      MaxPoolGrad: current('MaxPoolGrad'),
    });
    for (const name of NATIVE_KERNELS) replaceKernel(name, native[name]);
    nativeInstalled = true;
    setFusedElementwise('wasm', true);
  }
}

/** Whether the native kernels are what the wasm backend runs now. */
export function nativeKernelsActive(): boolean {
  return nativeInstalled;
}

/** Restores the stock wasm kernels (and removes the ones the backend never had). */
export function uninstallWasmKernels(): void {
  if (!installed) return;
  for (const [name, prev] of stockKernels) {
    if (tf.getKernel(name, 'wasm')) tf.unregisterKernel(name, 'wasm');
    if (prev) tf.registerKernel(prev);
  }
  stockKernels.clear();
  installed = false;
  nativeInstalled = false;
  setFusedElementwise('wasm', false);
}

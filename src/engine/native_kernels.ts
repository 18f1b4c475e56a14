/**
 * tfjs kernels for the wasm backend that hand the work to the native addon (native.ts). Each
 * allocates its outputs first, then passes heap offsets: an allocation can grow (move) the
 * heap, so offsets are read, and the heap fetched, only once nothing more is allocated.
 * Cases the addon does not cover (dilation, NCHW, non-float data) go to the fallback kernel.
 */
import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from './native.js';

type TensorInfo = tf.TensorInfo;
type KernelFunc = tf.KernelFunc;

/** The parts of the wasm backend these kernels use. */
export interface WasmHeapBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number; refCount: number } | undefined; has(dataId: object): boolean };
  makeOutput(shape: number[], dtype: 'float32'): TensorInfo;
  refCount(dataId: object): number;
}

export function offsetOf(backend: WasmHeapBackend, t: TensorInfo | tf.Tensor): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (!d) throw new Error('onedp native: tensor is not on the wasm backend');
  return d.memoryOffset;
}

const prod = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** One reusable argument buffer per kernel signature (the addon reads it synchronously). */
const argBuffers = new Map<number, Float64Array>();
function argsOf(values: number[]): Float64Array {
  let a = argBuffers.get(values.length);
  if (!a) {
    a = new Float64Array(values.length);
    argBuffers.set(values.length, a);
  }
  a.set(values);
  return a;
}

interface ConvAttrs {
  strides: number | [number, number];
  pad: unknown;
  dataFormat?: string;
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

function convGeom(xShape: number[], filterShape: number[], a: ConvAttrs): number[] | null {
  if (a.dataFormat && a.dataFormat !== 'NHWC' && a.dataFormat !== 'channelsLast') return null;
  const dil = a.dilations ?? 1;
  if (Array.isArray(dil) ? dil.some((d) => d !== 1) : dil !== 1) return null;
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    1,
    a.pad as 'valid',
    a.dimRoundingMode,
  );
  if ([info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outChannels, info.outHeight, info.outWidth].some((v) => v <= 0)) return null;
  return [
    info.batchSize,
    info.inHeight,
    info.inWidth,
    info.inChannels,
    info.outChannels,
    info.filterHeight,
    info.filterWidth,
    info.strideHeight,
    info.strideWidth,
    info.padInfo.top,
    info.padInfo.left,
    info.outHeight,
    info.outWidth,
  ];
}

const allFloat = (...ts: TensorInfo[]): boolean => ts.every((t) => t.dtype === 'float32');

/** Conv2D, and FusedConv2D with a per-channel bias and no activation (the bias seeds the GEMM). */
function conv2d(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as { x: TensorInfo; filter: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
    const act = (args.attrs as { activation?: string }).activation;
    const fusedOk = (act === undefined || act === 'linear') && !preluActivationWeights && (!bias || (bias.dtype === 'float32' && bias.shape.reduce((p, q) => p * q, 1) === filter.shape[3]));
    const g = fusedOk && allFloat(x, filter) ? convGeom(x.shape, filter.shape, args.attrs as unknown as ConvAttrs) : null;
    if (!g) return fallback(args);
    const backend = args.backend as unknown as WasmHeapBackend;
    const y = backend.makeOutput([g[0], g[11], g[12], g[4]], 'float32');
    addon.conv2d(backend.wasm.HEAPU8, argsOf([offsetOf(backend, x), offsetOf(backend, filter), offsetOf(backend, y), bias ? offsetOf(backend, bias) : -1, ...g]));
    return y;
  };
}

function backpropFilter(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const a = args.attrs as unknown as ConvAttrs & { filterShape: number[] };
    const g = allFloat(x, dy) ? convGeom(x.shape, a.filterShape, a) : null;
    if (!g) return fallback(args);
    const backend = args.backend as unknown as WasmHeapBackend;
    const dw = backend.makeOutput([...a.filterShape], 'float32');
    addon.conv2dBackpropFilter(backend.wasm.HEAPU8, argsOf([offsetOf(backend, x), offsetOf(backend, dy), offsetOf(backend, dw), ...g]));
    return dw;
  };
}

function backpropInput(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const a = args.attrs as unknown as ConvAttrs & { inputShape: number[] };
    const g = allFloat(dy, filter) ? convGeom(a.inputShape, filter.shape, a) : null;
    if (!g) return fallback(args);
    const backend = args.backend as unknown as WasmHeapBackend;
    const dx = backend.makeOutput([...a.inputShape], 'float32');
    addon.conv2dBackpropInput(backend.wasm.HEAPU8, argsOf([offsetOf(backend, dy), offsetOf(backend, filter), offsetOf(backend, dx), ...g]));
    return dx;
  };
}

/**
 * (..., M, K) x (..., K, N) with equal batch dimensions, or one side without any; and
 * _FusedMatMul with a bias of N values and no activation.
 */
function batchMatMul(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
    const { transposeA, transposeB, activation } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean; activation?: string };
    if (!allFloat(a, b) || a.shape.length < 2 || b.shape.length < 2) return fallback(args);
    if ((activation !== undefined && activation !== 'linear') || preluActivationWeights) return fallback(args);
    const ra = a.shape.length;
    const rb = b.shape.length;
    const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const K2 = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
    const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
    const outerA = a.shape.slice(0, -2);
    const outerB = b.shape.slice(0, -2);
    const batchA = prod(outerA);
    const batchB = prod(outerB);
    const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
    if (K !== K2 || M === 0 || N === 0 || K === 0 || !(sameOuter || batchA === 1 || batchB === 1)) return fallback(args);
    if (bias && (bias.dtype !== 'float32' || prod(bias.shape) !== N)) return fallback(args);
    const outer = batchA >= batchB ? outerA : outerB;
    const batch = Math.max(batchA, batchB);
    const backend = args.backend as unknown as WasmHeapBackend;
    const c = backend.makeOutput([...outer, M, N], 'float32');
    addon.batchMatMul(
      backend.wasm.HEAPU8,
      argsOf([offsetOf(backend, a), offsetOf(backend, b), offsetOf(backend, c), bias ? offsetOf(backend, bias) : -1, batch, M, N, K, transposeA ? 1 : 0, transposeB ? 1 : 0, batchA === 1 ? 0 : M * K, batchB === 1 ? 0 : K * N]),
    );
    return c;
  };
}

/** Sum over leading or trailing axes (bias gradients, losses); other reductions fall back. */
function sum(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    if (x.dtype !== 'float32' || x.shape.length === 0) return fallback(args);
    const r = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((p, q) => p - q);
    if (axes.length === 0) return fallback(args);
    const leading = axes.every((ax, i) => ax === i);
    const trailing = axes.every((ax, i) => ax === r - axes.length + i);
    if (!leading && !trailing) return fallback(args);
    const reduced = prod(axes.map((ax) => x.shape[ax]));
    const kept = prod(x.shape) / reduced;
    if (reduced === 0 || kept === 0) return fallback(args);
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const backend = args.backend as unknown as WasmHeapBackend;
    const out = backend.makeOutput(outShape, 'float32');
    const [rows, cols] = leading ? [reduced, kept] : [kept, reduced];
    addon.sum(backend.wasm.HEAPU8, argsOf([offsetOf(backend, x), offsetOf(backend, out), rows, cols, leading ? 1 : 0]));
    return out;
  };
}

function filmForward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { h, e } = args.inputs as { h: TensorInfo; e: TensorInfo };
    const { withScale } = args.attrs as unknown as { withScale: boolean };
    const backend = args.backend as unknown as WasmHeapBackend;
    const y = backend.makeOutput(h.shape, 'float32');
    const [B, L, C] = h.shape;
    addon.film(backend.wasm.HEAPU8, argsOf([offsetOf(backend, h), offsetOf(backend, e), offsetOf(backend, y), B, L, C, withScale ? 1 : 0]));
    return y;
  };
}

function filmBackward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { dy, h, e } = args.inputs as { dy: TensorInfo; h: TensorInfo; e: TensorInfo };
    const { withScale } = args.attrs as unknown as { withScale: boolean };
    const backend = args.backend as unknown as WasmHeapBackend;
    const dh = backend.makeOutput(h.shape, 'float32');
    const de = backend.makeOutput(e.shape, 'float32');
    const [B, L, C] = h.shape;
    const o = (t: TensorInfo) => offsetOf(backend, t);
    addon.filmGrad(backend.wasm.HEAPU8, argsOf([o(dy), o(h), o(e), o(dh), o(de), B, L, C, withScale ? 1 : 0]));
    return [dh, de];
  };
}

export const GROUP_NORM_ACTS = { none: 0, mish: 1, relu: 2 } as const;
export type GroupNormAct = keyof typeof GROUP_NORM_ACTS;

interface GroupNormAttrs {
  groups: number;
  eps: number;
  act?: GroupNormAct;
}

function normDims(x: TensorInfo): [number, number, number] {
  const C = x.shape[x.shape.length - 1];
  const B = x.shape[0];
  return [B, prod(x.shape) / (B * C), C];
}

function groupNormForward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { x, gamma, beta } = args.inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo };
    const { groups, eps, act } = args.attrs as unknown as GroupNormAttrs;
    const backend = args.backend as unknown as WasmHeapBackend;
    const [B, N, C] = normDims(x);
    const y = backend.makeOutput(x.shape, 'float32');
    const stats = backend.makeOutput([B, groups, 2], 'float32');
    const o = (t: TensorInfo) => offsetOf(backend, t);
    addon.groupNorm(backend.wasm.HEAPU8, argsOf([o(x), o(gamma), o(beta), o(y), o(stats), B, N, C, groups, eps, GROUP_NORM_ACTS[act ?? 'none']]));
    return [y, stats];
  };
}

function groupNormBackward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { dy, x, gamma, beta, stats } = args.inputs as { dy: TensorInfo; x: TensorInfo; gamma: TensorInfo; beta: TensorInfo; stats: TensorInfo };
    const { groups, act } = args.attrs as unknown as GroupNormAttrs;
    const backend = args.backend as unknown as WasmHeapBackend;
    const [B, N, C] = normDims(x);
    const dx = backend.makeOutput(x.shape, 'float32');
    const dgamma = backend.makeOutput([C], 'float32');
    const dbeta = backend.makeOutput([C], 'float32');
    const o = (t: TensorInfo) => offsetOf(backend, t);
    addon.groupNormGrad(backend.wasm.HEAPU8, argsOf([o(dy), o(x), o(gamma), o(beta), o(stats), o(dx), o(dgamma), o(dbeta), B, N, C, groups, GROUP_NORM_ACTS[act ?? 'none']]));
    return [dx, dgamma, dbeta];
  };
}

function mishForward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const backend = args.backend as unknown as WasmHeapBackend;
    const y = backend.makeOutput(x.shape, 'float32');
    addon.activation(backend.wasm.HEAPU8, argsOf([offsetOf(backend, x), offsetOf(backend, y), prod(x.shape), GROUP_NORM_ACTS.mish, -1]));
    return y;
  };
}

function mishBackward(addon: NativeAddon): KernelFunc {
  return (args) => {
    const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
    const backend = args.backend as unknown as WasmHeapBackend;
    const dx = backend.makeOutput(x.shape, 'float32');
    addon.activation(backend.wasm.HEAPU8, argsOf([offsetOf(backend, x), offsetOf(backend, dx), prod(x.shape), GROUP_NORM_ACTS.mish, offsetOf(backend, dy)]));
    return dx;
  };
}

/** The wasm backend's MaxPoolGrad loops element by element; the encoder's first pool was a seventh of an image step. */
function maxPoolGrad(addon: NativeAddon, fallback: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
    const a = args.attrs as unknown as { filterSize: number | [number, number]; strides: number | [number, number]; pad: unknown; dimRoundingMode?: 'floor' | 'round' | 'ceil' };
    if (!allFloat(dy, input) || input.shape.length !== 4) return fallback(args);
    const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad as 'valid', a.dimRoundingMode);
    const backend = args.backend as unknown as WasmHeapBackend;
    const dx = backend.makeOutput([...input.shape], 'float32');
    addon.maxPoolGrad(
      backend.wasm.HEAPU8,
      argsOf([offsetOf(backend, input), offsetOf(backend, dy), offsetOf(backend, dx), info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left, info.outHeight, info.outWidth]),
    );
    return dx;
  };
}

export type NativeFallbacks = Record<'Conv2D' | 'FusedConv2D' | 'Conv2DBackpropFilter' | 'Conv2DBackpropInput' | 'BatchMatMul' | '_FusedMatMul' | 'Sum' | 'MaxPoolGrad', KernelFunc>;

/** The native implementations, each falling back to the kernel it replaces where needed. */
export function nativeKernels(addon: NativeAddon, fallbacks: NativeFallbacks): Record<string, KernelFunc> {
  return {
    Conv2D: conv2d(addon, fallbacks.Conv2D),
    FusedConv2D: conv2d(addon, fallbacks.FusedConv2D),
    Conv2DBackpropFilter: backpropFilter(addon, fallbacks.Conv2DBackpropFilter),
    Conv2DBackpropInput: backpropInput(addon, fallbacks.Conv2DBackpropInput),
    BatchMatMul: batchMatMul(addon, fallbacks.BatchMatMul),
    _FusedMatMul: batchMatMul(addon, fallbacks._FusedMatMul),
    Sum: sum(addon, fallbacks.Sum),
    MaxPoolGrad: maxPoolGrad(addon, fallbacks.MaxPoolGrad),
    OnedpGroupNorm: groupNormForward(addon),
    OnedpGroupNormGrad: groupNormBackward(addon),
    OnedpFilm: filmForward(addon),
    OnedpFilmGrad: filmBackward(addon),
    OnedpMish: mishForward(addon),
    OnedpMishGrad: mishBackward(addon),
  };
}

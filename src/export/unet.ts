/**
 * ConditionalUnet1D as ONNX nodes, from its PyTorch-layout state dict. The graph works in
 * PyTorch's (B, C, L) layout so the state dict's weights go in unchanged; callers transpose at the
 * boundary. Every op is in opset 17: Mish is x tanh(softplus(x)) and GroupNorm is an
 * InstanceNormalization over (B, groups, C/groups * L) followed by the per-channel affine.
 */
import type { UnetConfig } from '../nn/unet1d.js';
import type { SafeTensor } from '../io/safetensors.js';
import { toFloat32 } from '../io/safetensors.js';
import type { OnnxGraph } from './graph.js';
import { quantizeRows, type QuantBits } from './quantize.js';

/** Weight-only quantisation of the large Linear and Conv1d layers (MatMulNBits). */
export interface QuantOptions {
  bits: QuantBits;
  /** Values per scale along the input dimension (32). */
  blockSize: number;
  /** Layers with fewer weights than this stay float32 (they cost little to read). */
  minElements: number;
}

/** Looks up PyTorch-layout weights by name, with a clear error for a missing one. */
export class WeightSource {
  constructor(
    private readonly tensors: Map<string, SafeTensor>,
    private readonly source: string,
    readonly quant: QuantOptions | null = null,
  ) {}

  /** Whether `name` is large enough to quantise under this source's options. */
  quantizes(name: string): boolean {
    const t = this.tensors.get(name);
    return !!this.quant && !!t && t.shape.reduce((a, b) => a * b, 1) >= this.quant.minElements;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): { data: Float32Array; shape: number[] } {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.source}: no tensor "${name}" to export`);
    return { data: toFloat32(t), shape: t.shape };
  }

  /** The tensor as a graph initializer. */
  init(g: OnnxGraph, name: string, shape?: number[]): string {
    const t = this.get(name);
    return g.float(name.replace(/[^A-Za-z0-9_]/g, '_'), t.data, shape ?? t.shape);
  }
}

export function mish(g: OnnxGraph, x: string): string {
  return g.op('Mul', [x, g.op('Tanh', [g.op('Softplus', [x])])]);
}

/** x (..., K) times the quantised (N, K) weight `name`, transposed: (..., N). */
function matmulQuantized(g: OnnxGraph, w: WeightSource, name: string, x: string): string {
  const { data, shape } = w.get(name);
  const n = shape[0];
  const k = data.length / n;
  const { bits, blockSize } = w.quant!;
  const q = quantizeRows(data, n, k, bits, blockSize);
  const tag = name.replace(/[^A-Za-z0-9_]/g, '_');
  return g.op('MatMulNBits', [x, g.uint8(`${tag}_q`, q.packed, [n, q.kBlocks, q.blob]), g.float(`${tag}_scales`, q.scales, [n * q.kBlocks])], { K: k, N: n, bits, block_size: blockSize, accuracy_level: 4 }, 1, 'com.microsoft');
}

/** Linear with PyTorch's (out, in) weight: y = x W^T + b. */
export function linear(g: OnnxGraph, w: WeightSource, prefix: string, x: string): string {
  if (w.quantizes(`${prefix}.weight`)) return g.op('Add', [matmulQuantized(g, w, `${prefix}.weight`, x), w.init(g, `${prefix}.bias`)]);
  return g.op('Gemm', [x, w.init(g, `${prefix}.weight`), w.init(g, `${prefix}.bias`)], { transB: 1 });
}

function conv1d(g: OnnxGraph, w: WeightSource, prefix: string, x: string, stride = 1, padding = 0): string {
  const k = w.get(`${prefix}.weight`).shape[2];
  if (w.quantizes(`${prefix}.weight`)) return conv1dQuantized(g, w, prefix, x, k, stride, padding);
  return g.op('Conv', [x, w.init(g, `${prefix}.weight`), w.init(g, `${prefix}.bias`)], { kernel_shape: [k], strides: [stride], pads: [padding, padding] });
}

/**
 * Conv1d as im2col and a quantised MatMul: the k shifted (strided) views of the padded input,
 * stacked as (B, C, k, L_out) and laid out as (B, L_out, C*k), match the rows of the (out, C, k)
 * weight; then x W^T + b, back to (B, out, L_out).
 */
function conv1dQuantized(g: OnnxGraph, w: WeightSource, prefix: string, x: string, k: number, stride: number, padding: number): string {
  const padded = padding ? g.op('Pad', [x, g.int64('pads', [0, 0, padding, 0, 0, padding])]) : x;
  const len = g.op('Slice', [g.op('Shape', [padded]), g.int64('start', [2]), g.int64('end', [3])]);
  const views: string[] = [];
  for (let j = 0; j < k; j++) {
    // Positions j, j + stride, ... while a whole kernel still fits: end = len - (k - 1 - j).
    const end = g.op('Sub', [len, g.int64('tail', [k - 1 - j])]);
    const v = g.op('Slice', [padded, g.int64('start', [j]), end, g.int64('axes', [2]), g.int64('steps', [stride])]);
    views.push(g.op('Unsqueeze', [v, g.int64('axes', [2])]));
  }
  const stacked = k > 1 ? g.op('Concat', views, { axis: 2 }) : views[0];
  const cols = g.op('Reshape', [g.op('Transpose', [stacked], { perm: [0, 3, 1, 2] }), g.int64('im2col', [0, 0, -1])]);
  const y = g.op('Add', [matmulQuantized(g, w, `${prefix}.weight`, cols), w.init(g, `${prefix}.bias`)]);
  return g.op('Transpose', [y], { perm: [0, 2, 1] });
}

/** GroupNorm (eps 1e-5) on (B, C, L), or on (B, C, H, W) with `spatial` 2. */
export function groupNorm(g: OnnxGraph, w: WeightSource, prefix: string, x: string, groups: number, eps = 1e-5, spatial = 1): string {
  const gamma = w.get(`${prefix}.weight`);
  const c = gamma.shape[0];
  const perChannel = [c, ...new Array<number>(spatial).fill(1)];
  const grouped = g.op('Reshape', [x, g.int64('gn_shape', [0, groups, -1])]);
  const normed = g.op('InstanceNormalization', [grouped, g.float('gn_one', new Array(groups).fill(1), [groups]), g.float('gn_zero', new Array(groups).fill(0), [groups])], { epsilon: { f: eps } });
  const back = g.op('Reshape', [normed, g.op('Shape', [x])]);
  const scaled = g.op('Mul', [back, g.float(`${prefix}_w`, gamma.data, perChannel)]);
  return g.op('Add', [scaled, g.float(`${prefix}_b`, w.get(`${prefix}.bias`).data, perChannel)]);
}

function convBlock(g: OnnxGraph, w: WeightSource, prefix: string, x: string, k: number, groups: number): string {
  return mish(g, groupNorm(g, w, `${prefix}.block.1`, conv1d(g, w, `${prefix}.block.0`, x, 1, Math.floor(k / 2)), groups));
}

function residualBlock(g: OnnxGraph, w: WeightSource, prefix: string, x: string, condAct: string, cfg: Required<UnetConfig>): string {
  const { kernelSize: k, nGroups } = cfg;
  let h = convBlock(g, w, `${prefix}.blocks.0`, x, k, nGroups);
  const e = linear(g, w, `${prefix}.cond_encoder.1`, condAct);
  const outC = w.get(`${prefix}.blocks.0.block.0.weight`).shape[0];
  // FiLM: e = [scale, shift] per channel, or the shift alone; broadcast over the sequence.
  if (cfg.condPredictScale) {
    const [scale, shift] = g.opN('Split', [e, g.int64('film_split', [outC, outC])], { axis: 1 }, 2);
    const axes = g.int64('film_axes', [2]);
    h = g.op('Add', [g.op('Mul', [h, g.op('Unsqueeze', [scale, axes])]), g.op('Unsqueeze', [shift, axes])]);
  } else {
    h = g.op('Add', [h, g.op('Unsqueeze', [e, g.int64('film_axes', [2])])]);
  }
  h = convBlock(g, w, `${prefix}.blocks.1`, h, k, nGroups);
  const skip = w.has(`${prefix}.residual_conv.weight`) ? conv1d(g, w, `${prefix}.residual_conv`, x) : x;
  return g.op('Add', [h, skip]);
}

/** SinusoidalPosEmb -> Linear -> Mish -> Linear of a (B,) float input. */
function stepEncoder(g: OnnxGraph, w: WeightSource, prefix: string, t: string, dim: number): string {
  const half = Math.floor(dim / 2);
  // The frequencies as layers.ts computes them (PyTorch's float32 rounding).
  const step = Math.fround(-Math.log(10000) / (half - 1));
  const freqs = Array.from({ length: half }, (_, i) => Math.exp(Math.fround(i * step)));
  const arg = g.op('Mul', [g.op('Unsqueeze', [t, g.int64('t_axes', [1])]), g.float('freqs', freqs, [1, half])]);
  const emb = g.op('Concat', [g.op('Sin', [arg]), g.op('Cos', [arg])], { axis: 1 });
  return linear(g, w, `${prefix}.3`, mish(g, linear(g, w, `${prefix}.1`, emb)));
}

/**
 * Emits the U-Net: `sample` (B, C, L), `timestep` (B,) float, `globalCond` (B, G), optional
 * `extraTimes` (B,) each; returns the output (B, C, L).
 */
export function emitUnet(g: OnnxGraph, w: WeightSource, cfg: Required<UnetConfig>, sample: string, timestep: string, globalCond: string, extraTimes: string[] = []): string {
  if (extraTimes.length !== cfg.extraTimeInputs) throw new Error(`export: the U-Net takes ${cfg.extraTimeInputs} extra time inputs, got ${extraTimes.length}`);
  const dsed = cfg.diffusionStepEmbedDim;
  let emb = stepEncoder(g, w, 'diffusion_step_encoder', timestep, dsed);
  extraTimes.forEach((e, i) => {
    emb = g.op('Add', [emb, stepEncoder(g, w, `extra_time_encoders.${i}`, e, dsed)]);
  });
  const cond = mish(g, g.op('Concat', [emb, globalCond], { axis: 1 }));
  let x = sample;
  const skips: string[] = [];
  cfg.downDims.forEach((_, i) => {
    x = residualBlock(g, w, `down_modules.${i}.0`, x, cond, cfg);
    x = residualBlock(g, w, `down_modules.${i}.1`, x, cond, cfg);
    skips.push(x);
    if (w.has(`down_modules.${i}.2.conv.weight`)) x = conv1d(g, w, `down_modules.${i}.2.conv`, x, 2, 1);
  });
  x = residualBlock(g, w, 'mid_modules.0', x, cond, cfg);
  x = residualBlock(g, w, 'mid_modules.1', x, cond, cfg);
  for (let i = 0; i < cfg.downDims.length - 1; i++) {
    x = g.op('Concat', [x, skips.pop()!], { axis: 1 });
    x = residualBlock(g, w, `up_modules.${i}.0`, x, cond, cfg);
    x = residualBlock(g, w, `up_modules.${i}.1`, x, cond, cfg);
    if (w.has(`up_modules.${i}.2.conv.weight`)) {
      const p = `up_modules.${i}.2.conv`;
      x = g.op('ConvTranspose', [x, w.init(g, `${p}.weight`), w.init(g, `${p}.bias`)], { kernel_shape: [4], strides: [2], pads: [1, 1] });
    }
  }
  x = convBlock(g, w, 'final_conv.0', x, cfg.kernelSize, cfg.nGroups);
  return conv1d(g, w, 'final_conv.1', x);
}

/**
 * Basic layers. Data is channels-last ((B, L, C) for sequences, (B, H, W, C) for images), the
 * layout tfjs' fast kernels want; weights are stored natively and converted to and from
 * PyTorch's layout by name when state dicts are loaded or saved.
 */
import { tf } from '../engine/index.js';
import { Module, Parameter, type BuildContext } from './module.js';
import { groupNorm, type GroupNormAct } from '../engine/group_norm.js';

/** PyTorch's default for Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias. */
function torchDefaultBound(fanIn: number): number {
  return fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
}

export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    ctx: BuildContext,
    opts: { bias?: boolean } = {},
  ) {
    super();
    const bound = torchDefaultBound(inFeatures);
    // Native (in, out) so the forward is a plain GEMM; PyTorch stores (out, in).
    this.weight = this.param('weight', new Parameter([inFeatures, outFeatures], [1, 0], { kind: 'uniform', bound }, ctx));
    this.bias = opts.bias === false ? null : this.param('bias', new Parameter([outFeatures], null, { kind: 'uniform', bound }, ctx));
  }

  forward(x: tf.Tensor): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : x.reshape([-1, this.inFeatures]);
    // The fused product adds the bias in the same kernel (and its gradient is the same sum).
    const y = this.bias
      ? tf.fused.matMul({ a: x2 as tf.Tensor2D, b: this.weight.v as tf.Tensor2D, bias: this.bias.v })
      : tf.matMul(x2 as tf.Tensor2D, this.weight.v as tf.Tensor2D);
    return x.rank === 2 ? y : y.reshape([...lead, this.outFeatures]);
  }
}

export interface ConvOptions {
  stride?: number;
  padding?: number;
  bias?: boolean;
  /** Weight initialisation; default PyTorch's uniform(1/sqrt(fan_in)). */
  init?: 'torch' | 'kaiming_fan_out';
}

export class Conv1d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number;
  readonly padding: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    ctx: BuildContext,
    opts: ConvOptions = {},
  ) {
    super();
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    const bound = torchDefaultBound(inChannels * kernelSize);
    // Native (k, in, out); PyTorch (out, in, k).
    this.weight = this.param('weight', new Parameter([kernelSize, inChannels, outChannels], [2, 1, 0], { kind: 'uniform', bound }, ctx));
    this.bias = opts.bias === false ? null : this.param('bias', new Parameter([outChannels], null, { kind: 'uniform', bound }, ctx));
  }

  /** x: (B, L, C_in) -> (B, L_out, C_out). */
  forward(x: tf.Tensor): tf.Tensor {
    const [b, l] = x.shape;
    const x4 = x.reshape([b, 1, l, this.inChannels]) as tf.Tensor4D;
    const w4 = this.weight.v.reshape([1, this.kernelSize, this.inChannels, this.outChannels]) as tf.Tensor4D;
    const p = this.padding;
    const pad: tf.backend_util.ExplicitPadding = [[0, 0], [0, 0], [p, p], [0, 0]];
    const y = this.bias ? tf.fused.conv2d({ x: x4, filter: w4, strides: [1, this.stride], pad, bias: this.bias.v }) : tf.conv2d(x4, w4, [1, this.stride], pad);
    return y.reshape([b, y.shape[2]!, this.outChannels]);
  }
}

/** PyTorch ConvTranspose1d with `output_padding = 0`: the adjoint of Conv1d with the same padding. */
export class ConvTranspose1d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number;
  readonly padding: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    ctx: BuildContext,
    opts: ConvOptions = {},
  ) {
    super();
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    // PyTorch computes fan_in from weight.size(1) = out_channels for transposed convs.
    const bound = torchDefaultBound(outChannels * kernelSize);
    // Native (k, out, in) as tf.conv2dTranspose wants; PyTorch (in, out, k).
    this.weight = this.param('weight', new Parameter([kernelSize, outChannels, inChannels], [2, 1, 0], { kind: 'uniform', bound }, ctx));
    this.bias = opts.bias === false ? null : this.param('bias', new Parameter([outChannels], null, { kind: 'uniform', bound }, ctx));
  }

  forward(x: tf.Tensor): tf.Tensor {
    const [b, l] = x.shape;
    const lOut = (l! - 1) * this.stride - 2 * this.padding + this.kernelSize;
    const x4 = x.reshape([b, 1, l, this.inChannels]) as tf.Tensor4D;
    const w4 = this.weight.v.reshape([1, this.kernelSize, this.outChannels, this.inChannels]) as tf.Tensor4D;
    const p = this.padding;
    const pad = [[0, 0], [0, 0], [p, p], [0, 0]] as unknown as number;
    let y: tf.Tensor = tf.conv2dTranspose(x4, w4, [b!, 1, lOut, this.outChannels], [1, this.stride], pad);
    if (this.bias) y = y.add(this.bias.v);
    return y.reshape([b, lOut, this.outChannels]);
  }
}

export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  readonly stride: number;
  readonly padding: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    ctx: BuildContext,
    opts: ConvOptions = {},
  ) {
    super();
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    const k = kernelSize;
    const fanIn = inChannels * k * k;
    const winit =
      opts.init === 'kaiming_fan_out'
        ? { kind: 'normal' as const, std: Math.sqrt(2 / (outChannels * k * k)) }
        : { kind: 'uniform' as const, bound: torchDefaultBound(fanIn) };
    // Native (kh, kw, in, out); PyTorch (out, in, kh, kw).
    this.weight = this.param('weight', new Parameter([k, k, inChannels, outChannels], [3, 2, 0, 1], winit, ctx));
    this.bias = opts.bias === false ? null : this.param('bias', new Parameter([outChannels], null, { kind: 'uniform', bound: torchDefaultBound(fanIn) }, ctx));
  }

  /** x: (B, H, W, C_in) -> (B, H_out, W_out, C_out). */
  forward(x: tf.Tensor): tf.Tensor {
    const p = this.padding;
    const pad: tf.backend_util.ExplicitPadding = [[0, 0], [p, p], [p, p], [0, 0]];
    const x4 = x as tf.Tensor4D;
    const w4 = this.weight.v as tf.Tensor4D;
    return this.bias ? tf.fused.conv2d({ x: x4, filter: w4, strides: this.stride, pad, bias: this.bias.v }) : tf.conv2d(x4, w4, this.stride, pad);
  }
}

/** GroupNorm over the channel (last) axis, eps 1e-5, affine, as PyTorch's. */
export class GroupNorm extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    ctx: BuildContext,
    readonly eps = 1e-5,
  ) {
    super();
    if (numChannels % numGroups !== 0) throw new Error(`GroupNorm: ${numChannels} channels do not split into ${numGroups} groups`);
    this.weight = this.param('weight', new Parameter([numChannels], null, { kind: 'constant', value: 1 }, ctx));
    this.bias = this.param('bias', new Parameter([numChannels], null, { kind: 'constant', value: 0 }, ctx));
  }

  /** With `act`, the activation that follows is applied (and differentiated) by the same kernel. */
  forward(x: tf.Tensor, act: GroupNormAct = 'none'): tf.Tensor {
    return groupNorm(x, this.weight.v, this.bias.v, this.numGroups, this.eps, act);
  }
}

export { mish } from '../engine/activations.js';

/**
 * Sinusoidal embedding of a (B,) timestep or noise level into (B, dim):
 * f_i = exp(-i ln(10000) / (half - 1)), emb = [sin(t f), cos(t f)].
 * Frequencies are rounded as PyTorch computes them in float32.
 */
export function sinusoidalPosEmb(t: tf.Tensor, dim: number): tf.Tensor {
  const half = Math.floor(dim / 2);
  const step = Math.fround(-Math.log(10000) / (half - 1));
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) freqs[i] = Math.exp(Math.fround(i * step));
  const arg = t.reshape([-1, 1]).toFloat().mul(tf.tensor2d(freqs, [1, half]));
  return tf.concat([tf.sin(arg), tf.cos(arg)], 1);
}

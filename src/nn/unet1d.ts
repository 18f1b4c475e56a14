/**
 * ConditionalUnet1D, the temporal conv U-Net denoiser of Diffusion Policy
 * (spec onedp.md section 2), with the reference's module and parameter names.
 */
import { tf } from '../engine/index.js';
import { Module, ModuleList, type BuildContext, buildContext } from './module.js';
import { Conv1d, ConvTranspose1d, GroupNorm, Linear, mish, sinusoidalPosEmb } from './layers.js';
import { Rng } from '../util/rng.js';
import { film } from '../engine/film.js';

export interface UnetConfig {
  /** Action dimension (channels of the sample). */
  inputDim: number;
  /** Size of the observation conditioning vector (To * obs feature dim). */
  globalCondDim: number;
  /** Size of the timestep embedding. */
  diffusionStepEmbedDim: number;
  downDims: number[];
  kernelSize: number;
  nGroups: number;
  /** FiLM with scale and bias (true) or bias only (false). */
  condPredictScale: boolean;
  /**
   * Extra scalar conditioning inputs, each embedded like the timestep and added to the step
   * embedding; used by Consistency Policy for its stop time. Their last linear layer starts at
   * zero so a warm-started network is unchanged. Default 0.
   */
  extraTimeInputs?: number;
  /**
   * Dropout rate inside every residual block (Consistency Policy uses 0.2), applied only in
   * training mode. Default 0: no dropout and no random draws.
   */
  dropout?: number;
}

export const UNET_DEFAULTS: Omit<UnetConfig, 'inputDim' | 'globalCondDim'> = {
  diffusionStepEmbedDim: 128,
  downDims: [64, 128, 256],
  kernelSize: 5,
  nGroups: 8,
  condPredictScale: true,
};

/** The published PushT-state U-Net (65,783,298 parameters). */
export const PUSHT_STATE_UNET: UnetConfig = {
  inputDim: 2,
  globalCondDim: 40,
  diffusionStepEmbedDim: 256,
  downDims: [256, 512, 1024],
  kernelSize: 5,
  nGroups: 8,
  condPredictScale: true,
};

/** The published PushT-image U-Net (251,511,938 parameters). */
export const PUSHT_IMAGE_UNET: UnetConfig = {
  ...PUSHT_STATE_UNET,
  globalCondDim: 132,
  diffusionStepEmbedDim: 128,
  downDims: [512, 1024, 2048],
};

/** Conv1d -> GroupNorm -> Mish, as `blocks.N.block.{0,1}`. */
export class Conv1dBlock extends Module {
  private readonly block: ModuleList;
  private readonly conv: Conv1d;
  private readonly norm: GroupNorm;

  constructor(inC: number, outC: number, k: number, nGroups: number, ctx: BuildContext) {
    super();
    this.block = this.child('block', new ModuleList());
    this.conv = new Conv1d(inC, outC, k, ctx, { padding: Math.floor(k / 2) });
    this.norm = new GroupNorm(nGroups, outC, ctx);
    this.block.add(this.conv).add(this.norm);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.norm.forward(this.conv.forward(x), 'mish');
  }
}

/**
 * Inverted dropout whose masks come from onedp's seeded RNG rather than the backend's, so a
 * training run is reproducible on every backend. Shared by all blocks of one network.
 */
export class DropoutSource {
  constructor(
    readonly rate: number,
    public rng: Rng,
  ) {
    if (!(rate >= 0 && rate < 1)) throw new Error(`dropout rate must be in [0, 1), got ${rate}`);
  }

  apply(x: tf.Tensor): tf.Tensor {
    const keep = 1 - this.rate;
    const u = this.rng.fillUniform(new Float32Array(x.size), 0, 1);
    const mask = u.map((v) => (v < keep ? 1 / keep : 0));
    return x.mul(tf.tensor(mask, x.shape));
  }
}

export class ConditionalResidualBlock1D extends Module {
  private readonly blocks: ModuleList<Conv1dBlock>;
  private readonly condLinear: Linear;
  private readonly residualConv: Conv1d | null;

  constructor(
    inC: number,
    readonly outC: number,
    condDim: number,
    k: number,
    nGroups: number,
    readonly predictScale: boolean,
    ctx: BuildContext,
    private readonly dropout: DropoutSource | null = null,
  ) {
    super();
    this.blocks = this.child('blocks', new ModuleList<Conv1dBlock>());
    this.blocks.add(new Conv1dBlock(inC, outC, k, nGroups, ctx)).add(new Conv1dBlock(outC, outC, k, nGroups, ctx));
    // cond_encoder = Sequential(Mish, Linear, Rearrange): only index 1 has parameters.
    const enc = this.child('cond_encoder', new ModuleList<Linear>());
    this.condLinear = new Linear(condDim, predictScale ? 2 * outC : outC, ctx);
    enc.add(null).add(this.condLinear);
    this.residualConv = inC !== outC ? this.child('residual_conv', new Conv1d(inC, outC, 1, ctx)) : null;
  }

  /**
   * x (B, L, in), condAct (B, condDim) -> (B, L, out). `condAct` is Mish(cond): the reference's
   * cond_encoder is Mish -> Linear in every block, and the Mish, the same in all of them, is
   * computed once by the U-Net.
   */
  forward(x: tf.Tensor, condAct: tf.Tensor): tf.Tensor {
    const drop = this.training && this.dropout && this.dropout.rate > 0 ? this.dropout : null;
    // Where the Consistency Policy reference drops: after the first conv block and on the output.
    let h = this.blocks.at(0).forward(x);
    if (drop) h = drop.apply(h);
    // FiLM: e holds (scale, bias) per channel, or only the bias.
    h = film(h, this.condLinear.forward(condAct), this.predictScale);
    h = this.blocks.at(1).forward(h);
    const out = h.add(this.residualConv ? this.residualConv.forward(x) : x);
    return drop ? drop.apply(out) : out;
  }
}

class Downsample1d extends Module {
  private readonly conv: Conv1d;
  constructor(dim: number, ctx: BuildContext) {
    super();
    this.conv = this.child('conv', new Conv1d(dim, dim, 3, ctx, { stride: 2, padding: 1 }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.conv.forward(x);
  }
}

class Upsample1d extends Module {
  private readonly conv: ConvTranspose1d;
  constructor(dim: number, ctx: BuildContext) {
    super();
    this.conv = this.child('conv', new ConvTranspose1d(dim, dim, 4, ctx, { stride: 2, padding: 1 }));
  }
  forward(x: tf.Tensor): tf.Tensor {
    return this.conv.forward(x);
  }
}

/** One resolution level: [resnet, resnet, down/upsample or nothing]. */
class Level extends ModuleList<Module> {
  constructor(
    readonly res1: ConditionalResidualBlock1D,
    readonly res2: ConditionalResidualBlock1D,
    readonly resample: Downsample1d | Upsample1d | null,
  ) {
    super();
    this.add(res1).add(res2).add(resample);
  }
}

/** Timestep (or noise level) embedding: SinusoidalPosEmb -> Linear -> Mish -> Linear. */
class StepEncoder extends ModuleList<Linear> {
  private readonly l1: Linear;
  private readonly l2: Linear;
  constructor(
    readonly dim: number,
    ctx: BuildContext,
    zeroLast = false,
  ) {
    super();
    this.l1 = new Linear(dim, dim * 4, ctx);
    this.l2 = new Linear(dim * 4, dim, ctx);
    if (zeroLast && !ctx.meta) {
      this.l2.weight.assign(tf.zerosLike(this.l2.weight.v));
      this.l2.bias!.assign(tf.zerosLike(this.l2.bias!.v));
    }
    this.add(null).add(this.l1).add(null).add(this.l2);
  }
  forward(t: tf.Tensor): tf.Tensor {
    return this.l2.forward(mish(this.l1.forward(sinusoidalPosEmb(t, this.dim))));
  }
}

export class ConditionalUnet1D extends Module {
  readonly config: Required<UnetConfig>;
  private readonly stepEncoder: StepEncoder;
  private readonly extraEncoders: StepEncoder[] = [];
  private readonly down: Level[] = [];
  private readonly mid: ConditionalResidualBlock1D[] = [];
  private readonly up: Level[] = [];
  private readonly finalBlock: Conv1dBlock;
  private readonly finalConv: Conv1d;
  /** The dropout masks' source (null without dropout); its `rng` may be reseeded. */
  readonly dropout: DropoutSource | null;

  constructor(config: UnetConfig, ctx: BuildContext = buildContext()) {
    super();
    this.config = { extraTimeInputs: 0, dropout: 0, ...config };
    const { inputDim, globalCondDim, diffusionStepEmbedDim: dsed, downDims, kernelSize: k, nGroups: g, condPredictScale: fs } = this.config;
    if (downDims.length < 1) throw new Error('ConditionalUnet1D: downDims must not be empty');
    // Its own stream, not drawn from ctx.rng, so adding dropout leaves the initial weights unchanged.
    this.dropout = this.config.dropout > 0 ? new DropoutSource(this.config.dropout, new Rng(0x5eed)) : null;
    const drop = this.dropout;
    const condDim = dsed + globalCondDim;
    const allDims = [inputDim, ...downDims];
    const inOut = downDims.map((d, i) => [allDims[i], d] as const);

    // Registration order matches the reference's __init__, so named parameters come out in the
    // same order as a PyTorch state dict.
    const midList = new ModuleList<ConditionalResidualBlock1D>();
    const dTop = downDims[downDims.length - 1];
    for (let i = 0; i < 2; i++) {
      const m = new ConditionalResidualBlock1D(dTop, dTop, condDim, k, g, fs, ctx, drop);
      this.mid.push(m);
      midList.add(m);
    }
    this.child('mid_modules', midList);
    this.stepEncoder = this.child('diffusion_step_encoder', new StepEncoder(dsed, ctx));
    for (let e = 0; e < this.config.extraTimeInputs; e++) {
      this.extraEncoders.push(this.child(`extra_time_encoders.${e}`, new StepEncoder(dsed, ctx, true)));
    }

    const upList = new ModuleList<Level>();
    const upPairs = inOut.slice(1).reverse();
    upPairs.forEach(([dimIn, dimOut], ind) => {
      const isLast = ind >= inOut.length - 1;
      const level = new Level(
        new ConditionalResidualBlock1D(dimOut * 2, dimIn, condDim, k, g, fs, ctx, drop),
        new ConditionalResidualBlock1D(dimIn, dimIn, condDim, k, g, fs, ctx, drop),
        isLast ? null : new Upsample1d(dimIn, ctx),
      );
      this.up.push(level);
      upList.add(level);
    });
    this.child('up_modules', upList);

    const downList = new ModuleList<Level>();
    inOut.forEach(([dimIn, dimOut], ind) => {
      const isLast = ind >= inOut.length - 1;
      const level = new Level(
        new ConditionalResidualBlock1D(dimIn, dimOut, condDim, k, g, fs, ctx, drop),
        new ConditionalResidualBlock1D(dimOut, dimOut, condDim, k, g, fs, ctx, drop),
        isLast ? null : new Downsample1d(dimOut, ctx),
      );
      this.down.push(level);
      downList.add(level);
    });
    this.child('down_modules', downList);

    const finalList = this.child('final_conv', new ModuleList<Module>());
    this.finalBlock = new Conv1dBlock(downDims[0], downDims[0], k, g, ctx);
    this.finalConv = new Conv1d(downDims[0], inputDim, 1, ctx);
    finalList.add(this.finalBlock).add(this.finalConv);
  }

  /** Required input length multiple: each downsampling halves the sequence. */
  get lengthMultiple(): number {
    return 2 ** (this.config.downDims.length - 1);
  }

  /**
   * @param sample (B, T, inputDim) noisy action chunk
   * @param timestep (B,) or scalar: DDPM step index or EDM noise input, as float
   * @param globalCond (B, globalCondDim) observation features
   * @param extraTimes optional (B,) tensors for `extraTimeInputs`
   * @returns (B, T, inputDim)
   */
  forward(sample: tf.Tensor, timestep: tf.Tensor | number, globalCond: tf.Tensor, extraTimes: tf.Tensor[] = []): tf.Tensor {
    const [b, t, c] = sample.shape;
    if (sample.rank !== 3 || c !== this.config.inputDim) {
      throw new Error(`ConditionalUnet1D: sample must be (B, T, ${this.config.inputDim}), got [${sample.shape}]`);
    }
    if (t! % this.lengthMultiple !== 0) throw new Error(`ConditionalUnet1D: horizon ${t} must be a multiple of ${this.lengthMultiple}`);
    if (globalCond.rank !== 2 || globalCond.shape[0] !== b || globalCond.shape[1] !== this.config.globalCondDim) {
      throw new Error(`ConditionalUnet1D: global_cond must be (${b}, ${this.config.globalCondDim}), got [${globalCond.shape}]`);
    }
    if (extraTimes.length !== this.config.extraTimeInputs) {
      throw new Error(`ConditionalUnet1D: expected ${this.config.extraTimeInputs} extra time inputs, got ${extraTimes.length}`);
    }
    const ts = typeof timestep === 'number' ? tf.fill([b!], timestep) : timestep.rank === 0 ? tf.fill([b!], timestep.dataSync()[0]) : timestep;
    let emb = this.stepEncoder.forward(ts);
    extraTimes.forEach((e, i) => {
      emb = emb.add(this.extraEncoders[i].forward(e));
    });
    const cond = mish(tf.concat([emb, globalCond], 1));

    let x = sample;
    const skips: tf.Tensor[] = [];
    for (const level of this.down) {
      x = level.res1.forward(x, cond);
      x = level.res2.forward(x, cond);
      skips.push(x);
      if (level.resample) x = (level.resample as Downsample1d).forward(x);
    }
    for (const m of this.mid) x = m.forward(x, cond);
    for (const level of this.up) {
      x = tf.concat([x, skips.pop()!], 2);
      x = level.res1.forward(x, cond);
      x = level.res2.forward(x, cond);
      if (level.resample) x = (level.resample as Upsample1d).forward(x);
    }
    x = this.finalBlock.forward(x);
    return this.finalConv.forward(x);
  }
}

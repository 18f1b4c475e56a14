/**
 * The Diffusion Policy image encoder (spec onedp.md section 3): a ResNet-18 trunk with every
 * BatchNorm replaced by GroupNorm(C/16, C), spatial-softmax keypoint pooling and a linear
 * projection. Images are NHWC in [-1, 1]; parameter names match the reference
 * (`backbone.0.weight`, `backbone.4.0.conv1.weight`, `pool.nets.weight`, `linear.weight`).
 */
import { tf } from '../engine/index.js';
import { Module, ModuleList, buildContext, type BuildContext } from './module.js';
import { Conv2d, GroupNorm, Linear } from './layers.js';

export interface ImageEncoderConfig {
  /** Square input size after cropping (84 for PushT). */
  imageSize: number;
  /** Spatial-softmax keypoints (32). */
  numKeypoints: number;
  /** Output feature size (64). */
  featureDim: number;
  inChannels?: number;
  /**
   * Channels of the four ResNet stages: [64, 128, 256, 512] is ResNet-18 (the spec). Narrower
   * trunks (e.g. [16, 32, 64, 128], 1/16 of the FLOPs) keep the architecture for CPU training.
   */
  widths?: number[];
}

export const IMAGE_ENCODER_DEFAULTS: Required<ImageEncoderConfig> = { imageSize: 84, numKeypoints: 32, featureDim: 64, inChannels: 3, widths: [64, 128, 256, 512] };

function gn(c: number, ctx: BuildContext): GroupNorm {
  return new GroupNorm(Math.floor(c / 16), c, ctx);
}

class BasicBlock extends Module {
  private readonly conv1: Conv2d;
  private readonly bn1: GroupNorm;
  private readonly conv2: Conv2d;
  private readonly bn2: GroupNorm;
  private readonly downConv: Conv2d | null = null;
  private readonly downNorm: GroupNorm | null = null;

  constructor(inC: number, outC: number, stride: number, ctx: BuildContext) {
    super();
    const init = 'kaiming_fan_out' as const;
    this.conv1 = this.child('conv1', new Conv2d(inC, outC, 3, ctx, { stride, padding: 1, bias: false, init }));
    this.bn1 = this.child('bn1', gn(outC, ctx));
    this.conv2 = this.child('conv2', new Conv2d(outC, outC, 3, ctx, { padding: 1, bias: false, init }));
    this.bn2 = this.child('bn2', gn(outC, ctx));
    if (stride !== 1 || inC !== outC) {
      const ds = this.child('downsample', new ModuleList<Module>());
      this.downConv = new Conv2d(inC, outC, 1, ctx, { stride, bias: false, init });
      this.downNorm = gn(outC, ctx);
      ds.add(this.downConv).add(this.downNorm);
    }
  }

  forward(x: tf.Tensor): tf.Tensor {
    let h = this.bn1.forward(this.conv1.forward(x), 'relu');
    h = this.bn2.forward(this.conv2.forward(h));
    const id = this.downConv ? this.downNorm!.forward(this.downConv.forward(x)) : x;
    return tf.relu(h.add(id));
  }
}

/** Keypoints: softmax over positions of each feature map, expected (x, y) on a [-1,1] grid. */
export class SpatialSoftmax extends Module {
  private readonly nets: Conv2d;
  private posX: tf.Tensor | null = null;
  private posY: tf.Tensor | null = null;

  constructor(
    inChannels: number,
    readonly numKeypoints: number,
    readonly h: number,
    readonly w: number,
    ctx: BuildContext,
  ) {
    super();
    this.nets = this.child('nets', new Conv2d(inChannels, numKeypoints, 1, ctx));
  }

  /** pos_x varies along width, pos_y along height, positions row-major over (h, w). */
  private grid(): [tf.Tensor, tf.Tensor] {
    if (!this.posX || !this.posY) {
      const n = this.h * this.w;
      const px = new Float32Array(n);
      const py = new Float32Array(n);
      const lin = (i: number, k: number) => (k === 1 ? -1 : -1 + (2 * i) / (k - 1));
      for (let i = 0; i < this.h; i++) for (let j = 0; j < this.w; j++) {
        px[i * this.w + j] = lin(j, this.w);
        py[i * this.w + j] = lin(i, this.h);
      }
      this.posX = tf.keep(tf.tensor(px, [1, n, 1]));
      this.posY = tf.keep(tf.tensor(py, [1, n, 1]));
    }
    return [this.posX, this.posY];
  }

  /** (B, H, W, C) -> (B, K*2) ordered [kp0.x, kp0.y, kp1.x, ...]. */
  forward(x: tf.Tensor): tf.Tensor {
    const [b, h, w] = x.shape;
    if (h !== this.h || w !== this.w) throw new Error(`SpatialSoftmax: expected a ${this.h}x${this.w} map, got ${h}x${w}`);
    const f = this.nets.forward(x).reshape([b, h! * w!, this.numKeypoints]);
    const att = tf.softmax(f.transpose([0, 2, 1])).transpose([0, 2, 1]); // softmax over positions
    const [px, py] = this.grid();
    const ex = att.mul(px).sum(1); // (B, K)
    const ey = att.mul(py).sum(1);
    return tf.stack([ex, ey], 2).reshape([b, this.numKeypoints * 2]);
  }

  override dispose(): void {
    super.dispose();
    this.posX?.dispose();
    this.posY?.dispose();
    this.posX = this.posY = null;
  }
}

/** Output size of the ResNet-18 trunk for a square input. */
export function resnetOutputSize(size: number): number {
  const conv = (n: number, k: number, s: number, p: number) => Math.floor((n + 2 * p - k) / s) + 1;
  let n = conv(size, 7, 2, 3); // conv1
  n = conv(n, 3, 2, 1); // maxpool
  for (let i = 0; i < 3; i++) n = conv(n, 3, 2, 1); // layer2..4
  return n;
}

export class ImageEncoder extends Module {
  readonly config: Required<ImageEncoderConfig>;
  private readonly conv1: Conv2d;
  private readonly bn1: GroupNorm;
  private readonly layers: BasicBlock[][] = [];
  private readonly pool: SpatialSoftmax;
  private readonly linear: Linear;

  constructor(config: Partial<ImageEncoderConfig> = {}, ctx: BuildContext = buildContext()) {
    super();
    this.config = { ...IMAGE_ENCODER_DEFAULTS, ...config };
    const { imageSize, numKeypoints, featureDim, inChannels, widths } = this.config;
    if (widths.length !== 4 || widths.some((c) => !Number.isInteger(c) || c < 16 || c % 16 !== 0)) {
      throw new Error(`ImageEncoder: widths must be 4 multiples of 16 (GroupNorm uses channels/16 groups), got [${widths}]`);
    }
    const backbone = this.child('backbone', new ModuleList<Module>());
    this.conv1 = new Conv2d(inChannels, widths[0], 7, ctx, { stride: 2, padding: 3, bias: false, init: 'kaiming_fan_out' });
    this.bn1 = gn(widths[0], ctx);
    backbone.add(this.conv1).add(this.bn1).add(null).add(null); // 2 relu, 3 maxpool
    let inC = widths[0];
    widths.forEach((c, li) => {
      const stride = li === 0 ? 1 : 2;
      const layer = new ModuleList<BasicBlock>();
      const blocks = [new BasicBlock(inC, c, stride, ctx), new BasicBlock(c, c, 1, ctx)];
      blocks.forEach((b) => layer.add(b));
      this.layers.push(blocks);
      backbone.add(layer);
      inC = c;
    });
    const s = resnetOutputSize(imageSize);
    this.pool = this.child('pool', new SpatialSoftmax(widths[3], numKeypoints, s, s, ctx));
    this.linear = this.child('linear', new Linear(numKeypoints * 2, featureDim, ctx));
  }

  /** images (B, H, W, C) in [-1, 1] -> (B, featureDim). */
  forward(images: tf.Tensor): tf.Tensor {
    const { imageSize, inChannels } = this.config;
    if (images.rank !== 4 || images.shape[1] !== imageSize || images.shape[2] !== imageSize || images.shape[3] !== inChannels) {
      throw new Error(`ImageEncoder: expected (B, ${imageSize}, ${imageSize}, ${inChannels}) images, got [${images.shape}]`);
    }
    let x = this.bn1.forward(this.conv1.forward(images), 'relu');
    x = tf.maxPool(x as tf.Tensor4D, 3, 2, 1);
    for (const layer of this.layers) for (const b of layer) x = b.forward(x);
    return this.linear.forward(this.pool.forward(x));
  }
}

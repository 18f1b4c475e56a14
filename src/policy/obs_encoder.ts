/**
 * Observation encoding shared by every policy: low-dimensional observations pass through as
 * they are; visuomotor policies add one ResNet image encoder per camera (spec onedp.md section
 * 3). Per history step the feature is `[camera features in camera order..., low-dim values]`,
 * and the To steps are concatenated time-major into the U-Net's global conditioning.
 *
 * `PolicyModel` is the trainable network of a policy: the denoiser plus, for image policies, its
 * encoders. Its parameter names are the U-Net's (unchanged for state policies, so their
 * checkpoints keep loading) and `obs_encoder.obs_nets.<camera>.*` for the encoders, as the
 * reference names them.
 */
import { tf } from '../engine/index.js';
import { Module, type BuildContext, type Parameter } from '../nn/module.js';
import { ImageEncoder, IMAGE_ENCODER_DEFAULTS } from '../nn/resnet.js';
import type { ConditionalUnet1D } from '../nn/unet1d.js';
import type { LinearNormalizer } from './normalizer.js';
import { centerCropOffset, cropAndNormalize, randomCropOffsets } from '../data/image.js';
import type { SequenceSampler } from '../data/sequence.js';
import type { Rng } from '../util/rng.js';
import type { VisionConfig } from './vision_config.js';

export { validateVisionConfig, type VisionConfig } from './vision_config.js';

/** ResNet-18's stage widths, the spec's encoder (11.2M parameters). */
export const RESNET18_WIDTHS = [64, 128, 256, 512];
/**
 * The CPU default: ResNet-18 at a quarter of the width (0.71M parameters, 1/16 of the FLOPs).
 * On 2 CPU cores the full trunk costs 65 ms to encode a 2-frame history and 12 s per training
 * step at batch 64; this one 10 ms and under 1 s.
 */
export const CPU_ENCODER_WIDTHS = [16, 32, 64, 128];

/** PushT's camera: 96x96 frames cropped to 84, the spec's keypoints and features, CPU widths. */
export function defaultVisionConfig(over: Partial<VisionConfig['encoder']> = {}): VisionConfig {
  return {
    cameras: ['image'],
    frameSize: 96,
    cropSize: 84,
    encoder: { numKeypoints: IMAGE_ENCODER_DEFAULTS.numKeypoints, featureDim: IMAGE_ENCODER_DEFAULTS.featureDim, widths: [...CPU_ENCODER_WIDTHS], ...over },
  };
}

/** What encoding needs from a policy configuration. */
export interface ObsShape {
  /** Low-dimensional values per step (PushT image: the 2-D agent position). */
  obsDim: number;
  nObsSteps: number;
  vision?: VisionConfig;
}

/** Feature size of one history step. */
export function obsFeatureDim(c: ObsShape): number {
  return (c.vision ? c.vision.cameras.length * c.vision.encoder.featureDim : 0) + c.obsDim;
}

/** Size of the U-Net's global conditioning: To steps of features. */
export function condDim(c: ObsShape): number {
  return c.nObsSteps * obsFeatureDim(c);
}

/**
 * A batch of observation histories as network inputs: `lowdim` (B, To, obsDim) normalised, and
 * per camera (B*To, crop, crop, 3) images in [-1, 1], step-major within each sample.
 */
export interface PolicyObs {
  batch: number;
  lowdim: tf.Tensor;
  images: Record<string, tf.Tensor>;
}

export function disposePolicyObs(o: PolicyObs): void {
  tf.dispose([o.lowdim, ...Object.values(o.images)]);
}

/** Named children without a parameter of their own, like `nn.ModuleDict`. */
class ModuleDict<M extends Module> extends Module {
  readonly items = new Map<string, M>();
  add(name: string, m: M): this {
    this.items.set(name, this.child(name, m));
    return this;
  }
}

/** The image encoders of a visuomotor policy, one per camera. */
export class ObsEncoder extends Module {
  private readonly nets: ModuleDict<ImageEncoder>;

  constructor(
    readonly vision: VisionConfig,
    ctx: BuildContext,
  ) {
    super();
    this.nets = this.child('obs_nets', new ModuleDict<ImageEncoder>());
    for (const cam of vision.cameras) this.nets.add(cam, new ImageEncoder({ imageSize: vision.cropSize, ...vision.encoder }, ctx));
  }

  encoder(camera: string): ImageEncoder {
    const e = this.nets.items.get(camera);
    if (!e) throw new Error(`no image encoder for camera "${camera}" (cameras: ${this.vision.cameras.join(', ')})`);
    return e;
  }

  /** (B, To * featureDim) conditioning. */
  encode(obs: PolicyObs): tf.Tensor {
    const [b, to] = obs.lowdim.shape;
    const parts = this.vision.cameras.map((cam) => {
      const img = obs.images[cam];
      if (!img) throw new Error(`observation lacks camera "${cam}"`);
      return this.encoder(cam).forward(img).reshape([b, to, -1]);
    });
    return tf.concat([...parts, obs.lowdim], 2).reshape([b, -1]);
  }
}

/** A policy's trainable network: the denoiser and, for image policies, the encoders. */
export class PolicyModel extends Module {
  constructor(
    readonly unet: ConditionalUnet1D,
    readonly obsEncoder: ObsEncoder | null,
  ) {
    super();
  }

  override *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    yield* this.unet.namedParameters(prefix);
    if (this.obsEncoder) yield* this.obsEncoder.namedParameters(`${prefix}obs_encoder.`);
  }

  override train(on = true): this {
    this.training = on;
    this.unet.train(on);
    this.obsEncoder?.train(on);
    return this;
  }

  /** Global conditioning (B, condDim) for an observation batch. */
  encode(obs: PolicyObs): tf.Tensor {
    if (this.obsEncoder) return this.obsEncoder.encode(obs);
    return obs.lowdim.reshape([obs.lowdim.shape[0], -1]);
  }

  override dispose(): void {
    this.unet.dispose();
    this.obsEncoder?.dispose();
  }
}

/** Raw observation histories: `obs` (B*To*obsDim) and per camera (B*To*size*size*3) values. */
export type RawObs = Record<string, Float32Array | Uint8Array>;

/**
 * Network inputs from raw histories: normalises `obs`, crops and scales each camera. `crop` is
 * 'center' (evaluation) or a generator for random crops (training). Errors name what is wrong.
 */
export function toPolicyObs(c: ObsShape, normalizer: LinearNormalizer, batch: number, data: RawObs, crop: 'center' | Rng, source = 'observation'): PolicyObs {
  const to = c.nObsSteps;
  const raw = data.obs;
  if (!raw || raw.length !== batch * to * c.obsDim) {
    throw new Error(`${source}: expected "obs" with ${batch} x ${to} x ${c.obsDim} values, got ${raw ? raw.length : 'none'}`);
  }
  const images: Record<string, tf.Tensor> = {};
  if (c.vision) {
    const { frameSize: size, cropSize } = c.vision;
    const n = batch * to;
    for (const cam of c.vision.cameras) {
      const frames = data[cam];
      if (!frames || frames.length !== n * size * size * 3) {
        throw new Error(`${source}: expected camera "${cam}" with ${batch} x ${to} frames of ${size}x${size}x3 values, got ${frames ? frames.length : 'none'}`);
      }
      const offsets = crop === 'center' ? new Array(n).fill(centerCropOffset(size, cropSize)) : randomCropOffsets(n, size, cropSize, crop);
      images[cam] = tf.tensor(cropAndNormalize(frames, n, size, 3, cropSize, offsets), [n, cropSize, cropSize, 3]);
    }
  }
  const lowdim = tf.tensor(normalizer.normalize('obs', raw instanceof Float32Array ? raw : Float32Array.from(raw)), [batch, to, c.obsDim]);
  return { batch, lowdim, images };
}

/** The observation histories (first To frames) of training windows `idx`, randomly cropped. */
export function trainingObs(c: ObsShape, normalizer: LinearNormalizer, sampler: SequenceSampler, idx: number[], cropRng: Rng, obsKey = 'obs'): PolicyObs {
  const data: RawObs = { obs: sampler.batch(obsKey, idx, c.nObsSteps) };
  for (const cam of c.vision?.cameras ?? []) data[cam] = sampler.frames(cam, idx, c.nObsSteps);
  return toPolicyObs(c, normalizer, idx.length, data, cropRng, 'training data');
}

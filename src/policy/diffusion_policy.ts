/**
 * Diffusion Policy (Chi et al. 2023): a ConditionalUnet1D denoises a chunk of `horizon` actions
 * conditioned on the last `nObsSteps` observations, low-dimensional or, with `vision`, camera
 * images encoded by per-camera ResNets that train with the U-Net (obs_encoder.ts).
 */
import { tf } from '../engine/index.js';
import { ConditionalUnet1D, type UnetConfig } from '../nn/unet1d.js';
import { buildContext, type BuildContext } from '../nn/module.js';
import { validateNoiseConfig, schedulerFromConfig, randn, type NoiseScheduler, type SchedulerConfig, type NetworkFn } from '../diffusion/index.js';
import { LinearNormalizer } from './normalizer.js';
import { Rng } from '../util/rng.js';
import { ChunkPolicy } from './chunk_policy.js';
import { POLICY_SIZE_LIMITS } from './types.js';
import type { NoiseSource } from '../diffusion/types.js';
import { ObsEncoder, PolicyModel, condDim, validateVisionConfig, type PolicyObs, type VisionConfig } from './obs_encoder.js';

export type UnetShape = Omit<UnetConfig, 'inputDim' | 'globalCondDim'>;

export interface DiffusionPolicyConfig {
  /** Low-dimensional observation values per step (with images: the agent position, 2). */
  obsDim: number;
  actionDim: number;
  /** Tp: length of the predicted action chunk. */
  horizon: number;
  /** To: observation history length. */
  nObsSteps: number;
  /** Ta: actions executed per prediction. */
  nActionSteps: number;
  unet: UnetShape;
  /** Training noise schedule (ddpm or edm); sampling can use any compatible sampler. */
  noise: SchedulerConfig;
  /** Camera observations (visuomotor policies); absent for state policies. */
  vision?: VisionConfig;
}

/** CPU-sized defaults: the published horizons with a U-Net of 64/128/256 channels. */
export function defaultPolicyConfig(obsDim: number, actionDim: number, over: Partial<DiffusionPolicyConfig> = {}): DiffusionPolicyConfig {
  return {
    obsDim,
    actionDim,
    horizon: 16,
    nObsSteps: 2,
    nActionSteps: 8,
    unet: { diffusionStepEmbedDim: 128, downDims: [64, 128, 256], kernelSize: 5, nGroups: 8, condPredictScale: true },
    noise: { kind: 'ddpm', numTrainTimesteps: 100, clipSample: true },
    ...over,
  };
}

export { POLICY_SIZE_LIMITS } from './types.js';

export function validatePolicyConfig(c: DiffusionPolicyConfig, source = 'policy config'): void {
  const posInt = (v: unknown, name: string) => {
    if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`${source}: ${name} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  posInt(c.obsDim, 'obsDim');
  posInt(c.actionDim, 'actionDim');
  posInt(c.horizon, 'horizon');
  posInt(c.nObsSteps, 'nObsSteps');
  posInt(c.nActionSteps, 'nActionSteps');
  if (c.nObsSteps - 1 + c.nActionSteps > c.horizon) {
    throw new Error(`${source}: nObsSteps - 1 + nActionSteps (${c.nObsSteps - 1 + c.nActionSteps}) exceeds the horizon ${c.horizon}`);
  }
  const L = POLICY_SIZE_LIMITS;
  if (c.horizon > L.horizon) throw new Error(`${source}: horizon ${c.horizon} is beyond the supported ${L.horizon} steps`);
  for (const [name, v, max] of [['obsDim', c.obsDim, L.obsDim], ['actionDim', c.actionDim, L.actionDim], ['nObsSteps', c.nObsSteps, L.nObsSteps]] as const) {
    if (v > max) throw new Error(`${source}: ${name} ${v} is beyond the supported ${max}`);
  }
  const u = c.unet as Partial<UnetShape> | undefined;
  if (!u || typeof u !== 'object') throw new Error(`${source}: missing unet`);
  if (!Array.isArray(u.downDims) || u.downDims.length < 1 || u.downDims.length > 6 || !u.downDims.every((d) => Number.isInteger(d) && d >= 1 && d <= 8192)) {
    throw new Error(`${source}: unet.downDims must list 1 to 6 channel counts in 1..8192, got ${JSON.stringify(u.downDims)}`);
  }
  if (!Number.isInteger(u.kernelSize) || u.kernelSize! < 1 || u.kernelSize! > 31 || u.kernelSize! % 2 === 0) throw new Error(`${source}: unet.kernelSize must be an odd integer in 1..31, got ${JSON.stringify(u.kernelSize)}`);
  if (!Number.isInteger(u.nGroups) || u.nGroups! < 1 || !u.downDims.every((d) => d % u.nGroups! === 0)) throw new Error(`${source}: unet.nGroups must divide every channel count ${JSON.stringify(u.downDims)}, got ${JSON.stringify(u.nGroups)}`);
  if (!Number.isInteger(u.diffusionStepEmbedDim) || u.diffusionStepEmbedDim! < 4 || u.diffusionStepEmbedDim! > 8192 || u.diffusionStepEmbedDim! % 2) {
    throw new Error(`${source}: unet.diffusionStepEmbedDim must be an even integer in 4..8192, got ${JSON.stringify(u.diffusionStepEmbedDim)}`);
  }
  if (typeof u.condPredictScale !== 'boolean') throw new Error(`${source}: unet.condPredictScale must be true or false, got ${JSON.stringify(u.condPredictScale)}`);
  validateNoiseConfig(c.noise, source);
  const mult = 2 ** (c.unet.downDims.length - 1);
  if (c.horizon % mult !== 0) throw new Error(`${source}: horizon ${c.horizon} must be a multiple of ${mult} for ${c.unet.downDims.length} U-Net levels`);
  if (c.noise.kind !== 'ddpm' && c.noise.kind !== 'edm') throw new Error(`${source}: training noise schedule must be ddpm or edm, got ${c.noise.kind}`);
  if (c.vision) validateVisionConfig(c.vision, source);
}

/** The trainable network of a policy configuration: its U-Net (built first) and image encoders. */
export function buildPolicyModel(config: DiffusionPolicyConfig, ctx: BuildContext, unetExtra: Partial<UnetConfig> = {}): PolicyModel {
  const unet = new ConditionalUnet1D({ ...config.unet, inputDim: config.actionDim, globalCondDim: condDim(config), ...unetExtra }, ctx);
  return new PolicyModel(unet, config.vision ? new ObsEncoder(config.vision, ctx) : null);
}

export class DiffusionPolicy extends ChunkPolicy {
  readonly kind = 'diffusion';
  readonly model: PolicyModel;
  readonly scheduler: NoiseScheduler;
  /** The sampler predictAction uses; defaults to the training schedule's own. */
  sampler: NoiseScheduler;

  constructor(config: DiffusionPolicyConfig, normalizer: LinearNormalizer, ctx: BuildContext = buildContext()) {
    validatePolicyConfig(config);
    super(config, normalizer, 0);
    this.model = buildPolicyModel(config, ctx);
    // The sampling stream is drawn after the weights, so a seed gives the same weights as before.
    this.rng.setState(new Rng(ctx.rng.nextU32()).getState());
    this.scheduler = schedulerFromConfig(config.noise);
    this.sampler = this.scheduler;
  }

  get unet(): ConditionalUnet1D {
    return this.model.unet;
  }

  network(globalCond: tf.Tensor): NetworkFn {
    return (x, t) => this.unet.forward(x, t, globalCond);
  }

  /** The denoising loss on a training batch: observation histories and normalised actions (B, horizon, actionDim). */
  computeLoss(obs: PolicyObs, actionNorm: tf.Tensor, rng: Rng): tf.Scalar {
    const cond = this.encodeObs(obs);
    const tb = this.scheduler.trainingBatch(actionNorm, rng);
    const out = this.unet.forward(tb.input, tb.t, cond);
    return tb.loss(out).mean() as tf.Scalar;
  }

  /** Runs the sampler (`opts.sampler` for this call, else `this.sampler`) from fresh noise. */
  protected generateChunk(cond: tf.Tensor, noise: NoiseSource, opts: { sampler?: NoiseScheduler }): { sample: tf.Tensor; nfe: number } {
    const { horizon, actionDim } = this.config;
    const sampler = opts.sampler ?? this.sampler;
    const x = randn(noise, [cond.shape[0], horizon, actionDim], tf);
    const out = sampler.sample(this.network(cond), x, noise);
    x.dispose();
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }
}

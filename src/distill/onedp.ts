/**
 * OneDP (Wang et al. 2024): distil a pre-trained diffusion policy (the teacher, frozen) into a
 * one-step action generator G_theta by minimising the reverse KL between the generator's
 * action distribution and the teacher's, diffused along the teacher's noise schedule
 * (spec onedp.md section 5).
 *
 * OneDP-S (stochastic) also trains a generator score network psi that tracks the score of the
 * generator's own distribution; OneDP-D (deterministic) feeds zeros instead of noise and uses the
 * true noise in place of psi. Both start as copies of the teacher.
 */
import { tf } from '../engine/index.js';
import type { ConditionalUnet1D } from '../nn/unet1d.js';
import { buildContext, type Module } from '../nn/module.js';
import { loadStateDict, stateDict } from '../nn/state_dict.js';
import { buildPolicyModel, type DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import type { PolicyModel } from '../policy/obs_encoder.js';
import { ChunkPolicy } from '../policy/chunk_policy.js';
import { LinearNormalizer } from '../policy/normalizer.js';
import { DiscreteSchedule } from '../diffusion/ddpm.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { randn, type NoiseSource } from '../diffusion/types.js';

export type OneDpMethod = 'onedp-s' | 'onedp-d';

export interface OneDpGeneratorConfig {
  method: OneDpMethod;
  /** DDPM: the fixed step the generator denoises from (65). */
  tInit: number;
  /** EDM: the fixed noise level of the generator (2.5). */
  sigmaInit: number;
}

export const ONEDP_GENERATOR_DEFAULTS: Omit<OneDpGeneratorConfig, 'method'> = { tInit: 65, sigmaInit: 2.5 };

/**
 * The one-step generator: the teacher's architecture evaluated once at a fixed time.
 * DDPM: A = clip((z - sigma_t eps(z, t, O)) / sqrt(abar_t)); EDM: A = D(sigma z; sigma, O).
 * OneDP-D uses z = 0.
 */
export function generate(
  unet: ConditionalUnet1D,
  policyConfig: DiffusionPolicyConfig,
  gen: OneDpGeneratorConfig,
  cond: tf.Tensor,
  z: tf.Tensor,
): tf.Tensor {
  const input = gen.method === 'onedp-d' ? tf.zerosLike(z) : z;
  const b = z.shape[0];
  if (policyConfig.noise.kind === 'ddpm') {
    const sched = new DiscreteSchedule(policyConfig.noise);
    const k = gen.tInit;
    const eps = unet.forward(input, tf.fill([b], k), cond);
    return input.sub(eps.mul(sched.sigma(k))).div(Math.sqrt(sched.alphaBar[k])).clipByValue(-1, 1);
  }
  const edm = new EDMScheduler(policyConfig.noise.kind === 'edm' ? policyConfig.noise : {});
  const s = gen.sigmaInit;
  return edm.denoise((x, t) => unet.forward(x, t, cond), input.mul(s), new Array(b).fill(s));
}

/** A policy that acts with one network evaluation (plus, for image policies, the encoders). */
export class OneDpPolicy extends ChunkPolicy {
  readonly kind: OneDpMethod;
  /** G_theta: the U-Net and its own image encoders. */
  readonly generator: PolicyModel;

  constructor(
    config: DiffusionPolicyConfig,
    readonly gen: OneDpGeneratorConfig,
    normalizer: LinearNormalizer,
    seed = 0,
  ) {
    super(config, normalizer, seed + 1);
    this.kind = gen.method;
    this.generator = buildPolicyModel(config, buildContext({ seed }));
  }

  get model(): PolicyModel {
    return this.generator;
  }

  protected generateChunk(cond: tf.Tensor, noise: NoiseSource): { sample: tf.Tensor; nfe: number } {
    const z = randn(noise, [cond.shape[0], this.config.horizon, this.config.actionDim], tf);
    const sample = tf.tidy(() => generate(this.generator.unet, this.config, this.gen, cond, z));
    z.dispose();
    return { sample, nfe: 1 };
  }

  dispose(): void {
    this.generator.dispose();
  }
}

/** Copies every weight of `from` into `to` (same architecture). */
export function copyWeights(from: Module, to: Module): void {
  loadStateDict(to, stateDict(from));
}

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
import { ConditionalUnet1D } from '../nn/unet1d.js';
import { buildContext } from '../nn/module.js';
import { loadStateDict, stateDict } from '../nn/state_dict.js';
import { DiffusionPolicy, type DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { LinearNormalizer } from '../policy/normalizer.js';
import { DiscreteSchedule } from '../diffusion/ddpm.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { randn } from '../diffusion/types.js';
import { Rng } from '../util/rng.js';
import { nest, noiseFor, toObservationBatch, type ObservationBatch, type Policy, type PolicyOutput } from '../policy/types.js';

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

/** A policy that acts with one network evaluation. */
export class OneDpPolicy implements Policy {
  readonly kind: OneDpMethod;
  readonly generator: ConditionalUnet1D;
  private readonly rng: Rng;
  /** Reuses the diffusion policy's observation encoding and normaliser. */
  private readonly encoder: DiffusionPolicy;

  constructor(
    readonly config: DiffusionPolicyConfig,
    readonly gen: OneDpGeneratorConfig,
    readonly normalizer: LinearNormalizer,
    seed = 0,
  ) {
    this.kind = gen.method;
    this.encoder = new DiffusionPolicy(config, normalizer, buildContext({ meta: true }));
    this.generator = new ConditionalUnet1D({ ...config.unet, inputDim: config.actionDim, globalCondDim: config.nObsSteps * config.obsDim }, buildContext({ seed }));
    this.rng = new Rng(seed + 1);
  }

  get nObsSteps(): number {
    return this.config.nObsSteps;
  }
  get nActionSteps(): number {
    return this.config.nActionSteps;
  }
  get horizon(): number {
    return this.config.horizon;
  }
  get actionDim(): number {
    return this.config.actionDim;
  }

  predictAction(obsIn: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } = {}): PolicyOutput {
    const obs = toObservationBatch(obsIn);
    const { nObsSteps: to, obsDim, horizon, actionDim, nActionSteps } = this.config;
    const raw = obs.data.obs;
    if (!raw || raw.length !== obs.batch * to * obsDim) {
      throw new Error(`predictAction: expected "obs" with ${obs.batch} x ${to} x ${obsDim} values, got ${raw ? raw.length : 'none'}`);
    }
    const rng = noiseFor(obs.batch, opts, this.rng);
    const t0 = performance.now();
    const cond = tf.tidy(() => this.encoder.encodeObs(tf.tensor(this.normalizer.normalize('obs', Float32Array.from(raw)), [obs.batch, to, obsDim])));
    cond.dataSync();
    const t1 = performance.now();
    const z = randn(rng, [obs.batch, horizon, actionDim], tf);
    const a = tf.tidy(() => generate(this.generator, this.config, this.gen, cond, z));
    const chunk = this.normalizer.unnormalize('action', a.dataSync() as Float32Array);
    const t2 = performance.now();
    tf.dispose([cond, z, a]);
    return {
      actions: nest(chunk, obs.batch, horizon, actionDim, to - 1, nActionSteps),
      chunk: nest(chunk, obs.batch, horizon, actionDim),
      timing: { obsEncodingMs: t1 - t0, actionPredictionMs: t2 - t1, nfe: 1 },
    };
  }

  dispose(): void {
    this.generator.dispose();
  }
}

/** Copies every weight of `from` into `to` (same architecture). */
export function copyWeights(from: ConditionalUnet1D, to: ConditionalUnet1D): void {
  loadStateDict(to, stateDict(from));
}

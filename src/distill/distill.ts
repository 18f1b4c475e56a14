/**
 * The OneDP distillation loop. Per step: sample A = G(z, O); (OneDP-S) update the score network
 * psi on the denoising loss of stopgrad(A); diffuse A to a random level; compute the
 * per-element generator gradient g from the frozen teacher (and psi, or the true noise for
 * OneDP-D); update G through the surrogate 0.5 ||A - stopgrad(A - g)||^2.
 */
import * as path from 'node:path';
import { tf, withoutTape } from '../engine/index.js';
import { buildContext } from '../nn/module.js';
import { stateDict } from '../nn/state_dict.js';
import { buildPolicyModel, type DiffusionPolicy } from '../policy/diffusion_policy.js';
import { disposePolicyObs, trainingObs } from '../policy/obs_encoder.js';
import { checkCameras } from '../train/trainer.js';
import type { Policy } from '../policy/types.js';
import { DiscreteSchedule } from '../diffusion/ddpm.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { randn, type NetworkFn } from '../diffusion/types.js';
import { SequenceSampler } from '../data/sequence.js';
import type { ReplayBuffer } from '../data/replay.js';
import { AdamW } from '../train/adamw.js';
import { Ema } from '../train/ema.js';
import { batchIndices } from '../train/trainer.js';
import { saveCheckpoint } from '../train/checkpoint.js';
import { makeProgress } from '../train/progress.js';
import { Rng } from '../util/rng.js';
import { OneDpPolicy, copyWeights, generate, ONEDP_GENERATOR_DEFAULTS, type OneDpGeneratorConfig, type OneDpMethod } from './onedp.js';

export interface DistillConfig {
  method: OneDpMethod;
  steps: number;
  batchSize: number;
  /** Generator learning rate (paper: 1e-6 for 256M-parameter models). */
  lrGenerator: number;
  /** Score-network learning rate (paper: 2e-5). */
  lrScore: number;
  betas: [number, number];
  seed: number;
  /** DDPM: diffusion steps drawn uniformly from [kMin, kMax] for the KL. */
  kMin: number;
  kMax: number;
  tInit: number;
  sigmaInit: number;
  /**
   * The KL's weighting over noise levels. 'spec': the spec's w(k) = sigma_k^2 (DDPM epsilon form
   * g = sigma_k (eps_phi - eps_psi); EDM x0 form). 'x0': the x0 form for DDPM too,
   * g = (x0_psi - x0_phi)(A_k), i.e. the epsilon form over sqrt(abar_k), which weights high noise
   * levels (the chunk's global shape) more. 'dmd': the x0 form divided per sample by
   * mean |A - x0_phi(A_k)| (DMD's normalisation), so every sample moves at a similar rate.
   */
  weighting: 'spec' | 'x0' | 'dmd';
  /** OneDP-S: score-network updates per generator update (DMD2's two time-scale rule uses 5). */
  scoreUpdates: number;
  /** 'cosine' decays both learning rates to 0 over the run (no warm-up); 'constant' keeps them. */
  lrSchedule: 'constant' | 'cosine';
  /**
   * Cap of an exponential moving average of the generator's weights (warm-up as in pre-training,
   * decay = min(cap, 1 - (1 + step)^-0.75)); the saved policy and snapshots use the average.
   * 0 turns it off.
   */
  emaDecay: number;
}

/**
 * CPU-sized defaults. The paper's 1e-6 / 2e-5 (constant) were tuned for 256M-parameter models
 * and tens of thousands of GPU steps; with 0.3-5M-parameter U-Nets and a few hundred CPU steps
 * they barely move the generator. Measured on PushT-state (EDM teacher, first 50 test seeds,
 * OneDP-S; the teacher's Heun sampler scores 0.69):
 * - constant 1e-4 / 1e-3 at batch 64: 0.34 / 0.37 / 0.35 after 100 / 200 / 300 steps;
 * - constant 3e-4 / 3e-3: 0.47 / 0.18 / 0.39, fast but unstable; 1e-3 / 1e-2: 0.12-0.17;
 * - 3e-4 / 3e-3 decayed by a cosine to 0: 0.50 / 0.51 / 0.44 (still oscillating between);
 * - plus an average of the generator's weights (cap 0.95): 0.50 / 0.46 / 0.43;
 * - the same at batch 32 (a step costs about 0.7 of one at 64): 0.37 / 0.53 / 0.54 / 0.54
 *   after 100-400 steps of a 400-step run; 0.53 after 125 of 250.
 */
export const DEFAULT_DISTILL_CONFIG: Omit<DistillConfig, 'method'> = {
  steps: 1000,
  batchSize: 32,
  lrGenerator: 3e-4,
  lrScore: 3e-3,
  betas: [0, 0.999],
  seed: 0,
  kMin: 2,
  kMax: 95,
  tInit: ONEDP_GENERATOR_DEFAULTS.tInit,
  sigmaInit: ONEDP_GENERATOR_DEFAULTS.sigmaInit,
  lrSchedule: 'cosine',
  emaDecay: 0.95,
  weighting: 'spec',
  scoreUpdates: 1,
};

/**
 * OneDP-S learns faster at higher rates than the defaults, from either teacher.
 * - DDPM teacher (36k steps; DDPM-100 0.82, DDIM-10 0.79 on the first 50 test seeds), score after
 *   200 / 400 / 600 steps of a 600-step cosine run: 1e-4 / 1e-3 0.49 / 0.50 / 0.54; 3e-4 / 3e-3
 *   0.54 / 0.62 / 0.66; 1e-3 / 1e-2 0.52 / 0.70 / 0.76; 3e-3 / 3e-2 0.24 / 0.25 / 0.33.
 * - EDM teacher (36k steps; Heun-18 0.973 on validation seeds 200000-200099), 2,000 steps at batch
 *   32, score at steps 500 / 1000 / 1500 / 2000 on those seeds: 3e-4 / 3e-3 0.842 / 0.848 / 0.850 /
 *   0.842; 1e-3 / 1e-2 0.620 / 0.861 / 0.896 / 0.901 (with a 0.99 weight average: 0.550 / 0.861 /
 *   0.907 / 0.893); 2e-3 / 2e-2 0.323 / 0.756 / 0.886 / 0.844.
 * From the DDPM teacher (DDPM-100 0.939, DDIM-10 0.877 on the validation seeds) every variant
 * measured there plateaus at 0.78-0.83 after 2,000 steps: these rates 0.826; a 0.99 average 0.819;
 * t_init 50 0.790; score lr 3e-2 0.784; generator lr 2e-3 0.776; two score updates per step 0.778
 * (0.774 already at step 500); batch 64 0.810; x0 weighting 0.730; DMD's per-sample normalisation
 * 0.727. The DDPM generator starts farther from its teacher (one DDPM step from t_init = 65 scores
 * 0.41 on the validation seeds, one EDM step from sigma 2.5 scores 0.79).
 */
export const ONEDP_S_RATES = { lrGenerator: 1e-3, lrScore: 1e-2 } as const;

/**
 * The config a distillation runs with: the defaults, the rates for the method (when `config` names
 * none), then `config` (keys set to undefined are ignored).
 */
export function resolveDistillConfig(config: Partial<DistillConfig> & { method: OneDpMethod }): DistillConfig {
  const given = Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined)) as Partial<DistillConfig> & { method: OneDpMethod };
  const rates = config.method === 'onedp-s' ? ONEDP_S_RATES : {};
  return { ...DEFAULT_DISTILL_CONFIG, ...rates, ...given };
}

/**
 * Receives a usable policy built from the weights being trained, e.g. to record a learning
 * curve. The policy is live: the callback must not dispose it or keep it past its return.
 */
export type SnapshotHook = (step: number, policy: Policy) => Promise<void> | void;

/** What every distillation (OneDP, Consistency Policy) takes besides its own config. */
export interface DistillRunOptions {
  /** The frozen teacher. */
  teacher: DiffusionPolicy;
  /** Training data: `obs`, `action` and camera arrays as the teacher was trained on. */
  buffer: ReplayBuffer;
  outDir: string;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  /** Calls `onSnapshot` with the policy being trained every this many steps (off when absent). */
  snapshotEvery?: number;
  onSnapshot?: SnapshotHook;
  provenance?: Record<string, unknown>;
}

export interface DistillOptions extends DistillRunOptions {
  config: Partial<DistillConfig> & { method: OneDpMethod };
  /** After each step, with the learning rates that step used. */
  onStep?: (info: { step: number; generatorLoss: number; scoreLoss: number; lrGenerator: number; lrScore: number | null }) => void;
}

export interface DistillResult {
  policy: OneDpPolicy;
  generatorLosses: number[];
  scoreLosses: number[];
  checkpoint: string;
  wallSeconds: number;
}

/** The schedule and weighting the generator gradient is computed with. */
export interface GradientSetup {
  /** DDPM teachers. */
  discrete: DiscreteSchedule | null;
  /** EDM teachers. */
  edm: EDMScheduler | null;
  weighting: DistillConfig['weighting'];
}

/**
 * g per element of A (spec section 5): `teacher` and `score` are the networks' raw outputs as
 * functions of (x, t) (epsilon for DDPM, F for EDM, which `edm.denoise` preconditions); `score`
 * null is OneDP-D, which uses the true noise (DDPM) or A itself (EDM) in its place.
 * DDPM: diffuses A_k = sqrt(abar_k) A + sigma_k eps; EDM: A_k = A + k eps with k the noise level.
 */
export function generatorGradient(s: GradientSetup, a: tf.Tensor, eps: tf.Tensor, ks: number[], teacher: NetworkFn, score: NetworkFn | null): tf.Tensor {
  const b = a.shape[0];
  const bshape = [b, 1, 1];
  if (s.discrete) {
    const d = s.discrete;
    const sig = tf.tensor(Float32Array.from(ks, (k) => d.sigma(k)), bshape);
    const ak = d.addNoise(a, eps, ks);
    const t = tf.tensor1d(ks, 'float32');
    const epsPhi = teacher(ak, t);
    const other = score ? score(ak, t) : eps;
    const g = sig.mul(epsPhi.sub(other));
    if (s.weighting === 'spec') return g;
    // x0_psi - x0_phi = sigma_k / sqrt(abar_k) (eps_phi - eps_psi).
    const rootAbar = tf.tensor(Float32Array.from(ks, (k) => Math.sqrt(d.alphaBar[k])), bshape);
    const gx0 = g.div(rootAbar);
    if (s.weighting === 'x0') return gx0;
    return normalisePerSample(gx0, a, ak.sub(sig.mul(epsPhi)).div(rootAbar));
  }
  if (!s.edm) throw new Error('generatorGradient: needs a DDPM or an EDM schedule');
  const edm = s.edm;
  const sig = tf.tensor(Float32Array.from(ks), bshape);
  const ak = a.add(eps.mul(sig));
  const dPhi = edm.denoise(teacher, ak, ks);
  const g = score ? edm.denoise(score, ak, ks).sub(dPhi) : a.sub(dPhi);
  return s.weighting === 'dmd' ? normalisePerSample(g, a, dPhi) : g;
}

/** DMD: g / mean |A - x0_phi(A_k)| per sample (a constant to the generator's gradient). */
function normalisePerSample(g: tf.Tensor, a: tf.Tensor, x0Phi: tf.Tensor): tf.Tensor {
  return g.div(a.sub(x0Phi).abs().mean([1, 2], true).add(1e-4));
}

/** The gradient g injected at A: the surrogate's value is 0.5 mean_b ||g||^2. */
export function injectGradient(a: tf.Tensor, g: tf.Tensor): tf.Scalar {
  const b = a.shape[0];
  const f = tf.customGrad(((x: tf.Tensor) => ({
    value: g.square().sum().mul(0.5 / b) as tf.Scalar,
    gradFunc: (dy: tf.Tensor) => g.mul(dy).div(b),
  })) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Scalar;
  return f(a);
}

export async function distillOneDp(opts: DistillOptions): Promise<DistillResult> {
  const started = performance.now();
  const teacher = opts.teacher;
  const pc = teacher.config;
  const cfg = resolveDistillConfig(opts.config);
  const gen: OneDpGeneratorConfig = { method: cfg.method, tInit: cfg.tInit, sigmaInit: cfg.sigmaInit };
  const isS = cfg.method === 'onedp-s';
  checkCameras(opts.buffer, pc);

  // Generator and score network copy the whole teacher, image encoders included; all three
  // encode the observation themselves, and the two students' encoders keep training.
  const policy = new OneDpPolicy(pc, gen, teacher.normalizer, cfg.seed);
  copyWeights(teacher.model, policy.generator);
  const score = isS ? buildPolicyModel(pc, buildContext({ seed: cfg.seed })) : null;
  if (score) copyWeights(teacher.model, score);
  const genVars = policy.generator.variables();
  const scoreVars = score ? score.variables() : [];
  const optG = new AdamW(genVars, { lr: cfg.lrGenerator, betas: cfg.betas, weightDecay: 0 });
  const ema = cfg.emaDecay > 0 ? new Ema(genVars, 0.75, cfg.emaDecay) : null;
  /** Runs f with the generator holding its averaged weights (if any), then restores them. */
  const withAveraged = async (f: () => Promise<void> | void): Promise<void> => {
    if (!ema) return f();
    const live = genVars.map((v) => v.clone());
    genVars.forEach((v, i) => v.assign(ema.shadow[i]));
    try {
      await f();
    } finally {
      genVars.forEach((v, i) => v.assign(live[i]));
      tf.dispose(live);
    }
  };
  const optS = score ? new AdamW(scoreVars, { lr: cfg.lrScore, betas: cfg.betas, weightDecay: 0 }) : null;

  const discrete = pc.noise.kind === 'ddpm' ? new DiscreteSchedule(pc.noise) : null;
  const edm = pc.noise.kind === 'edm' ? new EDMScheduler(pc.noise) : null;
  if (!Number.isInteger(cfg.scoreUpdates) || cfg.scoreUpdates < 1) throw new Error(`distill: scoreUpdates must be a positive integer, got ${cfg.scoreUpdates}`);
  if (!['spec', 'x0', 'dmd'].includes(cfg.weighting)) throw new Error(`distill: weighting must be spec, x0 or dmd, got ${JSON.stringify(cfg.weighting)}`);
  if (discrete && (cfg.kMin < 0 || cfg.kMax >= discrete.numTrainTimesteps || cfg.kMin > cfg.kMax)) {
    throw new Error(`distill: kMin..kMax (${cfg.kMin}..${cfg.kMax}) must lie in 0..${discrete.numTrainTimesteps - 1}`);
  }
  const sampler = new SequenceSampler(opts.buffer, { sequenceLength: pc.horizon, padBefore: pc.nObsSteps - 1, padAfter: pc.nActionSteps - 1 });
  const rng = new Rng((cfg.seed + 17) >>> 0);
  const cropRng = new Rng((cfg.seed + 19) >>> 0);
  const { horizon, actionDim } = pc;
  const genLosses: number[] = [];
  const scoreLosses: number[] = [];
  const progress = makeProgress(opts.progress ?? 'auto');
  progress.start(cfg.steps, 0, cfg.method);

  try {
    for (let step = 0; step < cfg.steps; step++) {
      const lrScale = cfg.lrSchedule === 'cosine' ? 0.5 * (1 + Math.cos((Math.PI * step) / cfg.steps)) : 1;
      optG.lr = cfg.lrGenerator * lrScale;
      if (optS) optS.lr = cfg.lrScore * lrScale;
      const idx = batchIndices(sampler.length, cfg.batchSize, cfg.seed, step);
      const b = idx.length;
      const obs = trainingObs(pc, teacher.normalizer, sampler, idx, cropRng);
      const z = randn(rng, [b, horizon, actionDim], tf);
      const cond = tf.tidy(() => teacher.encodeObs(obs));

      // One generator forward serves both updates: the score network learns from the detached
      // A (its update only reaches its own weights), then the generator's gradient g is injected
      // at the same A, so each step pays for a single generator forward.
      let sLoss = 0;
      let scoreCond: tf.Tensor | null = null;
      let eps: tf.Tensor | null = null;
      let g: tf.Tensor | null = null;
      const gLoss = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(() => {
          const a = generate(policy.generator.unet, pc, gen, policy.generator.encode(obs), z);
          // 1. Score network: ordinary denoising loss on the generator's actions, gradients to
          //    psi only (the nested tape differentiates with respect to psi's weights alone).
          if (score && optS) {
            // Several updates on the same actions with fresh noise, when asked (two time-scale).
            for (let u = 0; u < cfg.scoreUpdates; u++) {
              sLoss = withoutTape(() => tf.tidy(() => {
                const { value: sv, grads: sg } = tf.variableGrads(() => {
                  const tb = teacher.scheduler.trainingBatch(a, rng);
                  return tb.loss(score.unet.forward(tb.input, tb.t, score.encode(obs))).mean() as tf.Scalar;
                }, scoreVars);
                optS.step(scoreVars.map((v) => sg[v.name]));
                return sv.dataSync()[0];
              }));
            }
            // psi's view of the observation after its update, for the generator gradient.
            scoreCond = withoutTape(() => tf.keep(tf.tidy(() => score.encode(obs))));
          }
          // 2. Generator: g from the teacher and psi, without their gradients.
          const ks = Array.from({ length: b }, () => (discrete ? rng.int(cfg.kMin, cfg.kMax + 1) : Math.exp(edm!.pMean + edm!.pStd * rng.normal())));
          eps = tf.keep(randn(rng, [b, horizon, actionDim], tf));
          // Kept: the forward pass runs in a tidy that would free g before the backward needs it.
          const condS = scoreCond ?? cond;
          const teacherNet: NetworkFn = (x, t) => teacher.unet.forward(x, t, cond);
          const scoreNet: NetworkFn | null = score ? (x, t) => score.unet.forward(x, t, condS) : null;
          g = withoutTape(() => tf.keep(tf.tidy(() => generatorGradient({ discrete, edm, weighting: cfg.weighting }, a, eps!, ks, teacherNet, scoreNet))));
          return injectGradient(a, g);
        }, genVars);
        optG.step(genVars.map((v) => grads[v.name]));
        return value.dataSync()[0];
      });
      ema?.update();
      tf.dispose([g, eps, scoreCond, z, cond].filter((t): t is tf.Tensor => t !== null));
      disposePolicyObs(obs);
      if (!Number.isFinite(gLoss) || !Number.isFinite(sLoss)) {
        throw new Error(`distillation diverged at step ${step + 1} (generator loss ${gLoss}, score loss ${sLoss}); lower the learning rates`);
      }
      genLosses.push(gLoss);
      scoreLosses.push(sLoss);
      progress.update(step + 1, isS ? { 'gen loss': gLoss, 'score loss': sLoss } : { 'gen loss': gLoss });
      opts.onStep?.({ step: step + 1, generatorLoss: gLoss, scoreLoss: sLoss, lrGenerator: optG.lr, lrScore: optS ? optS.lr : null });
      if (opts.onSnapshot && opts.snapshotEvery && (step + 1) % opts.snapshotEvery === 0) await withAveraged(() => opts.onSnapshot!(step + 1, policy));
    }
    // The policy keeps the averaged weights.
    if (ema) genVars.forEach((v, i) => v.assign(ema.shadow[i]));
  } finally {
    progress.stop();
    optG.dispose();
    optS?.dispose();
    ema?.dispose();
  }

  const ckDir = path.join(opts.outDir, 'checkpoints');
  const checkpoint = await saveCheckpoint(ckDir, `step-${String(cfg.steps).padStart(7, '0')}`, {
    meta: {
      kind: 'onedp',
      method: cfg.method,
      policyConfig: pc,
      generator: gen,
      normalizer: teacher.normalizer.toJSON(),
      distillConfig: cfg,
      step: cfg.steps,
      generatorLosses: genLosses,
      scoreLosses,
      provenance: opts.provenance ?? {},
      savedAt: new Date().toISOString(),
    },
    tensors: { generator: stateDict(policy.generator), ...(score ? { score: stateDict(score) } : {}) },
  });
  score?.dispose();
  return { policy, generatorLosses: genLosses, scoreLosses, checkpoint, wallSeconds: (performance.now() - started) / 1000 };
}

/**
 * Consistency Policy (Prasad et al. 2024), the few-step baseline OneDP is compared with
 * (spec onedp.md section 6): a student distilled from an EDM teacher with the Consistency
 * Trajectory Model objective (CTM, Kim et al. 2023) plus a denoising loss.
 *
 * The student is the teacher's U-Net with one extra FiLM time input for the stop time s
 * (zero-initialised) and dropout, and computes the CTM jump
 *   G(x_t, t, s) = (s/t) x_t + (1 - s/t) g(x_t, t, s),
 * where g is the EDM-preconditioned network. G(x, t, t) = x exactly, and a student warm-started
 * from the teacher begins as one Euler step of the teacher's probability-flow ODE from t to s.
 *
 * Choices where the reference code, the papers and this spec leave room:
 * - The terminal time is exactly 0 (the EDM sampler's last point); the stop-time input embeds
 *   max(s, sigma_min), so s = 0 and s = sigma_min share an embedding.
 * - The denoising loss trains g(x_t, t, t), as in the CTM paper, rather than the jump to the
 *   terminal time: pulling G(x_T, T, 0) towards E[x_0 | x_T] would average the modes.
 * - Pseudo-Huber on the whole chunk, sqrt(||a - b||^2 + c^2) - c with c = 0.00054 sqrt(dim)
 *   (improved consistency training), per sample.
 * - Two averages of the student, both in eval mode (no dropout): the target network (the
 *   reference's `model_ema`, decay 0 by default, i.e. a stop-gradient copy) and the evaluation
 *   EMA (decay 1 - (1+k)^-0.75, capped), which the checkpoint stores and the policy runs.
 */
import * as path from 'node:path';
import { tf } from '../engine/index.js';
import type { ConditionalUnet1D, UnetConfig } from '../nn/unet1d.js';
import { buildContext } from '../nn/module.js';
import { loadStateDict, stateDict } from '../nn/state_dict.js';
import { buildPolicyModel, type DiffusionPolicy, type DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { condDim, disposePolicyObs, trainingObs, type PolicyModel } from '../policy/obs_encoder.js';
import { checkCameras } from '../train/trainer.js';
import { ChunkPolicy } from '../policy/chunk_policy.js';
import type { LinearNormalizer } from '../policy/normalizer.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { chainSigmas, checkSteps, consistencyLoop, consistencySigmas, consistencyStopInput, samplingEdm, type ConsistencySampling } from './cp_sampling.js';
import { randn, runSampler, type NetworkFn, type NoiseSource, type SamplerLoop } from '../diffusion/types.js';
import { SequenceSampler } from '../data/sequence.js';
import { AdamW } from '../train/adamw.js';
import { Ema } from '../train/ema.js';
import { batchIndices } from '../train/trainer.js';
import { saveCheckpoint } from '../train/checkpoint.js';
import { makeProgress } from '../train/progress.js';
import { Rng } from '../util/rng.js';
import type { DistillRunOptions } from './distill.js';

export { chainBins, chainSigmas, consistencyLoop, consistencySigmas, consistencyStopInput, parseConsistencySampler, type ConsistencySampling } from './cp_sampling.js';

export interface ConsistencyConfig {
  steps: number;
  batchSize: number;
  lr: number;
  betas: [number, number];
  weightDecay: number;
  seed: number;
  bins: number;
  sigmaMax: number;
  rho: number;
  dropout: number;
  ctmWeight: number;
  dsmWeight: number;
  /** The evaluation EMA: decay 1 - (1 + k)^-emaPower, capped at emaMaxDecay. */
  emaPower: number;
  emaMaxDecay: number;
  /**
   * The target network's EMA decay: a fixed rate (the reference uses 0, a stop-gradient copy of
   * the student), or 'ema' to use the evaluation EMA as the target.
   */
  targetDecay: number | 'ema';
  /** Steps between checkpoints (a final one is always written). */
  checkpointEvery: number;
}

/** The published CP settings (spec section 6) with a CPU-sized step count. */
export const DEFAULT_CONSISTENCY_CONFIG: ConsistencyConfig = {
  steps: 1000,
  batchSize: 64,
  lr: 1e-4,
  betas: [0.95, 0.999],
  weightDecay: 1e-6,
  seed: 0,
  bins: 80,
  sigmaMax: 80,
  rho: 7,
  dropout: 0.2,
  ctmWeight: 1,
  dsmWeight: 1,
  emaPower: 0.75,
  emaMaxDecay: 0.9999,
  targetDecay: 0,
  checkpointEvery: 500,
};

/** Pseudo-Huber distance per sample: sqrt(||a - b||^2 + c^2) - c over all non-batch dims, (B,). */
export function pseudoHuber(a: tf.Tensor, b: tf.Tensor, c: number): tf.Tensor {
  const axes = Array.from({ length: a.rank - 1 }, (_, i) => i + 1);
  return a.sub(b).square().sum(axes).add(c * c).sqrt().sub(c);
}

/** iCT's constant for a sample of `dim` values. */
export function huberConstant(dim: number): number {
  return 0.00054 * Math.sqrt(dim);
}

function column(values: number[], rank: number): tf.Tensor {
  return tf.tensor(Float32Array.from(values), [values.length, ...new Array<number>(rank - 1).fill(1)]);
}

/**
 * The network part g(x_t, t, s) per batch row. Time 0 (only as the start of an identity jump)
 * is evaluated at sigmaMin so that no row feeds ln(0) to the network.
 */
export function ctmDenoise(unet: ConditionalUnet1D, edm: EDMScheduler, x: tf.Tensor, cond: tf.Tensor, t: number[], s: number[]): tf.Tensor {
  const sMin = edm.sigmaMin;
  const stop = tf.tensor1d(s.map((v) => Math.log(Math.max(v, sMin)) / 4));
  const net: NetworkFn = (xin, tin) => unet.forward(xin, tin, cond, [stop]);
  return edm.denoise(net, x, t.map((v) => Math.max(v, sMin)));
}

/** Blends the network output into the jump G(x_t, t, s) = (s/t) x_t + (1 - s/t) g. */
function blend(x: tf.Tensor, g: tf.Tensor, t: number[], s: number[]): tf.Tensor {
  const r = t.map((tv, i) => (tv > 0 ? s[i] / tv : 1));
  return x.mul(column(r, x.rank)).add(g.mul(column(r.map((v) => 1 - v), x.rank)));
}

/** The CTM jump G(x_t, t, s) per batch row. */
export function ctmJump(unet: ConditionalUnet1D, edm: EDMScheduler, x: tf.Tensor, cond: tf.Tensor, t: number[], s: number[]): tf.Tensor {
  return blend(x, ctmDenoise(unet, edm, x, cond, t, s), t, s);
}

/**
 * One Heun step of the probability-flow ODE dx/dt = (x - D(x, t)) / t from t to u per row, with
 * the EDM-preconditioned denoiser of `net`; an Euler step where u = 0 (as the EDM sampler ends).
 * The CTM target runs it on the teacher.
 */
export function teacherOdeStep(edm: EDMScheduler, net: NetworkFn, x: tf.Tensor, t: number[], u: number[], sigmaMin: number): tf.Tensor {
  const h = column(u.map((v, i) => v - t[i]), x.rank);
  const d = x.sub(edm.denoise(net, x, t)).div(column(t, x.rank));
  const xe = x.add(d.mul(h));
  const uSafe = u.map((v) => Math.max(v, sigmaMin));
  const d2 = xe.sub(edm.denoise(net, xe, uSafe)).div(column(uSafe, x.rank));
  const heun = x.add(d.add(d2).mul(h).mul(0.5));
  const isHeun = column(u.map((v) => (v > 0 ? 1 : 0)), x.rank);
  return heun.mul(isHeun).add(xe.mul(isHeun.neg().add(1)));
}

/** The U-Net of a CP student for a policy configuration. */
export function studentUnetConfig(config: DiffusionPolicyConfig, dropout: number): UnetConfig {
  return { ...config.unet, inputDim: config.actionDim, globalCondDim: condDim(config), extraTimeInputs: 1, dropout };
}

/** A CP student network: the stop-time U-Net and, for image policies, its own encoders. */
function buildStudent(config: DiffusionPolicyConfig, dropout: number, seed: number): PolicyModel {
  return buildPolicyModel(config, buildContext({ seed }), { extraTimeInputs: 1, dropout });
}

/**
 * Acts with `steps` network evaluations: jump from sigmaMax to 0; for more steps, re-noise the
 * result to the chaining levels and jump to 0 again.
 */
export class ConsistencyPolicy extends ChunkPolicy {
  readonly kind = 'cp';
  /** The (EMA) student, always in eval mode. */
  readonly student: PolicyModel;
  private nSteps = 1;

  constructor(
    config: DiffusionPolicyConfig,
    readonly sampling: ConsistencySampling,
    normalizer: LinearNormalizer,
    opts: { steps?: number; dropout?: number; seed?: number } = {},
  ) {
    super(config, normalizer, (opts.seed ?? 0) + 1);
    this.student = buildStudent(config, opts.dropout ?? 0, opts.seed ?? 0).eval();
    this.steps = opts.steps ?? 1;
  }

  get model(): PolicyModel {
    return this.student;
  }

  /** Network evaluations per action chunk (1 or 3 in the paper). */
  get steps(): number {
    return this.nSteps;
  }
  set steps(n: number) {
    checkSteps(this.sampling, n);
    this.nSteps = n;
  }

  protected generateChunk(cond: tf.Tensor, noise: NoiseSource, opts: { steps?: number }): { sample: tf.Tensor; nfe: number } {
    const b = cond.shape[0];
    const stop = tf.fill([b], consistencyStopInput(this.sampling));
    const net: NetworkFn = (x, t) => this.student.unet.forward(x, t, cond, [stop]);
    const out = runSampler(consistencyLoop(this.sampling, opts.steps ?? this.nSteps, [b, this.config.horizon, this.config.actionDim], noise), net, tf);
    stop.dispose();
    return out;
  }

  dispose(): void {
    this.student.dispose();
  }
}

/** The teacher must be EDM-trained; snapshots receive the current EMA student. */
export interface ConsistencyOptions extends DistillRunOptions {
  config?: Partial<ConsistencyConfig>;
  onStep?: (info: { step: number; ctmLoss: number; dsmLoss: number }) => void;
}

export interface ConsistencyResult {
  /** The EMA student, 1-step by default (set `steps` for chained sampling). */
  policy: ConsistencyPolicy;
  ctmLosses: number[];
  dsmLosses: number[];
  checkpoint: string;
  wallSeconds: number;
}

export async function distillConsistency(opts: ConsistencyOptions): Promise<ConsistencyResult> {
  const started = performance.now();
  const cfg: ConsistencyConfig = { ...DEFAULT_CONSISTENCY_CONFIG, ...opts.config };
  const teacher = opts.teacher;
  const pc = teacher.config;
  if (pc.noise.kind !== 'edm') {
    throw new Error(`Consistency Policy distils an EDM-trained teacher; this teacher was trained with ${pc.noise.kind.toUpperCase()} (train one with the EDM schedule, e.g. onedp train --schedule edm)`);
  }
  if (!Number.isInteger(cfg.bins) || cfg.bins < 2) throw new Error(`consistency distillation: bins must be an integer >= 2, got ${cfg.bins}`);
  const sampling: ConsistencySampling = { bins: cfg.bins, sigmaMin: pc.noise.sigmaMin, sigmaMax: cfg.sigmaMax, rho: cfg.rho, sigmaData: pc.noise.sigmaData };
  if (!(sampling.sigmaMax > sampling.sigmaMin)) throw new Error(`consistency distillation: sigmaMax ${sampling.sigmaMax} must exceed the teacher's sigmaMin ${sampling.sigmaMin}`);

  // The evaluation EMA is the policy: what is saved and evaluated (and the target if targetDecay is 'ema').
  const policy = new ConsistencyPolicy(pc, sampling, teacher.normalizer, { dropout: cfg.dropout, seed: cfg.seed });
  checkCameras(opts.buffer, pc);
  const student = buildStudent(pc, cfg.dropout, cfg.seed);
  student.train();
  if (student.unet.dropout) student.unet.dropout.rng = new Rng((cfg.seed + 31) >>> 0);
  // Warm start: every teacher tensor (image encoders included, which keep training); the
  // stop-time encoder keeps its zero-initialised output.
  const warm = stateDict(student);
  for (const [k, v] of stateDict(teacher.model)) warm.set(k, v);
  loadStateDict(student, warm);
  loadStateDict(policy.student, warm);
  const targetDecay = cfg.targetDecay;
  const fixedTarget = targetDecay !== 'ema';
  if (fixedTarget && !(targetDecay >= 0 && targetDecay < 1)) throw new Error(`consistency distillation: targetDecay must be in [0, 1) or 'ema', got ${cfg.targetDecay}`);
  const target = fixedTarget ? buildStudent(pc, cfg.dropout, cfg.seed).eval() : policy.student;
  if (fixedTarget) loadStateDict(target, warm);
  const vars = student.variables();
  const emaVars = policy.student.variables();
  const targetVars = target.variables();
  const opt = new AdamW(vars, { lr: cfg.lr, betas: cfg.betas, weightDecay: cfg.weightDecay });
  // Only its decay schedule: the averaged weights live in policy.student so they can run forward.
  const emaSchedule = new Ema([], cfg.emaPower, cfg.emaMaxDecay);
  const average = (into: tf.Variable[], d: number) => tf.tidy(() => into.forEach((e, i) => e.assign(d === 0 ? vars[i] : e.mul(d).add(vars[i].mul(1 - d)))));

  const edm = samplingEdm(sampling);
  const teacherEdm = new EDMScheduler(pc.noise);
  const sig = edm.sigmas();
  const n = sampling.bins;
  const { horizon, actionDim, nObsSteps } = pc;
  const huberC = huberConstant(horizon * actionDim);
  const sampler = new SequenceSampler(opts.buffer, { sequenceLength: horizon, padBefore: nObsSteps - 1, padAfter: pc.nActionSteps - 1 });
  if (sampler.length === 0) throw new Error('dataset has no training windows (is it empty?)');
  const rng = new Rng((cfg.seed + 23) >>> 0);
  const cropRng = new Rng((cfg.seed + 29) >>> 0);
  const ctmLosses: number[] = [];
  const dsmLosses: number[] = [];
  const ckDir = path.join(opts.outDir, 'checkpoints');
  let checkpoint = '';
  const writeCheckpoint = async (step: number): Promise<void> => {
    checkpoint = await saveCheckpoint(ckDir, `step-${String(step).padStart(7, '0')}`, {
      meta: {
        kind: 'consistency-policy',
        policyConfig: pc,
        sampling,
        studentUnet: studentUnetConfig(pc, cfg.dropout),
        normalizer: teacher.normalizer.toJSON(),
        distillConfig: cfg,
        step,
        ctmLosses,
        dsmLosses,
        provenance: opts.provenance ?? {},
        savedAt: new Date().toISOString(),
      },
      tensors: { student: stateDict(policy.student), model: stateDict(student) },
    });
  };

  const teacherStep = (x: tf.Tensor, cond: tf.Tensor, t: number[], u: number[]): tf.Tensor =>
    teacherOdeStep(teacherEdm, (xin, tin) => teacher.unet.forward(xin, tin, cond), x, t, u, sampling.sigmaMin);

  const progress = makeProgress(opts.progress ?? 'auto');
  progress.start(cfg.steps, 0, 'cp');
  try {
    for (let step = 0; step < cfg.steps; step++) {
      const idx = batchIndices(sampler.length, cfg.batchSize, cfg.seed, step);
      const b = idx.length;
      const obs = trainingObs(pc, teacher.normalizer, sampler, idx, cropRng);
      const x0 = tf.tensor(teacher.normalizer.normalize('action', sampler.batch('action', idx)), [b, horizon, actionDim]);
      const cond = tf.tidy(() => teacher.encodeObs(obs));
      // The target network sees the observation through its own encoders.
      const targetCond = tf.tidy(() => target.encode(obs));

      // Bins t < u = t + 1 <= s in index order (sigma_t > sigma_u >= sigma_s); index n is time 0.
      const ti = Array.from({ length: b }, () => rng.int(0, n));
      const si = ti.map((i) => rng.int(i + 1, n + 1));
      const t = ti.map((i) => sig[i]);
      const u = ti.map((i) => sig[i + 1]);
      const s = si.map((i) => sig[i]);
      const zero = new Array<number>(b).fill(0);
      const dsmSig = Array.from({ length: b }, () => Math.exp(teacherEdm.pMean + teacherEdm.pStd * rng.normal()));
      const z = randn(rng, [b, horizon, actionDim], tf);
      const zd = randn(rng, [b, horizon, actionDim], tf);
      const xt = tf.tidy(() => x0.add(z.mul(column(t, 3))));
      const xd = tf.tidy(() => x0.add(zd.mul(column(dsmSig, 3))));

      // Target, without gradients: teacher t -> u, EMA student u -> s, then s -> 0.
      const targetX0 = tf.tidy(() => {
        const xu = teacherStep(xt, cond, t, u);
        const xs = ctmJump(target.unet, edm, xu, targetCond, u, s);
        return ctmJump(target.unet, edm, xs, targetCond, s, zero);
      });

      const [ctm, dsm] = tf.tidy(() => {
        let parts: [number, number] = [NaN, NaN];
        const { grads } = tf.variableGrads(() => {
          // One student pass for both losses: CTM rows jump t -> s, DSM rows denoise with s = t.
          const sc = student.encode(obs);
          const g = ctmDenoise(student.unet, edm, tf.concat([xt, xd]), tf.concat([sc, sc]), [...t, ...dsmSig], [...s, ...dsmSig]);
          const predS = blend(xt, g.slice([0, 0, 0], [b, horizon, actionDim]), t, s);
          // The target network maps the prediction to 0; the gradient flows through its input only.
          const pred0 = ctmJump(target.unet, edm, predS, targetCond, s, zero);
          const ctmLoss = pseudoHuber(pred0, targetX0, huberC).mean();
          const sd = sampling.sigmaData;
          const w = column(dsmSig.map((v) => (v * v + sd * sd) / (v * sd) ** 2), 3);
          const dsmLoss = g.slice([b, 0, 0], [b, horizon, actionDim]).sub(x0).square().mul(w).mean();
          parts = [ctmLoss.dataSync()[0], dsmLoss.dataSync()[0]];
          return ctmLoss.mul(cfg.ctmWeight).add(dsmLoss.mul(cfg.dsmWeight)) as tf.Scalar;
        }, vars);
        if (Number.isFinite(parts[0]) && Number.isFinite(parts[1])) opt.step(vars.map((v) => grads[v.name]));
        return parts;
      });
      tf.dispose([x0, cond, targetCond, z, zd, xt, xd, targetX0]);
      disposePolicyObs(obs);
      if (!Number.isFinite(ctm) || !Number.isFinite(dsm)) {
        throw new Error(`consistency distillation diverged at step ${step + 1} (CTM loss ${ctm}, DSM loss ${dsm}); lower the learning rate`);
      }
      average(emaVars, emaSchedule.decay());
      emaSchedule.step++;
      if (targetDecay !== 'ema') average(targetVars, targetDecay);

      ctmLosses.push(ctm);
      dsmLosses.push(dsm);
      progress.update(step + 1, { 'ctm loss': ctm, 'dsm loss': dsm });
      opts.onStep?.({ step: step + 1, ctmLoss: ctm, dsmLoss: dsm });
      if (opts.onSnapshot && opts.snapshotEvery && (step + 1) % opts.snapshotEvery === 0) await opts.onSnapshot(step + 1, policy);
      if ((step + 1) % cfg.checkpointEvery === 0 && step + 1 < cfg.steps) await writeCheckpoint(step + 1);
    }
    await writeCheckpoint(cfg.steps);
  } finally {
    progress.stop();
    opt.dispose();
    student.dispose();
    if (fixedTarget) target.dispose();
  }
  return { policy, ctmLosses, dsmLosses, checkpoint, wallSeconds: (performance.now() - started) / 1000 };
}

/**
 * Training a diffusion policy from a replay buffer: seeded and reproducible, AdamW with a
 * cosine schedule, EMA weights, periodic atomic checkpoints, exact resume after a kill, and a
 * clear stop on a non-finite loss that leaves the last good checkpoint untouched.
 */
import * as path from 'node:path';
import { tf } from '../engine/index.js';
import { DiffusionPolicy, validatePolicyConfig, type DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { LinearNormalizer } from '../policy/normalizer.js';
import { buildContext, type Parameter } from '../nn/module.js';
import { loadStateDict, stateDict } from '../nn/state_dict.js';
import { SequenceSampler } from '../data/sequence.js';
import type { ReplayBuffer } from '../data/replay.js';
import { Rng } from '../util/rng.js';
import { AdamW } from './adamw.js';
import { Ema } from './ema.js';
import { cosineWithWarmup } from './lr.js';
import { CheckpointError, latestCheckpoint, loadCheckpoint, removeWriterDebris, saveCheckpoint } from './checkpoint.js';
import { makeProgress, type Progress } from './progress.js';
import type { SafeTensor } from '../io/safetensors.js';
import { disposePolicyObs, trainingObs } from '../policy/obs_encoder.js';

export interface TrainConfig {
  /** Optimisation steps (batches). */
  steps: number;
  batchSize: number;
  lr: number;
  betas: [number, number];
  weightDecay: number;
  warmupSteps: number;
  emaPower: number;
  emaMaxDecay: number;
  seed: number;
  /** Steps between checkpoints (a final one is always written). */
  checkpointEvery: number;
  keepCheckpoints: number;
}

/** The reference recipe (spec section 4) with a CPU-sized step count. */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  steps: 5000,
  batchSize: 256,
  lr: 1e-4,
  betas: [0.95, 0.999],
  weightDecay: 1e-6,
  warmupSteps: 500,
  emaPower: 0.75,
  emaMaxDecay: 0.9999,
  seed: 0,
  checkpointEvery: 1000,
  keepCheckpoints: 3,
};

export class TrainingDivergedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

export interface StepInfo {
  step: number;
  loss: number;
  lr: number;
  samplesPerSec: number;
}

export interface TrainOptions {
  policy: DiffusionPolicyConfig;
  train?: Partial<TrainConfig>;
  buffer: ReplayBuffer;
  /**
   * Replay-buffer keys of the observation and the action (default "obs"/"action"). Image
   * policies also read one uint8 array per camera, named as the camera.
   */
  obsKey?: string;
  actionKey?: string;
  /** Run directory: checkpoints go to `<outDir>/checkpoints`. */
  outDir: string;
  /** Continue from the latest checkpoint in outDir if there is one. */
  resume?: boolean;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  /** Called after every step; returning 'stop' ends training early (after a checkpoint). */
  onStep?: (info: StepInfo) => void | 'stop';
  /**
   * Called after each checkpoint is written (before older ones are pruned by the next), e.g. to
   * evaluate the EMA weights as training goes. Its time is not part of `wallSeconds`.
   */
  onCheckpoint?: (info: { step: number; dir: string }) => Promise<void> | void;
  /** Test hook: runs before each step's update and may replace the loss. */
  lossHook?: (step: number, loss: tf.Scalar) => tf.Scalar;
  /** Free-form provenance stored in the checkpoint (dataset path, command line...). */
  provenance?: Record<string, unknown>;
}

export interface TrainResult {
  policy: DiffusionPolicy;
  /** Wall-clock seconds spent in `onCheckpoint`, already left out of `wallSeconds`. */
  hookSeconds: number;
  /** EMA weights in PyTorch naming, also written to the checkpoint. */
  ema: Ema;
  step: number;
  losses: number[];
  checkpoint: string | null;
  wallSeconds: number;
}

/** The batch of window indices for step `s`: a stream of seeded per-epoch permutations. */
export function batchIndices(n: number, batchSize: number, seed: number, step: number): number[] {
  const out: number[] = [];
  let pos = step * batchSize;
  let epoch = -1;
  let perm: Uint32Array = new Uint32Array(0);
  while (out.length < batchSize) {
    const e = Math.floor(pos / n);
    if (e !== epoch) {
      epoch = e;
      perm = permutation(n, new Rng((seed * 7919 + e * 104729) >>> 0));
    }
    out.push(perm[pos % n]);
    pos++;
  }
  return out;
}

function permutation(n: number, rng: Rng): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

function optimizerTensors(names: string[], opt: AdamW, shapes: number[][]): Map<string, SafeTensor> {
  const s = opt.getState();
  const out = new Map<string, SafeTensor>();
  names.forEach((n, i) => {
    out.set(`exp_avg.${n}`, { dtype: 'F32', shape: shapes[i], data: s.m[i] });
    out.set(`exp_avg_sq.${n}`, { dtype: 'F32', shape: shapes[i], data: s.v[i] });
  });
  return out;
}

/** The EMA weights as a state dict, in PyTorch layout and naming like the model's. */
function emaTensors(named: [string, Parameter][], ema: Ema): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  named.forEach(([n, p], i) => {
    const t = tf.tidy(() => p.toTorch(ema.shadow[i]));
    out.set(n, { dtype: 'F32', shape: p.torchShape, data: t.dataSync() as Float32Array });
    t.dispose();
  });
  return out;
}

/** Every camera of an image policy must be in the buffer as (N, size, size, 3) frames. */
export function checkCameras(buffer: ReplayBuffer, config: DiffusionPolicyConfig): void {
  const v = config.vision;
  if (!v) return;
  for (const cam of v.cameras) {
    if (!buffer.arrays.has(cam)) throw new Error(`the policy observes camera "${cam}" but the dataset has no such array (has: ${[...buffer.arrays.keys()].join(', ')})`);
    const shape = buffer.get(cam).frameShape;
    if (shape.length !== 3 || shape[0] !== v.frameSize || shape[1] !== v.frameSize || shape[2] !== 3) {
      throw new Error(`dataset "${cam}" frames are [${shape}] but the policy expects ${v.frameSize}x${v.frameSize}x3 RGB`);
    }
  }
}

export async function trainPolicy(opts: TrainOptions): Promise<TrainResult> {
  const started = performance.now();
  const obsKey = opts.obsKey ?? 'obs';
  const actionKey = opts.actionKey ?? 'action';
  const ckptDir = path.join(opts.outDir, 'checkpoints');
  const existing = opts.resume ? await latestCheckpoint(ckptDir) : null;
  if (opts.resume) await removeWriterDebris(ckptDir);
  let cfg: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...opts.train };
  let policyConfig = opts.policy;
  validatePolicyConfig(policyConfig);

  let normalizer: LinearNormalizer;
  let resumed: Awaited<ReturnType<typeof loadCheckpoint>> | null = null;
  if (existing) {
    resumed = await loadCheckpoint(existing);
    const m = resumed.meta;
    if (m.kind !== 'diffusion-policy') throw new CheckpointError(`${existing}: is a ${String(m.kind)} checkpoint, cannot resume diffusion-policy training from it`);
    policyConfig = m.policyConfig as DiffusionPolicyConfig;
    // The step budget may be extended on resume; everything else must match the run.
    cfg = { ...(m.trainConfig as TrainConfig), steps: opts.train?.steps ?? (m.trainConfig as TrainConfig).steps };
    normalizer = LinearNormalizer.fromJSON(m.normalizer, `${existing}/checkpoint.json`);
  } else {
    const obs = opts.buffer.get(obsKey);
    const act = opts.buffer.get(actionKey);
    const dimOf = (k: string) => opts.buffer.frameSize(k);
    if (dimOf(obsKey) !== policyConfig.obsDim) throw new Error(`dataset "${obsKey}" has ${dimOf(obsKey)} values per frame but the policy expects obsDim ${policyConfig.obsDim}`);
    if (dimOf(actionKey) !== policyConfig.actionDim) throw new Error(`dataset "${actionKey}" has ${dimOf(actionKey)} values per frame but the policy expects actionDim ${policyConfig.actionDim}`);
    checkCameras(opts.buffer, policyConfig);
    normalizer = LinearNormalizer.fit({ obs: { values: Float32Array.from(obs.data), dim: policyConfig.obsDim }, action: { values: Float32Array.from(act.data), dim: policyConfig.actionDim } });
  }

  const policy = new DiffusionPolicy(policyConfig, normalizer, buildContext({ seed: cfg.seed }));
  const named = [...policy.model.namedParameters()];
  const names = named.map(([n]) => n);
  const vars = named.map(([, p]) => p.v);
  const opt = new AdamW(vars, { lr: cfg.lr, betas: cfg.betas, weightDecay: cfg.weightDecay });
  const ema = new Ema(vars, cfg.emaPower, cfg.emaMaxDecay);
  const noiseRng = new Rng((cfg.seed + 1) >>> 0);
  const cropRng = new Rng((cfg.seed + 2) >>> 0);
  let step = 0;
  let losses: number[] = [];
  let lastCheckpoint: string | null = existing;

  if (resumed) {
    const src = resumed.path;
    loadStateDict(policy.model, resumed.tensors.model, { source: `${src}/model.safetensors` });
    const emaSd = resumed.tensors.ema;
    const optSd = resumed.tensors.optimizer;
    if (!emaSd || !optSd) throw new CheckpointError(`${src}: lacks EMA or optimizer state, cannot resume training`);
    named.forEach(([n, p], i) => {
      const e = emaSd.get(n);
      if (!e) throw new CheckpointError(`${src}/ema.safetensors: missing tensor "${n}"`);
      const t = tf.tidy(() => p.fromTorch(tf.tensor(e.data as Float32Array, e.shape)));
      ema.shadow[i].assign(t);
      t.dispose();
    });
    const m: Float32Array[] = [];
    const v: Float32Array[] = [];
    for (const n of names) {
      const a = optSd.get(`exp_avg.${n}`);
      const b = optSd.get(`exp_avg_sq.${n}`);
      if (!a || !b) throw new CheckpointError(`${src}/optimizer.safetensors: missing moments of "${n}"`);
      m.push(a.data as Float32Array);
      v.push(b.data as Float32Array);
    }
    const meta = resumed.meta;
    step = meta.step as number;
    opt.setState({ t: meta.optimizerStep as number, m, v });
    ema.step = meta.emaStep as number;
    noiseRng.setState(meta.noiseRng as number[]);
    if (meta.cropRng) cropRng.setState(meta.cropRng as number[]);
    losses = (meta.losses as number[]).slice(0, step);
  }

  const sampler = new SequenceSampler(opts.buffer, {
    sequenceLength: policyConfig.horizon,
    padBefore: policyConfig.nObsSteps - 1,
    padAfter: policyConfig.nActionSteps - 1,
  });
  if (sampler.length === 0) throw new Error('dataset has no training windows (is it empty?)');

  const writeCheckpoint = async (): Promise<string> => {
    const shapes = named.map(([, p]) => p.shape);
    const dir = await saveCheckpoint(
      ckptDir,
      `step-${String(step).padStart(7, '0')}`,
      {
        meta: {
          kind: 'diffusion-policy',
          policyConfig,
          normalizer: normalizer.toJSON(),
          schedule: policy.scheduler.toJSON(),
          trainConfig: cfg,
          step,
          epoch: (step * cfg.batchSize) / sampler.length,
          optimizerStep: opt.t,
          emaStep: ema.step,
          noiseRng: noiseRng.getState(),
          cropRng: cropRng.getState(),
          losses,
          obsKey,
          actionKey,
          provenance: opts.provenance ?? {},
          savedAt: new Date().toISOString(),
        },
        tensors: {
          model: stateDict(policy.model),
          ema: emaTensors(named, ema),
          optimizer: optimizerTensors(names, opt, shapes),
        },
      },
      cfg.keepCheckpoints,
    );
    lastCheckpoint = dir;
    return dir;
  };

  const progress: Progress = makeProgress(opts.progress ?? 'auto');
  progress.start(cfg.steps, step, 'train');
  const { horizon, actionDim } = policyConfig;
  let windowStart = performance.now();
  let windowSteps = 0;
  let hookMs = 0;
  const checkpointAndHook = async (): Promise<void> => {
    const dir = await writeCheckpoint();
    if (!opts.onCheckpoint) return;
    const t0 = performance.now();
    await opts.onCheckpoint({ step, dir });
    const spent = performance.now() - t0;
    hookMs += spent;
    windowStart += spent;
  };
  try {
    while (step < cfg.steps) {
      const idx = batchIndices(sampler.length, cfg.batchSize, cfg.seed, step);
      const obs = trainingObs(policyConfig, normalizer, sampler, idx, cropRng, obsKey);
      const actBatch = normalizer.normalize('action', sampler.batch(actionKey, idx));
      const lr = cfg.lr * cosineWithWarmup(step, cfg.warmupSteps, cfg.steps);
      opt.lr = lr;
      const lossValue = tf.tidy(() => {
        const a = tf.tensor(actBatch, [idx.length, horizon, actionDim]);
        const { value, grads } = tf.variableGrads(() => {
          const l = policy.computeLoss(obs, a, noiseRng);
          return opts.lossHook ? opts.lossHook(step, l) : l;
        }, vars);
        const v = value.dataSync()[0];
        if (Number.isFinite(v)) opt.step(vars.map((x) => grads[x.name]));
        return v;
      });
      disposePolicyObs(obs);
      if (!Number.isFinite(lossValue)) {
        throw new TrainingDivergedError(
          `training loss became ${lossValue} at step ${step + 1}; stopped without updating the weights. ` +
            (lastCheckpoint ? `The last good checkpoint is intact: ${lastCheckpoint}` : 'No checkpoint had been written yet.') +
            ' Try a lower learning rate or check the dataset for extreme values.',
        );
      }
      ema.update();
      losses.push(lossValue);
      step++;
      windowSteps++;
      const elapsed = performance.now() - windowStart;
      const sps = (windowSteps * cfg.batchSize * 1000) / Math.max(elapsed, 1);
      if (elapsed > 10000) {
        windowStart = performance.now();
        windowSteps = 0;
      }
      progress.update(step, { loss: lossValue, lr, 'samples/s': sps });
      const verdict = opts.onStep?.({ step, loss: lossValue, lr, samplesPerSec: sps });
      if (step % cfg.checkpointEvery === 0 || step === cfg.steps || verdict === 'stop') await checkpointAndHook();
      if (verdict === 'stop') break;
    }
  } finally {
    progress.stop();
    opt.dispose();
  }
  return { policy, ema, step, losses, checkpoint: lastCheckpoint, hookSeconds: hookMs / 1000, wallSeconds: (performance.now() - started - hookMs) / 1000 };
}

/**
 * Recipe studies: train one diffusion-policy configuration per entry and evaluate its EMA
 * weights on the test seeds at every checkpoint, so a curve of score against pre-training steps
 * and wall-clock comes out of one run. Each configuration is resumable (the trainer resumes from
 * its checkpoint; curve points already measured are kept) and independent, so configurations run
 * as parallel processes, one core each.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { collectPushT } from '../envs/collect.js';
import { readReplayBuffer, writeReplayBuffer } from '../data/zarr.js';
import { policyBuffer, specKeys } from '../data/obs_spec.js';
import { defaultPolicyConfig } from '../policy/diffusion_policy.js';
import { loadDiffusionPolicy } from '../policy/load.js';
import { trainPolicy } from '../train/trainer.js';
import { evaluatePushT } from '../eval/pusht.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { noiseKind, type NoiseKind } from './recipe.js';

export interface StudyConfig {
  /** Directory name and label. */
  name: string;
  episodes: number;
  downDims: number[];
  stepEmbed: number;
  batchSize: number;
  lr: number;
  steps: number;
  warmupSteps: number;
  noise: NoiseKind;
  /** Steps between evaluated checkpoints. */
  evalEvery: number;
  seed: number;
}

export interface StudyPoint {
  step: number;
  /** Pre-training wall-clock up to this checkpoint, evaluations excluded. */
  trainSeconds: number;
  epochs: number;
  score: number;
  success: number;
}

export interface StudyCurve {
  config: StudyConfig;
  frames: number;
  params: number;
  engine: string;
  points: StudyPoint[];
}

const STATE_SPEC = 'keypoint,state[0:2]';

/** Demonstrations shared by every configuration with the same count, collected once. */
export async function studyDataset(root: string, episodes: number): Promise<string> {
  const file = path.join(root, `data-${episodes}.zarr`);
  const done = await fs.access(path.join(file, '.zgroup')).then(
    () => true,
    () => false,
  );
  if (!done) {
    const res = collectPushT({ episodes, seed: 0 });
    await writeReplayBuffer(file, res.buffer);
  }
  return file;
}

async function readCurve(file: string): Promise<StudyCurve | null> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as StudyCurve;
  } catch {
    return null;
  }
}

export interface StudyRunOptions {
  root: string;
  testSeeds: number[];
  engine: string;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
  log?: (s: string) => void;
}

/** Trains `cfg` to its step budget, evaluating every `evalEvery` steps; returns the curve. */
export async function runStudyConfig(cfg: StudyConfig, opts: StudyRunOptions): Promise<StudyCurve> {
  const dir = path.join(opts.root, cfg.name);
  await fs.mkdir(dir, { recursive: true });
  const curveFile = path.join(dir, 'curve.json');
  const prior = await readCurve(curveFile);
  if (prior && JSON.stringify(prior.config) !== JSON.stringify(cfg)) throw new Error(`${curveFile}: was made with another configuration; remove ${dir} to rerun it`);
  const dataFile = await studyDataset(opts.root, cfg.episodes);
  const buffer = policyBuffer(await readReplayBuffer(dataFile, { keys: specKeys(STATE_SPEC) }), STATE_SPEC, dataFile);
  const policy = defaultPolicyConfig(20, 2, {
    unet: { diffusionStepEmbedDim: cfg.stepEmbed, downDims: cfg.downDims, kernelSize: 5, nGroups: 8, condPredictScale: true },
    noise: noiseKind(cfg.noise),
  });
  const curve: StudyCurve = prior ?? { config: cfg, frames: buffer.numFrames, params: 0, engine: opts.engine, points: [] };
  // Training time of the steps before a resume, from the last point measured.
  const last = curve.points[curve.points.length - 1];
  const offsetSeconds = last?.trainSeconds ?? 0;
  const started = performance.now();
  let hookMs = 0;
  const res = await trainPolicy({
    policy,
    buffer,
    outDir: dir,
    resume: true,
    train: { steps: cfg.steps, batchSize: cfg.batchSize, lr: cfg.lr, warmupSteps: cfg.warmupSteps, seed: cfg.seed, checkpointEvery: cfg.evalEvery, keepCheckpoints: 1 },
    progress: opts.progress ?? 'none',
    provenance: { dataset: dataFile, obsSpec: STATE_SPEC, recipe: `study ${cfg.name}` },
    onCheckpoint: async ({ step, dir: ck }) => {
      const t0 = performance.now();
      if (curve.points.some((p) => p.step === step)) return;
      const trainSeconds = offsetSeconds + (t0 - started - hookMs) / 1000;
      const dp = await loadDiffusionPolicy(ck);
      curve.params = dp.unet.numParameters();
      const r = evaluatePushT(dp, { seeds: opts.testSeeds, batchSize: 50, latencyReps: 0 });
      dp.dispose();
      curve.points.push({ step, trainSeconds, epochs: (step * cfg.batchSize) / buffer.numFrames, score: r.meanScore, success: r.successRate });
      curve.points.sort((a, b) => a.step - b.step);
      await writeFileAtomic(curveFile, JSON.stringify(curve, null, 1));
      opts.log?.(`${cfg.name} step ${step}: score ${r.meanScore.toFixed(3)}, success ${r.successRate.toFixed(2)} (train ${trainSeconds.toFixed(0)} s, eval ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      hookMs += performance.now() - t0;
    },
  });
  res.policy.dispose();
  await writeFileAtomic(curveFile, JSON.stringify(curve, null, 1));
  return curve;
}

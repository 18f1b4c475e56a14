/**
 * What an experiment's task supplies to the pipeline: its demonstrations (collected once into
 * one file), the observation the policies see, and how a policy is scored and timed on it.
 * PushT (keypoints or image) keeps its zarr replay buffer and coverage score; the MuJoCo tasks
 * (issue 18) use robomimic HDF5 and success.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { collectPushT } from '../envs/collect.js';
import { writeReplayBuffer, readReplayBuffer } from '../data/zarr.js';
import { IMAGE_OBS_SPEC, ROBOMIMIC_LOWDIM_KEYS, policyBuffer, specKeys } from '../data/obs_spec.js';
import type { ReplayBuffer } from '../data/replay.js';
import type { EvalSummary, LatencyResult } from '../eval/harness.js';
import { evaluatePushT, pushtLatency } from '../eval/pusht.js';
import type { Policy } from '../policy/types.js';
import type { Experiment } from './recipe.js';
import { MANIPULATION_TASK_DEFS, parseManipulationExperiment, type DemoQuality, type ManipulationTask } from '../envs/mujoco/tasks.js';

export interface ExperimentTask {
  /** For reports: "PushT (keypoints)", "Square (ph)". */
  title: string;
  /** What a score is, for axis labels: PushT's coverage, the MuJoCo tasks' success. */
  scoreName: string;
  /** The demonstrations' file or folder name in the run directory. */
  dataFile: string;
  obsSpec: string;
  image: boolean;
  /** Demonstrations seeded from 0. */
  collect(episodes: number, file: string): Promise<void>;
  hasData(file: string): Promise<boolean>;
  loadBuffer(file: string): Promise<ReplayBuffer>;
  evaluate(policy: Policy, seeds: number[]): Promise<EvalSummary>;
  latency(policy: Policy, seeds: number[], reps: number): Promise<LatencyResult>;
}

const exists = (p: string): Promise<boolean> =>
  fs.access(p).then(
    () => true,
    () => false,
  );

function pushtTask(image: boolean): ExperimentTask {
  const obsSpec = image ? IMAGE_OBS_SPEC : 'keypoint,state[0:2]';
  return {
    title: `PushT (${image ? 'image' : 'keypoints'})`,
    scoreName: 'mean coverage',
    dataFile: 'pusht.zarr',
    obsSpec,
    image,
    async collect(episodes, file) {
      await writeReplayBuffer(file, collectPushT({ episodes, seed: 0, images: image }).buffer);
    },
    hasData: (file) => exists(path.join(file, '.zgroup')),
    loadBuffer: async (file) => policyBuffer(await readReplayBuffer(file, { keys: specKeys(obsSpec) }), obsSpec, file),
    evaluate: async (policy, seeds) => evaluatePushT(policy, { seeds, batchSize: 50, latencyReps: 0 }),
    latency: async (policy, seeds, reps) => pushtLatency(policy, seeds, reps),
  };
}

const ROBOMIMIC_SPEC = ROBOMIMIC_LOWDIM_KEYS.join(',');

function mujocoTask(task: ManipulationTask, quality: DemoQuality): ExperimentTask {
  // Loaded on use: PushT experiments never load MuJoCo or HDF5.
  const load = async () => ({ ...(await import('../eval/manipulation.js')), ...(await import('../data/hdf5.js')), ...(await import('../data/load.js')) });
  return {
    title: `${MANIPULATION_TASK_DEFS[task].title} (${quality})`,
    scoreName: 'success rate',
    dataFile: `${task}-${quality}.hdf5`,
    obsSpec: ROBOMIMIC_SPEC,
    image: false,
    async collect(episodes, file) {
      const { collectManipulation } = await import('../envs/mujoco/collect.js');
      const { writeRobomimic } = await load();
      await writeRobomimic(file, (await collectManipulation(task, { episodes, seed: 0, quality })).dataset);
    },
    hasData: exists,
    loadBuffer: async (file) => policyBuffer(await (await load()).openDataset(file), ROBOMIMIC_SPEC, file),
    evaluate: async (policy, seeds) => (await load()).evaluateManipulation(task, policy, { seeds, batchSize: 50, latencyReps: 0 }),
    latency: async (policy, seeds, reps) => (await load()).manipulationLatency(task, policy, seeds, reps),
  };
}

export function experimentTask(e: Experiment): ExperimentTask {
  if (e === 'pusht-state' || e === 'pusht-image') return pushtTask(e === 'pusht-image');
  const m = parseManipulationExperiment(e);
  if (!m) throw new Error(`unknown experiment "${e}"`);
  return mujocoTask(m.task, m.quality);
}

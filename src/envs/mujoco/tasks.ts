/**
 * The MuJoCo manipulation tasks by name (issue 18): how to build each, its robomimic name and its
 * scripted experts. Collection, evaluation and the CLI take a task from here, so a new task is
 * one entry.
 */
import type { MainModule } from 'mujoco-js';
import { loadMujoco } from './sim.js';
import type { ManipulationEnv, ManipulationObs } from './gripper.js';
import { LiftEnv } from './lift.js';
import { LiftExpert } from './lift_expert.js';
import type { DemoQuality } from './operator.js';
import { SquareEnv } from './square.js';
import { SquareExpert } from './square_expert.js';

export type { DemoQuality } from './operator.js';

export interface ManipulationExpert {
  reset(seed: number): void;
  act(o: ManipulationObs): number[];
}

export interface ManipulationTaskDef {
  /** For reports. */
  title: string;
  /** robomimic's `env_name`, written to a dataset's `env_args`. */
  envName: string;
  create(mj: MainModule): ManipulationEnv;
  expert(quality: DemoQuality): ManipulationExpert;
}

export const MANIPULATION_TASK_DEFS = {
  lift: { title: 'Lift', envName: 'Lift', create: (mj) => LiftEnv.createWith(mj), expert: (q) => new LiftExpert(q) },
  square: { title: 'Square', envName: 'NutAssemblySquare', create: (mj) => SquareEnv.createWith(mj), expert: (q) => new SquareExpert(q) },
} as const satisfies Record<string, ManipulationTaskDef>;

export type ManipulationTask = keyof typeof MANIPULATION_TASK_DEFS;
export const MANIPULATION_TASKS = Object.keys(MANIPULATION_TASK_DEFS) as ManipulationTask[];

export const DEMO_QUALITIES: readonly DemoQuality[] = ['ph', 'mh'];

/** An experiment on a task with demonstrations of one quality: `lift-ph`, `square-mh`, ... */
export type ManipulationExperiment = `${ManipulationTask}-${DemoQuality}`;

/** `lift-ph` -> lift and ph; null for anything that is not a task and a quality. */
export function parseManipulationExperiment(name: string): { task: ManipulationTask; quality: DemoQuality } | null {
  const i = name.lastIndexOf('-');
  const [task, quality] = [name.slice(0, i), name.slice(i + 1)];
  return i > 0 && isManipulationTask(task) && (DEMO_QUALITIES as string[]).includes(quality) ? { task, quality: quality as DemoQuality } : null;
}

export const MANIPULATION_EXPERIMENTS: ManipulationExperiment[] = MANIPULATION_TASKS.flatMap((t) => DEMO_QUALITIES.map((q) => `${t}-${q}` as const));

export function isManipulationTask(name: string): name is ManipulationTask {
  return Object.hasOwn(MANIPULATION_TASK_DEFS, name);
}

/** A task's definition; an unknown name is an error listing the known ones. */
export function manipulationTask(name: string): ManipulationTaskDef {
  if (!isManipulationTask(name)) throw new Error(`unknown manipulation task "${name}" (known: ${MANIPULATION_TASKS.join(', ')})`);
  return MANIPULATION_TASK_DEFS[name];
}

/** A fresh environment of a task, loading MuJoCo when needed. */
export async function createManipulationEnv(name: string): Promise<ManipulationEnv> {
  const def = manipulationTask(name);
  return def.create(await loadMujoco());
}

/**
 * The MuJoCo section (issue 18): per task, physics steps per second and control steps per second
 * (25 physics steps of 2 ms each, observations included), and what that makes in episodes per
 * minute at the task's horizon. Actions are a deterministic sweep with the gripper opening and
 * closing, so contacts with the table and the objects happen.
 */
import { createManipulationEnv, MANIPULATION_TASKS } from '../src/envs/mujoco/tasks.js';
import type { ManipulationEnv } from '../src/envs/mujoco/gripper.js';
import type { BenchRow } from './harness.js';

/**
 * Mean ms per control step over `budgetMs` of stepping (episodes reset at the horizon). The
 * browser bench runs the same loop in a worker, so Node and Chromium are timed alike.
 */
export function controlStepMs(env: ManipulationEnv, budgetMs: number): number {
  let steps = 0;
  env.reset(0);
  const t0 = performance.now();
  while (performance.now() - t0 < budgetMs) {
    const k = steps;
    env.step([Math.sin(k / 7), Math.cos(k / 11), Math.sin(k / 5) - 0.3, 0, 0, 0.2 * Math.sin(k / 13), Math.sin(k / 9)]);
    steps++;
    if (steps % env.horizon === 0) env.reset(steps);
  }
  return (performance.now() - t0) / steps;
}

export const controlStepName = (task: string) => `${task} control step (25 physics steps + observation)`;

export async function benchMujoco(rows: BenchRow[], opts: { quick: boolean }): Promise<void> {
  for (const task of MANIPULATION_TASKS) {
    const env = await createManipulationEnv(task);
    const ms = controlStepMs(env, opts.quick ? 1000 : 3000);
    rows.push({
      section: 'mujoco',
      name: controlStepName(task),
      ms,
      extra: { 'steps/s': +(1000 / ms).toFixed(0), 'physics steps/s': +((25 * 1000) / ms).toFixed(0), [`episodes/min (${env.horizon} steps)`]: +(60000 / (ms * env.horizon)).toFixed(1) },
    });
    env.dispose();
  }
}

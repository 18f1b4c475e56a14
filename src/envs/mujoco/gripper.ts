/**
 * What the MuJoCo manipulation tasks share (issue 18): a table, a mocap-driven parallel-jaw
 * gripper, robomimic's action interface and its robot observations. A task adds its objects'
 * MJCF, their seeded placement, its `object` observation and its success test.
 *
 * The gripper is mocap-driven, as the issue allows: a mocap body, welded to the free-floating
 * gripper, moves by each action's deltas, and the weld pulls the gripper after it through the
 * contacts. Two slide fingers under position control close on what is between them.
 *
 * Actions as robomimic's: 7-D in [-1, 1], (dx, dy, dz, rx, ry, rz, gripper): position deltas of
 * up to 5 cm and rotation deltas (axis-angle) of up to 0.5 rad per step, the gripper closing for
 * +1 and opening for -1; 20 Hz control (25 physics steps of 2 ms). Observations: `object` (the
 * task's), `robot0_eef_pos` (the point between the fingertips), `robot0_eef_quat` (x, y, z, w, as
 * robosuite) and `robot0_gripper_qpos` (the two finger joints).
 */
import { Rng } from '../../util/rng.js';
import type { MujocoSim } from './sim.js';

export const TABLE_TOP = 0.8;
const SUBSTEPS = 25;
const MAX_DPOS = 0.05;
const MAX_DROT = 0.5;
const FINGER_CLOSED = 0.035;
/** Where the mocap may go: above the table, within reach. */
const WORKSPACE = { lo: [-0.3, -0.3, TABLE_TOP + 0.03], hi: [0.3, 0.3, 1.3] };

/** A task's MJCF: the shared scene and gripper around the task's own bodies. */
export function manipulationXml(model: string, objects: string): string {
  return `
<mujoco model="${model}">
  <option timestep="0.002" impratio="10" cone="elliptic"/>
  <default><geom friction="1 0.005 0.0001"/></default>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="2 2 .1" rgba="0.9 0.9 0.9 1"/>
    <geom name="table" type="box" pos="0 0 0.4" size="0.4 0.4 0.4" rgba="0.6 0.45 0.3 1"/>
${objects}
    <body name="mocap" mocap="true" pos="0 0 1.0"/>
    <body name="gripper" pos="0 0 1.0">
      <freejoint name="gripper"/>
      <geom name="palm" type="box" size="0.01 0.045 0.01" mass="0.5" contype="0" conaffinity="0" rgba="0.3 0.3 0.3 1"/>
      <site name="grip" pos="0 0 -0.055" size="0.005"/>
      <body name="left_finger" pos="0 0.035 -0.04">
        <joint name="left" type="slide" axis="0 -1 0" range="0 0.035" damping="5"/>
        <geom name="left_pad" type="box" size="0.01 0.005 0.03" mass="0.05" friction="2 0.005 0.0001" rgba="0.3 0.3 0.3 1"/>
      </body>
      <body name="right_finger" pos="0 -0.035 -0.04">
        <joint name="right" type="slide" axis="0 1 0" range="0 0.035" damping="5"/>
        <geom name="right_pad" type="box" size="0.01 0.005 0.03" mass="0.05" friction="2 0.005 0.0001" rgba="0.3 0.3 0.3 1"/>
      </body>
    </body>
  </worldbody>
  <equality><weld body1="mocap" body2="gripper" solref="0.01 1"/></equality>
  <actuator>
    <position name="left" joint="left" kp="300" ctrlrange="0 0.035"/>
    <position name="right" joint="right" kp="300" ctrlrange="0 0.035"/>
  </actuator>
</mujoco>`;
}

export type ManipulationObs = Record<'object' | 'robot0_eef_pos' | 'robot0_eef_quat' | 'robot0_gripper_qpos', Float64Array>;

export interface ManipulationStep<I extends object = object> {
  observation: ManipulationObs;
  reward: number;
  terminated: boolean;
  truncated: boolean;
  info: { success: boolean; steps: number } & I;
}

export interface ManipulationSnapshot {
  state: Float64Array;
  steps: number;
}

/** What the harness, the collector and the experts need of a task. */
export interface ManipulationEnv {
  readonly horizon: number;
  /** The simulation, for drawing it (`drawManipulation`). */
  readonly sim: MujocoSim;
  reset(seed: number): ManipulationObs;
  step(action: readonly number[]): ManipulationStep;
  observation(): ManipulationObs;
  success(): boolean;
  snapshot(): ManipulationSnapshot;
  restore(s: ManipulationSnapshot): void;
  dispose(): void;
}

export type Quat = [number, number, number, number];

/** Hamilton product, (w, x, y, z). */
export function qmul(a: Quat, b: Quat): Quat {
  return [a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3], a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2], a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1], a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]];
}

/** Axis-angle vector (its norm is the angle) to a quaternion (w, x, y, z). */
export function axisAngleQuat(r: readonly number[]): Quat {
  const angle = Math.hypot(r[0], r[1], r[2]);
  if (angle < 1e-12) return [1, 0, 0, 0];
  const s = Math.sin(angle / 2) / angle;
  return [Math.cos(angle / 2), r[0] * s, r[1] * s, r[2] * s];
}

/** MuJoCo's (w, x, y, z) as robosuite's (x, y, z, w). */
export const xyzw = (q: Quat): number[] => [q[1], q[2], q[3], q[0]];

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export abstract class MocapGripperEnv<I extends object = object> implements ManipulationEnv {
  readonly horizon: number;
  private steps = 0;
  protected readonly gripper: number;
  private readonly site: number;
  private readonly fingers: [number, number];
  private readonly gripperQpos: number;

  protected constructor(
    readonly sim: MujocoSim,
    /** Names the task in errors. */
    readonly name: string,
    horizon: number,
  ) {
    this.horizon = horizon;
    this.gripper = sim.id('body', 'gripper');
    this.site = sim.id('site', 'grip');
    const adr = sim.model.jnt_qposadr as unknown as Int32Array;
    this.fingers = [adr[sim.id('joint', 'left')], adr[sim.id('joint', 'right')]];
    this.gripperQpos = adr[sim.id('joint', 'gripper')];
  }

  /** Places the task's objects for a seed (into qpos) and returns the gripper's start position. */
  protected abstract place(rng: Rng, qpos: Float64Array): [number, number, number];
  /** robomimic's `object` observation. */
  protected abstract objectObs(): number[];
  abstract success(): boolean;
  /** Extra per-step information for tests and traces. */
  protected abstract taskInfo(): I;

  reset(seed: number): ManipulationObs {
    const rng = new Rng(seed);
    const { sim } = this;
    sim.reset();
    const qpos = sim.data.qpos as unknown as Float64Array;
    const g = this.place(rng, qpos);
    qpos.set([...g, 1, 0, 0, 0], this.gripperQpos);
    (sim.data.mocap_pos as unknown as Float64Array).set(g);
    (sim.data.mocap_quat as unknown as Float64Array).set([1, 0, 0, 0]);
    sim.forward();
    this.steps = 0;
    return this.observation();
  }

  step(action: readonly number[]): ManipulationStep<I> {
    if (action.length !== 7) throw new Error(`${this.name} action must have 7 entries, got ${action.length}`);
    if (!action.every(Number.isFinite)) throw new Error(`${this.name} action has a non-finite entry: ${JSON.stringify(action)}`);
    const a = action.map((v) => clip(v, -1, 1));
    const { sim } = this;
    const mp = sim.data.mocap_pos as unknown as Float64Array;
    const mq = sim.data.mocap_quat as unknown as Float64Array;
    for (let i = 0; i < 3; i++) mp[i] = clip(mp[i] + MAX_DPOS * a[i], WORKSPACE.lo[i], WORKSPACE.hi[i]);
    const q = qmul(axisAngleQuat([MAX_DROT * a[3], MAX_DROT * a[4], MAX_DROT * a[5]]), [mq[0], mq[1], mq[2], mq[3]]);
    const n = Math.hypot(...q);
    mq.set(q.map((v) => v / n));
    const close = ((a[6] + 1) / 2) * FINGER_CLOSED;
    (sim.data.ctrl as unknown as Float64Array).set([close, close]);
    sim.step(SUBSTEPS);
    this.steps++;
    const success = this.success();
    return {
      observation: this.observation(),
      reward: success ? 1 : 0,
      terminated: success,
      truncated: !success && this.steps >= this.horizon,
      info: { success, steps: this.steps, ...this.taskInfo() },
    };
  }

  observation(): ManipulationObs {
    const { sim } = this;
    const qpos = sim.data.qpos as unknown as Float64Array;
    return {
      object: Float64Array.from(this.objectObs()),
      robot0_eef_pos: Float64Array.from(this.eefPos()),
      robot0_eef_quat: Float64Array.from(xyzw(sim.bodyQuat(this.gripper))),
      robot0_gripper_qpos: Float64Array.from([qpos[this.fingers[0]], qpos[this.fingers[1]]]),
    };
  }

  eefPos(): [number, number, number] {
    return this.sim.sitePos(this.site);
  }

  snapshot(): ManipulationSnapshot {
    return { state: this.sim.getState(), steps: this.steps };
  }

  restore(s: ManipulationSnapshot): void {
    this.sim.setState(s.state);
    this.steps = s.steps;
  }

  dispose(): void {
    this.sim.dispose();
  }
}

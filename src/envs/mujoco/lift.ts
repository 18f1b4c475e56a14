/**
 * Lift (robomimic's simplest task, issue 18): a parallel-jaw gripper picks a 4 cm cube from a
 * table and raises it. Written by this project in MJCF; MuJoCo through `mujoco-js`.
 *
 * The gripper is mocap-driven, as the issue allows: a mocap body, welded to the free-floating
 * gripper, moves by each action's deltas, and the weld pulls the gripper after it through the
 * contacts. Two slide fingers under position control close on the cube.
 *
 * Interface as robomimic's: actions are 7-D in [-1, 1], (dx, dy, dz, rx, ry, rz, gripper):
 * position deltas of up to 5 cm and rotation deltas (axis-angle) of up to 0.5 rad per step, the
 * gripper closing for +1 and opening for -1; 20 Hz control (25 physics steps of 2 ms). The
 * observations use robomimic's names: `object` (cube position, quaternion, gripper position minus
 * cube position, as robosuite's `gripper_to_cube_pos`: 10 values), `robot0_eef_pos`, `robot0_eef_quat` (x, y, z, w, as robosuite)
 * and `robot0_gripper_qpos` (the two finger joints). Success: the cube's bottom 4 cm above the
 * table. Initial cube poses come from the seed.
 */
import { Rng } from '../../util/rng.js';
import type { MainModule } from 'mujoco-js';
import { MujocoSim } from './sim.js';

export const LIFT_XML = `
<mujoco model="onedp-lift">
  <option timestep="0.002" impratio="10" cone="elliptic"/>
  <default><geom friction="1 0.005 0.0001"/></default>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="2 2 .1" rgba="0.9 0.9 0.9 1"/>
    <geom name="table" type="box" pos="0 0 0.4" size="0.4 0.4 0.4" rgba="0.6 0.45 0.3 1"/>
    <body name="cube" pos="0 0 0.82">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="0.02 0.02 0.02" mass="0.05" rgba="0.8 0.1 0.1 1"/>
    </body>
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

export const TABLE_TOP = 0.8;
export const CUBE_HALF = 0.02;
/** Success: the cube's bottom this far above the table. */
export const LIFT_HEIGHT = 0.04;
const SUBSTEPS = 25;
const MAX_DPOS = 0.05;
const MAX_DROT = 0.5;
const FINGER_CLOSED = 0.035;
/** Where the mocap may go: above the table, within reach. */
const WORKSPACE = { lo: [-0.3, -0.3, TABLE_TOP + 0.03], hi: [0.3, 0.3, 1.3] };

export type LiftObs = Record<'object' | 'robot0_eef_pos' | 'robot0_eef_quat' | 'robot0_gripper_qpos', Float64Array>;

export interface LiftStep {
  observation: LiftObs;
  reward: number;
  terminated: boolean;
  truncated: boolean;
  info: { success: boolean; steps: number; cubeHeight: number };
}

export interface LiftSnapshot {
  state: Float64Array;
  steps: number;
}

type Quat = [number, number, number, number];

/** Hamilton product, (w, x, y, z). */
function qmul(a: Quat, b: Quat): Quat {
  return [a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3], a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2], a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1], a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]];
}

/** Axis-angle vector (its norm is the angle) to a quaternion (w, x, y, z). */
export function axisAngleQuat(r: readonly number[]): Quat {
  const angle = Math.hypot(r[0], r[1], r[2]);
  if (angle < 1e-12) return [1, 0, 0, 0];
  const s = Math.sin(angle / 2) / angle;
  return [Math.cos(angle / 2), r[0] * s, r[1] * s, r[2] * s];
}

const clip = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export class LiftEnv {
  readonly horizon: number;
  private steps = 0;
  private readonly cube: number;
  private readonly gripper: number;
  private readonly site: number;
  private readonly fingers: [number, number];

  private constructor(
    readonly sim: MujocoSim,
    opts: { horizon?: number },
  ) {
    this.horizon = opts.horizon ?? 200;
    this.cube = sim.id('body', 'cube');
    this.gripper = sim.id('body', 'gripper');
    this.site = sim.id('site', 'grip');
    const adr = sim.model.jnt_qposadr as unknown as Int32Array;
    this.fingers = [adr[sim.id('joint', 'left')], adr[sim.id('joint', 'right')]];
  }

  static async create(opts: { horizon?: number } = {}): Promise<LiftEnv> {
    return new LiftEnv(await MujocoSim.fromXml(LIFT_XML, 'lift task'), opts);
  }

  /** `create` with MuJoCo already loaded (`loadMujoco`). */
  static createWith(mj: MainModule, opts: { horizon?: number } = {}): LiftEnv {
    return new LiftEnv(MujocoSim.compile(mj, LIFT_XML, 'lift task'), opts);
  }

  /**
   * The seed's start: the cube anywhere within 8 cm of the table's centre with any yaw, the
   * gripper 18 cm above the table, open, within 2 cm of the centre.
   */
  reset(seed: number): LiftObs {
    const rng = new Rng(seed);
    const { sim } = this;
    sim.reset();
    const qpos = sim.data.qpos as unknown as Float64Array;
    const [cx, cy] = [0.16 * rng.uniform() - 0.08, 0.16 * rng.uniform() - 0.08];
    const yaw = 2 * Math.PI * rng.uniform() - Math.PI;
    const g: [number, number, number] = [0.04 * rng.uniform() - 0.02, 0.04 * rng.uniform() - 0.02, TABLE_TOP + 0.2];
    // Free joints: cube at qpos 0..6, gripper at 7..13 (x, y, z, qw, qx, qy, qz).
    qpos.set([cx, cy, TABLE_TOP + CUBE_HALF, Math.cos(yaw / 2), 0, 0, Math.sin(yaw / 2)], 0);
    qpos.set([...g, 1, 0, 0, 0], 7);
    (sim.data.mocap_pos as unknown as Float64Array).set(g);
    (sim.data.mocap_quat as unknown as Float64Array).set([1, 0, 0, 0]);
    sim.forward();
    this.steps = 0;
    return this.observation();
  }

  step(action: readonly number[]): LiftStep {
    if (action.length !== 7) throw new Error(`Lift action must have 7 entries, got ${action.length}`);
    if (!action.every(Number.isFinite)) throw new Error(`Lift action has a non-finite entry: ${JSON.stringify(action)}`);
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
      info: { success, steps: this.steps, cubeHeight: sim.bodyPos(this.cube)[2] - CUBE_HALF - TABLE_TOP },
    };
  }

  success(): boolean {
    return this.sim.bodyPos(this.cube)[2] - CUBE_HALF - TABLE_TOP > LIFT_HEIGHT;
  }

  observation(): LiftObs {
    const { sim } = this;
    const cube = sim.bodyPos(this.cube);
    const eef = sim.sitePos(this.site);
    const xyzw = (q: Quat) => [q[1], q[2], q[3], q[0]];
    const qpos = sim.data.qpos as unknown as Float64Array;
    return {
      // robosuite's gripper_to_cube_pos is the gripper's position minus the cube's.
      object: Float64Array.from([...cube, ...xyzw(sim.bodyQuat(this.cube)), eef[0] - cube[0], eef[1] - cube[1], eef[2] - cube[2]]),
      robot0_eef_pos: Float64Array.from(eef),
      robot0_eef_quat: Float64Array.from(xyzw(sim.bodyQuat(this.gripper))),
      robot0_gripper_qpos: Float64Array.from([qpos[this.fingers[0]], qpos[this.fingers[1]]]),
    };
  }

  cubePos(): [number, number, number] {
    return this.sim.bodyPos(this.cube);
  }

  eefPos(): [number, number, number] {
    return this.sim.sitePos(this.site);
  }

  snapshot(): LiftSnapshot {
    return { state: this.sim.getState(), steps: this.steps };
  }

  restore(s: LiftSnapshot): void {
    this.sim.setState(s.state);
    this.steps = s.steps;
  }

  dispose(): void {
    this.sim.dispose();
  }
}

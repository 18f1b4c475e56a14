/**
 * Lift (robomimic's simplest task, issue 18): the gripper picks a 4 cm cube from a table and
 * raises it. The scene, gripper, actions and robot observations are `MocapGripperEnv`'s.
 *
 * `object` is robosuite's: cube position, quaternion (x, y, z, w), and the gripper's position
 * minus the cube's (`gripper_to_cube_pos`): 10 values. Success: the cube's bottom 4 cm above the
 * table. Initial cube poses come from the seed.
 */
import type { MainModule } from 'mujoco-js';
import type { Rng } from '../../util/rng.js';
import { MujocoSim } from './sim.js';
import { MocapGripperEnv, TABLE_TOP, manipulationXml, xyzw, type ManipulationObs, type ManipulationSnapshot, type ManipulationStep } from './gripper.js';

export { TABLE_TOP, axisAngleQuat } from './gripper.js';

export const LIFT_XML = manipulationXml(
  'onedp-lift',
  `    <body name="cube" pos="0 0 0.82">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="0.02 0.02 0.02" mass="0.05" rgba="0.8 0.1 0.1 1"/>
    </body>`,
);

export const CUBE_HALF = 0.02;
/** Success: the cube's bottom this far above the table. */
export const LIFT_HEIGHT = 0.04;

export type LiftObs = ManipulationObs;
export type LiftStep = ManipulationStep<{ cubeHeight: number }>;
export type LiftSnapshot = ManipulationSnapshot;

export class LiftEnv extends MocapGripperEnv<{ cubeHeight: number }> {
  private readonly cube: number;

  private constructor(sim: MujocoSim, opts: { horizon?: number }) {
    super(sim, 'Lift', opts.horizon ?? 200);
    this.cube = sim.id('body', 'cube');
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
  protected place(rng: Rng, qpos: Float64Array): [number, number, number] {
    const [cx, cy] = [0.16 * rng.uniform() - 0.08, 0.16 * rng.uniform() - 0.08];
    const yaw = 2 * Math.PI * rng.uniform() - Math.PI;
    // The cube's free joint comes first in qpos: x, y, z, qw, qx, qy, qz.
    qpos.set([cx, cy, TABLE_TOP + CUBE_HALF, Math.cos(yaw / 2), 0, 0, Math.sin(yaw / 2)], 0);
    return [0.04 * rng.uniform() - 0.02, 0.04 * rng.uniform() - 0.02, TABLE_TOP + 0.2];
  }

  protected objectObs(): number[] {
    const cube = this.sim.bodyPos(this.cube);
    const eef = this.eefPos();
    // robosuite's gripper_to_cube_pos is the gripper's position minus the cube's.
    return [...cube, ...xyzw(this.sim.bodyQuat(this.cube)), eef[0] - cube[0], eef[1] - cube[1], eef[2] - cube[2]];
  }

  protected taskInfo(): { cubeHeight: number } {
    return { cubeHeight: this.sim.bodyPos(this.cube)[2] - CUBE_HALF - TABLE_TOP };
  }

  success(): boolean {
    return this.taskInfo().cubeHeight > LIFT_HEIGHT;
  }

  cubePos(): [number, number, number] {
    return this.sim.bodyPos(this.cube);
  }

  /**
   * Puts the cube at rest on the table at (x, y), its yaw kept (a person moving it while the
   * policy acts, as the browser demo does).
   */
  placeCube(x: number, y: number): void {
    const { sim } = this;
    const joint = sim.id('joint', 'cube');
    const q = (sim.model.jnt_qposadr as unknown as Int32Array)[joint];
    const v = (sim.model.jnt_dofadr as unknown as Int32Array)[joint];
    const qpos = sim.data.qpos as unknown as Float64Array;
    const [, , , qw, , , qz] = qpos.subarray(q, q + 7);
    const n = Math.hypot(qw, qz) || 1;
    qpos.set([x, y, TABLE_TOP + CUBE_HALF, qw / n, 0, 0, qz / n], q);
    (sim.data.qvel as unknown as Float64Array).fill(0, v, v + 6);
    sim.forward();
  }
}

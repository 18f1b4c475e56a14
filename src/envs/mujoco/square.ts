/**
 * Square (robomimic's NutAssemblySquare, issue 18): the gripper picks a square nut by its handle
 * and places it over a square peg fixed to the table. The scene, gripper, actions and robot
 * observations are `MocapGripperEnv`'s.
 *
 * The nut is a square ring (a 6 cm hole, 1.2 cm walls, 2.4 cm tall) with a 6 cm handle; the peg is
 * 4.8 cm square and 10 cm tall, so the nut clears it by 6 mm a side and must be turned square to
 * it, within about 0.3 rad, to go over (the peg's diagonal is wider than the hole). `object` is
 * robosuite's: the nut's position and quaternion (x, y, z, w), then the gripper's position and
 * orientation in the nut's frame (`nut_to_eef_pos`, `nut_to_eef_quat`): 14 values. Success: the nut around the peg, low, as robosuite's
 * `on_peg`. Initial nut poses (position, and yaw within 45 degrees of the handle pointing at the peg) come from the seed; the peg does not move.
 */
import type { MainModule } from 'mujoco-js';
import type { Rng } from '../../util/rng.js';
import { MujocoSim } from './sim.js';
import { MocapGripperEnv, TABLE_TOP, manipulationXml, qmul, xyzw, type ManipulationObs, type Quat } from './gripper.js';

/** The peg's centre on the table, its half width and height. */
export const PEG = { x: 0.1, y: 0, half: 0.024, height: 0.1 } as const;
/** The nut: hole half width, wall thickness, half height; the handle's centre and half length along the nut's x axis. */
export const NUT = { hole: 0.03, wall: 0.012, halfHeight: 0.012, handleX: 0.072, handleHalf: 0.03 } as const;

const w = NUT.hole + NUT.wall / 2;
export const SQUARE_XML = manipulationXml(
  'onedp-square',
  `    <geom name="peg" type="box" pos="${PEG.x} ${PEG.y} ${TABLE_TOP + PEG.height / 2}" size="${PEG.half} ${PEG.half} ${PEG.height / 2}" rgba="0.4 0.4 0.5 1"/>
    <body name="nut" pos="-0.1 0 ${TABLE_TOP + NUT.halfHeight}">
      <freejoint name="nut"/>
      <geom type="box" pos="${w} 0 0" size="${NUT.wall / 2} ${NUT.hole + NUT.wall} ${NUT.halfHeight}" mass="0.004" rgba="0.8 0.6 0.1 1"/>
      <geom type="box" pos="${-w} 0 0" size="${NUT.wall / 2} ${NUT.hole + NUT.wall} ${NUT.halfHeight}" mass="0.004" rgba="0.8 0.6 0.1 1"/>
      <geom type="box" pos="0 ${w} 0" size="${NUT.hole} ${NUT.wall / 2} ${NUT.halfHeight}" mass="0.004" rgba="0.8 0.6 0.1 1"/>
      <geom type="box" pos="0 ${-w} 0" size="${NUT.hole} ${NUT.wall / 2} ${NUT.halfHeight}" mass="0.004" rgba="0.8 0.6 0.1 1"/>
      <geom name="handle" type="box" pos="${NUT.handleX} 0 0" size="${NUT.handleHalf} 0.008 ${NUT.halfHeight}" mass="0.004" condim="4" friction="2 0.05 0.0001" rgba="0.8 0.6 0.1 1"/>
      <site name="handle" pos="${NUT.handleX + 0.01} 0 0" size="0.004"/>
    </body>`,
);

/** Success: the nut's centre within this of the peg's axis (the clearance and a little) ... */
export const SEATED_XY = 0.01;
/** ... and its centre this low above the table (under half the peg's height). */
export const SEATED_Z = 0.05;

export class SquareEnv extends MocapGripperEnv<{ nutHeight: number; pegDistance: number }> {
  private readonly nut: number;
  private readonly handle: number;

  private constructor(sim: MujocoSim, opts: { horizon?: number }) {
    super(sim, 'Square', opts.horizon ?? 300);
    this.nut = sim.id('body', 'nut');
    this.handle = sim.id('site', 'handle');
  }

  static async create(opts: { horizon?: number } = {}): Promise<SquareEnv> {
    return new SquareEnv(await MujocoSim.fromXml(SQUARE_XML, 'square task'), opts);
  }

  /** `create` with MuJoCo already loaded (`loadMujoco`). */
  static createWith(mj: MainModule, opts: { horizon?: number } = {}): SquareEnv {
    return new SquareEnv(MujocoSim.compile(mj, SQUARE_XML, 'square task'), opts);
  }

  /**
   * The seed's start: the nut flat on the table left of the peg, its handle towards the peg within
   * 45 degrees either way (a quarter turn of yaws, as Lift's cube has, whose faces repeat every
   * quarter turn); the gripper above the table's centre.
   */
  protected place(rng: Rng, qpos: Float64Array): [number, number, number] {
    const [nx, ny] = [-0.15 + 0.08 * rng.uniform(), 0.2 * rng.uniform() - 0.1];
    const yaw = (Math.PI / 2) * rng.uniform() - Math.PI / 4;
    qpos.set([nx, ny, TABLE_TOP + NUT.halfHeight, Math.cos(yaw / 2), 0, 0, Math.sin(yaw / 2)], 0);
    return [0.04 * rng.uniform() - 0.02, 0.04 * rng.uniform() - 0.02, TABLE_TOP + 0.2];
  }

  protected objectObs(): number[] {
    const nut = this.sim.bodyPos(this.nut);
    const q = this.sim.bodyQuat(this.nut);
    const eef = this.eefPos();
    // The gripper in the nut's frame, as robosuite's nut_to_eef_pos and nut_to_eef_quat: the
    // grasp on the handle is one fixed point there, whatever the nut's yaw.
    const inv: Quat = [q[0], -q[1], -q[2], -q[3]];
    const d: Quat = [0, eef[0] - nut[0], eef[1] - nut[1], eef[2] - nut[2]];
    const rel = qmul(qmul(inv, d), q);
    return [...nut, ...xyzw(q), rel[1], rel[2], rel[3], ...xyzw(qmul(inv, this.sim.bodyQuat(this.gripper)))];
  }

  protected taskInfo(): { nutHeight: number; pegDistance: number } {
    const p = this.sim.bodyPos(this.nut);
    return { nutHeight: p[2] - TABLE_TOP, pegDistance: Math.hypot(p[0] - PEG.x, p[1] - PEG.y) };
  }

  success(): boolean {
    const { nutHeight, pegDistance } = this.taskInfo();
    return pegDistance < SEATED_XY && nutHeight < SEATED_Z;
  }

  nutPos(): [number, number, number] {
    return this.sim.bodyPos(this.nut);
  }

  /** The point on the handle where a grasp closes. */
  handlePos(): [number, number, number] {
    return this.sim.sitePos(this.handle);
  }

  /** Puts the nut at a pose (tests: seated on the peg, or beside it). */
  placeNut(pos: readonly number[], yaw = 0): ManipulationObs {
    const qpos = this.sim.data.qpos as unknown as Float64Array;
    qpos.set([pos[0], pos[1], pos[2], Math.cos(yaw / 2), 0, 0, Math.sin(yaw / 2)], 0);
    (this.sim.data.qvel as unknown as Float64Array).fill(0);
    this.sim.forward();
    return this.observation();
  }
}

/**
 * Scripted Lift demonstrators in two qualities, as robomimic's proficient-human ("ph") and
 * mixed-human ("mh") datasets (issue 18):
 * - ph: steers the gripper above the cube with its yaw aligned to the cube's, descends, closes
 *   and lifts, smoothly; grasp height and approach height vary per episode (seeded);
 * - mh: the same plan driven like a hesitant or unsteady operator: slower, noisy motions, pauses,
 *   and in some episodes a first grasp closed too high, which lifts nothing and is retried.
 * Both act on the observation alone (robomimic's keys), so they are policies like any other.
 */
import type { LiftObs } from './lift.js';
import { ScriptedOperator, type DemoQuality } from './operator.js';

export type { DemoQuality } from './operator.js';

type Phase = 'above' | 'down' | 'close' | 'lift' | 'release';

/** Yaw of a quaternion stored (x, y, z, w) from `off`, as robomimic's observations hold it. */
export function yawOf(q: ArrayLike<number>, off = 0): number {
  const [x, y, z, w] = [q[off], q[off + 1], q[off + 2], q[off + 3]];
  return Math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z));
}

/** Folds an angle to (-pi/4, pi/4]: the cube looks the same every quarter turn. */
export const foldQuarterTurn = (a: number) => a - (Math.PI / 2) * Math.round(a / (Math.PI / 2));
export class LiftExpert extends ScriptedOperator<Phase> {
  private graspDz = 0;
  private approachDz = 0.08;
  private badFirstGrasp = false;
  /** Where the grasp closed: held while closing, and lifted from. */
  private hold: number[] = [0, 0, 0];

  constructor(quality: DemoQuality = 'ph') {
    super(quality, 'above');
  }

  reset(seed: number): void {
    this.start(seed);
    this.graspDz = 0.01 * this.rng.uniform() - 0.005;
    this.approachDz = 0.06 + 0.04 * this.rng.uniform();
    this.badFirstGrasp = this.driveLike(0.25);
  }

  act(o: LiftObs): number[] {
    const cube = [o.object[0], o.object[1], o.object[2]];
    const eef = o.robot0_eef_pos;
    const yawErr = foldQuarterTurn(yawOf(o.object, 3) - yawOf(o.robot0_eef_quat));
    const toward = (t: number[]) => t.map((v, i) => v - eef[i]);
    const near = (d: number[], tol: number) => Math.hypot(...d) < tol;
    let target = cube;
    let grip = -1;
    this.timer++;
    switch (this.phase) {
      case 'above': {
        target = [cube[0], cube[1], cube[2] + this.approachDz];
        if (near(toward(target), 0.01) && Math.abs(yawErr) < 0.05) this.next('down');
        break;
      }
      case 'down': {
        // A bad first grasp closes 3 cm too high and finds nothing between the fingers.
        const dz = this.badFirstGrasp ? 0.03 : this.graspDz;
        target = [cube[0], cube[1], cube[2] + dz];
        if (near(toward(target), 0.006) || this.timer > 40) {
          this.hold = target;
          this.next('close');
        }
        break;
      }
      case 'close': {
        target = this.hold;
        grip = 1;
        if (this.timer >= 6) this.next('lift');
        break;
      }
      case 'lift': {
        target = [this.hold[0], this.hold[1], this.hold[2] + 0.15];
        grip = 1;
        // The operator sees the cube left behind: open, and try again from above.
        if (this.timer > 6 && eef[2] - cube[2] > 0.05) {
          this.badFirstGrasp = false;
          this.next('release');
        }
        break;
      }
      case 'release': {
        target = [eef[0], eef[1], eef[2] + 0.02];
        if (this.timer >= 3) this.next('above');
        break;
      }
    }
    return this.steer(toward(target), yawErr, grip);
  }
}

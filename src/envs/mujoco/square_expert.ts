/**
 * Scripted Square demonstrators in two qualities (issue 18), as `LiftExpert` for Lift:
 * - ph: above the handle with the fingers across it, down, close, lift the nut clear of the peg,
 *   carry it over the peg while turning it square to it, lower it on; approach height, grasp
 *   point along the handle and carry height vary per episode (seeded);
 * - mh: the same plan driven like a hesitant or unsteady operator: slower, noisy motions, pauses,
 *   and in some episodes a first placement 2.5 cm off, which lands the nut on the peg's top; the
 *   operator lifts it and tries again.
 * Both act on the observation alone (robomimic's keys).
 */
import type { ManipulationObs } from './gripper.js';
import { TABLE_TOP } from './gripper.js';
import { NUT, PEG } from './square.js';
import { foldQuarterTurn, yawOf } from './lift_expert.js';
import { ScriptedOperator, type DemoQuality } from './operator.js';

type Phase = 'above' | 'down' | 'close' | 'lift' | 'carry' | 'lower' | 'release';

/** Folds an angle to (-pi/2, pi/2]: the fingers hold the handle the same either way round. */
export const foldHalfTurn = (a: number) => a - Math.PI * Math.round(a / Math.PI);

export class SquareExpert extends ScriptedOperator<Phase> {
  private approachDz = 0.08;
  private graspX = 0;
  private carryZ = 0.2;
  private badFirstPlace = false;
  private hold: number[] = [0, 0, 0];

  constructor(quality: DemoQuality = 'ph') {
    super(quality, 'above');
  }

  reset(seed: number): void {
    this.start(seed);
    this.approachDz = 0.06 + 0.04 * this.rng.uniform();
    this.graspX = NUT.handleX + 0.02 * this.rng.uniform() - 0.005;
    this.carryZ = TABLE_TOP + 0.19 + 0.04 * this.rng.uniform();
    this.badFirstPlace = this.driveLike(0.2);
  }

  act(o: ManipulationObs): number[] {
    const nut = [o.object[0], o.object[1], o.object[2]];
    const nutYaw = yawOf(o.object, 3);
    const eef = o.robot0_eef_pos;
    const gripYaw = yawOf(o.robot0_eef_quat);
    const toward = (t: number[]) => t.map((v, i) => v - eef[i]);
    const near = (d: number[], tol: number) => Math.hypot(...d) < tol;
    // Where the fingers close on the handle, on the nut's x axis.
    const onHandle = [nut[0] + this.graspX * Math.cos(nutYaw), nut[1] + this.graspX * Math.sin(nutYaw), nut[2] + 0.006];
    const grasp = [onHandle[0], onHandle[1], TABLE_TOP + NUT.halfHeight + 0.006];
    // The operator sees the nut is not in the fingers (a grasp that missed, or slipped): open, and start again.
    if ((this.phase === 'lift' || this.phase === 'carry' || this.phase === 'lower') && this.timer > 6 && !near(toward(onHandle), 0.03)) this.next('release');
    // Over the peg: the gripper where it must be for the nut's centre to be on the peg's axis.
    const off = this.badFirstPlace ? 0.025 : 0;
    const overPeg = (z: number) => [eef[0] + PEG.x + off - nut[0], eef[1] + PEG.y - nut[1], z];
    let target: number[] = grasp;
    let yawErr = 0;
    let grip = -1;
    this.timer++;
    switch (this.phase) {
      case 'above': {
        target = [grasp[0], grasp[1], grasp[2] + this.approachDz];
        yawErr = foldHalfTurn(nutYaw - gripYaw);
        if (near(toward(target), 0.01) && Math.abs(yawErr) < 0.05) this.next('down');
        break;
      }
      case 'down': {
        yawErr = foldHalfTurn(nutYaw - gripYaw);
        if (near(toward(grasp), 0.006) || this.timer > 40) {
          this.hold = grasp;
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
        target = [eef[0], eef[1], this.carryZ];
        grip = 1;
        if (nut[2] - TABLE_TOP > PEG.height + 0.03) this.next('carry');
        break;
      }
      case 'carry': {
        target = overPeg(this.carryZ);
        // Square to the peg: the nut's yaw to the nearest quarter turn.
        yawErr = -foldQuarterTurn(nutYaw);
        grip = 1;
        if (near(toward(target), 0.004) && Math.abs(yawErr) < 0.03) this.next('lower');
        break;
      }
      case 'lower': {
        yawErr = -foldQuarterTurn(nutYaw);
        target = overPeg(eef[2] - 0.04);
        grip = 1;
        // Resting on the peg's top: lift it off and place it again, on the axis this time.
        if (this.timer > 15 && nut[2] - TABLE_TOP > PEG.height - 0.01) {
          this.badFirstPlace = false;
          this.next('lift');
        }
        break;
      }
      case 'release': {
        target = [eef[0], eef[1], eef[2] + 0.02];
        if (this.timer >= 3) this.next('above');
        break;
      }
    }
    // Over the peg even the unsteady operator moves with care; turning fast swings the held nut
    // out of the fingers (at most 0.15 rad a step).
    const careful = this.phase === 'carry' || this.phase === 'lower';
    return this.steer(toward(target), yawErr, grip, { noise: careful ? this.noise / 4 : this.noise, maxTurn: 0.3 });
  }
}

/**
 * What the scripted demonstrators of the MuJoCo tasks share (issue 18): a phase machine with a
 * step timer, a seeded stream of their own, and the way a plan becomes an action, for both
 * qualities. "ph" (proficient) steers smoothly; "mh" (mixed human) steers with a lower gain,
 * noise, and pauses of a few steps, as robomimic's mixed-quality operators.
 */
import { Rng } from '../../util/rng.js';

export type DemoQuality = 'ph' | 'mh';

const clip1 = (v: number) => Math.max(-1, Math.min(1, v));

export abstract class ScriptedOperator<Phase extends string> {
  protected rng = new Rng(0);
  protected phase: Phase;
  protected timer = 0;
  private pause = 0;
  protected gain = 0.5;
  protected noise = 0;

  constructor(
    readonly quality: DemoQuality,
    private readonly first: Phase,
  ) {
    this.phase = first;
  }

  /** A new episode: the operator's own stream (apart from the environment's use of the seed), the first phase. */
  protected start(seed: number): void {
    this.rng = new Rng((seed ^ 0x5eed) >>> 0);
    this.phase = this.first;
    this.timer = 0;
    this.pause = 0;
  }

  /**
   * The episode's driving, drawn after the plan's own parameters: ph steers at gain 0.5 without
   * noise; mh at a gain in [0.3, 0.5] with `mhNoise`. Returns whether this episode's first attempt
   * goes wrong (30% of mh episodes; what goes wrong is the task's).
   */
  protected driveLike(mhNoise: number): boolean {
    if (this.quality === 'ph') {
      this.gain = 0.5;
      this.noise = 0;
      return false;
    }
    this.gain = 0.3 + 0.2 * this.rng.uniform();
    this.noise = mhNoise;
    return this.rng.uniform() < 0.3;
  }

  protected next(p: Phase): void {
    this.phase = p;
    this.timer = 0;
  }

  /**
   * The action towards a position error `d` (metres) and a yaw error (radians) with the gripper
   * command: proportional, at most 5 cm a step, turning at most `maxTurn` of the action range;
   * an mh operator sometimes pauses (the gripper held as commanded) and moves with `noise`.
   */
  protected steer(d: number[], yawErr: number, grip: number, opts: { noise?: number; maxTurn?: number } = {}): number[] {
    if (this.quality === 'mh' && this.pause === 0 && this.rng.uniform() < 0.04) this.pause = 3 + Math.floor(6 * this.rng.uniform());
    if (this.pause > 0) {
      this.pause--;
      return [0, 0, 0, 0, 0, 0, grip];
    }
    const noise = opts.noise ?? this.noise;
    const maxTurn = opts.maxTurn ?? 1;
    const a = [0, 1, 2].map((i) => clip1((this.gain * d[i]) / 0.05 + noise * this.rng.normal()));
    const turn = Math.max(-maxTurn, Math.min(maxTurn, yawErr / 0.5 + 0.3 * noise * this.rng.normal()));
    return [...a, 0, 0, turn, grip];
  }
}

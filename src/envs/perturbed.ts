/**
 * PushT with a moving object, after the paper's moving-object task: when the agent comes close to
 * the block, the block is slid away (as if someone pulled it) along a trajectory drawn from the
 * episode seed, once or twice per episode. A policy that only replans slowly keeps pushing at
 * where the block was; a fast one follows it.
 *
 * Each perturbation moves the block's centre of gravity 40-100 units, roughly away from the agent
 * (within 60 degrees of the agent-to-block direction, so the block is not thrown onto the agent),
 * turns it 15-45 degrees either way, and spreads the motion over a few steps: before each of those
 * steps the block is placed on the next waypoint, then the step's physics runs as usual (the agent
 * can still touch it). The new pose keeps the whole T at least 10 units inside the walls and never
 * gains more than 0.05 goal coverage nor ends above 0.5, so a perturbation never hands out success.
 */
import { Rng } from '../util/rng.js';
import {
  AGENT_RADIUS,
  BLOCK_COG,
  PushTEnv,
  T_OUTLINE,
  T_RECTS,
  WALL_MAX,
  WALL_MIN,
  WALL_RADIUS,
  tCoverage,
  toBody,
  toWorld,
  type ObsType,
  type Pose,
  type PushTInfo,
  type PushTObs,
  type PushTOptions,
  type StepResult,
  type Vec2,
} from './pusht.js';

export interface PerturbOptions {
  /** Perturbations per episode (default 1; the CLI allows 0 to 2). */
  count?: number;
  /** Gap between the agent's centre and the block's outline that triggers one (default 30 units). */
  triggerDistance?: number;
  /** Steps after a perturbation has finished before the next may trigger (default 30). */
  cooldownSteps?: number;
  /** Range of the displacement of the block's centre of gravity (default [40, 100] units). */
  distance?: readonly [number, number];
  /** Largest turn in radians (default pi/4); each turn is at least a third of it. */
  maxRotation?: number;
  /** Steps the slide is spread over; 1 teleports (default 4). */
  slideSteps?: number;
  /** Largest goal coverage the block may be left at (default 0.5). */
  maxGoalCoverage?: number;
}

export interface PerturbationEvent {
  /** The step after which the agent came close; the block moves during the following steps. */
  step: number;
  from: Pose;
  to: Pose;
}

export type PerturbedInfo = PushTInfo & {
  /** Perturbations triggered so far this episode. */
  perturbations: number;
  /** Whether the block is still being moved. */
  perturbing: boolean;
};

export type PerturbedStepResult<O extends ObsType> = StepResult<O> & { info: PerturbedInfo };

/** Separates the perturbation stream from the reset's stream of the same seed. */
const PERTURB_STREAM = 0x6d0f27bd;
const WALL_MARGIN = 10;
const MAX_TRIES = 100;

export class PerturbedPushTEnv<O extends ObsType = 'state'> extends PushTEnv<O> {
  readonly perturb: Readonly<Required<PerturbOptions>>;
  private rng = new Rng(PERTURB_STREAM);
  private events: PerturbationEvent[] = [];
  private waypoints: Pose[] = [];
  private quietUntil = 0;

  constructor(options: PushTOptions<O> & { perturb?: PerturbOptions } = {}) {
    super(options);
    const p = options.perturb ?? {};
    this.perturb = {
      count: p.count ?? 1,
      triggerDistance: p.triggerDistance ?? 30,
      cooldownSteps: p.cooldownSteps ?? 30,
      distance: p.distance ?? [40, 100],
      maxRotation: p.maxRotation ?? Math.PI / 4,
      slideSteps: p.slideSteps ?? 4,
      maxGoalCoverage: p.maxGoalCoverage ?? 0.5,
    };
    const c = this.perturb;
    if (!Number.isInteger(c.count) || c.count < 0) throw new Error(`perturbation count must be an integer >= 0, got ${c.count}`);
    if (!Number.isInteger(c.slideSteps) || c.slideSteps < 1) throw new Error(`slideSteps must be an integer >= 1, got ${c.slideSteps}`);
    if (!(c.distance[0] > 0 && c.distance[1] >= c.distance[0])) throw new Error(`perturbation distance must be a range 0 < lo <= hi, got ${c.distance.join(', ')}`);
  }

  /** The reference start for `seed`; the perturbations are drawn from the same seed. */
  override reset(seed: number): PushTObs<O> {
    const obs = super.reset(seed);
    this.rng = new Rng((seed ^ PERTURB_STREAM) >>> 0);
    return obs;
  }

  override resetTo(state: readonly number[], perturbSeed = 0): PushTObs<O> {
    const obs = super.resetTo(state);
    this.rng = new Rng((perturbSeed ^ PERTURB_STREAM) >>> 0);
    this.events = [];
    this.waypoints = [];
    this.quietUntil = 0;
    return obs;
  }

  override step(action: readonly number[]): PerturbedStepResult<O> {
    const next = this.waypoints.shift();
    if (next) {
      // setSimState rebuilds the world, so the moved block starts the step like a fresh one would.
      this.setSimState({ ...this.getSimState(), block: [next[0], next[1], next[2]] });
    }
    const r = super.step(action);
    const steps = r.info.steps;
    if (next && this.waypoints.length === 0) this.quietUntil = steps + this.perturb.cooldownSteps;
    if (
      !r.terminated &&
      !r.truncated &&
      this.waypoints.length === 0 &&
      this.events.length < this.perturb.count &&
      steps >= this.quietUntil &&
      agentGap(this.agentPos(), this.blockPose()) < this.perturb.triggerDistance
    ) {
      this.plan(steps);
    }
    return { ...r, info: { ...r.info, perturbations: this.events.length, perturbing: this.waypoints.length > 0 } };
  }

  /** This episode's perturbations so far. */
  perturbationEvents(): readonly PerturbationEvent[] {
    return this.events;
  }

  private plan(step: number): void {
    const c = this.perturb;
    const from = this.blockPose();
    const agent = this.agentPos();
    const cog = toWorld(from, BLOCK_COG);
    const away = Math.atan2(cog[1] - agent[1], cog[0] - agent[0]);
    const startCoverage = tCoverage(from);
    for (let tries = 0; tries < MAX_TRIES; tries++) {
      const dir = away + (2 * this.rng.uniform() - 1) * (Math.PI / 3);
      const dist = c.distance[0] + (c.distance[1] - c.distance[0]) * this.rng.uniform();
      const turn = (this.rng.uniform() < 0.5 ? -1 : 1) * c.maxRotation * (1 / 3 + (2 / 3) * this.rng.uniform());
      const path: Pose[] = [];
      for (let k = 1; k <= c.slideSteps; k++) {
        const f = k / c.slideSteps;
        // Slide the centre of gravity in a straight line while turning about it.
        path.push(poseAboutCog([cog[0] + f * dist * Math.cos(dir), cog[1] + f * dist * Math.sin(dir)], from[2] + f * turn));
      }
      const to = path[path.length - 1];
      const cov = tCoverage(to);
      if (!path.every(insideWalls)) continue;
      if (cov > c.maxGoalCoverage || cov > startCoverage + 0.05) continue;
      if (agentGap(agent, to) < AGENT_RADIUS + 5) continue;
      this.events.push({ step, from, to });
      this.waypoints = path;
      return;
    }
    // No admissible move from here (the block against a wall, say): try again on a later step.
  }
}

/** The pose whose centre of gravity is at `cog` with angle `angle`. */
function poseAboutCog(cog: Vec2, angle: number): Pose {
  const off = toWorld([0, 0, angle], BLOCK_COG);
  return [cog[0] - off[0], cog[1] - off[1], angle];
}

function insideWalls(pose: Pose): boolean {
  const lo = WALL_MIN + WALL_RADIUS + WALL_MARGIN;
  const hi = WALL_MAX - WALL_RADIUS - WALL_MARGIN;
  return T_OUTLINE.every((p) => {
    const [x, y] = toWorld(pose, p);
    return x >= lo && x <= hi && y >= lo && y <= hi;
  });
}

/** Distance from a point to the T at `pose` (0 inside). */
export function agentGap(point: Vec2, pose: Pose): number {
  const [px, py] = toBody(pose, point);
  let best = Infinity;
  for (const [x0, y0, x1, y1] of T_RECTS) {
    const dx = Math.max(x0 - px, 0, px - x1);
    const dy = Math.max(y0 - py, 0, py - y1);
    best = Math.min(best, Math.hypot(dx, dy));
  }
  return best;
}

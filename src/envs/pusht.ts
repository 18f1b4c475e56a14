/**
 * PushT (Implicit BC / Diffusion Policy benchmark) on the planck (Box2D) physics engine.
 *
 * A kinematic disc (the agent) pushes a T-shaped block over a frictionless table so that it covers
 * a fixed T-shaped goal. The facts reproduced here follow the reference Chipmunk implementation
 * (see spec/pusht.md): 512x512 workspace with y pointing down, PD-driven agent at 10 Hz with 10
 * physics substeps, block mass 1 with centre of gravity (0, 45), space damping 0 (the block only
 * moves while it is pushed), frictionless contacts, coverage computed exactly from polygons.
 *
 * One deliberate difference: in Chipmunk (and Box2D) a kinematic body passes through static walls,
 * so the reference agent can leave the arena. Here the agent is stopped by the walls by default
 * (`agentBlockedByWalls: false` restores the reference behaviour).
 */
import { Box, Circle, Polygon, World, type Body } from 'planck';
import { Rng } from '../util/rng.js';
import { renderPushT } from './render.js';

/** A planar pose: [x, y, angle] with y pointing down (angles turn clockwise on screen). */
export type Pose = readonly [number, number, number];
export type Vec2 = readonly [number, number];

export const WORKSPACE_SIZE = 512;
export const GOAL_POSE: Pose = [256, 256, Math.PI / 4];
export const AGENT_RADIUS = 15;
/** Wall centre lines and their radius, as the reference's four segments. */
export const WALL_MIN = 5;
export const WALL_MAX = 506;
export const WALL_RADIUS = 2;
export const MAX_EPISODE_STEPS = 300;
export const SUCCESS_COVERAGE = 0.95;

const CONTROL_SUBSTEPS = 10;
const DT = 0.01;
const KP = 100;
const KV = 20;

/**
 * The T in its body frame as two axis-aligned rectangles [xmin, ymin, xmax, ymax]: the bar and the
 * stem. They only share an edge, so areas of the T are sums over the two rectangles.
 */
export const T_RECTS: readonly (readonly [number, number, number, number])[] = [
  [-60, 0, 60, 30],
  [-15, 30, 15, 120],
];
/** Reference centre of gravity: the plain mean of the two rectangles' centroids (not the area centroid). */
export const BLOCK_COG: Vec2 = [0, 45];
/**
 * Reference moment of inertia about the centre of gravity. The reference sums
 * `moment_for_poly(1, bar)` twice (a copy-paste slip that we reproduce): each is the bar's moment
 * about the body origin, 120^2+30^2 over 12 plus 15^2, i.e. 1500.
 */
export const BLOCK_INERTIA = 3000;
const BLOCK_MASS = 1;

/**
 * The 9 keypoints of the `keypoints` observation, in the block's body frame: the 8 corners of the T
 * outline (bar top-left, top-right, bar right-bottom, stem right-top, stem right-bottom,
 * stem left-bottom, stem left-top, bar left-bottom) and the reference centre of gravity (0, 45).
 * The reference samples its keypoints with a seeded farthest-point sampler; these fixed points carry
 * the same information (they determine the pose) and are easy to reproduce anywhere.
 */
export const KEYPOINTS_LOCAL: readonly Vec2[] = [
  [-60, 0],
  [60, 0],
  [60, 30],
  [15, 30],
  [15, 120],
  [-15, 120],
  [-15, 30],
  [-60, 30],
  [0, 45],
];

/** The T's 8 outline corners in body frame (the first 8 keypoints). */
export const T_OUTLINE: readonly Vec2[] = KEYPOINTS_LOCAL.slice(0, 8);

/**
 * planck's solver clamps translations above 2 m per step, so the world runs in metres of 16
 * workspace units. The PD agent never exceeds ~2500 units/s (|target - pos| <= 512 bounds
 * v' = 100 e - 20 v), i.e. 25 units = 1.6 m per substep. Box2D's skin (0.01 m = 0.16 units) and
 * slop stay small relative to the scene, and a power of two makes the unit conversion exact, so
 * integer positions read back as integers.
 */
const UNITS_PER_METER = 16;

export type ObsType = 'state' | 'keypoints' | 'image';
export interface ImageObs {
  /** 96x96x3 (renderSize^2 x 3) RGB bytes, row-major with y down. */
  image: Uint8Array;
  agentPos: [number, number];
}
export type PushTObs<O extends ObsType> = O extends 'image' ? ImageObs : number[];

export interface PushTInfo {
  coverage: number;
  success: boolean;
  steps: number;
  /** Contact points summed over the substeps of the step (the dataset's `n_contacts`). */
  nContacts: number;
}
export interface StepResult<O extends ObsType> {
  observation: PushTObs<O>;
  reward: number;
  terminated: boolean;
  truncated: boolean;
  info: PushTInfo;
}

export interface PushTOptions<O extends ObsType> {
  obsType?: O;
  /** Side of the image observation (default 96). */
  renderSize?: number;
  /** Stop the agent at the walls (default true; the Chipmunk reference lets it pass). */
  agentBlockedByWalls?: boolean;
}

/** Everything the simulation's future depends on, as plain JSON-able numbers. */
export interface PushTSimState {
  agent: [number, number];
  agentVel: [number, number];
  block: [number, number, number];
  steps: number;
}

export class PushTEnv<O extends ObsType = 'state'> {
  readonly obsType: O;
  readonly renderSize: number;
  private readonly blockedByWalls: boolean;
  private world!: World;
  private agent!: Body;
  private block!: Body;
  private agentVel: [number, number] = [0, 0];
  private steps = 0;

  constructor(options: PushTOptions<O> = {}) {
    this.obsType = (options.obsType ?? 'state') as O;
    this.renderSize = options.renderSize ?? 96;
    this.blockedByWalls = options.agentBlockedByWalls ?? true;
    this.build([256, 400], [256, 300, 0]);
  }

  /** Random start as the reference: agent in [50,450)^2, block in [100,400)^2, angle N(0,1)*2pi - pi. */
  reset(seed: number): PushTObs<O> {
    const rng = new Rng(seed);
    const ax = rng.int(50, 450);
    const ay = rng.int(50, 450);
    const bx = rng.int(100, 400);
    const by = rng.int(100, 400);
    const angle = rng.normal() * 2 * Math.PI - Math.PI;
    return this.resetTo([ax, ay, bx, by, angle]);
  }

  /**
   * Starts from [agent_x, agent_y, block_x, block_y, block_angle]. Like the reference's
   * `_set_state`, it runs one physics substep with the agent at rest so overlaps at the start are
   * resolved before the first observation.
   */
  resetTo(state: readonly number[]): PushTObs<O> {
    if (state.length !== 5) throw new Error(`PushT state must have 5 entries, got ${state.length}`);
    this.build([state[0], state[1]], [state[2], state[3], state[4]]);
    this.substep([state[0], state[1]]);
    this.agentVel = [0, 0];
    this.steps = 0;
    return this.observation();
  }

  step(action: readonly number[]): StepResult<O> {
    if (action.length !== 2) throw new Error(`PushT action must have 2 entries, got ${action.length}`);
    const target: Vec2 = [clip(action[0], 0, WORKSPACE_SIZE), clip(action[1], 0, WORKSPACE_SIZE)];
    let nContacts = 0;
    for (let i = 0; i < CONTROL_SUBSTEPS; i++) nContacts += this.substep(target);
    // Box2D integrates the centre of mass and derives the origin from it; re-deriving the centre
    // from the origin makes the state at step boundaries exactly what getSimState reports.
    this.block.setTransform(this.block.getPosition(), this.block.getAngle());
    this.steps++;
    const cov = this.coverage();
    const terminated = cov > SUCCESS_COVERAGE;
    const truncated = !terminated && this.steps >= MAX_EPISODE_STEPS;
    return {
      observation: this.observation(),
      reward: clip(cov / SUCCESS_COVERAGE, 0, 1),
      terminated,
      truncated,
      info: { coverage: cov, success: terminated, steps: this.steps, nContacts },
    };
  }

  /** [agent_x, agent_y, block_x, block_y, block_angle mod 2pi] (block position = body origin). */
  getState(): number[] {
    const a = this.agentPos();
    const b = this.blockPose();
    return [a[0], a[1], b[0], b[1], mod2pi(b[2])];
  }

  agentPos(): [number, number] {
    const p = this.agent.getPosition();
    return [p.x * UNITS_PER_METER, p.y * UNITS_PER_METER];
  }

  /** Block pose with the raw (unwrapped) angle. */
  blockPose(): [number, number, number] {
    const p = this.block.getPosition();
    return [p.x * UNITS_PER_METER, p.y * UNITS_PER_METER, this.block.getAngle()];
  }

  coverage(): number {
    return tCoverage(this.blockPose(), GOAL_POSE);
  }

  /** RGB bytes (size x size x 3), drawn at 512x512 and resized like the reference. */
  render(size = WORKSPACE_SIZE): Uint8Array {
    return renderPushT({ agent: this.agentPos(), block: this.blockPose(), goal: GOAL_POSE }, size);
  }

  getSimState(): PushTSimState {
    const b = this.blockPose();
    return { agent: this.agentPos(), agentVel: [...this.agentVel], block: b, steps: this.steps };
  }

  /**
   * Restores a state from `getSimState`. The world is rebuilt from scratch and warm starting is off,
   * so a restored simulation continues exactly as a fresh one from the same state would.
   */
  setSimState(s: PushTSimState): void {
    this.build(s.agent, s.block);
    this.agentVel = [s.agentVel[0], s.agentVel[1]];
    this.steps = s.steps;
  }

  /** The current observation, as `reset` and `step` return it. */
  observation(): PushTObs<O> {
    if (this.obsType === 'image') {
      const obs: ImageObs = { image: this.render(this.renderSize), agentPos: this.agentPos() };
      return obs as PushTObs<O>;
    }
    if (this.obsType === 'keypoints') {
      const out: number[] = [];
      for (const p of blockKeypoints(this.blockPose())) out.push(p[0], p[1]);
      out.push(...this.agentPos());
      return out as PushTObs<O>;
    }
    return this.getState() as PushTObs<O>;
  }

  private build(agent: Vec2, block: Pose): void {
    const s = 1 / UNITS_PER_METER;
    // Warm starting would carry contact impulses between steps: state that getSimState cannot
    // capture. Sleeping is off because a sleeping block would not feel the first touch of a step.
    this.world = new World({ gravity: { x: 0, y: 0 }, allowSleep: false, warmStarting: false });
    const walls = this.world.createBody({ type: 'static' });
    const mid = (WALL_MIN + WALL_MAX) / 2;
    const half = (WALL_MAX - WALL_MIN) / 2 + WALL_RADIUS;
    // Each wall is the reference's radius-2 segment, as a 4-unit thick box.
    for (const [cx, cy, hx, hy] of [
      [WALL_MIN, mid, WALL_RADIUS, half],
      [WALL_MAX, mid, WALL_RADIUS, half],
      [mid, WALL_MIN, half, WALL_RADIUS],
      [mid, WALL_MAX, half, WALL_RADIUS],
    ]) {
      walls.createFixture({ shape: new Box(hx * s, hy * s, { x: cx * s, y: cy * s }), friction: 0 });
    }
    this.agent = this.world.createBody({ type: 'kinematic', position: { x: agent[0] * s, y: agent[1] * s } });
    this.agent.createFixture({ shape: new Circle(AGENT_RADIUS * s), friction: 0 });
    this.block = this.world.createBody({
      type: 'dynamic',
      position: { x: block[0] * s, y: block[1] * s },
      angle: block[2],
    });
    for (const [x0, y0, x1, y1] of T_RECTS) {
      const verts = [
        { x: x0 * s, y: y0 * s },
        { x: x1 * s, y: y0 * s },
        { x: x1 * s, y: y1 * s },
        { x: x0 * s, y: y1 * s },
      ];
      this.block.createFixture({ shape: new Polygon(verts), density: 1, friction: 0, restitution: 0 });
    }
    // planck takes the inertia about the body origin; it subtracts m |c|^2 to get the moment about c.
    const cog = { x: BLOCK_COG[0] * s, y: BLOCK_COG[1] * s };
    this.block.setMassData({
      mass: BLOCK_MASS,
      center: cog,
      I: BLOCK_INERTIA * s * s + BLOCK_MASS * (cog.x * cog.x + cog.y * cog.y),
    });
    this.agentVel = [0, 0];
  }

  /** One 100 Hz substep: PD law on the agent's velocity, then physics. Returns contact points. */
  private substep(target: Vec2): number {
    const pos = this.agentPos();
    const v = this.agentVel;
    v[0] += (KP * (target[0] - pos[0]) + KV * (0 - v[0])) * DT;
    v[1] += (KP * (target[1] - pos[1]) + KV * (0 - v[1])) * DT;
    const s = 1 / UNITS_PER_METER;
    this.agent.setLinearVelocity({ x: v[0] * s, y: v[1] * s });
    // Space damping 0 in the reference: the block starts every substep at rest, so it moves only
    // by the contact impulses of this substep (quasi-static pushing).
    this.block.setLinearVelocity({ x: 0, y: 0 });
    this.block.setAngularVelocity(0);
    this.world.step(DT, 10, 3);
    this.block.setLinearVelocity({ x: 0, y: 0 });
    this.block.setAngularVelocity(0);
    if (this.blockedByWalls) this.stopAtWalls();
    let n = 0;
    for (let c = this.world.getContactList(); c; c = c.getNext()) {
      if (c.isTouching()) n += c.getManifold().pointCount;
    }
    return n;
  }

  /** Inelastic stop at the walls' inner faces: clamp the position, drop the outward velocity. */
  private stopAtWalls(): void {
    const lo = WALL_MIN + WALL_RADIUS + AGENT_RADIUS;
    const hi = WALL_MAX - WALL_RADIUS - AGENT_RADIUS;
    const p = this.agentPos();
    const q: [number, number] = [clip(p[0], lo, hi), clip(p[1], lo, hi)];
    if (q[0] === p[0] && q[1] === p[1]) return;
    for (let i = 0; i < 2; i++) {
      if ((q[i] > p[i] && this.agentVel[i] < 0) || (q[i] < p[i] && this.agentVel[i] > 0)) this.agentVel[i] = 0;
    }
    this.agent.setPosition({ x: q[0] / UNITS_PER_METER, y: q[1] / UNITS_PER_METER });
  }
}

// ---------------------------------------------------------------------------------------------
// Geometry (pure functions, shared with the renderer and the expert).

export function mod2pi(a: number): number {
  const t = 2 * Math.PI;
  return ((a % t) + t) % t;
}

export function clip(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

/** Body-frame point to world frame. */
export function toWorld(pose: Pose, p: Vec2): [number, number] {
  const c = Math.cos(pose[2]);
  const s = Math.sin(pose[2]);
  return [pose[0] + c * p[0] - s * p[1], pose[1] + s * p[0] + c * p[1]];
}

/** World point to body frame. */
export function toBody(pose: Pose, p: Vec2): [number, number] {
  const c = Math.cos(pose[2]);
  const s = Math.sin(pose[2]);
  const dx = p[0] - pose[0];
  const dy = p[1] - pose[1];
  return [c * dx + s * dy, -s * dx + c * dy];
}

/** The T's two rectangles as world-frame quads (bar first). */
export function tPolygons(pose: Pose): [number, number][][] {
  return T_RECTS.map(([x0, y0, x1, y1]) => [
    toWorld(pose, [x0, y0]),
    toWorld(pose, [x1, y0]),
    toWorld(pose, [x1, y1]),
    toWorld(pose, [x0, y1]),
  ]);
}

export function blockKeypoints(pose: Pose): [number, number][] {
  return KEYPOINTS_LOCAL.map((p) => toWorld(pose, p));
}

export function polygonArea(poly: readonly Vec2[]): number {
  let a = 0;
  for (let i = 0; i < poly.length; i++) {
    const p = poly[i];
    const q = poly[(i + 1) % poly.length];
    a += p[0] * q[1] - q[0] * p[1];
  }
  return a / 2;
}

/** Sutherland-Hodgman: the intersection of a polygon with a convex polygon (either orientation). */
export function clipConvex(subject: readonly Vec2[], clipPoly: readonly Vec2[]): Vec2[] {
  const orient = Math.sign(polygonArea(clipPoly));
  let out: Vec2[] = subject.slice();
  for (let i = 0; i < clipPoly.length && out.length > 0; i++) {
    const a = clipPoly[i];
    const b = clipPoly[(i + 1) % clipPoly.length];
    const side = (p: Vec2) => orient * ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]));
    const input = out;
    out = [];
    for (let j = 0; j < input.length; j++) {
      const p = input[j];
      const q = input[(j + 1) % input.length];
      const sp = side(p);
      const sq = side(q);
      if (sp >= 0) out.push(p);
      if ((sp >= 0) !== (sq >= 0)) {
        const t = sp / (sp - sq);
        out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
      }
    }
  }
  return out;
}

/** Area of the T at `pose` inside the T at `goal`, divided by the T's area (exact, polygon clipping). */
export function tCoverage(pose: Pose, goal: Pose = GOAL_POSE): number {
  const a = tPolygons(pose);
  const g = tPolygons(goal);
  let inter = 0;
  let total = 0;
  for (const gp of g) {
    total += Math.abs(polygonArea(gp));
    for (const ap of a) inter += Math.abs(polygonArea(clipConvex(ap, gp)));
  }
  return inter / total;
}

/**
 * A scripted PushT expert that pushes the way a person does: pick a side of the T and a spot on it,
 * walk around the block to just behind that spot, push a stroke, look again.
 *
 * Planning uses the same mechanics as the simulator. With frictionless contacts and a block that
 * keeps no velocity (quasi-static), a push at body point p along the face's inward normal n moves
 * the centre of gravity along n and turns the block at (p - cog) x n / I per unit of travel: a
 * constant body twist, so the block follows an exact screw motion. For every candidate spot
 * (points along the 8 faces of the T) and stroke length, the expert predicts the final pose, scores
 * the drop in pose error per step spent (walking there plus pushing), and picks at random among the
 * near-best options, which makes demonstrations multimodal. Walking uses a visibility graph around
 * the T so repositioning never knocks the block. The target never leads the agent by more than
 * `maxStep` units, so motion is smooth.
 */
import { Rng } from '../util/rng.js';
import {
  AGENT_RADIUS,
  BLOCK_COG,
  BLOCK_INERTIA,
  GOAL_POSE,
  PushTEnv,
  T_OUTLINE,
  T_RECTS,
  WALL_MAX,
  WALL_MIN,
  WALL_RADIUS,
  clip,
  toBody,
  tCoverage,
  toWorld,
  type Pose,
  type Vec2,
} from './pusht.js';

/** The T's faces, in the order `ExpertEpisode.pushFaces` and `PushTExpert.pushes` report them. */
export const FACE_NAMES = [
  'bar-top',
  'bar-right-end',
  'bar-bottom-right',
  'stem-right',
  'stem-tip',
  'stem-left',
  'bar-bottom-left',
  'bar-left-end',
] as const;

export interface ExpertOptions {
  /** Largest distance between the agent and the commanded target, in units (default 30). */
  maxStep?: number;
}

/** Agent centre to face distance while touching: disc radius + Box2D polygon skin - resting slop. */
const CONTACT_DIST = AGENT_RADIUS + 0.1;
/** Distance behind the contact spot where a push starts, so the agent arrives without touching. */
const GAP = 6;
/** Path planning keeps the agent centre this far from the T (the disc radius plus a margin). */
const CLEARANCE = AGENT_RADIUS + 3;
/** Waypoints around the T sit this far from its faces. */
const WAYPOINT_OFFSET = AGENT_RADIUS + 9;
/** Free space for the agent centre inside the walls (with a unit of margin). */
const ARENA_LO = WALL_MIN + WALL_RADIUS + AGENT_RADIUS + 1;
const ARENA_HI = WALL_MAX - WALL_RADIUS - AGENT_RADIUS - 1;
/** Predicted coverage above which a push counts as finishing (margin over the 0.95 threshold). */
const FINISH_COVERAGE = 0.96;
/** Faces scoring at least this fraction of the best push are drawn from at random. */
const SIDE_SLACK = 0.6;
/** Spots and strokes on the drawn face within this fraction of its best are equally likely. */
const SPOT_SLACK = 0.9;
/** Stroke lengths (centre-of-gravity travel) the planner considers. */
const STROKES = [1, 2, 4, 7, 11, 16, 23, 32, 45, 60, 80];

interface Face {
  a: Vec2;
  b: Vec2;
  /** Inward normal: the direction the agent pushes. */
  n: Vec2;
}

/**
 * Faces of the T with the part of each that a disc can push squarely: spots stay 4 units from a
 * convex corner (so the contact is on the face, not the corner) and clear of the stem or bar at the
 * concave corners (where the disc would touch both).
 */
const CORNER = 4;
const CONCAVE = CONTACT_DIST + CORNER;
const FACES: readonly Face[] = [
  { a: [-60 + CORNER, 0], b: [60 - CORNER, 0], n: [0, 1] },
  { a: [60, CORNER], b: [60, 30 - CORNER], n: [-1, 0] },
  { a: [15 + CONCAVE, 30], b: [60 - CORNER, 30], n: [0, -1] },
  { a: [15, 30 + CONCAVE], b: [15, 120 - CORNER], n: [-1, 0] },
  { a: [-15 + CORNER, 120], b: [15 - CORNER, 120], n: [0, -1] },
  { a: [-15, 30 + CONCAVE], b: [-15, 120 - CORNER], n: [1, 0] },
  { a: [-60 + CORNER, 30], b: [-15 - CONCAVE, 30], n: [0, -1] },
  { a: [-60, CORNER], b: [-60, 30 - CORNER], n: [1, 0] },
];

/** Spots along each face, about every 8 units (at least 3). */
const SPOTS: readonly { face: number; p: Vec2 }[] = FACES.flatMap((f, face) => {
  const len = Math.hypot(f.b[0] - f.a[0], f.b[1] - f.a[1]);
  const k = Math.max(3, Math.round(len / 8) + 1);
  return Array.from({ length: k }, (_, i) => {
    const t = i / (k - 1);
    return { face, p: [f.a[0] + t * (f.b[0] - f.a[0]), f.a[1] + t * (f.b[1] - f.a[1])] as Vec2 };
  });
});

/** Waypoints around the T (body frame): off each convex corner diagonally, and in the two pockets. */
const W = WAYPOINT_OFFSET;
const WAYPOINTS: readonly Vec2[] = [
  [-60 - W, -W],
  [60 + W, -W],
  [60 + W, 30 + W],
  [15 + W, 30 + W],
  [15 + W, 120 + W],
  [-15 - W, 120 + W],
  [-15 - W, 30 + W],
  [-60 - W, 30 + W],
];

/**
 * Pose error: root-mean-square distance between matching points of the block and of the goal T
 * (uniform over the T's area). It is |centroid offset|^2 + 2 (1 - cos dtheta) rho^2 in closed form,
 * with rho the T's radius of gyration about its area centroid.
 */
const [AREA_CENTROID, RHO2] = (() => {
  let area = 0;
  let cy = 0;
  let second = 0;
  for (const [x0, y0, x1, y1] of T_RECTS) {
    const a = (x1 - x0) * (y1 - y0);
    area += a;
    cy += a * (y0 + y1) / 2;
    second += a * ((x0 * x0 + x0 * x1 + x1 * x1) / 3 + (y0 * y0 + y0 * y1 + y1 * y1) / 3);
  }
  cy /= area;
  return [[0, cy] as Vec2, second / area - cy * cy];
})();
const GOAL_CENTROID = toWorld(GOAL_POSE, AREA_CENTROID);

export function poseError(pose: Pose): number {
  const c = toWorld(pose, AREA_CENTROID);
  const dx = c[0] - GOAL_CENTROID[0];
  const dy = c[1] - GOAL_CENTROID[1];
  return Math.sqrt(dx * dx + dy * dy + 2 * (1 - Math.cos(pose[2] - GOAL_POSE[2])) * RHO2);
}

/** Block pose after pushing at body point p along body normal n until the cog has moved `sigma`. */
function pushedPose(pose: Pose, p: Vec2, n: Vec2, sigma: number): [number, number, number] {
  const w = ((p[0] - BLOCK_COG[0]) * n[1] - (p[1] - BLOCK_COG[1]) * n[0]) / BLOCK_INERTIA;
  // Velocity of the body origin in the body frame, per unit of cog travel: n + w x (origin - cog).
  const vx = n[0] + w * BLOCK_COG[1];
  const vy = n[1] - w * BLOCK_COG[0];
  const t = w * sigma;
  let dx: number;
  let dy: number;
  if (Math.abs(t) < 1e-9) {
    dx = vx * sigma;
    dy = vy * sigma;
  } else {
    const s = Math.sin(t) / w;
    const c = (1 - Math.cos(t)) / w;
    dx = s * vx - c * vy;
    dy = c * vx + s * vy;
  }
  const cos = Math.cos(pose[2]);
  const sin = Math.sin(pose[2]);
  return [pose[0] + cos * dx - sin * dy, pose[1] + sin * dx + cos * dy, pose[2] + t];
}

/** Where the agent centre is when touching body point p of face normal n, `back` units behind. */
function agentAt(pose: Pose, p: Vec2, n: Vec2, back: number): [number, number] {
  const d = CONTACT_DIST + back;
  return toWorld(pose, [p[0] - n[0] * d, p[1] - n[1] * d]);
}

/** Outline corners of the T (body frame), for checking the block against the walls. */
const OUTLINE: readonly Vec2[] = T_OUTLINE;

/** How deep the block at `pose` reaches into the walls (0 when clear of them). */
function wallPenetration(pose: Pose): number {
  const lo = WALL_MIN + WALL_RADIUS;
  const hi = WALL_MAX - WALL_RADIUS;
  let depth = 0;
  for (const v of OUTLINE) {
    const [x, y] = toWorld(pose, v);
    depth = Math.max(depth, lo - x, x - hi, lo - y, y - hi);
  }
  return depth;
}

function inArena(p: Vec2): boolean {
  return p[0] >= ARENA_LO && p[0] <= ARENA_HI && p[1] >= ARENA_LO && p[1] <= ARENA_HI;
}

/** Distance from point q to the T (0 inside), body frame. */
function distToT(q: Vec2): number {
  let best = Infinity;
  for (const [x0, y0, x1, y1] of T_RECTS) {
    const dx = Math.max(x0 - q[0], 0, q[0] - x1);
    const dy = Math.max(y0 - q[1], 0, q[1] - y1);
    best = Math.min(best, Math.hypot(dx, dy));
  }
  return best;
}

/** Whether segment pq (body frame) keeps at least `clear` from the T. */
function segmentClear(p: Vec2, q: Vec2, clear: number): boolean {
  for (const [x0, y0, x1, y1] of T_RECTS) {
    // Distance from a segment to a box is the distance from the box to the segment's closest point;
    // the distance along the segment is convex, so a ternary search finds the minimum.
    let lo = 0;
    let hi = 1;
    const f = (t: number) => {
      const x = p[0] + t * (q[0] - p[0]);
      const y = p[1] + t * (q[1] - p[1]);
      return Math.hypot(Math.max(x0 - x, 0, x - x1), Math.max(y0 - y, 0, y - y1));
    };
    for (let i = 0; i < 40; i++) {
      const m1 = lo + (hi - lo) / 3;
      const m2 = hi - (hi - lo) / 3;
      if (f(m1) < f(m2)) hi = m2;
      else lo = m1;
    }
    if (Math.min(f(0), f(1), f((lo + hi) / 2)) < clear) return false;
  }
  return true;
}

/**
 * Shortest collision-free path (body frame) from `start` to `goal` through the waypoints, as the
 * list of points after `start`, with its length; null when the goal cannot be reached.
 */
function planPath(pose: Pose, start: Vec2, goal: Vec2): { points: Vec2[]; length: number } | null {
  // Waypoints beyond a wall are pulled back inside: near a wall the way around the block is a
  // narrow passage, usable as long as it keeps the clearance.
  const waypoints = WAYPOINTS.map((w) => {
    const [x, y] = toWorld(pose, w);
    return toBody(pose, [clip(x, ARENA_LO, ARENA_HI), clip(y, ARENA_LO, ARENA_HI)]);
  }).filter((w) => distToT(w) >= CLEARANCE);
  const nodes: Vec2[] = [start, goal, ...waypoints];
  const n = nodes.length;
  const dist = new Array<number>(n).fill(Infinity);
  const prev = new Array<number>(n).fill(-1);
  const done = new Array<boolean>(n).fill(false);
  dist[0] = 0;
  for (;;) {
    let u = -1;
    for (let i = 0; i < n; i++) if (!done[i] && (u < 0 || dist[i] < dist[u])) u = i;
    if (u < 0 || dist[u] === Infinity) return null;
    if (u === 1) break;
    done[u] = true;
    for (let v = 0; v < n; v++) {
      if (done[v]) continue;
      const d = Math.hypot(nodes[v][0] - nodes[u][0], nodes[v][1] - nodes[u][1]);
      if (dist[u] + d < dist[v] && segmentClear(nodes[u], nodes[v], CLEARANCE)) {
        dist[v] = dist[u] + d;
        prev[v] = u;
      }
    }
  }
  const points: Vec2[] = [];
  for (let v = 1; v > 0; v = prev[v]) points.unshift(nodes[v]);
  return { points, length: dist[1] };
}

/**
 * The nearest point at least `clear` from the T along one of 32 straight lines from q (body frame),
 * staying inside the arena: where an agent touching (or, after a reset, overlapping) the block
 * backs off to before walking anywhere.
 */
function retreat(pose: Pose, q: Vec2, clear: number): Vec2 {
  if (distToT(q) >= clear) return q;
  let best: Vec2 = q;
  let bestT = Infinity;
  for (let k = 0; k < 32; k++) {
    const c = Math.cos((k * Math.PI) / 16);
    const s = Math.sin((k * Math.PI) / 16);
    for (let t = 1; t < Math.min(bestT, 200); t += 1) {
      const p: Vec2 = [q[0] + c * t, q[1] + s * t];
      if (!inArena(toWorld(pose, p))) break;
      if (distToT(p) >= clear + 1) {
        bestT = t;
        best = p;
        break;
      }
    }
  }
  return best;
}

/**
 * How far the push target advances per step (cog units): long strokes go fast, short corrective
 * ones slowly so the agent does not overshoot.
 */
function pushSpeed(stroke: number): number {
  return Math.min(10, Math.max(2, stroke / 4));
}

interface Push {
  face: number;
  p: Vec2;
  n: Vec2;
  stroke: number;
}

type Phase =
  | { kind: 'idle' }
  /** Walk along `path` (body frame), then start `push` (or just plan again when it is null). */
  | { kind: 'approach'; push: Push | null; pose: Pose; path: Vec2[]; next: number }
  | { kind: 'push'; push: Push; pose: Pose; sigma: number; speed: number; hold: number };

export class PushTExpert {
  private rng = new Rng(0);
  private phase: Phase = { kind: 'idle' };
  private readonly maxStep: number;
  private log: number[] = [];

  constructor(options: ExpertOptions = {}) {
    this.maxStep = options.maxStep ?? 30;
  }

  /** Starts a new episode; the seed drives the choices among near-best pushes. */
  reset(seed: number): void {
    this.rng = new Rng(seed);
    this.phase = { kind: 'idle' };
    this.log = [];
  }

  /** What the expert is doing: walking to a push ('approach'), pushing, or about to plan ('idle'). */
  get mode(): 'idle' | 'approach' | 'push' {
    return this.phase.kind;
  }

  /** Faces (indices into FACE_NAMES) of the pushes chosen so far in this episode. */
  get pushes(): readonly number[] {
    return this.log;
  }

  /** Target agent position for a `state` observation [agent_x, agent_y, block_x, block_y, angle]. */
  act(state: readonly number[]): [number, number] {
    const agent: Vec2 = [state[0], state[1]];
    const pose: Pose = [state[2], state[3], state[4]];
    let target: Vec2 | null = null;
    for (let attempt = 0; attempt < 3 && target === null; attempt++) {
      if (this.phase.kind === 'idle') this.plan(agent, pose);
      target = this.follow(agent, pose);
    }
    return this.limit(agent, target ?? agent);
  }

  /** Advances the current phase; null when it is over and a new plan is needed. */
  private follow(agent: Vec2, pose: Pose): Vec2 | null {
    const ph = this.phase;
    if (ph.kind === 'approach') {
      // A knocked block invalidates the path: plan again.
      const moved = Math.hypot(pose[0] - ph.pose[0], pose[1] - ph.pose[1]);
      if (moved > 0.5 || Math.abs(Math.sin(pose[2] - ph.pose[2])) > 0.01) {
        this.phase = { kind: 'idle' };
        return null;
      }
      while (ph.next < ph.path.length - 1) {
        const w = toWorld(pose, ph.path[ph.next]);
        if (Math.hypot(w[0] - agent[0], w[1] - agent[1]) > 10) break;
        ph.next++;
      }
      const last = toWorld(pose, ph.path[ph.path.length - 1]);
      if (ph.next === ph.path.length - 1 && Math.hypot(last[0] - agent[0], last[1] - agent[1]) < 3) {
        if (ph.push === null) {
          this.phase = { kind: 'idle' };
          return null;
        }
        this.startPush(ph.push, pose, agent);
        return this.follow(agent, pose);
      }
      return toWorld(pose, ph.path[ph.next]);
    }
    if (ph.kind === 'push') {
      const { p, n, stroke } = ph.push;
      if (ph.sigma >= stroke) {
        const end = agentAt(pushedPose(ph.pose, p, n, stroke), p, n, 0);
        ph.hold++;
        // Long strokes need not end precisely (the next plan starts from wherever the block is);
        // short corrective ones do.
        if (Math.hypot(end[0] - agent[0], end[1] - agent[1]) < Math.max(0.5, 0.05 * stroke) || ph.hold > 8) {
          this.phase = { kind: 'idle' };
          return null;
        }
        return end;
      }
      ph.sigma = Math.min(stroke, ph.sigma + ph.speed);
      return ph.sigma < 0
        ? agentAt(ph.pose, p, n, -ph.sigma)
        : agentAt(pushedPose(ph.pose, p, n, ph.sigma), p, n, 0);
    }
    return null;
  }

  private startPush(push: Push, pose: Pose, agent: Vec2): void {
    // Start from where the agent actually is along the push line (behind the spot is negative).
    const a = toBody(pose, agent);
    const ready: Vec2 = [push.p[0] - push.n[0] * CONTACT_DIST, push.p[1] - push.n[1] * CONTACT_DIST];
    const back = (ready[0] - a[0]) * push.n[0] + (ready[1] - a[1]) * push.n[1];
    this.phase = { kind: 'push', push, pose, sigma: -Math.max(0, back), speed: pushSpeed(push.stroke), hold: 0 };
    this.log.push(push.face);
  }

  private plan(agent: Vec2, pose: Pose): void {
    const e0 = poseError(pose);
    const wall0 = wallPenetration(pose);
    const aBody = toBody(pose, agent);
    const start = retreat(pose, aBody, CLEARANCE);
    const startCost = Math.hypot(start[0] - aBody[0], start[1] - aBody[1]);
    type Option = { push: Push; score: number; path: Vec2[] | null };
    const options: Option[] = [];
    let best = 0;
    for (const { face, p } of SPOTS) {
      const n = FACES[face].n;
      const ready: Vec2 = [p[0] - n[0] * CONTACT_DIST, p[1] - n[1] * CONTACT_DIST];
      // An agent already touching this spot pushes on without walking anywhere.
      const off = Math.hypot(aBody[0] - ready[0], aBody[1] - ready[1]);
      const direct = off < 2.5;
      let path: Vec2[] | null = null;
      let walk = 0;
      if (!direct) {
        const pre: Vec2 = [p[0] - n[0] * (CONTACT_DIST + GAP), p[1] - n[1] * (CONTACT_DIST + GAP)];
        if (!inArena(toWorld(pose, pre))) continue;
        const route = planPath(pose, start, pre);
        if (!route) continue;
        path = startCost > 0 ? [start, ...route.points] : route.points;
        walk = startCost + route.length;
      }
      // Chasing a target maxStep ahead, the PD agent settles at about half that distance per step.
      const walkSteps = walk / (this.maxStep * 0.5);
      for (const stroke of STROKES) {
        const end = pushedPose(pose, p, n, stroke);
        // The model knows nothing of walls: a push that drives the block into one (or further into
        // one it touches) would not go as predicted, and neither would any longer stroke.
        if (!inArena(agentAt(end, p, n, 0)) || wallPenetration(end) > wall0 + 0.5) break;
        // A push that ends the episode is worth all the remaining error, not just its own part.
        const e = poseError(end);
        const gain = e < 5 && tCoverage(end) > FINISH_COVERAGE ? e0 : e0 - e;
        if (gain <= 0) continue;
        // Walking, pushing, and about 3 steps for the agent to settle at the end of the stroke.
        const steps = walkSteps + (stroke + (direct ? 0 : GAP)) / pushSpeed(stroke) + 3;
        const score = gain / steps;
        options.push({ push: { face, p, n, stroke }, score, path });
        best = Math.max(best, score);
      }
    }
    if (options.length === 0) {
      // No reachable push helps (the block is jammed against a wall, or the agent starts inside it
      // at a reset): back off from the block and plan again.
      const away = retreat(pose, aBody, CLEARANCE + 10);
      this.phase = { kind: 'approach', push: null, pose, path: [away], next: 0 };
      return;
    }
    // Multimodality lives in the choice of side: each face offers its best option, and a face is
    // drawn among those within SIDE_SLACK of the best with probability growing with its score.
    // Within the face, the spot and stroke are drawn among near-equal options only.
    const faceBest = new Array<number>(FACES.length).fill(0);
    for (const o of options) faceBest[o.push.face] = Math.max(faceBest[o.push.face], o.score);
    const faces = faceBest.map((s, f) => (s >= SIDE_SLACK * best ? f : -1)).filter((f) => f >= 0);
    const face = faces[this.draw(faces.map((f) => (faceBest[f] / best) ** 2))];
    const near = options.filter((o) => o.push.face === face && o.score >= SPOT_SLACK * faceBest[face]);
    const pick = near[this.draw(near.map(() => 1))];
    if (pick.path === null) this.startPush(pick.push, pose, agent);
    else this.phase = { kind: 'approach', push: pick.push, pose, path: pick.path, next: 0 };
  }

  /** Index drawn with probability proportional to `weights`. */
  private draw(weights: readonly number[]): number {
    let r = this.rng.uniform() * weights.reduce((s, w) => s + w, 0);
    for (let i = 0; i < weights.length; i++) {
      r -= weights[i];
      if (r < 0) return i;
    }
    return weights.length - 1;
  }

  private limit(agent: Vec2, target: Vec2): [number, number] {
    const dx = target[0] - agent[0];
    const dy = target[1] - agent[1];
    const d = Math.hypot(dx, dy);
    const k = d > this.maxStep ? this.maxStep / d : 1;
    return [agent[0] + dx * k, agent[1] + dy * k];
  }
}

export interface ExpertEpisode {
  /** `state` observations before each action. */
  states: number[][];
  actions: [number, number][];
  success: boolean;
  /** Number of env steps taken. */
  length: number;
  /** Highest coverage reached. */
  maxCoverage: number;
  /** Faces of the pushes chosen (indices into FACE_NAMES). */
  pushFaces: number[];
}

export interface RolloutOptions extends ExpertOptions {
  /** Seed of the expert's own choices (default: the episode seed). */
  expertSeed?: number;
}

/** Runs the expert on `PushTEnv.reset(seed)` until success or the 300-step limit. */
export function rolloutExpert(seed: number, options: RolloutOptions = {}): ExpertEpisode {
  const env = new PushTEnv({ obsType: 'state' });
  const expert = new PushTExpert(options);
  expert.reset(options.expertSeed ?? seed);
  let obs = env.reset(seed);
  const states: number[][] = [];
  const actions: [number, number][] = [];
  let maxCoverage = env.coverage();
  for (;;) {
    const action = expert.act(obs);
    states.push(obs);
    actions.push(action);
    const r = env.step(action);
    obs = r.observation;
    maxCoverage = Math.max(maxCoverage, r.info.coverage);
    if (r.terminated || r.truncated) {
      const pushFaces = [...expert.pushes];
      return { states, actions, success: r.terminated, length: r.info.steps, maxCoverage, pushFaces };
    }
  }
}

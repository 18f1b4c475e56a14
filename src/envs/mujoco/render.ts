/**
 * The MuJoCo tasks drawn with the Canvas 2D API (the `Canvas2D` subset PushT's renderer uses), so
 * the same code draws on a browser canvas and on `@napi-rs/canvas` in Node. MuJoCo's own renderer
 * needs OpenGL, which neither a Node process nor a 2-D canvas has; the tasks are built from boxes,
 * so an orthographic view of their faces, shaded by a fixed light and painted back to front, is a
 * faithful picture of what the policy sees.
 *
 * The camera looks at the table along +x+y from 30 degrees up: the gripper's height above the
 * table and the object's position on it are both readable.
 */
import type { Canvas2D } from '../render.js';
import { drawToRgb } from '../render.js';
import type { MujocoSim } from './sim.js';
import { TABLE_TOP } from './gripper.js';

type V3 = [number, number, number];

const GEOM_BOX = 6;
const dot = (a: V3, b: V3) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const norm = (a: V3): V3 => {
  const n = Math.hypot(...a);
  return [a[0] / n, a[1] / n, a[2] / n];
};

export interface ManipulationView {
  /** The point the view centres on (world metres). */
  target: V3;
  /**
   * Where the eye is, seen from the target: azimuth around z (radians; 0 puts the eye on +x,
   * looking along -x) and elevation above the table plane (strictly between 0 and pi/2).
   */
  azimuth: number;
  elevation: number;
  /** World metres across the picture's width. */
  span: number;
}

/** The default view: the table's centre along +x+y, 30 degrees up, 70 cm across (the gripper's reach). */
export const DEFAULT_VIEW: ManipulationView = { target: [0, 0, TABLE_TOP + 0.12], azimuth: (-3 * Math.PI) / 4, elevation: Math.PI / 6, span: 0.7 };

/** Box corners' signs, and each face as four corner indices (counter-clockwise seen from outside) with its axis. */
const CORNERS: V3[] = [-1, 1].flatMap((x) => [-1, 1].flatMap((y) => [-1, 1].map((z) => [x, y, z] as V3)));
const FACES: { corners: [number, number, number, number]; axis: 0 | 1 | 2; sign: 1 | -1 }[] = [
  { corners: [4, 6, 7, 5], axis: 0, sign: 1 },
  { corners: [0, 1, 3, 2], axis: 0, sign: -1 },
  { corners: [2, 3, 7, 6], axis: 1, sign: 1 },
  { corners: [0, 4, 5, 1], axis: 1, sign: -1 },
  { corners: [1, 5, 7, 3], axis: 2, sign: 1 },
  { corners: [0, 2, 6, 4], axis: 2, sign: -1 },
];

/**
 * Draws the simulation's box geoms (the table, the objects, the gripper) into a `width` x `height`
 * picture on a light background. Planes (the floor) are the background.
 */
export function drawManipulation(ctx: Canvas2D, sim: MujocoSim, width: number, height: number, view: ManipulationView = DEFAULT_VIEW): void {
  const { model, data } = sim;
  const types = model.geom_type as unknown as Int32Array;
  const sizes = model.geom_size as unknown as Float64Array;
  const rgbas = model.geom_rgba as unknown as Float32Array;
  const xpos = data.geom_xpos as unknown as Float64Array;
  const xmat = data.geom_xmat as unknown as Float64Array;
  // The camera's basis: `forward` from the eye to the target, `right` and `up` across the picture.
  const ce = Math.cos(view.elevation);
  const forward: V3 = [-Math.cos(view.azimuth) * ce, -Math.sin(view.azimuth) * ce, -Math.sin(view.elevation)];
  const right = norm([forward[1], -forward[0], 0]);
  const up: V3 = [right[1] * forward[2] - right[2] * forward[1], right[2] * forward[0] - right[0] * forward[2], right[0] * forward[1] - right[1] * forward[0]];
  const light = norm([0.3, -0.5, 1]);
  const scale = width / view.span;
  const project = (p: V3): [number, number] => {
    const d: V3 = [p[0] - view.target[0], p[1] - view.target[1], p[2] - view.target[2]];
    return [width / 2 + dot(d, right) * scale, height / 2 - dot(d, up) * scale];
  };
  const bodies = model.geom_bodyid as unknown as Int32Array;
  const faces: { ground: boolean; depth: number; pts: [number, number][]; fill: string }[] = [];
  for (let g = 0; g < model.ngeom; g++) {
    if (types[g] !== GEOM_BOX || rgbas[4 * g + 3] === 0) continue;
    // The table: fixed, and so large that its faces' centres say nothing of what lies on it.
    const ground = bodies[g] === 0 && Math.max(sizes[3 * g], sizes[3 * g + 1], sizes[3 * g + 2]) > 0.1;
    const c: V3 = [xpos[3 * g], xpos[3 * g + 1], xpos[3 * g + 2]];
    // geom_xmat is row-major: column j is the box's j-th axis in the world.
    const axis = (j: number): V3 => [xmat[9 * g + j], xmat[9 * g + 3 + j], xmat[9 * g + 6 + j]];
    const axes = [axis(0), axis(1), axis(2)];
    const half = [sizes[3 * g], sizes[3 * g + 1], sizes[3 * g + 2]];
    const world = CORNERS.map((s): V3 => {
      const p: V3 = [...c];
      for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) p[k] += s[j] * half[j] * axes[j][k];
      return p;
    });
    for (const f of FACES) {
      const n: V3 = [f.sign * axes[f.axis][0], f.sign * axes[f.axis][1], f.sign * axes[f.axis][2]];
      // A convex box shows only the faces that turn towards the camera.
      if (dot(n, forward) >= 0) continue;
      const shade = 0.55 + 0.45 * Math.max(0, dot(n, light));
      const [r, gr, b] = [0, 1, 2].map((k) => Math.round(255 * Math.min(1, rgbas[4 * g + k] * shade)));
      faces.push({ ground, depth: dot(c, forward), pts: f.corners.map((i) => project(world[i])), fill: `rgb(${r},${gr},${b})` });
    }
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = '#eef1f5';
  ctx.fillRect(0, 0, width, height);
  // Painter's order: the table, then box by box, the farthest centre first (a convex box's own
  // front faces never overlap). Right for boxes side by side, as the tasks' are; a box that
  // pierces another (a nut's wall and the peg) can be drawn over where it should be hidden.
  faces.sort((a, b) => Number(b.ground) - Number(a.ground) || b.depth - a.depth);
  for (const f of faces) {
    ctx.beginPath();
    ctx.moveTo(f.pts[0][0], f.pts[0][1]);
    for (let i = 1; i < 4; i++) ctx.lineTo(f.pts[i][0], f.pts[i][1]);
    ctx.closePath();
    ctx.fillStyle = f.fill;
    ctx.fill();
  }
}

/** The simulation rendered as RGB bytes (size x size x 3), for GIFs of episodes in Node. */
export function renderManipulation(sim: MujocoSim, size: number, view: ManipulationView = DEFAULT_VIEW): Uint8Array {
  return drawToRgb(size, (ctx) => drawManipulation(ctx, sim, size, size, view));
}

/**
 * PushT drawing with the Canvas 2D API. The code only needs the small `Canvas2D` interface below, so
 * it runs unchanged on a browser canvas (or OffscreenCanvas) and on `@napi-rs/canvas` in Node.
 *
 * Looks follow the reference's pygame debug draw: white background, goal T in LightGreen, walls as
 * LightGray fat segments (radius 2), the agent as a RoyalBlue disc of radius 15 with a 1.2x lighter
 * disc of radius 11, and each block rectangle filled with 1.2x LightSlateGray and outlined with
 * LightSlateGray fat segments of radius 2 (a 4-px line centred on the edge: 2 px show outside, 2
 * inside). Draw order as the reference: goal, walls, agent, block (the block covers the agent).
 */
// pusht.ts imports this module too; the cycle is safe because this module reads pusht's bindings
// only inside functions, never while the modules are being evaluated.
import {
  AGENT_RADIUS,
  WALL_MAX,
  WALL_MIN,
  WALL_RADIUS,
  WORKSPACE_SIZE,
  tPolygons,
  type Pose,
  type Vec2,
} from './pusht.js';
import { decodePng } from '../io/png_decode.js';

/** The subset of CanvasRenderingContext2D used here. */
export interface Canvas2D {
  fillStyle: string | object;
  strokeStyle: string | object;
  lineWidth: number;
  lineCap: string;
  lineJoin: string;
  setTransform(a: number, b: number, c: number, d: number, e: number, f: number): void;
  fillRect(x: number, y: number, w: number, h: number): void;
  beginPath(): void;
  moveTo(x: number, y: number): void;
  lineTo(x: number, y: number): void;
  closePath(): void;
  arc(x: number, y: number, radius: number, startAngle: number, endAngle: number): void;
  fill(): void;
  stroke(): void;
}

/** A context that can also read its pixels back (what `renderPushT` needs). */
export interface ReadableCanvas2D extends Canvas2D {
  getImageData(sx: number, sy: number, sw: number, sh: number): { readonly data: ArrayLike<number> };
}

export interface CanvasLike {
  getContext(contextId: '2d'): unknown;
}
export type CanvasFactory = (width: number, height: number) => CanvasLike;

export interface PushTScene {
  agent: Vec2;
  block: Pose;
  goal: Pose;
}

export const COLORS = {
  background: 'rgb(255,255,255)',
  goal: 'rgb(144,238,144)', // LightGreen
  wall: 'rgb(211,211,211)', // LightGray
  agent: 'rgb(65,105,225)', // RoyalBlue
  agentInner: 'rgb(78,126,255)', // min(1.2 * RoyalBlue, 255), truncated
  blockFill: 'rgb(142,163,183)', // 1.2 * LightSlateGray, truncated
  blockOutline: 'rgb(119,136,153)', // LightSlateGray
} as const;

/**
 * Draws the scene in workspace units scaled by `scale` (1 gives a 512x512 picture; a browser can
 * draw straight at its display size).
 */
export function drawPushT(ctx: Canvas2D, scene: PushTScene, scale = 1): void {
  const fatLine = 2 * WALL_RADIUS; // pymunk draws its radius-2 segments as 4-px lines
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, WORKSPACE_SIZE, WORKSPACE_SIZE);
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';

  for (const quad of tPolygons(scene.goal)) {
    polygonPath(ctx, quad);
    ctx.fillStyle = COLORS.goal;
    ctx.fill();
  }

  ctx.strokeStyle = COLORS.wall;
  ctx.lineWidth = fatLine;
  const [lo, hi] = [WALL_MIN, WALL_MAX];
  for (const [x0, y0, x1, y1] of [
    [lo, hi, lo, lo],
    [lo, lo, hi, lo],
    [hi, lo, hi, hi],
    [lo, hi, hi, hi],
  ]) {
    ctx.beginPath();
    ctx.moveTo(x0, y0);
    ctx.lineTo(x1, y1);
    ctx.stroke();
  }

  const [ax, ay] = scene.agent;
  ctx.fillStyle = COLORS.agent;
  ctx.beginPath();
  ctx.arc(ax, ay, AGENT_RADIUS, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = COLORS.agentInner;
  ctx.beginPath();
  ctx.arc(ax, ay, AGENT_RADIUS - 4, 0, 2 * Math.PI);
  ctx.fill();

  // Each rectangle is filled then outlined before the next, as pymunk draws shape by shape; this
  // leaves the visible seam between bar and stem that the reference images have.
  ctx.strokeStyle = COLORS.blockOutline;
  ctx.lineWidth = fatLine;
  for (const quad of tPolygons(scene.block)) {
    polygonPath(ctx, quad);
    ctx.fillStyle = COLORS.blockFill;
    ctx.fill();
    ctx.stroke();
  }
  ctx.setTransform(1, 0, 0, 1, 0, 0);
}

let factory: CanvasFactory | null = null;
const cached = new Map<number, { ctx: ReadableCanvas2D; read: () => ArrayLike<number> }>();

/** Overrides how `renderPushT` and `drawToRgb` get their canvases (e.g. a specific canvas package). */
export function setCanvasFactory(f: CanvasFactory | null): void {
  factory = f;
  cached.clear();
}

/**
 * Renders the scene as RGB bytes (size x size x 3): drawn at 512x512, then resized with bilinear
 * interpolation on pixel centres (OpenCV's INTER_LINEAR, as the reference's cv2.resize). Resizing
 * here rather than with drawImage keeps the resampling the same on every canvas backend (browsers
 * and Skia smooth scaled images differently); only the 512x512 anti-aliasing can differ.
 */
export function renderPushT(scene: PushTScene, size: number = WORKSPACE_SIZE): Uint8Array {
  const n = WORKSPACE_SIZE;
  const rgb = drawToRgb(n, (ctx) => drawPushT(ctx, scene, 1));
  return size === n ? rgb : resizeRgb(rgb, n, size);
}

/**
 * RGB bytes (size x size x 3) of what `draw` paints on a size x size canvas (one canvas per size,
 * kept): PushT's frames, and the MuJoCo tasks' pictures.
 */
export function drawToRgb(size: number, draw: (ctx: Canvas2D) => void): Uint8Array {
  let c = cached.get(size);
  if (!c) {
    const canvas = (factory ?? defaultFactory())(size, size);
    const ctx = canvas.getContext('2d') as ReadableCanvas2D | null;
    if (!ctx) throw new Error('render: the canvas has no 2d context');
    c = { ctx, read: pixelReader(canvas, ctx, size) };
    cached.set(size, c);
  }
  draw(c.ctx);
  const rgba = c.read();
  const rgb = new Uint8Array(size * size * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = rgba[j];
    rgb[i + 1] = rgba[j + 1];
    rgb[i + 2] = rgba[j + 2];
  }
  return rgb;
}

/** Bilinear resize of a square RGB image, sampling at pixel centres like cv2.INTER_LINEAR. */
export function resizeRgb(src: Uint8Array, srcSize: number, dstSize: number): Uint8Array {
  const dst = new Uint8Array(dstSize * dstSize * 3);
  const scale = srcSize / dstSize;
  const i0 = new Int32Array(dstSize);
  const i1 = new Int32Array(dstSize);
  const w = new Float64Array(dstSize);
  for (let d = 0; d < dstSize; d++) {
    const f = Math.max(0, (d + 0.5) * scale - 0.5);
    const lo = Math.min(Math.floor(f), srcSize - 1);
    i0[d] = lo;
    i1[d] = Math.min(lo + 1, srcSize - 1);
    w[d] = f - lo;
  }
  for (let y = 0; y < dstSize; y++) {
    const r0 = i0[y] * srcSize * 3;
    const r1 = i1[y] * srcSize * 3;
    const wy = w[y];
    for (let x = 0; x < dstSize; x++) {
      const c0 = i0[x] * 3;
      const c1 = i1[x] * 3;
      const wx = w[x];
      const o = (y * dstSize + x) * 3;
      for (let k = 0; k < 3; k++) {
        const top = src[r0 + c0 + k] * (1 - wx) + src[r0 + c1 + k] * wx;
        const bottom = src[r1 + c0 + k] * (1 - wx) + src[r1 + c1 + k] * wx;
        dst[o + k] = Math.round(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return dst;
}

function polygonPath(ctx: Canvas2D, pts: readonly Vec2[]): void {
  ctx.beginPath();
  ctx.moveTo(pts[0][0], pts[0][1]);
  for (let i = 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
  ctx.closePath();
}

/**
 * How the pixels come back. `@napi-rs/canvas` leaks every getImageData buffer (1 MB per 512x512
 * frame, never freed), so in Node the frame goes through a PNG round trip instead (lossless, and
 * the canvas is opaque, so the bytes are the same; tested); elsewhere getImageData.
 */
function pixelReader(canvas: CanvasLike, ctx: ReadableCanvas2D, n: number): () => ArrayLike<number> {
  const png = canvas as { toBuffer?: (mime: string) => Uint8Array };
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const zlib = proc?.getBuiltinModule?.('node:zlib') as { inflateSync(b: Uint8Array): Uint8Array } | undefined;
  if (typeof png.toBuffer !== 'function' || !zlib) return () => ctx.getImageData(0, 0, n, n).data;
  return () => decodePng(png.toBuffer!('image/png'), (b) => zlib.inflateSync(b)).rgba;
}

/**
 * Browsers (and workers) get an OffscreenCanvas; Node loads `@napi-rs/canvas` through the built-in
 * module loader, so bundlers for the browser never see a static import of the native package.
 */
function defaultFactory(): CanvasFactory {
  const g = globalThis as { OffscreenCanvas?: new (w: number, h: number) => CanvasLike };
  if (g.OffscreenCanvas) {
    const Offscreen = g.OffscreenCanvas;
    return (w, h) => new Offscreen(w, h);
  }
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.('node:module') as
    | { createRequire(path: string): (id: string) => unknown }
    | undefined;
  if (!mod) throw new Error('renderPushT: no canvas available; call setCanvasFactory() first');
  const napi = mod.createRequire(import.meta.url)('@napi-rs/canvas') as { createCanvas: CanvasFactory };
  return (w, h) => napi.createCanvas(w, h);
}

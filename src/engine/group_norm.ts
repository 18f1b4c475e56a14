/**
 * GroupNorm as two backend kernels (forward, and one backward that returns dx, dgamma and
 * dbeta together), optionally followed by an activation (Mish in the U-Net's Conv1dBlock, ReLU
 * in the ResNet) that the same kernels apply and differentiate.
 *
 * Why: composed from tfjs ops, a GroupNorm is about 12 kernels forward and 35 backward, a Mish
 * another 6 and 8, and tfjs saves every tensor the backward pass needs. For the CPU-sized
 * U-Nets those small kernels, not the convolutions, dominated a training step. The loops also
 * accumulate statistics in float64, which is more accurate than float32 reductions.
 *
 * Registered here as JS loops for the wasm and cpu backends; native_kernels.ts replaces the
 * wasm ones with multi-threaded C++ when the addon loads. On any other backend (tfjs-node)
 * `groupNorm` falls back to composed ops.
 */
import * as tf from '@tensorflow/tfjs';
import { mishComposed } from './activations.js';
import { fusedElementwise } from './fusion.js';

type TensorInfo = tf.TensorInfo;

export const GROUP_NORM_KERNEL = 'OnedpGroupNorm';
export const GROUP_NORM_GRAD_KERNEL = 'OnedpGroupNormGrad';

export type GroupNormAct = 'none' | 'mish' | 'relu';

interface GroupNormAttrs {
  groups: number;
  eps: number;
  act?: GroupNormAct;
}

/** Mish(z) = z tanh(softplus(z)), written with u = 1 - sigmoid(z) as in layers.ts. */
function mishValue(z: number): number {
  const u = 1 - 1 / (1 + Math.exp(-z));
  const q = u * u;
  return (z * (1 - q)) / (1 + q);
}

function mishGrad(z: number): number {
  const s = 1 / (1 + Math.exp(-z));
  const u = 1 - s;
  const q = u * u;
  const qp = 1 + q;
  return (1 - q) / qp + (z * s * 4 * q) / (qp * qp);
}

function activation(act: GroupNormAct | undefined): ((z: number) => number) | null {
  if (act === 'mish') return mishValue;
  if (act === 'relu') return (z) => (z > 0 ? z : 0);
  return null;
}

function activationGrad(act: GroupNormAct | undefined): ((z: number) => number) | null {
  if (act === 'mish') return mishGrad;
  if (act === 'relu') return (z) => (z > 0 ? 1 : 0);
  return null;
}

/**
 * Uniform access to float32 storage on the wasm (heap) and cpu (JS arrays) backends. On wasm an
 * allocation can grow the heap, which detaches every view taken before it (reads then give
 * undefined, writes vanish): kernels allocate all their outputs first and read views after.
 */
interface Memory {
  read(t: TensorInfo): Float32Array;
  alloc(shape: number[]): TensorInfo;
}

function memoryOf(backendName: string, backend: unknown): Memory {
  if (backendName === 'wasm') {
    const b = backend as { typedArrayFromHeap(t: TensorInfo): Float32Array; makeOutput(shape: number[], dtype: 'float32'): TensorInfo };
    return {
      read: (t) => b.typedArrayFromHeap(t),
      alloc: (shape) => b.makeOutput(shape, 'float32'),
    };
  }
  const b = backend as { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo };
  return {
    read: (t) => b.data.get(t.dataId).values,
    alloc: (shape) => b.makeTensorInfo(shape, 'float32', new Float32Array(shape.reduce((a, c) => a * c, 1))),
  };
}

interface Dims {
  B: number;
  N: number;
  C: number;
  cg: number;
  /** Channel -> group. */
  grp: Int32Array;
}

function dimsOf(x: TensorInfo, groups: number): Dims {
  const C = x.shape[x.shape.length - 1];
  const B = x.shape[0];
  const N = x.shape.reduce((a, c) => a * c, 1) / (B * C);
  const cg = C / groups;
  const grp = new Int32Array(C);
  for (let c = 0; c < C; c++) grp[c] = Math.floor(c / cg);
  return { B, N, C, cg, grp };
}

/**
 * x viewed as (B, N, C) with C last; returns y and per-(b, g) mean and 1/std. Loops run flat
 * over positions and channels with per-channel coefficients (groups are often only 4
 * channels wide, too short for an inner loop); sums are float64.
 */
function forwardKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, gamma, beta } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo };
    const { groups, eps, act } = attrs as unknown as GroupNormAttrs;
    const f = activation(act);
    const mem = memoryOf(backendName, backend);
    const { B, N, C, cg, grp } = dimsOf(x, groups);
    const M = N * cg;
    const y = mem.alloc(x.shape);
    const st = mem.alloc([B, groups, 2]);
    const xs = mem.read(x);
    const gs = mem.read(gamma);
    const bs = mem.read(beta);
    const yd = mem.read(y);
    const sd = mem.read(st);
    const s1 = new Float64Array(groups);
    const s2 = new Float64Array(groups);
    const sc = new Float64Array(C);
    const sh = new Float64Array(C);
    const cs1 = new Float64Array(C);
    const cs2 = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      s1.fill(0);
      s2.fill(0);
      // Per-channel sums first, then per group: fewer scattered adds than per element.
      cs1.fill(0);
      cs2.fill(0);
      const base = b * N * C;
      for (let n = 0, o = base; n < N; n++, o += C) {
        for (let c = 0; c < C; c++) {
          const v = xs[o + c];
          cs1[c] += v;
          cs2[c] += v * v;
        }
      }
      for (let c = 0; c < C; c++) {
        s1[grp[c]] += cs1[c];
        s2[grp[c]] += cs2[c];
      }
      for (let g = 0; g < groups; g++) {
        const mean = s1[g] / M;
        // E[x^2] - mean^2 in float64 loses nothing that float32 data holds.
        const variance = Math.max(0, s2[g] / M - mean * mean);
        const rstd = 1 / Math.sqrt(variance + eps);
        sd[(b * groups + g) * 2] = mean;
        sd[(b * groups + g) * 2 + 1] = rstd;
      }
      for (let c = 0; c < C; c++) {
        const g = grp[c];
        const mean = sd[(b * groups + g) * 2];
        const rstd = sd[(b * groups + g) * 2 + 1];
        sc[c] = rstd * gs[c];
        sh[c] = bs[c] - mean * rstd * gs[c];
      }
      for (let n = 0, o = base; n < N; n++, o += C) {
        if (f) for (let c = 0; c < C; c++) yd[o + c] = f(Math.fround(xs[o + c] * sc[c] + sh[c]));
        else for (let c = 0; c < C; c++) yd[o + c] = xs[o + c] * sc[c] + sh[c];
      }
    }
    return [y, st];
  };
}

/**
 * With xhat = (x - mean) rstd: dgamma = sum dy xhat, dbeta = sum dy, and per (b, g)
 * dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), dxhat = dy gamma; the group means
 * come from per-channel sums of dy and dy x. With an activation, dy is first multiplied by its
 * derivative at the normalised value, recomputed from x and the saved statistics.
 */
function gradKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, x, gamma, beta, stats } = inputs as { dy: TensorInfo; x: TensorInfo; gamma: TensorInfo; beta: TensorInfo; stats: TensorInfo };
    const { groups, act } = attrs as unknown as GroupNormAttrs;
    const fg = activationGrad(act);
    const mem = memoryOf(backendName, backend);
    const { B, N, C, cg, grp } = dimsOf(x, groups);
    const M = N * cg;
    const dx = mem.alloc(x.shape);
    const dgamma = mem.alloc([C]);
    const dbeta = mem.alloc([C]);
    const xs = mem.read(x);
    const gs = mem.read(gamma);
    const bs = mem.read(beta);
    const sd = mem.read(stats);
    const dxd = mem.read(dx);
    let dys = mem.read(dy);
    if (fg) {
      // dz = dy act'(z), with z recomputed exactly as the forward computed it.
      const dz = new Float32Array(dys.length);
      for (let b = 0; b < B; b++) {
        for (let n = 0, o = b * N * C; n < N; n++, o += C) {
          for (let c = 0; c < C; c++) {
            const g = grp[c];
            const mean = sd[(b * groups + g) * 2];
            const rstd = sd[(b * groups + g) * 2 + 1];
            // The same arithmetic as the forward's scale and shift.
            const z = Math.fround(xs[o + c] * (rstd * gs[c]) + (bs[c] - mean * rstd * gs[c]));
            dz[o + c] = dys[o + c] * fg(z);
          }
        }
      }
      dys = dz;
    }
    const dg = new Float64Array(C);
    const db = new Float64Array(C);
    const sdy = new Float64Array(C);
    const sdyx = new Float64Array(C);
    const m1 = new Float64Array(groups);
    const m2 = new Float64Array(groups);
    const P = new Float64Array(C);
    const Q = new Float64Array(C);
    const R = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      const base = b * N * C;
      sdy.fill(0);
      sdyx.fill(0);
      for (let n = 0, o = base; n < N; n++, o += C) {
        for (let c = 0; c < C; c++) {
          const d = dys[o + c];
          sdy[c] += d;
          sdyx[c] += d * xs[o + c];
        }
      }
      m1.fill(0);
      m2.fill(0);
      for (let c = 0; c < C; c++) {
        const g = grp[c];
        const mean = sd[(b * groups + g) * 2];
        const rstd = sd[(b * groups + g) * 2 + 1];
        // sum dy xhat over the channel's positions
        const dyxh = (sdyx[c] - mean * sdy[c]) * rstd;
        db[c] += sdy[c];
        dg[c] += dyxh;
        m1[g] += gs[c] * sdy[c];
        m2[g] += gs[c] * dyxh;
      }
      for (let c = 0; c < C; c++) {
        const g = grp[c];
        const mean = sd[(b * groups + g) * 2];
        const rstd = sd[(b * groups + g) * 2 + 1];
        const a1 = m1[g] / M;
        const a2 = m2[g] / M;
        // dx = rstd (dy gamma - a1 - (x - mean) rstd a2) = dy P + x Q + R
        P[c] = rstd * gs[c];
        Q[c] = -rstd * rstd * a2;
        R[c] = rstd * (mean * rstd * a2 - a1);
      }
      for (let n = 0, o = base; n < N; n++, o += C) {
        for (let c = 0; c < C; c++) dxd[o + c] = dys[o + c] * P[c] + xs[o + c] * Q[c] + R[c];
      }
    }
    mem.read(dgamma).set(dg);
    mem.read(dbeta).set(db);
    return [dx, dgamma, dbeta];
  };
}

const BACKENDS = ['wasm', 'cpu'] as const;

/** Registers the kernels on the wasm and cpu backends (idempotent). */
export function registerGroupNormKernels(): void {
  for (const backendName of BACKENDS) {
    if (!tf.getKernel(GROUP_NORM_KERNEL, backendName)) tf.registerKernel({ kernelName: GROUP_NORM_KERNEL, backendName, kernelFunc: forwardKernel(backendName) });
    if (!tf.getKernel(GROUP_NORM_GRAD_KERNEL, backendName)) tf.registerKernel({ kernelName: GROUP_NORM_GRAD_KERNEL, backendName, kernelFunc: gradKernel(backendName) });
  }
}

/** The composed-ops GroupNorm (statistics in two stages for float32 accuracy), then the activation. */
export function groupNormComposed(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number, act: GroupNormAct = 'none'): tf.Tensor {
  const shape = x.shape;
  const C = shape[shape.length - 1];
  const xg = x.reshape([shape[0], -1, groups, C / groups]);
  const mean = xg.mean(3, true).mean(1, true);
  const d = xg.sub(mean);
  const variance = d.square().mean(3, true).mean(1, true);
  const y = d.mul(tf.rsqrt(variance.add(eps))).reshape(shape).mul(gamma).add(beta);
  if (act === 'mish') return mishComposed(y);
  if (act === 'relu') return tf.relu(y);
  return y;
}

type Fused = (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
const fusedByAttrs = new Map<string, Fused>();

/** customGrad passes tensors only, so there is one wrapped function per (groups, eps, act). */
function fusedFor(groups: number, eps: number, act: GroupNormAct): Fused {
  const key = `${groups}/${eps}/${act}`;
  let f = fusedByAttrs.get(key);
  if (f) return f;
  const attrs = { groups, eps, act } as unknown as tf.NamedAttrMap;
  f = tf.customGrad(((x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
    const [y, stats] = tf.engine().runKernel(GROUP_NORM_KERNEL, { x, gamma, beta }, attrs) as tf.Tensor[];
    save([x, gamma, beta, stats]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, gs, bs, st] = saved;
        return tf.engine().runKernel(GROUP_NORM_GRAD_KERNEL, { dy, x: xs, gamma: gs, beta: bs, stats: st }, attrs) as tf.Tensor[];
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as Fused;
  fusedByAttrs.set(key, f);
  return f;
}

/**
 * GroupNorm over the last (channel) axis of a (B, ..., C) tensor, with affine gamma and beta,
 * as PyTorch's, then `act`. Uses the loop kernels where registered, composed ops elsewhere.
 */
export function groupNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps = 1e-5, act: GroupNormAct = 'none'): tf.Tensor {
  const C = x.shape[x.shape.length - 1];
  if (C % groups !== 0) throw new Error(`groupNorm: ${C} channels do not split into ${groups} groups`);
  if (!tf.getKernel(GROUP_NORM_KERNEL, tf.getBackend())) return groupNormComposed(x, gamma, beta, groups, eps, act);
  if (act === 'none' || fusedElementwise()) return fusedFor(groups, eps, act)(x, gamma, beta);
  // The JS loops' activation is slower than tfjs' vectorised ops (fusion.ts).
  const y = fusedFor(groups, eps, 'none')(x, gamma, beta);
  return act === 'mish' ? mishComposed(y) : tf.relu(y);
}

registerGroupNormKernels();

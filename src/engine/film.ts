/**
 * FiLM (feature-wise linear modulation), the U-Net's conditioning: y = h * scale + shift with a
 * (scale, shift) per image and channel, broadcast over the sequence. One kernel forward and one
 * backward (dh = dy scale, dscale = sum_l dy h, dshift = sum_l dy).
 *
 * Why: composed, it is two slices of the conditioning, a multiply and an add forward, and
 * padded slices, two broadcast reductions and more backward, in every residual block.
 * Registered as JS loops for the wasm and cpu backends (native_kernels.ts replaces the wasm
 * ones when the addon loads); other backends use the composed ops.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedElementwise } from './fusion.js';

type TensorInfo = tf.TensorInfo;

export const FILM_KERNEL = 'OnedpFilm';
export const FILM_GRAD_KERNEL = 'OnedpFilmGrad';

interface FilmAttrs {
  withScale: boolean;
}

interface Memory {
  read(t: TensorInfo): Float32Array;
  alloc(shape: number[]): TensorInfo;
}

/** As in group_norm.ts: on wasm, views are taken only after every allocation. */
function memoryOf(backendName: string, backend: unknown): Memory {
  if (backendName === 'wasm') {
    const b = backend as { typedArrayFromHeap(t: TensorInfo): Float32Array; makeOutput(shape: number[], dtype: 'float32'): TensorInfo };
    return { read: (t) => b.typedArrayFromHeap(t), alloc: (shape) => b.makeOutput(shape, 'float32') };
  }
  const b = backend as { data: { get(id: object): { values: Float32Array } }; makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): TensorInfo };
  return {
    read: (t) => b.data.get(t.dataId).values,
    alloc: (shape) => b.makeTensorInfo(shape, 'float32', new Float32Array(shape.reduce((a, c) => a * c, 1))),
  };
}

function forwardKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { h, e } = inputs as { h: TensorInfo; e: TensorInfo };
    const { withScale } = attrs as unknown as FilmAttrs;
    const mem = memoryOf(backendName, backend);
    const [B, L, C] = h.shape;
    const y = mem.alloc(h.shape);
    const hs = mem.read(h);
    const es = mem.read(e);
    const ys = mem.read(y);
    const ew = withScale ? 2 * C : C;
    for (let b = 0; b < B; b++) {
      const eo = b * ew;
      const so = withScale ? eo + C : eo;
      for (let l = 0, o = b * L * C; l < L; l++, o += C) {
        if (withScale) for (let c = 0; c < C; c++) ys[o + c] = hs[o + c] * es[eo + c] + es[so + c];
        else for (let c = 0; c < C; c++) ys[o + c] = hs[o + c] + es[so + c];
      }
    }
    return y;
  };
}

function gradKernel(backendName: string): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { dy, h, e } = inputs as { dy: TensorInfo; h: TensorInfo; e: TensorInfo };
    const { withScale } = attrs as unknown as FilmAttrs;
    const mem = memoryOf(backendName, backend);
    const [B, L, C] = h.shape;
    const dh = mem.alloc(h.shape);
    const de = mem.alloc(e.shape);
    const dys = mem.read(dy);
    const hs = mem.read(h);
    const es = mem.read(e);
    const dhs = mem.read(dh);
    const des = mem.read(de);
    const ew = withScale ? 2 * C : C;
    const ss = new Float64Array(C);
    const st = new Float64Array(C);
    for (let b = 0; b < B; b++) {
      ss.fill(0);
      st.fill(0);
      const eo = b * ew;
      for (let l = 0, o = b * L * C; l < L; l++, o += C) {
        for (let c = 0; c < C; c++) {
          const d = dys[o + c];
          st[c] += d;
          if (withScale) {
            ss[c] += d * hs[o + c];
            dhs[o + c] = d * es[eo + c];
          } else {
            dhs[o + c] = d;
          }
        }
      }
      for (let c = 0; c < C; c++) {
        des[(withScale ? eo + C : eo) + c] = st[c];
        if (withScale) des[eo + c] = ss[c];
      }
    }
    return [dh, de];
  };
}

export function registerFilmKernels(): void {
  for (const backendName of ['wasm', 'cpu']) {
    if (!tf.getKernel(FILM_KERNEL, backendName)) tf.registerKernel({ kernelName: FILM_KERNEL, backendName, kernelFunc: forwardKernel(backendName) });
    if (!tf.getKernel(FILM_GRAD_KERNEL, backendName)) tf.registerKernel({ kernelName: FILM_GRAD_KERNEL, backendName, kernelFunc: gradKernel(backendName) });
  }
}

/** The composed-ops FiLM, for backends without the kernels and as the tests' reference. */
export function filmComposed(h: tf.Tensor, e: tf.Tensor, withScale: boolean): tf.Tensor {
  const [b, , c] = h.shape;
  if (!withScale) return h.add(e.reshape([b, 1, c]));
  const scale = e.slice([0, 0], [b, c]).reshape([b, 1, c]);
  const shift = e.slice([0, c], [b, c]).reshape([b, 1, c]);
  return h.mul(scale).add(shift);
}

type Fused = (h: tf.Tensor, e: tf.Tensor) => tf.Tensor;
const fused = new Map<boolean, Fused>();

function fusedFor(withScale: boolean): Fused {
  let f = fused.get(withScale);
  if (f) return f;
  const attrs = { withScale } as unknown as tf.NamedAttrMap;
  f = tf.customGrad(((h: tf.Tensor, e: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
    const y = tf.engine().runKernel(FILM_KERNEL, { h, e }, attrs) as tf.Tensor;
    save([h, e]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.engine().runKernel(FILM_GRAD_KERNEL, { dy, h: saved[0], e: saved[1] }, attrs) as tf.Tensor[],
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as Fused;
  fused.set(withScale, f);
  return f;
}

/**
 * h (B, L, C) modulated by e: (B, 2C) = [scale, shift] when `withScale`, else (B, C) = shift.
 */
export function film(h: tf.Tensor, e: tf.Tensor, withScale: boolean): tf.Tensor {
  const [b, , c] = h.shape;
  if (h.rank !== 3 || e.rank !== 2 || e.shape[0] !== b || e.shape[1] !== (withScale ? 2 * c : c)) {
    throw new Error(`film: expected h (B, L, C) and e (B, ${withScale ? '2C' : 'C'}), got [${h.shape}] and [${e.shape}]`);
  }
  if (!fusedElementwise() || !tf.getKernel(FILM_KERNEL, tf.getBackend())) return filmComposed(h, e, withScale);
  return fusedFor(withScale)(h, e);
}

registerFilmKernels();

/**
 * Optimiser updates over all parameters in one native call, in place on the wasm heap.
 *
 * Why: written with tfjs ops, AdamW costs about 12 kernels per parameter tensor and EMA 3, each
 * allocating a new tensor: about 2,000 kernels per step for the U-Net. Updating in place is
 * safe only for a buffer that nothing else references, so a variable whose buffer is shared
 * (a clone, an EMA shadow just assigned from it) first gets a copy of its own.
 *
 * Each function returns false when the native path is not active (another backend, no addon),
 * and the caller runs its tfjs version.
 */
import * as tf from '@tensorflow/tfjs';
import { loadNative, type NativeAddon } from './native.js';
import { nativeKernelsActive } from './kernels.js';
import { offsetOf, type WasmHeapBackend } from './native_kernels.js';

function active(): { addon: NativeAddon; backend: WasmHeapBackend } | null {
  if (tf.getBackend() !== 'wasm' || !nativeKernelsActive()) return null;
  const addon = loadNative().addon;
  return addon ? { addon, backend: tf.backend() as unknown as WasmHeapBackend } : null;
}

/** Gives `v` a buffer of its own if it shares one (same values, new memory). */
function ensureExclusive(backend: WasmHeapBackend, v: tf.Variable): void {
  if (backend.refCount(v.dataId) <= 1) return;
  const copy = tf.tidy(() => tf.mul(v, 1));
  v.assign(copy);
  copy.dispose();
}

/** Every tensor's data is on the wasm heap (a tensor made under another backend may not be yet). */
function onHeap(backend: WasmHeapBackend, ts: tf.Tensor[]): boolean {
  return ts.every((t) => t.dtype === 'float32' && backend.dataIdMap.has(t.dataId));
}

export interface AdamWHyper {
  beta1: number;
  beta2: number;
  /** lr / (1 - beta1^t) */
  stepSize: number;
  /** sqrt(1 - beta2^t) */
  biasCorrection2: number;
  eps: number;
  /** 1 - lr * weightDecay */
  decay: number;
}

/** m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = decay p - stepSize m / (sqrt(v)/bc2 + eps). */
export function adamwInPlace(params: tf.Variable[], grads: tf.Tensor[], m: tf.Variable[], v: tf.Variable[], h: AdamWHyper): boolean {
  const nat = active();
  if (!nat) return false;
  const { addon, backend } = nat;
  if (!onHeap(backend, [...params, ...grads, ...m, ...v])) return false;
  for (const list of [params, m, v]) for (const x of list) ensureExclusive(backend, x);
  const args = new Float64Array(7 + 5 * params.length);
  args.set([params.length, h.beta1, h.beta2, h.stepSize, h.biasCorrection2, h.eps, h.decay]);
  params.forEach((p, i) => {
    if (grads[i].size !== p.size) throw new Error(`AdamW: gradient ${i} has ${grads[i].size} values for a parameter of ${p.size}`);
    args.set([offsetOf(backend, p), offsetOf(backend, grads[i]), offsetOf(backend, m[i]), offsetOf(backend, v[i]), p.size], 7 + 5 * i);
  });
  addon.adamw(backend.wasm.HEAPU8, args);
  return true;
}

/** shadow = decay shadow + (1 - decay) param (decay 0 copies exactly). */
export function emaInPlace(shadow: tf.Variable[], params: tf.Tensor[], decay: number): boolean {
  const nat = active();
  if (!nat) return false;
  const { addon, backend } = nat;
  if (!onHeap(backend, [...shadow, ...params])) return false;
  for (const s of shadow) ensureExclusive(backend, s);
  const args = new Float64Array(2 + 3 * shadow.length);
  args.set([shadow.length, decay]);
  shadow.forEach((s, i) => args.set([offsetOf(backend, s), offsetOf(backend, params[i]), s.size], 2 + 3 * i));
  addon.ema(backend.wasm.HEAPU8, args);
  return true;
}

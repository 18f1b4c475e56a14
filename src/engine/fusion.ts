/**
 * Where onedp's fused elementwise kernels (GroupNorm's activation, FiLM, Mish) beat tfjs' own
 * ops. As JS loops they win on the cpu backend but lose to XNNPACK's vectorised ops on wasm;
 * compiled (the native addon) they win everywhere. installWasmKernels marks wasm when the
 * addon's kernels are installed.
 */
import * as tf from '@tensorflow/tfjs';

const fast = new Set<string>(['cpu']);

export function setFusedElementwise(backend: string, on: boolean): void {
  if (on) fast.add(backend);
  else fast.delete(backend);
}

/** Whether the current backend should run the fused elementwise kernels. */
export function fusedElementwise(): boolean {
  return fast.has(tf.getBackend());
}

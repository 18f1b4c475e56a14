/**
 * Counts the multiply-add FLOPs of the convolutions and matrix products a function runs, from
 * tfjs' kernel profile (input and output shapes of every kernel call). Elementwise work is not
 * counted, so the figures are the usual "GEMM FLOPs" of papers and benchmarks.
 */
import { tf } from './index.js';

const prod = (s: number[]): number => s.reduce((a, b) => a * b, 1);

export function kernelFlops(name: string, inputShapes: number[][], outputShapes: number[][]): number {
  const out = outputShapes[0] ?? [];
  switch (name) {
    case 'Conv2D':
    case 'FusedConv2D': {
      const [kh, kw, ci] = inputShapes[1];
      return 2 * prod(out) * kh * kw * ci;
    }
    case 'Conv2DBackpropInput': {
      const [kh, kw, ci] = inputShapes[1];
      return 2 * prod(inputShapes[0]) * kh * kw * ci;
    }
    case 'Conv2DBackpropFilter': {
      const [kh, kw, ci] = out;
      return 2 * prod(inputShapes[1]) * kh * kw * ci;
    }
    case 'BatchMatMul':
    case '_FusedMatMul': {
      // a is (..., M, K) or its transpose; either way its last two dims hold M*K elements.
      const a = inputShapes[0];
      const m = out[out.length - 2];
      const k = (a[a.length - 2] * a[a.length - 1]) / m;
      return 2 * prod(out) * k;
    }
    default:
      return 0;
  }
}

/** Runs `fn` once under the profiler and returns its GEMM FLOPs. */
export async function countFlops(fn: () => tf.TensorContainer): Promise<number> {
  const info = await tf.profile(fn);
  // The profiled function's outputs (for a backward pass, a full set of gradients) are ours to free.
  tf.dispose(info.result as tf.TensorContainer);
  let total = 0;
  for (const k of info.kernels) total += kernelFlops(k.name, k.inputShapes as number[][], k.outputShapes as number[][]);
  return total;
}

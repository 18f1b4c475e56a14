/**
 * Mish, the U-Net's activation, as tfjs ops with a hand-written gradient, or as one native
 * kernel each way where the addon runs (fusion.ts says when).
 */
import * as tf from '@tensorflow/tfjs';
import { fusedElementwise } from './fusion.js';

export const MISH_KERNEL = 'OnedpMish';
export const MISH_GRAD_KERNEL = 'OnedpMishGrad';

/**
 * Mish(x) = x tanh(softplus(x)). With u = 1 - sigmoid(x), tanh(softplus(x)) = (1-u^2)/(1+u^2)
 * exactly, so one XNNPACK-vectorised sigmoid replaces softplus' exp+log and tanh (wasm's Exp is
 * a scalar loop), and nothing can overflow. The gradient is written by hand:
 * d/dx = t + x sigmoid(x) (1 - t^2), with 1 - t^2 = 4u^2/(1+u^2)^2.
 * Forward 6x, forward+backward 2.6x faster than the composed ops; equal within 5e-7.
 */
export const mishComposed: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
  const s = tf.sigmoid(x);
  const q = tf.scalar(1).sub(s).square();
  const qp = q.add(1);
  const t = tf.scalar(1).sub(q).div(qp);
  save([x, s, q, qp, t]);
  return {
    value: x.mul(t),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ss, qs, qps, ts] = saved;
      return dy.mul(ts.add(xs.mul(ss).mul(qs.mul(4).div(qps.square()))));
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

const mishKernel: (x: tf.Tensor) => tf.Tensor = tf.customGrad(((x: tf.Tensor, save: (ts: tf.Tensor[]) => void) => {
  save([x]);
  return {
    value: tf.engine().runKernel(MISH_KERNEL, { x }) as tf.Tensor,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.engine().runKernel(MISH_GRAD_KERNEL, { dy, x: saved[0] }) as tf.Tensor,
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (x: tf.Tensor) => tf.Tensor;

export function mish(x: tf.Tensor): tf.Tensor {
  return fusedElementwise() && x.dtype === 'float32' && tf.getKernel(MISH_KERNEL, tf.getBackend()) ? mishKernel(x) : mishComposed(x);
}

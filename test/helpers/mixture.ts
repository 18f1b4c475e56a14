/**
 * A 2-D Gaussian mixture with its exact (Bayes-optimal) denoiser, so samplers can be tested
 * independently of any training: x_t = a x0 + s eps with x0 ~ sum_i w_i N(mu_i, std^2 I) has
 * E[x0 | x_t] in closed form.
 */
import { tf } from '../../src/engine/index.js';

export interface Mixture {
  weights: number[];
  means: [number, number][];
  std: number;
}

export const MIXTURE: Mixture = { weights: [0.3, 0.7], means: [[-0.5, -0.4], [0.5, 0.45]], std: 0.1 };

/** E[x0 | a x0 + s eps = x] for x of shape (N, 2); a and s per row. */
export function posteriorMean(m: Mixture, x: tf.Tensor, a: tf.Tensor, s: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const v = a.square().mul(m.std ** 2).add(s.square()); // (N,1) marginal variance per dim
    const logits: tf.Tensor[] = [];
    const condMeans: tf.Tensor[] = [];
    m.means.forEach((mu, i) => {
      const muT = tf.tensor2d([mu], [1, 2]);
      const diff = x.sub(a.mul(muT));
      logits.push(tf.log(tf.scalar(m.weights[i])).sub(diff.square().sum(1, true).div(v.mul(2))).sub(tf.log(v)));
      condMeans.push(muT.add(diff.mul(a.mul(m.std ** 2).div(v))));
    });
    const r = tf.softmax(tf.concat(logits, 1), 1); // (N, K)
    let out = tf.zerosLike(x);
    condMeans.forEach((cm, i) => {
      out = out.add(cm.mul(r.slice([0, i], [-1, 1])));
    });
    return out;
  });
}

/** Assigns each sample to its nearest component mean; returns weights, means and stds per component. */
export function mixtureStats(m: Mixture, samples: Float32Array): { weights: number[]; means: [number, number][]; stds: number[] } {
  const k = m.means.length;
  const count = new Array(k).fill(0);
  const sum = m.means.map(() => [0, 0]);
  const sq = new Array(k).fill(0);
  const n = samples.length / 2;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = samples[2 * i];
    const y = samples[2 * i + 1];
    let best = 0;
    let bd = Infinity;
    m.means.forEach(([mx, my], j) => {
      const d = (x - mx) ** 2 + (y - my) ** 2;
      if (d < bd) {
        bd = d;
        best = j;
      }
    });
    idx.push(best);
    count[best]++;
    sum[best][0] += x;
    sum[best][1] += y;
  }
  const means = sum.map(([sx, sy], j) => [sx / Math.max(count[j], 1), sy / Math.max(count[j], 1)] as [number, number]);
  for (let i = 0; i < n; i++) {
    const j = idx[i];
    sq[j] += (samples[2 * i] - means[j][0]) ** 2 + (samples[2 * i + 1] - means[j][1]) ** 2;
  }
  return { weights: count.map((c) => c / n), means, stds: sq.map((s, j) => Math.sqrt(s / Math.max(2 * count[j], 1))) };
}

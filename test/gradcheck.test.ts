import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { buildContext } from '../src/nn/module.js';
import { Conv1d, GroupNorm, mish } from '../src/nn/layers.js';
import { Rng } from '../src/util/rng.js';

useWasmEngine();

describe('finite differences', () => {
  it('Conv1d + GroupNorm + Mish: analytic gradients match central differences', () => {
    const ctx = buildContext({ seed: 7 });
    const conv = new Conv1d(4, 8, 5, ctx, { padding: 2, stride: 1 });
    const norm = new GroupNorm(2, 8, ctx);
    // Non-trivial affine parameters so their gradients are exercised too.
    const rng = new Rng(9);
    norm.weight.assign(tf.tensor(rng.fillUniform(new Float32Array(8), 0.5, 1.5)));
    norm.bias.assign(tf.tensor(rng.fillUniform(new Float32Array(8), -0.5, 0.5)));
    const x = tf.variable(tf.tensor(rng.fillNormal(new Float32Array(3 * 16 * 4)), [3, 16, 4]));
    const proj = tf.tensor(rng.fillNormal(new Float32Array(3 * 16 * 8)), [3, 16, 8]);
    const loss = () => mish(norm.forward(conv.forward(x))).mul(proj).sum() as tf.Scalar;
    const vars = [x, ...conv.variables(), ...norm.variables()];
    const { grads } = tf.variableGrads(loss, vars);

    // Directional derivative along a random direction for each variable: robust in float32.
    const eps = 1e-2;
    for (const v of vars) {
      const dir = tf.tensor(rng.fillNormal(new Float32Array(v.size)), v.shape);
      const analytic = grads[v.name].mul(dir).sum().dataSync()[0];
      const orig = v.clone();
      v.assign(orig.add(dir.mul(eps)));
      const lp = loss().dataSync()[0];
      v.assign(orig.sub(dir.mul(eps)));
      const lm = loss().dataSync()[0];
      v.assign(orig);
      const numeric = (lp - lm) / (2 * eps);
      // O(eps^2) truncation plus float32 cancellation: 1% of the derivative is a wide margin
      // for a smooth function and far below what a wrong gradient gives.
      expect(Math.abs(analytic - numeric), `variable ${v.name}`).toBeLessThan(1e-2 * Math.abs(numeric) + 1e-3);
    }
  });

  it('catches a wrong gradient (the check above can fail)', () => {
    // Same procedure applied to a function with a deliberately wrong custom gradient.
    const wrong = tf.customGrad(((x: tf.Tensor) => ({ value: x.square().sum(), gradFunc: (dy: tf.Tensor) => x.mul(2.1).mul(dy) })) as unknown as Parameters<typeof tf.customGrad>[0]);
    const x = tf.tensor1d([0.3, -1.2, 0.7]);
    const g = tf.grad((t: tf.Tensor) => wrong(t) as tf.Tensor)(x);
    const dir = tf.tensor1d([1, 0.5, -0.25]);
    const analytic = g.mul(dir).sum().dataSync()[0];
    const f = (t: tf.Tensor) => t.square().sum().dataSync()[0];
    const numeric = (f(x.add(dir.mul(1e-2))) - f(x.sub(dir.mul(1e-2)))) / 2e-2;
    expect(Math.abs(analytic - numeric)).toBeGreaterThan(1e-2 * Math.abs(numeric) + 1e-3);
  });
});

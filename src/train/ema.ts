/**
 * Exponential moving average of the weights, used for evaluation:
 * decay = 1 - (1 + step)^-power, capped at maxDecay (spec: power 0.75, cap 0.9999).
 */
import { tf } from '../engine/index.js';
import { emaInPlace } from '../engine/optim.js';

export class Ema {
  /** Updates applied so far. */
  step = 0;
  readonly shadow: tf.Variable[];

  constructor(
    readonly params: tf.Variable[],
    readonly power = 0.75,
    readonly maxDecay = 0.9999,
  ) {
    this.shadow = params.map((p) => {
      const c = p.clone();
      const v = tf.variable(c, false);
      c.dispose();
      return v;
    });
  }

  decay(step = this.step): number {
    return Math.min(this.maxDecay, Math.max(0, 1 - (1 + step) ** -this.power));
  }

  update(): void {
    const d = this.decay();
    if (emaInPlace(this.shadow, this.params, d)) {
      this.step++;
      return;
    }
    tf.tidy(() => {
      this.shadow.forEach((s, i) => s.assign(d === 0 ? this.params[i] : s.mul(d).add(this.params[i].mul(1 - d))));
    });
    this.step++;
  }

  dispose(): void {
    tf.dispose(this.shadow);
  }
}

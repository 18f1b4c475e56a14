/**
 * AdamW (Loshchilov and Hutter) as PyTorch implements it: weight decay applied to the weights
 * directly (p -= lr wd p), bias-corrected moments. tfjs ships only coupled Adam. With
 * weightDecay 0 this is plain Adam, as the distillation optimisers use (betas (0, 0.999)).
 */
import { tf } from '../engine/index.js';
import { adamwInPlace } from '../engine/optim.js';

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export class AdamW {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  lr: number;
  /** Number of steps taken (PyTorch's per-parameter `step`). */
  t = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];

  constructor(
    readonly params: tf.Variable[],
    opts: AdamWOptions,
  ) {
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.m = params.map((p) => zerosVariable(p));
    this.v = params.map((p) => zerosVariable(p));
  }

  /** Applies one update from gradients given in the order of `params`. */
  step(grads: tf.Tensor[]): void {
    if (grads.length !== this.params.length) throw new Error(`AdamW: ${grads.length} gradients for ${this.params.length} parameters`);
    this.t++;
    const [b1, b2] = this.betas;
    const stepSize = this.lr / (1 - b1 ** this.t);
    const bc2 = Math.sqrt(1 - b2 ** this.t);
    const decay = 1 - this.lr * this.weightDecay;
    if (adamwInPlace(this.params, grads, this.m, this.v, { beta1: b1, beta2: b2, stepSize, biasCorrection2: bc2, eps: this.eps, decay })) return;
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const g = grads[i];
        const m = this.m[i].mul(b1).add(g.mul(1 - b1));
        const v = this.v[i].mul(b2).add(g.square().mul(1 - b2));
        this.m[i].assign(m);
        this.v[i].assign(v);
        const upd = m.div(v.sqrt().div(bc2).add(this.eps)).mul(stepSize);
        p.assign((decay === 1 ? p : p.mul(decay)).sub(upd));
      });
    });
  }

  /** Moments in parameter order, for checkpoints. */
  getState(): { t: number; m: Float32Array[]; v: Float32Array[] } {
    return { t: this.t, m: this.m.map((x) => x.dataSync() as Float32Array), v: this.v.map((x) => x.dataSync() as Float32Array) };
  }

  setState(s: { t: number; m: Float32Array[]; v: Float32Array[] }): void {
    if (s.m.length !== this.m.length || s.v.length !== this.v.length) throw new Error(`optimizer state has ${s.m.length} moments for ${this.m.length} parameters`);
    this.t = s.t;
    const load = (x: tf.Variable, data: Float32Array) => {
      const t = tf.tensor(data, x.shape);
      x.assign(t);
      t.dispose();
    };
    this.m.forEach((x, i) => load(x, s.m[i]));
    this.v.forEach((x, i) => load(x, s.v[i]));
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** A non-trainable variable of zeros, without leaking the initial tensor. */
function zerosVariable(p: tf.Tensor): tf.Variable {
  const z = tf.zerosLike(p);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}

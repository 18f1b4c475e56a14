/**
 * A minimal module system: named parameters in PyTorch naming, so state dicts from the reference
 * implementation load by name, and a "meta" mode that records shapes without allocating memory
 * (to count the 251M parameters of the published image U-Net without 1 GB of weights).
 */
import { tf } from '../engine/index.js';
import { Rng } from '../util/rng.js';

/** How a parameter is initialised (PyTorch defaults are expressed with these). */
export type InitSpec =
  | { kind: 'uniform'; bound: number }
  | { kind: 'normal'; std: number }
  | { kind: 'constant'; value: number };

export interface BuildContext {
  /** Source of initial values; shared by all modules of one build so the order is fixed. */
  rng: Rng;
  /** Record shapes only; forward passes are impossible. */
  meta: boolean;
}

export function buildContext(opts: { seed?: number; meta?: boolean } = {}): BuildContext {
  return { rng: new Rng(opts.seed ?? 0), meta: opts.meta ?? false };
}

export class Parameter {
  private value: tf.Variable | null;

  /**
   * @param shape the native (tfjs, channels-last) shape
   * @param torchPerm permutation that turns the native tensor into PyTorch's layout
   *   (`torch = transpose(native, torchPerm)`), or null when they agree
   */
  constructor(
    readonly shape: number[],
    readonly torchPerm: number[] | null,
    init: InitSpec,
    ctx: BuildContext,
  ) {
    if (ctx.meta) {
      this.value = null;
      return;
    }
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    if (init.kind === 'uniform') ctx.rng.fillUniform(data, -init.bound, init.bound);
    else if (init.kind === 'normal') ctx.rng.fillNormal(data, 0, init.std);
    else data.fill(init.value);
    // tf.variable takes its own reference to the data; the initial tensor must be released.
    const initial = tf.tensor(data, shape);
    this.value = tf.variable(initial, true);
    initial.dispose();
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** PyTorch's shape of this parameter. */
  get torchShape(): number[] {
    return this.torchPerm ? this.torchPerm.map((i) => this.shape[i]) : [...this.shape];
  }

  /** A tensor of this parameter's native shape (the weight, or e.g. its EMA copy) in PyTorch's layout. */
  toTorch(native: tf.Tensor): tf.Tensor {
    return this.torchPerm ? tf.transpose(native, this.torchPerm) : native.clone();
  }

  /** A PyTorch-layout tensor of this parameter in the native layout. */
  fromTorch(torch: tf.Tensor): tf.Tensor {
    if (!this.torchPerm) return torch.clone();
    const inv = new Array<number>(this.torchPerm.length);
    this.torchPerm.forEach((q, i) => (inv[q] = i));
    return tf.transpose(torch, inv);
  }

  get isMeta(): boolean {
    return this.value === null;
  }

  /** The live variable; throws for meta parameters. */
  get v(): tf.Variable {
    if (!this.value) throw new Error('this module was built in meta mode (shapes only) and holds no weights');
    return this.value;
  }

  /** Replaces the value (native layout), keeping the same variable. */
  assign(t: tf.Tensor): void {
    if (t.shape.length !== this.shape.length || t.shape.some((d, i) => d !== this.shape[i])) {
      throw new Error(`shape mismatch: expected [${this.shape}], got [${t.shape}]`);
    }
    this.v.assign(t);
  }

  dispose(): void {
    this.value?.dispose();
    this.value = null;
  }
}

export abstract class Module {
  private readonly _params: [string, Parameter][] = [];
  private readonly _children: [string, Module][] = [];
  /** Dropout and similar layers look at this; set with `train()` / `eval()`. */
  training = true;

  protected param(name: string, p: Parameter): Parameter {
    this._params.push([name, p]);
    return p;
  }

  protected child<M extends Module>(name: string, m: M): M {
    this._children.push([name, m]);
    return m;
  }

  /** Parameters in registration order, with dotted PyTorch names. */
  *namedParameters(prefix = ''): Generator<[string, Parameter]> {
    for (const [n, p] of this._params) yield [prefix + n, p];
    for (const [n, c] of this._children) yield* c.namedParameters(prefix + n + '.');
  }

  parameters(): Parameter[] {
    return [...this.namedParameters()].map(([, p]) => p);
  }

  /** The trainable variables, for optimizers and `tf.variableGrads`. */
  variables(): tf.Variable[] {
    return this.parameters().map((p) => p.v);
  }

  numParameters(): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) n += p.size;
    return n;
  }

  train(on = true): this {
    this.training = on;
    for (const [, c] of this._children) c.train(on);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  dispose(): void {
    for (const p of this.parameters()) p.dispose();
  }
}

/** A list of modules named 0, 1, 2, ... like `nn.ModuleList` / `nn.Sequential`. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: (M | null)[] = [];

  /** `null` keeps an index for a parameterless module (e.g. `nn.Mish` inside a Sequential). */
  add(m: M | null): this {
    const i = this.items.length;
    this.items.push(m);
    if (m) this.child(String(i), m);
    return this;
  }

  at(i: number): M {
    const m = this.items[i];
    if (!m) throw new Error(`ModuleList: no module at index ${i}`);
    return m;
  }

  get length(): number {
    return this.items.length;
  }
}

/**
 * PyTorch-compatible state dicts: names and layouts as the reference implementation saves them,
 * so weights move between onedp and PyTorch by name.
 */
import { tf } from '../engine/index.js';
import type { Module } from './module.js';
import { toFloat32, type SafeTensor } from '../io/safetensors.js';

export class StateDictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateDictError';
  }
}

/** The module's weights in PyTorch layout, as float32 safetensors entries (name order kept). */
export function stateDict(module: Module, prefix = ''): Map<string, SafeTensor> {
  const out = new Map<string, SafeTensor>();
  for (const [name, p] of module.namedParameters()) {
    const data = tf.tidy(() => p.toTorch(p.v));
    out.set(prefix + name, { dtype: 'F32', shape: p.torchShape, data: data.dataSync() as Float32Array });
    data.dispose();
  }
  return out;
}

export interface LoadOptions {
  /** Error on tensors in the file that the module does not have (default true). */
  strict?: boolean;
  /** Only tensors under this prefix are considered, with the prefix removed. */
  prefix?: string;
  /** Names the file in error messages. */
  source?: string;
}

/**
 * The checks of `loadStateDict` without assigning anything: works on a module built in meta mode
 * (shapes only), so a checkpoint whose config does not fit its weights is rejected before the
 * model is allocated.
 */
export function checkStateDict(module: Module, tensors: Map<string, SafeTensor>, opts: LoadOptions = {}): void {
  planLoad(module, tensors, opts);
}

function planLoad(module: Module, tensors: Map<string, SafeTensor>, opts: LoadOptions): [import('./module.js').Parameter, SafeTensor][] {
  const strict = opts.strict ?? true;
  const prefix = opts.prefix ?? '';
  const src = opts.source ? `${opts.source}: ` : '';
  const available = new Map<string, SafeTensor>();
  for (const [k, v] of tensors) if (k.startsWith(prefix)) available.set(k.slice(prefix.length), v);
  const problems: string[] = [];
  const plan: [import('./module.js').Parameter, SafeTensor][] = [];
  for (const [name, p] of module.namedParameters()) {
    const t = available.get(name);
    if (!t) {
      problems.push(`missing tensor "${prefix}${name}" (expected shape [${p.torchShape}])`);
      continue;
    }
    available.delete(name);
    const want = p.torchShape;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      problems.push(`tensor "${prefix}${name}" has shape [${t.shape}] but the model expects [${want}]`);
      continue;
    }
    if (t.dtype === 'BOOL') {
      problems.push(`tensor "${prefix}${name}" is BOOL, expected a float type`);
      continue;
    }
    plan.push([p, t]);
  }
  if (strict) for (const k of available.keys()) problems.push(`unexpected tensor "${prefix}${k}" (the model has no parameter of that name)`);
  if (problems.length) {
    const shown = problems.slice(0, 20).join('\n  ');
    const more = problems.length > 20 ? `\n  ... and ${problems.length - 20} more` : '';
    throw new StateDictError(`${src}state dict does not match the model:\n  ${shown}${more}`);
  }
  return plan;
}

/**
 * Loads PyTorch-layout tensors by name. Every problem (missing, unexpected, wrongly shaped) is
 * collected and reported together, naming each tensor and both shapes; nothing is assigned
 * unless everything matches.
 */
export function loadStateDict(module: Module, tensors: Map<string, SafeTensor>, opts: LoadOptions = {}): void {
  const plan = planLoad(module, tensors, opts);
  for (const [p, t] of plan) {
    const value = tf.tidy(() => p.fromTorch(tf.tensor(toFloat32(t), t.shape, 'float32')));
    p.assign(value);
    value.dispose();
  }
}

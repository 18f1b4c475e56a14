/** Loading trained policies from checkpoints, whatever produced them. */
import { loadCheckpoint, CheckpointError } from '../train/checkpoint.js';
import { DiffusionPolicy, type DiffusionPolicyConfig } from './diffusion_policy.js';
import { LinearNormalizer } from './normalizer.js';
import { buildContext } from '../nn/module.js';
import { loadStateDict } from '../nn/state_dict.js';
import { parseSampler } from '../diffusion/index.js';
import type { Policy } from './types.js';
import { ConsistencyPolicy, parseConsistencySampler, type ConsistencySampling } from '../distill/consistency.js';

export interface LoadPolicyOptions {
  /** Use the EMA weights (default, as the reference evaluates) or the raw model weights. */
  weights?: 'ema' | 'model';
  /** Consistency policies: network evaluations per chunk (1, or 3 for CP's chained sampling). */
  steps?: number;
}

export async function loadDiffusionPolicy(p: string, opts: LoadPolicyOptions = {}): Promise<DiffusionPolicy> {
  const ck = await loadCheckpoint(p);
  const src = `${ck.path}/checkpoint.json`;
  if (ck.meta.kind !== 'diffusion-policy') {
    throw new CheckpointError(`${ck.path}: is a ${JSON.stringify(ck.meta.kind)} checkpoint, expected a diffusion-policy checkpoint`);
  }
  const config = ck.meta.policyConfig as DiffusionPolicyConfig;
  if (!config || typeof config !== 'object') throw new CheckpointError(`${src}: missing policyConfig`);
  const policy = new DiffusionPolicy(config, LinearNormalizer.fromJSON(ck.meta.normalizer, src), buildContext({ seed: 0 }));
  const which = opts.weights ?? 'ema';
  const tensors = ck.tensors[which];
  if (!tensors) throw new CheckpointError(`${ck.path}: has no ${which} weights`);
  loadStateDict(policy.model, tensors, { source: `${ck.path}/${which}.safetensors` });
  policy.model.eval();
  return policy;
}

/**
 * Any policy checkpoint: a diffusion policy (sampled with `sampler`), a one-step OneDP
 * generator or a consistency policy. Errors name the checkpoint and what kind it is.
 */
export async function loadPolicy(p: string, opts: LoadPolicyOptions = {}): Promise<Policy> {
  const ck = await loadCheckpoint(p);
  const kind = ck.meta.kind;
  if (opts.steps !== undefined && kind !== 'consistency-policy') throw new CheckpointError(`${ck.path}: steps apply to consistency-policy checkpoints; this is a ${JSON.stringify(kind)} checkpoint`);
  if (kind === 'diffusion-policy') return loadDiffusionPolicy(ck.path, opts);
  if (kind === 'consistency-policy') {
    const src = `${ck.path}/checkpoint.json`;
    const sampling = ck.meta.sampling as ConsistencySampling | undefined;
    if (!sampling || typeof sampling !== 'object') throw new CheckpointError(`${src}: missing sampling`);
    // The EMA student is what CP evaluates; "model" is the raw student.
    const file = (opts.weights ?? 'ema') === 'ema' ? 'student' : 'model';
    const tensors = ck.tensors[file];
    if (!tensors) throw new CheckpointError(`${ck.path}: consistency-policy checkpoint has no ${file} weights`);
    const policy = new ConsistencyPolicy(ck.meta.policyConfig as DiffusionPolicyConfig, sampling, LinearNormalizer.fromJSON(ck.meta.normalizer, src));
    loadStateDict(policy.student, tensors, { source: `${ck.path}/${file}.safetensors` });
    if (opts.steps !== undefined) policy.steps = opts.steps;
    return policy;
  }
  if (kind === 'onedp') {
    const { OneDpPolicy } = await import('../distill/onedp.js');
    const src = `${ck.path}/checkpoint.json`;
    const gen = ck.tensors.generator;
    if (!gen) throw new CheckpointError(`${ck.path}: onedp checkpoint has no generator weights`);
    const policy = new OneDpPolicy(ck.meta.policyConfig as DiffusionPolicyConfig, ck.meta.generator as import('../distill/onedp.js').OneDpGeneratorConfig, LinearNormalizer.fromJSON(ck.meta.normalizer, src));
    loadStateDict(policy.generator, gen, { source: `${ck.path}/generator.safetensors` });
    return policy;
  }
  throw new CheckpointError(`${ck.path}: unknown checkpoint kind ${JSON.stringify(kind)} (expected diffusion-policy, onedp or consistency-policy)`);
}

/**
 * Applies a sampler name as `onedp eval --sampler` takes it: ddpm / ddim-N / edm-N for diffusion
 * policies, cp-N for consistency policies. One-step OneDP policies have no sampler to choose.
 * Throws an Error naming the valid choices; returns the policy for chaining.
 */
export function applySampler<P extends Policy>(policy: P, name: string): P {
  if (policy instanceof ConsistencyPolicy) policy.steps = parseConsistencySampler(name);
  else if (policy instanceof DiffusionPolicy) policy.sampler = parseSampler(name, policy.config.noise.kind as 'ddpm' | 'edm');
  else throw new Error(`a sampler applies to diffusion and consistency policies; this is a one-step ${policy.kind} policy`);
  return policy;
}

/** Loading trained policies from checkpoints, whatever produced them. */
import { loadCheckpoint, CheckpointError } from '../train/checkpoint.js';
import { DiffusionPolicy, buildPolicyModel, validatePolicyConfig, type DiffusionPolicyConfig } from './diffusion_policy.js';
import { LinearNormalizer } from './normalizer.js';
import { buildContext } from '../nn/module.js';
import { checkStateDict, loadStateDict } from '../nn/state_dict.js';
import type { SafeTensor } from '../io/safetensors.js';
import type { UnetConfig } from '../nn/unet1d.js';
import { parseSampler } from '../diffusion/index.js';
import type { Policy } from './types.js';
import { ConsistencyPolicy, parseConsistencySampler, type ConsistencySampling } from '../distill/consistency.js';

export interface LoadPolicyOptions {
  /** Use the EMA weights (default, as the reference evaluates) or the raw model weights. */
  weights?: 'ema' | 'model';
  /** Consistency policies: network evaluations per chunk (1, or 3 for CP's chained sampling). */
  steps?: number;
}

/**
 * The config checked, and the weights checked against the model it describes in meta mode
 * (shapes only), before anything is allocated: a corrupt config cannot ask for a giant model.
 */
function checkWeights(config: DiffusionPolicyConfig, tensors: Map<string, SafeTensor>, source: string, src: string, unetExtra: Partial<UnetConfig> = {}): void {
  if (!config || typeof config !== 'object') throw new CheckpointError(`${src}: missing policyConfig`);
  try {
    validatePolicyConfig(config, `${src}: policyConfig`);
  } catch (e) {
    throw new CheckpointError((e as Error).message);
  }
  checkStateDict(buildPolicyModel(config, buildContext({ meta: true }), unetExtra), tensors, { source });
}

/** The normaliser from a checkpoint, with the statistics the policy needs at its sizes. */
function normalizerFor(config: DiffusionPolicyConfig, json: unknown, src: string): LinearNormalizer {
  const n = LinearNormalizer.fromJSON(json, src);
  for (const [key, dim] of [['obs', config.obsDim], ['action', config.actionDim]] as const) {
    let have: number;
    try {
      have = n.dim(key);
    } catch {
      throw new CheckpointError(`${src}: the normalizer has no "${key}" statistics`);
    }
    if (have !== dim) throw new CheckpointError(`${src}: the normalizer's "${key}" has ${have} dimensions, the policy ${dim}`);
  }
  return n;
}

export async function loadDiffusionPolicy(p: string, opts: LoadPolicyOptions = {}): Promise<DiffusionPolicy> {
  const ck = await loadCheckpoint(p);
  const src = `${ck.path}/checkpoint.json`;
  if (ck.meta.kind !== 'diffusion-policy') {
    throw new CheckpointError(`${ck.path}: is a ${JSON.stringify(ck.meta.kind)} checkpoint, expected a diffusion-policy checkpoint`);
  }
  const config = ck.meta.policyConfig as DiffusionPolicyConfig;
  const which = opts.weights ?? 'ema';
  const tensors = ck.tensors[which];
  if (!tensors) throw new CheckpointError(`${ck.path}: has no ${which} weights`);
  checkWeights(config, tensors, `${ck.path}/${which}.safetensors`, src);
  const policy = new DiffusionPolicy(config, normalizerFor(config, ck.meta.normalizer, src), buildContext({ seed: 0 }));
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
    checkWeights(ck.meta.policyConfig as DiffusionPolicyConfig, tensors, `${ck.path}/${file}.safetensors`, src, { extraTimeInputs: 1 });
    const pc = ck.meta.policyConfig as DiffusionPolicyConfig;
    const policy = new ConsistencyPolicy(pc, sampling, normalizerFor(pc, ck.meta.normalizer, src));
    loadStateDict(policy.student, tensors, { source: `${ck.path}/${file}.safetensors` });
    if (opts.steps !== undefined) policy.steps = opts.steps;
    return policy;
  }
  if (kind === 'onedp') {
    const { OneDpPolicy } = await import('../distill/onedp.js');
    const src = `${ck.path}/checkpoint.json`;
    const gen = ck.tensors.generator;
    if (!gen) throw new CheckpointError(`${ck.path}: onedp checkpoint has no generator weights`);
    checkWeights(ck.meta.policyConfig as DiffusionPolicyConfig, gen, `${ck.path}/generator.safetensors`, src);
    const pc = ck.meta.policyConfig as DiffusionPolicyConfig;
    const g = ck.meta.generator as Partial<import('../distill/onedp.js').OneDpGeneratorConfig> | undefined;
    const steps = pc.noise.kind === 'ddpm' ? (pc.noise.numTrainTimesteps ?? 100) : 0;
    if (!g || typeof g !== 'object' || (g.method !== 'onedp-s' && g.method !== 'onedp-d')) throw new CheckpointError(`${src}: "generator" must give method onedp-s or onedp-d, got ${JSON.stringify(g)}`);
    if (pc.noise.kind === 'ddpm' && !(Number.isInteger(g.tInit) && g.tInit! >= 0 && g.tInit! < steps)) throw new CheckpointError(`${src}: generator.tInit must be a step in 0..${steps - 1}, got ${JSON.stringify(g.tInit)}`);
    if (pc.noise.kind === 'edm' && !(typeof g.sigmaInit === 'number' && g.sigmaInit > 0 && g.sigmaInit <= 1e4)) throw new CheckpointError(`${src}: generator.sigmaInit must be a noise level in (0, 1e4], got ${JSON.stringify(g.sigmaInit)}`);
    const policy = new OneDpPolicy(pc, g as import('../distill/onedp.js').OneDpGeneratorConfig, normalizerFor(pc, ck.meta.normalizer, src));
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

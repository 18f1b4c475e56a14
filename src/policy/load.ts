/** Loading trained policies from checkpoints, whatever produced them. */
import { loadCheckpoint, CheckpointError } from '../train/checkpoint.js';
import { DiffusionPolicy, type DiffusionPolicyConfig } from './diffusion_policy.js';
import { LinearNormalizer } from './normalizer.js';
import { buildContext } from '../nn/module.js';
import { loadStateDict } from '../nn/state_dict.js';

export interface LoadPolicyOptions {
  /** Use the EMA weights (default, as the reference evaluates) or the raw model weights. */
  weights?: 'ema' | 'model';
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
  loadStateDict(policy.unet, tensors, { source: `${ck.path}/${which}.safetensors` });
  policy.unet.eval();
  return policy;
}

/**
 * Any policy checkpoint: a diffusion policy (sampled with `sampler`) or a one-step OneDP
 * generator. Errors name the checkpoint and what kind it is.
 */
export async function loadPolicy(p: string, opts: LoadPolicyOptions = {}): Promise<import('./types.js').Policy> {
  const ck = await loadCheckpoint(p);
  const kind = ck.meta.kind;
  if (kind === 'diffusion-policy') return loadDiffusionPolicy(ck.path, opts);
  if (kind === 'onedp') {
    const { OneDpPolicy } = await import('../distill/onedp.js');
    const src = `${ck.path}/checkpoint.json`;
    const gen = ck.tensors.generator;
    if (!gen) throw new CheckpointError(`${ck.path}: onedp checkpoint has no generator weights`);
    const policy = new OneDpPolicy(ck.meta.policyConfig as DiffusionPolicyConfig, ck.meta.generator as import('../distill/onedp.js').OneDpGeneratorConfig, LinearNormalizer.fromJSON(ck.meta.normalizer, src));
    loadStateDict(policy.generator, gen, { source: `${ck.path}/generator.safetensors` });
    return policy;
  }
  throw new CheckpointError(`${ck.path}: unknown checkpoint kind ${JSON.stringify(kind)} (expected diffusion-policy or onedp)`);
}

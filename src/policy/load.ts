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

/**
 * Visuomotor latency at batch 1 (the paper's Table 5 split): observation encoding (centre crop
 * of the two 96x96 history frames + the ResNet encoder) and action prediction, for the one-step
 * policy, DDIM-10 and DDPM-100, with the resulting control rates. Weights do not change the
 * cost, so the policies are untrained; the U-Net is the recipe's (32/64, step embedding 64).
 * Encoders: the CPU default (ResNet-18 at 1/4 width), 1/2 width, and the spec's full ResNet-18.
 */
import { DiffusionPolicy, defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { OneDpPolicy } from '../src/distill/onedp.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { buildContext } from '../src/nn/module.js';
import { defaultVisionConfig, CPU_ENCODER_WIDTHS, RESNET18_WIDTHS } from '../src/policy/obs_encoder.js';
import { DDIMScheduler, DDPMScheduler } from '../src/diffusion/index.js';
import { pushtLatency } from '../src/eval/pusht.js';
import type { Policy } from '../src/policy/types.js';
import type { BenchRow } from './harness.js';

const SEEDS = [100000, 100001, 100002, 100003, 100004];

export async function benchImage(rows: BenchRow[], opts: { quick: boolean }): Promise<void> {
  const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from([0, 0, 512, 512]), dim: 2 }, action: { values: Float32Array.from([0, 0, 512, 512]), dim: 2 } });
  const unet = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
  const encoders: [string, number[]][] = [
    ['ResNet-18 1/4 width (CPU default)', CPU_ENCODER_WIDTHS],
    ['ResNet-18 1/2 width', CPU_ENCODER_WIDTHS.map((c) => c * 2)],
    ['ResNet-18 (spec)', RESNET18_WIDTHS],
  ];
  const reps = opts.quick ? 5 : 20;
  let warmed = false;
  for (const [label, widths] of encoders) {
    const config = defaultPolicyConfig(2, 2, { unet, vision: defaultVisionConfig({ widths }) });
    const onedp = new OneDpPolicy(config, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, norm, 0);
    const dp = new DiffusionPolicy(config, norm, buildContext({ seed: 0 }));
    const params = onedp.generator.obsEncoder!.numParameters();
    const measure = (name: string, policy: Policy, n: number) => {
      // The first calls of a process compile and allocate; keep them out of the first row.
      if (!warmed) pushtLatency(policy, SEEDS, 10);
      warmed = true;
      const lat = pushtLatency(policy, SEEDS, n);
      rows.push({ section: 'image', name: `${label}: ${name}`, ms: lat.totalMs, extra: { 'obs ms': lat.obsEncodingMs, 'action ms': lat.actionPredictionMs, NFE: lat.nfe, Hz: lat.hz, 'encoder params (M)': params / 1e6 } });
    };
    measure('OneDP (1 NFE)', onedp, reps);
    dp.sampler = new DDIMScheduler({ numInferenceSteps: 10 });
    measure('DP DDIM-10', dp, reps);
    dp.sampler = new DDPMScheduler();
    measure('DP DDPM-100', dp, opts.quick ? 3 : 7);
    onedp.dispose();
    dp.dispose();
  }
}

import { bimodalAction } from '../../src/data/synthetic.js';
import type { ReplayBuffer } from '../../src/data/replay.js';
import { defaultPolicyConfig } from '../../src/policy/diffusion_policy.js';
import { trainPolicy } from '../../src/train/trainer.js';

/** The DDPM teacher the distillation tests start from: a 32/64 U-Net trained 400 steps on the bimodal set. */
export async function trainBimodalTeacher(buffer: ReplayBuffer, outDir: string): Promise<void> {
  await trainPolicy({
    policy: defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true } }),
    buffer,
    outDir,
    train: { steps: 400, batchSize: 64, warmupSteps: 50, lr: 1e-3, checkpointEvery: 400 },
    progress: 'none',
  });
}

/**
 * Chunks predicted from the bimodal set's start observation: the fraction ending right, and the
 * mean abs distance of each chunk to the noiseless demonstration of its own mode. From the start
 * the window is padded by one frame, so chunk[j] is step max(j-1, 0).
 */
export function modeStats(chunks: number[][][], length = 24): { right: number; err: number } {
  let right = 0;
  let err = 0;
  for (const c of chunks) {
    const dir = c[c.length - 1][0] > 0 ? 1 : -1;
    if (dir > 0) right++;
    for (let j = 0; j < c.length; j++) {
      const [ax, ay] = bimodalAction(dir, Math.max(j - 1, 0), length);
      err += Math.abs(c[j][0] - ax) + Math.abs(c[j][1] - ay);
    }
  }
  return { right: right / chunks.length, err: err / (chunks.length * chunks[0].length * 2) };
}

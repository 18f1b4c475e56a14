import { bimodalAction } from '../../src/data/synthetic.js';
import type { ReplayBuffer } from '../../src/data/replay.js';
import { defaultPolicyConfig } from '../../src/policy/diffusion_policy.js';
import { trainPolicy } from '../../src/train/trainer.js';
import { noiseKind, type NoiseKind } from '../../src/experiments/recipe.js';
import type { Policy } from '../../src/policy/types.js';

/** The teacher the distillation tests (and scripts/toy_lab.ts) start from: a 32/64 U-Net trained 400 steps on the bimodal set. */
export async function trainBimodalTeacher(buffer: ReplayBuffer, outDir: string, noise: NoiseKind = 'ddpm'): Promise<void> {
  await trainPolicy({
    policy: defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true }, noise: noiseKind(noise) }),
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

/**
 * At mid-episode observations (exact, noiseless positions the noisy training demonstrations never
 * show), the executed part of the chunks predicted with 8 noise seeds: `bias`, the mean abs error
 * of their mean to the demonstration of the observation's mode, and `spread`, their mean abs
 * distance to that mean (0 for a deterministic policy).
 */
export function heldOut(policy: Policy): { bias: number; spread: number } {
  const length = 24;
  const hists: number[][][] = [];
  const want: [number, number][][] = [];
  for (const dir of [1, -1])
    for (const t of [4, 9, 14]) {
      hists.push([bimodalAction(dir, t - 2, length), bimodalAction(dir, t - 1, length)]);
      want.push(Array.from({ length: 8 }, (_, j) => bimodalAction(dir, t - 1 + j, length)));
    }
  const preds = [1, 2, 3, 4, 5, 6, 7, 8].map((seed) => policy.predictAction(hists, { seed }).chunk);
  let bias = 0;
  let spread = 0;
  let n = 0;
  want.forEach((w, i) =>
    w.forEach((target, j) =>
      target.forEach((v, d) => {
        const vals = preds.map((p) => p[i][j][d]);
        const mean = vals.reduce((x, y) => x + y, 0) / vals.length;
        bias += Math.abs(mean - v);
        spread += vals.reduce((x, y) => x + Math.abs(y - mean), 0) / vals.length;
        n++;
      }),
    ),
  );
  return { bias: bias / n, spread: spread / n };
}

/** Dev tool: OneDP on the bimodal toy, held-out mid-episode error for several configs. */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine } from '../src/engine/index.js';
import { bimodalAction, bimodalDataset } from '../src/data/synthetic.js';
import { trainPolicy } from '../src/train/trainer.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { distillOneDp, type DistillConfig } from '../src/distill/distill.js';
import type { Policy } from '../src/policy/types.js';
await initEngine();
const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'toy-'));
function heldOutError(policy: Policy, seed: number): number {
  const length = 24; const hists: number[][][] = []; const want: [number, number][][] = [];
  for (const dir of [1, -1]) for (const t of [4, 9, 14]) { hists.push([bimodalAction(dir, t - 2, length), bimodalAction(dir, t - 1, length)]); want.push(Array.from({ length: 16 }, (_, j) => bimodalAction(dir, Math.min(t - 1 + j, length - 1), length))); }
  const pred = policy.predictAction(hists, { seed }); let err = 0; let n = 0;
  pred.chunk.forEach((c, i) => c.forEach((a, j) => { if (j >= 8) return; err += Math.abs(a[0] - want[i][j][0]) + Math.abs(a[1] - want[i][j][1]); n += 2; }));
  return err / n;
}
const buffer = bimodalDataset({ episodes: 40 });
const dir = await tmp();
await trainPolicy({ policy: defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: 32, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true } }), buffer, outDir: dir, train: { steps: 400, batchSize: 64, warmupSteps: 50, lr: 1e-3, checkpointEvery: 400 }, progress: 'none' });
const teacher = await loadDiffusionPolicy(dir);
const e = (p: Policy) => (heldOutError(p, 1) + heldOutError(p, 2) + heldOutError(p, 3)) / 3;
console.log('teacher DDPM', e(teacher).toFixed(3));
for (const v of JSON.parse(process.argv[2]) as (Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' })[]) {
  const out = await tmp();
  await distillOneDp({ teacher, buffer, config: { batchSize: 64, ...v }, outDir: out, progress: 'none' });
  const p = await loadPolicy(out);
  console.log(JSON.stringify(v), e(p).toFixed(3));
  p.dispose();
}

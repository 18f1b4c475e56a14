/** Dev tool: OneDP on the bimodal toy, held-out mid-episode error for several configs. */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine } from '../src/engine/index.js';
import { bimodalAction, bimodalDataset } from '../src/data/synthetic.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { distillOneDp, type DistillConfig } from '../src/distill/distill.js';
import type { Policy } from '../src/policy/types.js';
import { heldOut, trainBimodalTeacher } from '../test/helpers/bimodal.js';
await initEngine();
const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'toy-'));
function heldOutError(policy: Policy, seed: number): number {
  const length = 24; const hists: number[][][] = []; const want: [number, number][][] = [];
  for (const dir of [1, -1]) for (const t of [4, 9, 14]) { hists.push([bimodalAction(dir, t - 2, length), bimodalAction(dir, t - 1, length)]); want.push(Array.from({ length: 16 }, (_, j) => bimodalAction(dir, Math.min(t - 1 + j, length - 1), length))); }
  const pred = policy.predictAction(hists, { seed }); let err = 0; let n = 0;
  pred.chunk.forEach((c, i) => c.forEach((a, j) => { if (j >= 8) return; err += Math.abs(a[0] - want[i][j][0]) + Math.abs(a[1] - want[i][j][1]); n += 2; }));
  return err / n;
}
/** Bias and spread over 8 noise seeds (test/helpers/bimodal.ts). */
function spread(policy: Policy): string {
  const r = heldOut(policy);
  return `bias ${r.bias.toFixed(3)} spread ${r.spread.toFixed(3)}`;
}
const buffer = bimodalDataset({ episodes: 40 });
const dir = await tmp();
await trainBimodalTeacher(buffer, dir, process.env.TOY_NOISE === 'edm' ? 'edm' : 'ddpm');
const teacher = await loadDiffusionPolicy(dir);
const e = (p: Policy) => (heldOutError(p, 1) + heldOutError(p, 2) + heldOutError(p, 3)) / 3;
console.log('teacher', teacher.config.noise.kind, e(teacher).toFixed(3), spread(teacher));
for (const v of JSON.parse(process.argv[2]) as (Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' })[]) {
  const out = await tmp();
  await distillOneDp({ teacher, buffer, config: { batchSize: 64, ...v }, outDir: out, progress: 'none' });
  const p = await loadPolicy(out);
  console.log(JSON.stringify(v), e(p).toFixed(3), spread(p));
  p.dispose();
}

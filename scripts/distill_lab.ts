/**
 * Dev tool for the distillation study: distils a teacher checkpoint with several variants of the
 * OneDP config and prints score against steps on the first test seeds.
 *   npx tsx scripts/distill_lab.ts <teacher-ckpt> <out-json> '<json list of {name, config}>' [seeds]
 *   (SEED_BASE=200000 to measure on seeds other than the reported test seeds)
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine } from '../src/engine/index.js';
import { loadDiffusionPolicy } from '../src/policy/load.js';
import { distillOneDp, type DistillConfig } from '../src/distill/distill.js';
import { evaluatePushT } from '../src/eval/pusht.js';
import { openDataset } from '../src/data/load.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { policyBuffer } from '../src/data/obs_spec.js';
import { DDIMScheduler } from '../src/diffusion/index.js';

await initEngine();
const [teacherPath, outFile, variantsJson, nSeeds] = process.argv.slice(2);
// SEED_BASE=200000 measures on validation seeds, away from the reported test seeds.
const seedBase = Number(process.env.SEED_BASE ?? 100000);
const seeds = Array.from({ length: Number(nSeeds ?? 50) }, (_, i) => seedBase + i);
const ck = await loadCheckpoint(teacherPath);
const prov = ck.meta.provenance as { dataset: string; obsSpec: string };
const buffer = policyBuffer(await openDataset(prov.dataset), prov.obsSpec, prov.dataset);
const results: Record<string, unknown> = JSON.parse(await fs.readFile(outFile, 'utf8').catch(() => '{}'));
const save = () => fs.writeFile(outFile, JSON.stringify(results, null, 1));
const teacher = await loadDiffusionPolicy(teacherPath);
if (!results.teacher) {
  const dp = evaluatePushT(teacher, { seeds, batchSize: 50, latencyReps: 0 }).meanScore;
  const kind = teacher.config.noise.kind;
  const saved = teacher.sampler;
  if (kind === 'ddpm') teacher.sampler = new DDIMScheduler({ numInferenceSteps: 10 });
  const ddim = kind === 'ddpm' ? evaluatePushT(teacher, { seeds, batchSize: 50, latencyReps: 0 }).meanScore : null;
  teacher.sampler = saved;
  results.teacher = { default: dp, ddim10: ddim };
  console.log('teacher', results.teacher);
  await save();
}
for (const v of JSON.parse(variantsJson) as { name: string; config: Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' }; every?: number }[]) {
  if (results[v.name]) continue;
  const points: { step: number; score: number; seconds: number }[] = [];
  const t0 = performance.now();
  let evalMs = 0;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'lab-'));
  const r = await distillOneDp({
    teacher, buffer, config: v.config, outDir: dir, progress: 'none', snapshotEvery: v.every ?? 100,
    onSnapshot: (step, policy) => {
      const e0 = performance.now();
      const score = evaluatePushT(policy, { seeds, batchSize: 50, latencyReps: 0 }).meanScore;
      evalMs += performance.now() - e0;
      points.push({ step, score, seconds: (e0 - t0 - evalMs + (performance.now() - e0)) / 1000 });
      console.log(`${v.name} step ${step}: ${score.toFixed(3)}`);
    },
  });
  r.policy.dispose();
  await fs.rm(dir, { recursive: true, force: true });
  results[v.name] = { config: v.config, points, seconds: (performance.now() - t0 - evalMs) / 1000 };
  await save();
}

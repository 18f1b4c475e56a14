/**
 * Dev tool: Consistency Policy from a teacher checkpoint, 1- and 3-step scores on the first test
 * seeds at its warm start and every N steps.
 *   npx tsx scripts/cp_lab.ts <teacher-ckpt> '<json ConsistencyConfig overrides>' [every] [seeds]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine } from '../src/engine/index.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { distillConsistency, type ConsistencyConfig, type ConsistencyPolicy } from '../src/distill/consistency.js';
import { evaluatePushT } from '../src/eval/pusht.js';
import { openDataset } from '../src/data/load.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { policyBuffer } from '../src/data/obs_spec.js';
import type { Policy } from '../src/policy/types.js';

await initEngine();
const [teacherPath, overrides, every, nSeeds] = process.argv.slice(2);
const seeds = Array.from({ length: Number(nSeeds ?? 50) }, (_, i) => 100000 + i);
const prov = (await loadCheckpoint(teacherPath)).meta.provenance as { dataset: string; obsSpec: string };
const buffer = policyBuffer(await openDataset(prov.dataset), prov.obsSpec, prov.dataset);
const teacher = await loadDiffusionPolicy(teacherPath);
const config = JSON.parse(overrides ?? '{}') as Partial<ConsistencyConfig>;
const score = (p: Policy) => evaluatePushT(p, { seeds, batchSize: 50, latencyReps: 0 }).meanScore.toFixed(3);
const withSteps = async (p: Policy, steps: number) => {
  const cp = p as ConsistencyPolicy;
  const saved = cp.steps;
  cp.steps = steps;
  const s = score(cp);
  cp.steps = saved;
  return s;
};
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'cplab-'));
await distillConsistency({ teacher, buffer, config: { ...config, steps: 0 }, outDir: path.join(dir, 'warm'), progress: 'none' });
const warm = await loadPolicy(path.join(dir, 'warm'));
console.log(`${teacherPath} ${JSON.stringify(config)} step 0: 1-step ${await withSteps(warm, 1)}, 3-step ${await withSteps(warm, 3)}`);
warm.dispose();
await distillConsistency({
  teacher, buffer, config, outDir: path.join(dir, 'run'), progress: 'none', snapshotEvery: Number(every ?? 150),
  onSnapshot: async (step, p) => console.log(`${teacherPath} step ${step}: 1-step ${await withSteps(p, 1)}, 3-step ${await withSteps(p, 3)}`),
});

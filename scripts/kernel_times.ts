/** Dev tool: per-kernel wall time over N recipe trainer steps or OneDP-S steps (wraps every wasm kernel). */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine, tf, setThreads } from '../src/engine/index.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { trainPolicy } from '../src/train/trainer.js';
import { distillOneDp } from '../src/distill/distill.js';
import { pushtShaped } from '../bench/train.js';
await initEngine();
if (process.argv[4]) setThreads(Number(process.argv[4]));
const what = process.argv[2] ?? 'train';
const batch = Number(process.argv[3] ?? 64);
const times = new Map<string, [number, number]>();
let on = false;
for (const k of tf.getKernelsForBackend('wasm')) {
  const f = k.kernelFunc;
  tf.unregisterKernel(k.kernelName, 'wasm');
  tf.registerKernel({ ...k, kernelFunc: (args) => { if (!on) return f(args); const t0 = performance.now(); const r = f(args); const e = times.get(k.kernelName) ?? [0, 0]; e[0] += performance.now() - t0; e[1]++; times.set(k.kernelName, e); return r; } });
}
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-kt-'));
const buffer = pushtShaped(50, 120);
const unet = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
const steps = 20;
let t0 = 0;
const tick = (s: number) => { if (s === 5) { on = true; t0 = performance.now(); } };
const r = await trainPolicy({ policy: defaultPolicyConfig(20, 2, { unet }), buffer, outDir: path.join(dir, 'b'), train: { steps: what === 'train' ? steps + 5 : 5, batchSize: what === 'train' ? batch : 64, checkpointEvery: 1000 }, progress: 'none', onStep: ({ step }) => tick(step) });
if (what !== 'train') { on = false; await distillOneDp({ teacher: r.policy, buffer, config: { method: 'onedp-s', steps: steps + 5, batchSize: batch }, outDir: path.join(dir, 'c'), progress: 'none', onStep: ({ step }) => tick(step) }); }
const total = performance.now() - t0; on = false;
let ksum = 0; for (const [, [ms]] of times) ksum += ms;
console.log(`${what} b${batch}: ${(total / steps).toFixed(1)} ms/step, kernels ${(ksum / steps).toFixed(1)} ms/step`);
for (const [n, [ms, c]] of [...times].sort((a, b) => b[1][0] - a[1][0]).slice(0, 18)) console.log(n.padEnd(24), (ms / steps).toFixed(2).padStart(7), 'ms', String(Math.round(c / steps)).padStart(5), ((ms / c) * 1000).toFixed(1).padStart(8), 'us each');

/**
 * Dev tool: the speed section's five workloads on whatever engine this tree starts, printed as
 * JSON, so two trees (say, before and after a change) can be timed side by side:
 *   npx tsx scripts/workloads.ts        (run it in each checkout, alternating)
 * Uses only APIs older trees have too.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { initEngine, tf } from '../src/engine/index.js';
import { ConditionalUnet1D, PUSHT_STATE_UNET, UNET_DEFAULTS, type UnetConfig } from '../src/nn/unet1d.js';
import { buildContext } from '../src/nn/module.js';
import { AdamW } from '../src/train/adamw.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { trainPolicy } from '../src/train/trainer.js';
import { distillOneDp } from '../src/distill/distill.js';
import { pushtShaped } from '../bench/train.js';
import { timeIt, sync } from '../bench/harness.js';

await initEngine();
const CPU_DEFAULT: UnetConfig = { ...UNET_DEFAULTS, inputDim: 2, globalCondDim: 40 };
const RECIPE = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };
const inputs = (b: number, cfg: UnetConfig) => ({ x: tf.randomNormal([b, 16, cfg.inputDim], 0, 1, 'float32', 1), c: tf.randomNormal([b, cfg.globalCondDim], 0, 1, 'float32', 2), t: tf.randomUniform([b], 0, 100, 'float32', 3).floor() });
const out: Record<string, number> = {};
for (const [id, cfg] of [['forward-b1-4.56M', CPU_DEFAULT], ['forward-b1-65.8M', PUSHT_STATE_UNET]] as const) {
  const net = new ConditionalUnet1D(cfg, buildContext({ seed: 0 }));
  const { x, c, t } = inputs(1, cfg);
  out[id] = timeIt(sync(() => net.forward(x, t, c)), { reps: 20, minMs: 1000 });
  net.dispose();
}
{
  const net = new ConditionalUnet1D(CPU_DEFAULT, buildContext({ seed: 0 }));
  const vars = net.variables();
  const opt = new AdamW(vars, { lr: 1e-4, betas: [0.95, 0.999], weightDecay: 1e-6 });
  const { x, c, t } = inputs(256, CPU_DEFAULT);
  out['train-b256-4.56M'] = timeIt(() => tf.tidy(() => { const { value, grads } = tf.variableGrads(() => net.forward(x, t, c).sub(x).square().mean() as tf.Scalar, vars); opt.step(vars.map((v) => grads[v.name])); value.dataSync(); }), { warmup: 1, reps: 5 });
  opt.dispose();
  net.dispose();
}
const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-wl-'));
const buffer = pushtShaped(50, 120);
const median = (xs: number[]) => xs.slice(1, -1).sort((a, b) => a - b)[Math.floor((xs.length - 2) / 2)];
let times: number[] = [];
let last = 0;
const tick = () => { const now = performance.now(); times.push(now - last); last = now; };
last = performance.now();
const r = await trainPolicy({ policy: defaultPolicyConfig(20, 2, { unet: RECIPE }), buffer, outDir: path.join(dir, 't'), train: { steps: 22, batchSize: 64, checkpointEvery: 10_000 }, progress: 'none', onStep: tick });
out['trainer-b64-recipe'] = median(times);
times = [];
last = performance.now();
const d = await distillOneDp({ teacher: r.policy, buffer, config: { method: 'onedp-s', steps: 22, batchSize: 32 }, outDir: path.join(dir, 'd'), progress: 'none', onStep: tick });
out['onedp-s-b32-recipe'] = median(times);
d.policy.dispose();
await fs.rm(dir, { recursive: true, force: true });
console.log(JSON.stringify(out));

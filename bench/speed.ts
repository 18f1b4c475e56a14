/**
 * The speed section: the workloads that bound training and acting, on every engine this machine
 * has (onedp's native kernels on all cores, then its wasm kernels on one), beside PyTorch when
 * `--peer` is given and torch imports. GFLOPS are shown as a share of the machine's fp32 peak,
 * measured with a tight multiply-add loop on all cores. Ids match bench/peer/bench.py.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { tf, installWasmKernels, loadNative, getThreads, CUSTOM_KERNELS, useBackend } from '../src/engine/index.js';
import { countFlops } from '../src/engine/flops.js';
import { ConditionalUnet1D, PUSHT_STATE_UNET, UNET_DEFAULTS, type UnetConfig } from '../src/nn/unet1d.js';
import { buildContext } from '../src/nn/module.js';
import { AdamW } from '../src/train/adamw.js';
import { defaultPolicyConfig, type DiffusionPolicy } from '../src/policy/diffusion_policy.js';
import { trainPolicy } from '../src/train/trainer.js';
import { distillOneDp } from '../src/distill/distill.js';
import { pushtShaped } from './train.js';
import { runPeer } from './peer.js';
import { timeIt, sync, type BenchRow } from './harness.js';

const CPU_DEFAULT: UnetConfig = { ...UNET_DEFAULTS, inputDim: 2, globalCondDim: 40 };
const RECIPE_UNET = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };

interface Workload {
  id: string;
  label: string;
  /** Samples per call, for samples/s. */
  batch: number;
  /** Milliseconds per call or step, and the GEMM FLOPs of one (0: not counted). */
  run: (opts: { quick: boolean }) => Promise<{ ms: number; flops: number }>;
}

function inputs(b: number, cfg: UnetConfig) {
  return {
    x: tf.randomNormal([b, 16, cfg.inputDim], 0, 1, 'float32', 1),
    c: tf.randomNormal([b, cfg.globalCondDim], 0, 1, 'float32', 2),
    t: tf.randomUniform([b], 0, 100, 'float32', 3).floor(),
  };
}

async function forward(cfg: UnetConfig, quick: boolean): Promise<{ ms: number; flops: number }> {
  const net = new ConditionalUnet1D(cfg, buildContext({ seed: 0 }));
  const { x, c, t } = inputs(1, cfg);
  const flops = await countFlops(() => net.forward(x, t, c));
  const ms = timeIt(sync(() => net.forward(x, t, c)), { reps: quick ? 10 : 20, minMs: quick ? 300 : 1000 });
  tf.dispose([x, c, t]);
  net.dispose();
  return { ms, flops };
}

/** Forward, MSE against the input, backward and onedp's AdamW step, as in training. */
async function trainStep(cfg: UnetConfig, b: number, quick: boolean): Promise<{ ms: number; flops: number }> {
  const net = new ConditionalUnet1D(cfg, buildContext({ seed: 0 }));
  const vars = net.variables();
  const opt = new AdamW(vars, { lr: 1e-4, betas: [0.95, 0.999], weightDecay: 1e-6 });
  const { x, c, t } = inputs(b, cfg);
  const loss = () => net.forward(x, t, c).sub(x).square().mean() as tf.Scalar;
  const flops = await countFlops(() => {
    const { value, grads } = tf.variableGrads(loss, vars);
    return [value, ...Object.values(grads)];
  });
  const ms = timeIt(
    () =>
      tf.tidy(() => {
        const { value, grads } = tf.variableGrads(loss, vars);
        opt.step(vars.map((v) => grads[v.name]));
        value.dataSync();
      }),
    { warmup: 1, reps: quick ? 3 : 5 },
  );
  opt.dispose();
  tf.dispose([x, c, t]);
  net.dispose();
  return { ms, flops };
}

/** Median step time of a loop that calls `tick` after each step (first and last dropped). */
async function stepMs(run: (tick: () => void) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  let last = performance.now();
  await run(() => {
    const now = performance.now();
    times.push(now - last);
    last = now;
  });
  const steady = times.slice(1, -1).sort((a, b) => a - b);
  return steady[Math.floor(steady.length / 2)];
}

/** Forward+backward FLOPs of a U-Net at batch b (what a trainer step's kernels do, data aside). */
async function trainFlops(cfg: UnetConfig, b: number): Promise<number> {
  const net = new ConditionalUnet1D(cfg, buildContext({ seed: 0 }));
  const { x, c, t } = inputs(b, cfg);
  const flops = await countFlops(() => {
    const { value, grads } = tf.variableGrads(() => net.forward(x, t, c).square().mean() as tf.Scalar, net.variables());
    return [value, ...Object.values(grads)];
  });
  tf.dispose([x, c, t]);
  net.dispose();
  return flops;
}

let teacher: DiffusionPolicy | null = null;

function workloads(dir: string): Workload[] {
  const buffer = pushtShaped(50, 120);
  return [
    { id: 'forward-b1-4.56M', label: 'U-Net forward, batch 1, CPU default (4.56M)', batch: 1, run: ({ quick }) => forward(CPU_DEFAULT, quick) },
    { id: 'forward-b1-65.8M', label: 'U-Net forward, batch 1, PushT-state (65.8M)', batch: 1, run: ({ quick }) => forward(PUSHT_STATE_UNET, quick) },
    { id: 'train-b256-4.56M', label: 'U-Net training step (fwd, bwd, AdamW), batch 256, 4.56M', batch: 256, run: ({ quick }) => trainStep(CPU_DEFAULT, 256, quick) },
    {
      id: 'trainer-b64-recipe',
      label: 'trainer step (data, fwd, bwd, AdamW, EMA), recipe U-Net 32/64, batch 64',
      batch: 64,
      run: async ({ quick }) => {
        teacher?.dispose();
        const ms = await stepMs(async (tick) => {
          const r = await trainPolicy({ policy: defaultPolicyConfig(20, 2, { unet: RECIPE_UNET }), buffer, outDir: path.join(dir, `t${Date.now()}`), train: { steps: quick ? 8 : 22, batchSize: 64, checkpointEvery: 10_000 }, progress: 'none', onStep: tick });
          teacher = r.policy;
        });
        return { ms, flops: await trainFlops({ ...RECIPE_UNET, inputDim: 2, globalCondDim: 40 }, 64) };
      },
    },
    {
      id: 'onedp-s-b32-recipe',
      label: 'OneDP-S distillation step, DDPM teacher, recipe U-Net, batch 32',
      batch: 32,
      run: async ({ quick }) => {
        if (!teacher) throw new Error('the trainer row trains the teacher first');
        const t = teacher;
        const ms = await stepMs(async (tick) => {
          const r = await distillOneDp({ teacher: t, buffer, config: { method: 'onedp-s', steps: quick ? 8 : 22, batchSize: 32 }, outDir: path.join(dir, `d${Date.now()}`), progress: 'none', onStep: tick });
          r.policy.dispose();
        });
        return { ms, flops: 0 };
      },
    },
  ];
}

export interface SpeedOptions {
  quick: boolean;
  peer: boolean;
}

export async function benchSpeed(rows: BenchRow[], opts: SpeedOptions): Promise<Record<string, unknown>> {
  await useBackend('wasm');
  const addon = loadNative().addon;
  const threads = getThreads();
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  const peak = addon ? { all: addon.peakGflops(cores, 0.5), one: addon.peakGflops(1, 0.5), isa: addon.info().isa } : null;
  if (peak) process.stderr.write(`  fp32 peak (multiply-add loop, ${peak.isa}): ${peak.one.toFixed(0)} GFLOPS on 1 core, ${peak.all.toFixed(0)} on ${cores}\n`);
  const engines: { name: string; native: boolean }[] = [...(addon ? [{ name: `native, ${threads} threads`, native: true }] : []), { name: 'wasm, 1 thread', native: false }];
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-bench-'));
  const results = new Map<string, Map<string, { ms: number; flops: number }>>();
  const list = workloads(dir);
  try {
    for (const e of engines) {
      installWasmKernels(CUSTOM_KERNELS, { native: e.native });
      for (const w of list) {
        const r = await w.run(opts);
        if (!results.has(w.id)) results.set(w.id, new Map());
        results.get(w.id)!.set(e.name, r);
        process.stderr.write(`  speed: ${w.id} on ${e.name}: ${r.ms.toFixed(1)} ms\n`);
      }
    }
  } finally {
    installWasmKernels();
    teacher?.dispose();
    teacher = null;
    await fs.rm(dir, { recursive: true, force: true });
  }
  const peer = opts.peer ? await runPeer({ quick: opts.quick }) : null;
  if (peer && !peer.ok) process.stderr.write(`  peer: skipped: ${peer.reason}\n`);
  const first = engines[0].name;
  const wasmName = engines[engines.length - 1].name;
  for (const w of list) {
    const byEngine = results.get(w.id)!;
    const main = byEngine.get(first)!;
    const gflops = main.flops ? main.flops / main.ms / 1e6 : undefined;
    const extra: Record<string, number | string> = { engine: first, 'samples/s': (1000 * w.batch) / main.ms };
    if (gflops !== undefined && peak) extra['% of peak'] = (100 * gflops) / peak.all;
    if (engines.length > 1) {
      const wasm = byEngine.get(wasmName)!;
      extra['wasm ms'] = wasm.ms;
      extra['native/wasm speed-up'] = wasm.ms / main.ms;
    }
    if (peer?.ok) {
      const pt = peer.ms.get(w.id);
      if (pt !== undefined) {
        extra['PyTorch ms'] = pt;
        extra['onedp/PyTorch time'] = main.ms / pt;
      }
    }
    rows.push({ section: 'speed', name: w.label, ms: main.ms, gflops, extra });
  }
  return {
    peakGflops: peak ? { cores, allCores: peak.all, oneCore: peak.one, isa: peak.isa } : null,
    engines: engines.map((e) => e.name),
    peer: peer ? (peer.ok ? { torch: peer.torch, threads: peer.threads } : { skipped: peer.reason }) : null,
  };
}

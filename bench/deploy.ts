/**
 * The deployment section: acting latency at batch 1, tfjs against onnxruntime side by side in
 * one run, for the policies a robot would run: the one-step state policy (the reproduction's
 * 0.34M U-Net and the 4.56M CPU default), the one-step policy on the spec's 65.8M U-Net, the
 * image policy with the spec's full ResNet-18 (two 96x96 frames cropped to 84), and DDPM-100
 * against OneDP on the same network, and the 65.8M policy with 8- and 4-bit weights (the tfjs
 * column there is the float32 policy). Weights are random: latency does not depend on them.
 * Each time is observation encoding plus action prediction, the median of many calls, with
 * onnxruntime's default threads per graph (and the other choice in rows of their own).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { tf } from '../src/engine/index.js';
import { PUSHT_STATE_UNET } from '../src/nn/unet1d.js';
import { stateDict } from '../src/nn/state_dict.js';
import { buildContext } from '../src/nn/module.js';
import { defaultPolicyConfig, DiffusionPolicy, type DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { defaultVisionConfig, RESNET18_WIDTHS } from '../src/policy/obs_encoder.js';
import { OneDpPolicy } from '../src/distill/onedp.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { exportOnnx, type ExportWeights } from '../src/export/export.js';
import { OnnxPolicy, defaultOrtThreads, loadOnnxRuntime } from '../src/export/runtime.js';
import type { ObservationBatch, Policy } from '../src/policy/types.js';
import { Rng } from '../src/util/rng.js';
import { medianMs as median, type BenchRow } from './harness.js';
import { OnnxGraph } from '../src/export/graph.js';
import { ConditionalUnet1D } from '../src/nn/unet1d.js';

const RECIPE = { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true };

function normalizer(obsDim: number): LinearNormalizer {
  const rng = new Rng(0);
  return LinearNormalizer.fit({ obs: { values: Float32Array.from({ length: 8 * obsDim }, () => 512 * rng.uniform()), dim: obsDim }, action: { values: Float32Array.from({ length: 16 }, () => 512 * rng.uniform()), dim: 2 } });
}

function observation(pc: DiffusionPolicyConfig): ObservationBatch {
  const rng = new Rng(1);
  const data: ObservationBatch['data'] = { obs: Float32Array.from({ length: pc.nObsSteps * pc.obsDim }, () => 512 * rng.uniform()) };
  if (pc.vision) data.image = Uint8Array.from({ length: pc.nObsSteps * pc.vision.frameSize ** 2 * 3 }, () => Math.floor(256 * rng.uniform()));
  return { batch: 1, data };
}

interface Case {
  name: string;
  pc: DiffusionPolicyConfig;
  kind: 'onedp-s' | 'ddpm-100';
  minMs: number;
  /** Exported weights (default float32). */
  weights?: ExportWeights;
}

/** The same policy on both runtimes: tfjs's `predictAction` and onnxruntime's `predict` of its export. */
async function measure(c: Case, dir: string, threads?: number): Promise<{ tfjs: number; onnx: number; onnxEncode: number; onnxAct: number }> {
  const norm = normalizer(c.pc.obsDim);
  let policy: Policy;
  const ck = path.join(dir, c.name.replace(/[^a-z0-9]+/gi, '-'));
  if (c.kind === 'onedp-s') {
    const gen = { method: 'onedp-s' as const, tInit: 65, sigmaInit: 2.5 };
    const p = new OneDpPolicy(c.pc, gen, norm, 0);
    await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: c.pc, generator: gen, normalizer: norm.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
    policy = p;
  } else {
    const p = new DiffusionPolicy(c.pc, norm, buildContext({ seed: 0 }));
    await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'diffusion-policy', policyConfig: c.pc, normalizer: norm.toJSON(), step: 1 }, tensors: { ema: stateDict(p.model) } });
    policy = p;
  }
  await exportOnnx(ck, path.join(ck, 'bundle'), { weights: c.weights });
  const onnx = await OnnxPolicy.load(path.join(ck, 'bundle'), { threads });
  const obs = observation(c.pc);
  let seed = 0;
  const tfjs = await median(() => policy.predictAction(obs, { seed: seed++ }), c.minMs);
  let enc = 0;
  let act = 0;
  let n = 0;
  const onnxMs = await median(async () => {
    const r = await onnx.predict(obs, { seed: seed++ });
    enc += r.timing.obsEncodingMs;
    act += r.timing.actionPredictionMs;
    n++;
  }, c.minMs);
  await onnx.dispose();
  policy.dispose();
  return { tfjs, onnx: onnxMs, onnxEncode: enc / n, onnxAct: act / n };
}

/**
 * The floor for a batch-1 forward whose weights do not fit in cache: one MatMul (1 x k) x (k x n)
 * over as many float32 weights as the model has, so that its time is reading them from memory.
 */
async function weightStreamMs(params: number, dir: string, threads: number, minMs: number): Promise<number> {
  const ort = (await loadOnnxRuntime())!;
  const k = 4096;
  const n = Math.ceil(params / k);
  const g = new OnnxGraph('stream');
  const x = g.input('x', 'float32', [1, k]);
  const rng = new Rng(2);
  g.output(g.op('MatMul', [x, g.float('w', Float32Array.from({ length: k * n }, () => rng.uniform() - 0.5), [k, n])]), 'y', 'float32', [1, n]);
  const file = path.join(dir, 'stream.onnx');
  await fs.writeFile(file, g.toBytes('weight streaming'));
  const s = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const feed = { x: new ort.Tensor('float32', new Float32Array(k).fill(1), [1, k]) };
  const ms = await median(() => s.run(feed), minMs);
  await s.release();
  return ms;
}

export async function benchDeploy(rows: BenchRow[], opts: { quick: boolean }): Promise<Record<string, unknown> | void> {
  if (!(await loadOnnxRuntime())) {
    process.stderr.write('bench: deploy: onnxruntime-node does not load here; skipped\n');
    return { skipped: 'onnxruntime-node does not load' };
  }
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-bench-deploy-'));
  const t = opts.quick ? 0.3 : 1;
  const state = (unet: DiffusionPolicyConfig['unet']) => defaultPolicyConfig(20, 2, { unet });
  const image: DiffusionPolicyConfig = { ...defaultPolicyConfig(2, 2, { unet: RECIPE }), vision: { ...defaultVisionConfig(), encoder: { ...defaultVisionConfig().encoder, widths: [...RESNET18_WIDTHS] } } };
  const cases: Case[] = [
    { name: 'OneDP-S, state, recipe U-Net 32/64 (0.34M)', pc: state(RECIPE), kind: 'onedp-s', minMs: 2000 * t },
    { name: 'OneDP-S, state, CPU default U-Net (4.56M)', pc: defaultPolicyConfig(20, 2), kind: 'onedp-s', minMs: 2000 * t },
    { name: 'OneDP-S, state, spec U-Net (65.8M)', pc: state(PUSHT_STATE_UNET), kind: 'onedp-s', minMs: 4000 * t },
    { name: 'OneDP-S, image, full ResNet-18 + U-Net 32/64', pc: image, kind: 'onedp-s', minMs: 4000 * t },
    { name: 'DDPM-100, state, recipe U-Net 32/64 (0.34M)', pc: state(RECIPE), kind: 'ddpm-100', minMs: 4000 * t },
    { name: 'OneDP-S, state, spec U-Net (65.8M), int8 weights', pc: state(PUSHT_STATE_UNET), kind: 'onedp-s', minMs: 4000 * t, weights: 'int8' },
    { name: 'OneDP-S, state, spec U-Net (65.8M), int4 weights', pc: state(PUSHT_STATE_UNET), kind: 'onedp-s', minMs: 4000 * t, weights: 'int4' },
  ];
  const results: Record<string, { tfjs: number; onnx: number }> = {};
  for (const c of cases) {
    const r = await measure(c, dir);
    results[c.name] = r;
    rows.push({
      section: 'deploy',
      name: `${c.name}, batch 1`,
      ms: r.onnx,
      extra: { 'onnxruntime Hz': 1000 / r.onnx, 'encode ms': r.onnxEncode, 'act ms': r.onnxAct, 'tfjs ms': r.tfjs, 'tfjs Hz': 1000 / r.tfjs, 'tfjs/onnxruntime time': r.tfjs / r.onnx },
    });
  }
  // The 65.8M forward against reading its weights once.
  const shapes = new ConditionalUnet1D({ ...PUSHT_STATE_UNET, inputDim: 2, globalCondDim: 40 }, buildContext({ meta: true }));
  let bigParams = 0;
  for (const [, p] of shapes.namedParameters()) bigParams += p.shape.reduce((a, b) => a * b, 1);
  const stream = await weightStreamMs(bigParams, dir, defaultOrtThreads(bigParams * 4), 3000 * t);
  const big = results[cases[2].name];
  rows.push({ section: 'deploy', name: `reading ${(bigParams / 1e6).toFixed(1)}M float32 weights once (batch-1 MatMul: the memory floor of the 65.8M forward)`, ms: stream, extra: { 'GB/s': (bigParams * 4) / 1e6 / stream, 'onnxruntime Hz': 1000 / stream, '65.8M forward / floor': big.onnx / stream } });
  // The default thread count against the other choice (defaultOrtThreads: 1 below 64 MB of graph).
  for (const [c, n] of [[cases[0], 2], [cases[3], 2], [cases[2], 1]] as const) {
    const r = await measure(c, dir, n);
    rows.push({ section: 'deploy', name: `${c.name}, batch 1, ${n} onnxruntime thread${n > 1 ? 's' : ''}`, ms: r.onnx, extra: { 'onnxruntime Hz': 1000 / r.onnx, 'encode ms': r.onnxEncode, 'act ms': r.onnxAct, 'tfjs ms': r.tfjs, 'tfjs Hz': 1000 / r.tfjs, 'tfjs/onnxruntime time': r.tfjs / r.onnx } });
  }
  const one = results[cases[0].name];
  const ddpm = results[cases[4].name];
  rows.push({ section: 'deploy', name: 'DDPM-100 / OneDP-S time, recipe U-Net (ratio of the rows above)', ms: ddpm.onnx, extra: { 'onnxruntime ratio': ddpm.onnx / one.onnx, 'tfjs ratio': ddpm.tfjs / one.tfjs } });
  await fs.rm(dir, { recursive: true, force: true });
  return { onnxThreads: 'defaultOrtThreads: 1 for graphs under 64 MB, else the cores up to 4' };
}

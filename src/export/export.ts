/**
 * `onedp export --format onnx`: a trained policy as ONNX graphs plus a JSON description
 * (normaliser, horizons, observation spec, schedule and sampler, shapes), usable without onedp.
 *
 * Every bundle has an observation encoder (`encoder.onnx`: raw `obs`, and for image policies one
 * uint8 frame history per camera, -> `cond`) and one action graph, split as the paper splits
 * latency:
 * - OneDP-S/D: `generator.onnx` (`cond`, `noise`) -> `action`, the whole one-step policy with
 *   the unnormalised chunk as output (OneDP-D takes no noise);
 * - diffusion policy: `denoiser.onnx` (`sample`, `timestep`, `cond`) -> `output`, the raw network
 *   (epsilon for DDPM; for EDM the F of D = c_skip x + c_out F(c_in x, c_noise)), which a sampler
 *   loop calls in normalised action space;
 * - Consistency Policy: `consistency.onnx` (`sample`, `timestep`, `stop`, `cond`) -> `output`,
 *   the student's raw network with its stop-time input.
 */
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { loadCheckpoint, CheckpointError } from '../train/checkpoint.js';
import { writeFileAtomic, type SafeTensor } from '../io/safetensors.js';
import type { DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import { LinearNormalizer, type NormalizerParams } from '../policy/normalizer.js';
import type { OneDpGeneratorConfig } from '../distill/onedp.js';
import type { ConsistencySampling } from '../distill/consistency.js';
import { DiscreteSchedule } from '../diffusion/ddpm.js';
import { EDMScheduler } from '../diffusion/edm.js';
import { UNET_DEFAULTS, type UnetConfig } from '../nn/unet1d.js';
import { OnnxGraph, OPSET } from './graph.js';
import { emitUnet, WeightSource, type QuantOptions } from './unet.js';
import { emitCameraEncoder } from './resnet.js';
import { condDim as condDimOf } from '../policy/obs_encoder.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, isExportWeights, type BundleKind, type BundleManifest, type ExportWeights } from './manifest.js';

export { BUNDLE_FORMAT, BUNDLE_VERSION, EXPORT_WEIGHTS, isExportWeights, type BundleKind, type BundleManifest, type ExportWeights } from './manifest.js';

export interface ExportOptions {
  /** Weight-only quantisation of the U-Net's large layers (default float32). */
  weights?: ExportWeights;
}

/** Quantised layers: blocks of 32 along the input; layers under 16k weights stay float32. */
function quantOptions(weights: ExportWeights): QuantOptions | null {
  if (weights === 'float32') return null;
  return { bits: weights === 'int8' ? 8 : 4, blockSize: 32, minElements: 1 << 14 };
}

function unetConfig(pc: DiffusionPolicyConfig, extraTimeInputs = 0): Required<UnetConfig> {
  return { ...UNET_DEFAULTS, ...pc.unet, inputDim: pc.actionDim, globalCondDim: condDimOf(pc), extraTimeInputs, dropout: 0 } as Required<UnetConfig>;
}

/**
 * `obs` (batch, To, obsDim) raw -> `cond` (batch, condDim): the normaliser; image policies first
 * encode each camera's frames (batch, To, size, size, 3) uint8, and per step the features are
 * [cameras in order..., obs], as obs_encoder.ts concatenates them.
 */
function encoderGraph(pc: DiffusionPolicyConfig, norm: NormalizerParams, w: WeightSource): OnnxGraph {
  const g = new OnnxGraph('onedp_encoder');
  const obs = g.input('obs', 'float32', ['batch', pc.nObsSteps, pc.obsDim]);
  const scaled = g.op('Add', [g.op('Mul', [obs, g.float('obs_scale', norm.scale, [pc.obsDim])]), g.float('obs_offset', norm.offset, [pc.obsDim])]);
  let steps = scaled;
  if (pc.vision) {
    const v = pc.vision;
    const feats = v.cameras.map((cam) => {
      const frames = g.input(cam, 'uint8', ['batch', pc.nObsSteps, v.frameSize, v.frameSize, 3]);
      return emitCameraEncoder(g, w, `obs_encoder.obs_nets.${cam}.`, frames, pc.nObsSteps, v.frameSize, v.cropSize);
    });
    steps = g.op('Concat', [...feats, scaled], { axis: 2 });
  }
  const cond = g.op('Reshape', [steps, g.int64('flat', [0, -1])]);
  g.output(cond, 'cond', 'float32', ['batch', condDimOf(pc)]);
  return g;
}

/** (batch,) filled with `value`, batch taken from `like`'s first dimension. */
function batchFill(g: OnnxGraph, like: string, value: number): string {
  const batch = g.op('Slice', [g.op('Shape', [like]), g.int64('start', [0]), g.int64('end', [1])]);
  return g.op('Expand', [g.float('fill', [value], [1]), batch]);
}

const TO_NCL = [0, 2, 1];

function generatorGraph(pc: DiffusionPolicyConfig, gen: OneDpGeneratorConfig, w: WeightSource, actionNorm: NormalizerParams): OnnxGraph {
  const g = new OnnxGraph('onedp_generator');
  const condDim = condDimOf(pc);
  const cond = g.input('cond', 'float32', ['batch', condDim]);
  let z: string;
  if (gen.method === 'onedp-s') {
    z = g.op('Transpose', [g.input('noise', 'float32', ['batch', pc.horizon, pc.actionDim])], { perm: TO_NCL });
  } else {
    // OneDP-D feeds zeros: (batch, actionDim, horizon).
    const batch = g.op('Slice', [g.op('Shape', [cond]), g.int64('start', [0]), g.int64('end', [1])]);
    const shape = g.op('Concat', [batch, g.int64('chunk', [pc.actionDim, pc.horizon])], { axis: 0 });
    z = g.op('Expand', [g.float('zero', [0], [1, 1, 1]), shape]);
  }
  let a: string;
  if (pc.noise.kind === 'ddpm') {
    const sched = new DiscreteSchedule(pc.noise);
    const k = gen.tInit;
    const eps = emitUnet(g, w, unetConfig(pc), z, batchFill(g, cond, k), cond);
    const x0 = g.op('Div', [g.op('Sub', [z, g.op('Mul', [eps, g.float('sigma', [sched.sigma(k)], [1])])]), g.float('root_abar', [Math.sqrt(sched.alphaBar[k])], [1])]);
    a = g.op('Clip', [x0, g.float('lo', [-1], []), g.float('hi', [1], [])]);
  } else {
    const pre = new EDMScheduler(pc.noise.kind === 'edm' ? pc.noise : {}).precondition(gen.sigmaInit);
    const x = g.op('Mul', [z, g.float('sigma_init', [gen.sigmaInit], [1])]);
    const f = emitUnet(g, w, unetConfig(pc), g.op('Mul', [x, g.float('c_in', [pre.cIn], [1])]), batchFill(g, cond, pre.cNoise), cond);
    a = g.op('Add', [g.op('Mul', [x, g.float('c_skip', [pre.cSkip], [1])]), g.op('Mul', [f, g.float('c_out', [pre.cOut], [1])])]);
  }
  // Back to (batch, horizon, actionDim), unnormalised: raw = (a - offset) / scale, and the
  // dimensions constant in the training data set to their constant, as LinearNormalizer does.
  const chunk = g.op('Transpose', [a], { perm: TO_NCL });
  let raw = g.op('Div', [g.op('Sub', [chunk, g.float('act_offset', actionNorm.offset, [pc.actionDim])]), g.float('act_scale', actionNorm.scale, [pc.actionDim])]);
  const fixed = new LinearNormalizer({ action: actionNorm }).constants('action');
  if (fixed.some((v) => v !== null)) {
    const keep = fixed.map((v) => (v === null ? 1 : 0));
    raw = g.op('Add', [g.op('Mul', [raw, g.float('act_keep', keep, [pc.actionDim])]), g.float('act_fixed', fixed.map((v) => v ?? 0), [pc.actionDim])]);
  }
  g.output(raw, 'action', 'float32', ['batch', pc.horizon, pc.actionDim]);
  return g;
}

/** The raw network (DDPM epsilon, EDM F, or CP's student with its stop time) in (B, T, A) layout. */
function networkGraph(name: string, pc: DiffusionPolicyConfig, w: WeightSource, withStop: boolean): OnnxGraph {
  const g = new OnnxGraph(name);
  const sample = g.input('sample', 'float32', ['batch', pc.horizon, pc.actionDim]);
  const t = g.input('timestep', 'float32', ['batch']);
  const stop = withStop ? [g.input('stop', 'float32', ['batch'])] : [];
  const cond = g.input('cond', 'float32', ['batch', condDimOf(pc)]);
  const out = emitUnet(g, w, unetConfig(pc, stop.length), g.op('Transpose', [sample], { perm: TO_NCL }), t, cond, stop);
  g.output(g.op('Transpose', [out], { perm: TO_NCL }), 'output', 'float32', ['batch', pc.horizon, pc.actionDim]);
  return g;
}

export interface ExportResult {
  dir: string;
  manifest: BundleManifest;
  files: string[];
}

/** Exports the checkpoint at `ckptPath` as an ONNX bundle in `outDir`. */
export async function exportOnnx(ckptPath: string, outDir: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const weights = opts.weights ?? 'float32';
  if (!isExportWeights(weights)) throw new Error(`export: weights must be float32, int8 or int4, got ${JSON.stringify(weights)}`);
  const ck = await loadCheckpoint(ckptPath);
  const src = `${ck.path}/checkpoint.json`;
  const pc = ck.meta.policyConfig as DiffusionPolicyConfig | undefined;
  if (!pc || typeof pc !== 'object') throw new CheckpointError(`${src}: missing policyConfig`);
  const normalizer = LinearNormalizer.fromJSON(ck.meta.normalizer, src);
  const obsNorm = normalizer.toJSON().obs;
  const actNorm = normalizer.toJSON().action;
  if (!obsNorm || !actNorm) throw new CheckpointError(`${src}: the normaliser needs "obs" and "action" statistics`);
  let encoderWeights = new WeightSource(new Map(), ck.path);
  const tensorsOf = (file: string): WeightSource => {
    const t: Map<string, SafeTensor> | undefined = ck.tensors[file];
    if (!t) throw new CheckpointError(`${ck.path}: has no ${file} weights to export`);
    // The image encoders are in the same file as the network that acts (obs_encoder.*).
    encoderWeights = new WeightSource(t, `${ck.path}/${file}.safetensors`);
    // The U-Net's weights sit under "unet." in a policy model's state dict.
    const unet = new Map([...t].filter(([k]) => k.startsWith('unet.')).map(([k, v]) => [k.slice(5), v]));
    return new WeightSource(unet.size ? unet : t, `${ck.path}/${file}.safetensors`, quantOptions(weights));
  };

  let kind: BundleKind;
  let action: { file: string; graph: OnnxGraph };
  const extra: Partial<BundleManifest> = {};
  const condDim = condDimOf(pc);
  const chunk = ['batch', pc.horizon, pc.actionDim];
  let io: BundleManifest['io'][string];
  if (ck.meta.kind === 'onedp') {
    const gen = ck.meta.generator as OneDpGeneratorConfig;
    kind = gen.method;
    extra.generator = gen;
    action = { file: 'generator.onnx', graph: generatorGraph(pc, gen, tensorsOf('generator'), actNorm) };
    io = { inputs: { cond: ['batch', condDim], ...(kind === 'onedp-s' ? { noise: chunk } : {}) }, outputs: { action: chunk } };
  } else if (ck.meta.kind === 'diffusion-policy') {
    kind = 'diffusion-policy';
    action = { file: 'denoiser.onnx', graph: networkGraph('onedp_denoiser', pc, tensorsOf('ema'), false) };
    io = { inputs: { sample: chunk, timestep: ['batch'], cond: ['batch', condDim] }, outputs: { output: chunk } };
  } else if (ck.meta.kind === 'consistency-policy') {
    kind = 'consistency-policy';
    extra.sampling = ck.meta.sampling as ConsistencySampling;
    action = { file: 'consistency.onnx', graph: networkGraph('onedp_consistency', pc, tensorsOf('student'), true) };
    io = { inputs: { sample: chunk, timestep: ['batch'], stop: ['batch'], cond: ['batch', condDim] }, outputs: { output: chunk } };
  } else {
    throw new CheckpointError(`${ck.path}: cannot export a ${JSON.stringify(ck.meta.kind)} checkpoint (expected diffusion-policy, onedp or consistency-policy)`);
  }

  const encoderInputs: Record<string, (number | string)[]> = { obs: ['batch', pc.nObsSteps, pc.obsDim] };
  for (const cam of pc.vision?.cameras ?? []) encoderInputs[cam] = ['batch', pc.nObsSteps, pc.vision!.frameSize, pc.vision!.frameSize, 3];
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    kind,
    opset: OPSET,
    obsDim: pc.obsDim,
    actionDim: pc.actionDim,
    horizon: pc.horizon,
    nObsSteps: pc.nObsSteps,
    nActionSteps: pc.nActionSteps,
    ...(pc.vision ? { vision: pc.vision } : {}),
    normalizer: normalizer.toJSON(),
    noise: pc.noise,
    ...extra,
    files: { encoder: 'encoder.onnx', action: action.file },
    weights,
    io: { encoder: { inputs: encoderInputs, outputs: { cond: ['batch', condDim] } }, action: io },
    policyConfig: pc,
    source: { checkpoint: path.resolve(ck.path), step: ck.meta.step ?? null, exportedAt: new Date().toISOString() },
  };
  await fs.mkdir(outDir, { recursive: true });
  const doc = `onedp ${kind} exported from ${path.basename(ck.path)}`;
  const meta = { onedp_kind: kind };
  await writeFileAtomic(path.join(outDir, 'encoder.onnx'), encoderGraph(pc, obsNorm, encoderWeights).toBytes(doc, meta));
  await writeFileAtomic(path.join(outDir, action.file), action.graph.toBytes(doc, meta));
  // The manifest last: a bundle with a manifest is complete.
  await writeFileAtomic(path.join(outDir, 'policy.json'), new TextEncoder().encode(JSON.stringify(manifest, null, 1)));
  return { dir: outDir, manifest, files: ['encoder.onnx', action.file, 'policy.json'] };
}

/**
 * Batch-1 acting latency in the browser, onnxruntime-web against tfjs (wasm backend, onedp's
 * kernels), side by side in one worker: the demo's OneDP-S and its teacher with DDIM-10 and
 * DDPM-100. onnxruntime-web runs the demo's bundles; tfjs runs the same networks built from the
 * bundles' configs with random weights (latency does not depend on the weights). The
 * observation is a real PushT history (seed 100003). Then MuJoCo: control steps of the Lift and
 * Square tasks in the worker, timed as the Node bench's mujoco section times them.
 */
import * as ort from 'onnxruntime-web/wasm';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { tf, installWasmKernels } from '../../src/engine/index.js';
import { BundlePolicy, checkManifest, type BundleManifest } from '../../src/export/bundle.js';
import { DiffusionPolicy } from '../../src/policy/diffusion_policy.js';
import { OneDpPolicy } from '../../src/distill/onedp.js';
import { LinearNormalizer } from '../../src/policy/normalizer.js';
import { buildContext } from '../../src/nn/module.js';
import { parseSampler } from '../../src/diffusion/index.js';
import { PushTEnv } from '../../src/envs/pusht.js';
import { keypointObs } from '../../src/eval/pusht.js';
import type { ObservationBatch } from '../../src/policy/types.js';
import { medianMs } from '../harness.js';
import { controlStepMs, controlStepName } from '../mujoco.js';
import { createManipulationEnv, MANIPULATION_TASKS } from '../../src/envs/mujoco/tasks.js';

ort.env.wasm.numThreads = 1;

async function bundle(dir: string): Promise<{ manifest: BundleManifest; encoder: ort.InferenceSession; action: ort.InferenceSession }> {
  // self.location, not import.meta.url: Vite rewrites `new URL(template, import.meta.url)` as a glob.
  const base = new URL(`../${dir}/`, self.location.href);
  const manifest = checkManifest(await (await fetch(new URL('policy.json', base))).json(), `${dir}/policy.json`);
  const load = async (f: string) => ort.InferenceSession.create(new Uint8Array(await (await fetch(new URL(f, base))).arrayBuffer()));
  return { manifest, encoder: await load(manifest.files.encoder), action: await load(manifest.files.action) };
}

/** Median ms after a warm-up as long as the measurement (measured here: onnxruntime-web's first OneDP-S calls took 5-10 ms, the later ones 1.0 ms). */
async function median(fn: () => unknown, minMs: number): Promise<{ ms: number }> {
  return { ms: await medianMs(fn, minMs, { warmupMs: minMs }) };
}

async function run(minMs: number) {
  const env = new PushTEnv({ obsType: 'keypoints' });
  const o = keypointObs(env.reset(100003));
  const obs: ObservationBatch = { batch: 1, data: { obs: Float32Array.from([...o, ...o]) } };
  const rows: { policy: string; runtime: string; ms: number }[] = [];

  // onnxruntime-web; the samplers' updates on tfjs's cpu backend, as in the demo.
  await tf.setBackend('cpu');
  const s = await bundle('policies/onedp-s');
  const d = await bundle('policies/dp');
  const cases = [
    { policy: 'OneDP-S', b: s, sampler: undefined },
    { policy: 'DP DDIM-10', b: d, sampler: 'ddim-10' },
    { policy: 'DP DDPM-100', b: d, sampler: 'ddpm' },
  ];
  for (const c of cases) {
    const p = new BundlePolicy(c.b.manifest, c.policy, ort, c.b.encoder, c.b.action, { sampler: c.sampler });
    rows.push({ policy: c.policy, runtime: 'onnxruntime-web (wasm, 1 thread)', ...(await median(() => p.predict(obs), minMs)) });
  }

  // tfjs on its wasm backend with onedp's kernels (as `--runtime tfjs` in Node, without the addon).
  setWasmPaths({ 'tfjs-backend-wasm.wasm': wasmPlain, 'tfjs-backend-wasm-simd.wasm': wasmSimd, 'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded });
  await import('@tensorflow/tfjs-backend-wasm');
  await tf.setBackend('wasm');
  await tf.ready();
  installWasmKernels();
  const pc = s.manifest.policyConfig;
  const norm = new LinearNormalizer(s.manifest.normalizer);
  const onedp = new OneDpPolicy(pc, s.manifest.generator!, norm);
  onedp.generator.eval();
  rows.push({ policy: 'OneDP-S', runtime: 'tfjs (wasm)', ...(await median(() => onedp.predictAction(obs), minMs)) });
  const dp = new DiffusionPolicy(d.manifest.policyConfig, new LinearNormalizer(d.manifest.normalizer), buildContext({ seed: 0 }));
  dp.model.eval();
  for (const [policy, sampler] of [['DP DDIM-10', 'ddim-10'], ['DP DDPM-100', 'ddpm']] as const) {
    dp.sampler = parseSampler(sampler, 'ddpm');
    rows.push({ policy, runtime: 'tfjs (wasm)', ...(await median(() => dp.predictAction(obs), minMs)) });
  }
  // MuJoCo's WebAssembly build in the worker, the same stepping loop as the Node bench's mujoco
  // section (compare with `--only browser,mujoco`).
  for (const task of MANIPULATION_TASKS) {
    const env = await createManipulationEnv(task);
    controlStepMs(env, minMs / 4);
    rows.push({ policy: controlStepName(task), runtime: 'mujoco-js (wasm, in a worker)', ms: controlStepMs(env, minMs) });
    env.dispose();
  }
  return { rows, userAgent: navigator.userAgent, tfjs: tf.version.tfjs, crossOriginIsolated: self.crossOriginIsolated };
}

self.onmessage = (e: MessageEvent<{ minMs: number }>) =>
  void run(e.data.minMs).then(
    (result) => self.postMessage({ ok: true, result }),
    (err: unknown) => self.postMessage({ ok: false, error: err instanceof Error ? `${err.message}\n${err.stack}` : String(err) }),
  );

/**
 * The page's policy runs here, off the main thread, so that the world keeps stepping at 10 Hz
 * while a slow policy computes (as `onedp eval --realtime`): onnxruntime-web's wasm backend runs
 * a graph synchronously inside `run`, which on the main thread would stall the simulation.
 */
import * as ort from 'onnxruntime-web/wasm';
import { tf } from '../../src/engine/index.js';
import { BundlePolicy, checkManifest, type BundleManifest } from '../../src/export/bundle.js';
import type { PredictResult, UseResult, WorkerReply, WorkerRequest } from './protocol.js';

// One thread: a static host gives no cross-origin isolation (SharedArrayBuffer), and the demo's
// small graphs gain nothing from more (as measured in Node, bench deploy).
ort.env.wasm.numThreads = 1;

const bundles = new Map<string, { manifest: BundleManifest; encoder: ort.InferenceSession; action: ort.InferenceSession }>();
const policies = new Map<number, BundlePolicy>();
let nextHandle = 1;
let warmed = false;

/**
 * Calls a bundle's graphs on zeros for a second. V8 first runs wasm through its baseline
 * compiler and optimises hot functions later: in the browser bench, onnxruntime-web's first
 * OneDP-S calls took 5-10 ms and the later ones 1.0 ms. A robot loop asks for a chunk only every
 * few steps, so without this the page's policy would stay slow for minutes. The kernels are
 * shared by every graph, so the first bundle's warm-up serves the rest.
 */
async function warmUp(b: { manifest: BundleManifest; encoder: ort.InferenceSession; action: ort.InferenceSession }, source: string): Promise<void> {
  const m = b.manifest;
  const data: Record<string, Float32Array | Uint8Array> = { obs: new Float32Array(m.nObsSteps * m.obsDim) };
  for (const cam of m.vision?.cameras ?? []) data[cam] = new Uint8Array(m.nObsSteps * m.vision!.frameSize ** 2 * 3);
  // One network evaluation a call whatever the kind: more steps only repeat the same kernels.
  const sampler = m.kind === 'diffusion-policy' ? (m.noise.kind === 'edm' ? 'edm-1' : 'ddim-1') : m.kind === 'consistency-policy' ? 'cp-1' : undefined;
  const p = new BundlePolicy(m, source, ort, b.encoder, b.action, { sampler });
  for (const t0 = performance.now(); performance.now() - t0 < 1000; ) await p.predict({ batch: 1, data });
}
// The samplers' elementwise updates are a few hundred numbers; tfjs's plain JS kernels do them
// without a GPU round trip.
const ready = tf.setBackend('cpu').then(() => tf.ready());

function samplerName(p: BundlePolicy): string {
  if (p.sampler) return `${p.sampler.kind}, ${p.sampler.nfe} evaluations`;
  if (p.kind === 'consistency-policy') return `cp-${p.cpSteps}`;
  return 'one step';
}

async function handle(msg: WorkerRequest): Promise<unknown> {
  await ready;
  switch (msg.type) {
    case 'open': {
      // Opened already (the same files or URL again): its sessions may be in use; keep them.
      const open = bundles.get(msg.key);
      if (open) return { manifest: open.manifest };
      const manifest = checkManifest(msg.manifest, `${msg.key}policy.json`);
      const load = async (bytes: ArrayBuffer, file: string) => {
        try {
          return await ort.InferenceSession.create(new Uint8Array(bytes), { graphOptimizationLevel: 'all' });
        } catch (e) {
          throw new Error(`${msg.key}${file}: onnxruntime-web cannot load it (${(e as Error).message.split('\n')[0]})`);
        }
      };
      const b = { manifest, encoder: await load(msg.encoder, manifest.files.encoder), action: await load(msg.action, manifest.files.action) };
      if (!warmed) {
        try {
          await warmUp(b, msg.key);
        } catch (e) {
          await Promise.all([b.encoder.release(), b.action.release()]);
          throw e;
        }
        warmed = true;
      }
      bundles.set(msg.key, b);
      return { manifest };
    }
    case 'use': {
      const b = bundles.get(msg.key);
      if (!b) throw new Error(`${msg.key}: not opened`);
      const p = new BundlePolicy(b.manifest, msg.key, ort, b.encoder, b.action, { seed: msg.seed, sampler: msg.sampler });
      const h = nextHandle++;
      policies.set(h, p);
      return { handle: h, manifest: b.manifest, sampler: samplerName(p) } satisfies UseResult;
    }
    case 'predict': {
      const p = policies.get(msg.handle);
      if (!p) throw new Error(`policy ${msg.handle} is gone`);
      const t0 = performance.now();
      const output = await p.predict(msg.obs);
      return { output, computeMs: performance.now() - t0 } satisfies PredictResult;
    }
    case 'drop':
      // The sessions belong to the bundle and stay open; the policy holds only its noise stream.
      policies.delete(msg.handle);
      return null;
  }
}

self.onmessage = (e: MessageEvent<WorkerRequest>) => {
  const msg = e.data;
  handle(msg).then(
    (result) => self.postMessage({ id: msg.id, ok: true, result } satisfies WorkerReply),
    (err: unknown) => self.postMessage({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies WorkerReply),
  );
};

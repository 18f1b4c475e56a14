/**
 * Mutation fuzzing of everything onedp reads from outside: safetensors, checkpoint.json (and the
 * policy built from it), zarr metadata and chunks, exported ONNX bundles, and policy-server
 * messages. Each input must load or fail with one of onedp's own errors naming its source; a
 * TypeError or RangeError from deep inside (an unchecked field), a non-Error throw, an unhandled
 * rejection or an input that takes over a second is a defect. `scripts/fuzz.ts` runs 10,000
 * inputs per reader; `test/fuzz.test.ts` runs a seeded sample.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encode, decode } from '@msgpack/msgpack';
import WebSocket from 'ws';
import { Rng } from '../../src/util/rng.js';
import { FIXTURES } from './fixtures.js';
import { parseSafetensors, serializeSafetensors, f32Tensor } from '../../src/io/safetensors.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { loadPolicy } from '../../src/policy/load.js';
import { stateDict } from '../../src/nn/state_dict.js';
import { LinearNormalizer } from '../../src/policy/normalizer.js';
import { OneDpPolicy } from '../../src/distill/onedp.js';
import type { DiffusionPolicyConfig } from '../../src/policy/diffusion_policy.js';
import { readReplayBuffer } from '../../src/data/zarr.js';
import { exportOnnx } from '../../src/export/export.js';
import { OnnxPolicy } from '../../src/export/runtime.js';
import { servedPolicy, startServer, type PolicyServer } from '../../src/serve/server.js';

export type Outcome = 'ok' | 'error' | 'unclear' | 'slow';

export interface FuzzReport {
  reader: string;
  inputs: number;
  ok: number;
  errors: number;
  /** Defects: errors that do not come from onedp's checks, with a few examples. */
  unclear: number;
  slow: number;
  examples: string[];
  seconds: number;
}

/** Byte-level mutations: bit flips, random or boundary bytes, truncation, insertion, splices. */
export function mutateBytes(b: Uint8Array, rng: Rng): Uint8Array {
  const out = Uint8Array.from(b);
  const n = 1 + rng.int(0, 4);
  let cur: Uint8Array = out;
  for (let i = 0; i < n; i++) {
    const op = rng.int(0, 6);
    const at = cur.length ? rng.int(0, cur.length) : 0;
    if (op === 0 && cur.length) cur[at] ^= 1 << rng.int(0, 8);
    else if (op === 1 && cur.length) cur[at] = [0, 0xff, 0x7f, 0x80, rng.int(0, 256)][rng.int(0, 5)];
    else if (op === 2) cur = cur.slice(0, at);
    else if (op === 3) {
      const ins = Uint8Array.from({ length: 1 + rng.int(0, 16) }, () => rng.int(0, 256));
      cur = Uint8Array.from([...cur.subarray(0, at), ...ins, ...cur.subarray(at)]);
    } else if (op === 4 && cur.length > 8) {
      const len = rng.int(1, Math.min(64, cur.length - at) + 1);
      const to = rng.int(0, cur.length - len + 1);
      cur.copyWithin(to, at, at + len);
    } else if (cur.length) cur[at] = rng.int(0, 256);
  }
  return cur;
}

const WEIRD: unknown[] = [null, true, 0, -1, 1.5, 1e308, -1e308, 2 ** 53, '', 'x', '../../etc', [], {}, [1, 2, 3], { a: 1 }, 'NaN', -0];

/** JSON-aware mutation: one value somewhere in the document replaced, deleted or duplicated. */
export function mutateJson(text: string, rng: Rng): string {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return new TextDecoder().decode(mutateBytes(new TextEncoder().encode(text), rng));
  }
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, p: (string | number)[]) => {
    paths.push(p);
    if (Array.isArray(v)) v.slice(0, 8).forEach((x, i) => walk(x, [...p, i]));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...p, k]);
  };
  walk(doc, []);
  const p = paths[rng.int(0, paths.length)];
  if (p.length === 0) return JSON.stringify(WEIRD[rng.int(0, WEIRD.length)]);
  const parent = p.slice(0, -1).reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], doc) as Record<string | number, unknown>;
  const key = p[p.length - 1];
  const op = rng.int(0, 4);
  if (op === 0 && !Array.isArray(parent)) delete parent[key];
  else if (op === 1 && Array.isArray(parent[key])) (parent[key] as unknown[]).push(...(parent[key] as unknown[]));
  else if (op === 2 && typeof parent[key] === 'number') parent[key] = (parent[key] as number) * [0, -1, 1e6, 0.5][rng.int(0, 4)];
  else parent[key] = structuredClone(WEIRD[rng.int(0, WEIRD.length)]);
  return JSON.stringify(doc);
}

/** A small U-Net policy config whose checkpoints and bundles load in milliseconds. */
export const FUZZ_POLICY: DiffusionPolicyConfig = {
  obsDim: 20,
  actionDim: 2,
  horizon: 8,
  nObsSteps: 2,
  nActionSteps: 4,
  unet: { diffusionStepEmbedDim: 8, downDims: [8, 16], kernelSize: 3, nGroups: 4, condPredictScale: true },
  noise: { kind: 'ddpm', numTrainTimesteps: 100, clipSample: true },
};

const NORM = LinearNormalizer.fit({
  obs: { values: Float32Array.from({ length: 40 }, (_, i) => (i * 37) % 500), dim: 20 },
  action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 },
});

interface Target {
  name: string;
  /** One mutated input, tried; resolves to the outcome's error (null when it loaded). */
  run(rng: Rng): Promise<unknown>;
  /** Whether a thrown value is one of onedp's clear errors for this reader. */
  clear(e: unknown): boolean;
  close(): Promise<void>;
}

/** An Error whose message names the source (a path or label) and says something. */
const naming = (source: string) => (e: unknown) => e instanceof Error && !(e instanceof TypeError || e instanceof RangeError || e instanceof SyntaxError) && e.message.includes(source) && e.message.length > source.length + 5;

export async function makeTargets(work: string): Promise<Target[]> {
  const targets: Target[] = [];
  // 1. safetensors bytes.
  const st = serializeSafetensors(new Map([['a.weight', f32Tensor([2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]))], ['b', f32Tensor([4], Float32Array.from([0.5, -1, 2, 3]))]]), { note: 'fuzz' });
  targets.push({ name: 'safetensors', run: async (rng) => void parseSafetensors(mutateBytes(st, rng), 'fuzz.safetensors'), clear: naming('fuzz.safetensors'), close: async () => {} });

  // 2. checkpoint.json (and the policy it describes), sometimes its weights.
  const policy = new OneDpPolicy(FUZZ_POLICY, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, NORM, 1);
  const ckRoot = path.join(work, 'ck');
  const ck = await saveCheckpoint(ckRoot, 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: FUZZ_POLICY, generator: policy.gen, normalizer: NORM.toJSON(), step: 1 }, tensors: { generator: stateDict(policy.generator) } });
  policy.dispose();
  const metaText = await fs.readFile(path.join(ck, 'checkpoint.json'), 'utf8');
  const genBytes = await fs.readFile(path.join(ck, 'generator.safetensors'));
  targets.push({
    name: 'checkpoint',
    run: async (rng) => {
      const weights = rng.uniform() < 0.25;
      await fs.writeFile(path.join(ck, 'checkpoint.json'), weights ? metaText : mutateJson(metaText, rng));
      await fs.writeFile(path.join(ck, 'generator.safetensors'), weights ? mutateBytes(genBytes, rng) : genBytes);
      const p = await loadPolicy(ck);
      p.predictAction({ batch: 1, data: { obs: new Float32Array(40).fill(100) } }, { seed: 0 });
      p.dispose();
    },
    clear: naming(ck),
    close: async () => {},
  });

  // 3. zarr: metadata and chunks of the interchange fixture.
  const fixture = path.join(FIXTURES, 'interchange', 'pusht_mini_replay.zarr');
  const zroot = path.join(work, 'mini.zarr');
  await fs.cp(fixture, zroot, { recursive: true });
  const files: string[] = [];
  const list = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await list(p);
      else files.push(p);
    }
  };
  await list(zroot);
  const originals = new Map(await Promise.all(files.map(async (f) => [f, await fs.readFile(f)] as const)));
  targets.push({
    name: 'zarr',
    run: async (rng) => {
      const f = files[rng.int(0, files.length)];
      const orig = originals.get(f)!;
      const isJson = path.basename(f).startsWith('.');
      await fs.writeFile(f, isJson ? mutateJson(orig.toString('utf8'), rng) : mutateBytes(orig, rng));
      try {
        await readReplayBuffer(zroot);
      } finally {
        await fs.writeFile(f, orig);
      }
    },
    clear: naming(zroot),
    close: async () => {},
  });

  // 4. exported ONNX bundles: policy.json and the graphs.
  const bundle = path.join(work, 'bundle');
  await exportOnnx(ck.replace(/step-\d+$/, 'step-0000001'), bundle).catch(async () => {
    // The checkpoint file was left mutated by the checkpoint target: restore it first.
    await fs.writeFile(path.join(ck, 'checkpoint.json'), metaText);
    await fs.writeFile(path.join(ck, 'generator.safetensors'), genBytes);
    return exportOnnx(ck, bundle);
  });
  const manifest = await fs.readFile(path.join(bundle, 'policy.json'), 'utf8');
  const graph = await fs.readFile(path.join(bundle, 'generator.onnx'));
  targets.push({
    name: 'onnx-bundle',
    run: async (rng) => {
      const g = rng.uniform() < 0.3;
      await fs.writeFile(path.join(bundle, 'policy.json'), g ? manifest : mutateJson(manifest, rng));
      await fs.writeFile(path.join(bundle, 'generator.onnx'), g ? mutateBytes(graph, rng) : graph);
      const p = await OnnxPolicy.load(bundle);
      try {
        await p.predict({ batch: 1, data: { obs: new Float32Array(40).fill(100) } }, { seed: 0 });
      } finally {
        await p.dispose();
      }
    },
    clear: naming(bundle),
    close: async () => {},
  });

  // 5. policy-server messages, sent to a real server over a real connection.
  const served = new OneDpPolicy(FUZZ_POLICY, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, NORM, 2);
  const server: PolicyServer = await startServer({ policy: servedPolicy(served, { runtime: 'tfjs', source: 'fuzz', digestOf: 'fuzz', obsDim: 20 }), port: 0, maxMessageBytes: 64 * 1024 });
  let ws: WebSocket | null = null;
  const connect = async () => {
    ws = new WebSocket(server.url);
    await new Promise((resolve, reject) => ws!.once('open', resolve).once('error', reject));
  };
  await connect();
  const valid = [
    encode({ v: 1, type: 'act', id: 7, batch: 1, obs: new Uint8Array(new Float32Array(40).fill(120).buffer), seeds: [3] }),
    encode({ v: 1, type: 'act', id: 8, batch: 2, obs: new Array(80).fill(99.5) }),
    encode({ v: 1, type: 'info', id: 9 }),
    encode({ v: 1, type: 'ping', id: 10, t: 12345 }),
  ];
  targets.push({
    name: 'server-message',
    run: async (rng) => {
      if (!ws || ws.readyState !== ws.OPEN) await connect();
      const msg = mutateBytes(valid[rng.int(0, valid.length)], rng);
      const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no reply within 2 s')), 2000);
        ws!.once('message', (data: Buffer) => {
          clearTimeout(timer);
          resolve(decode(data) as Record<string, unknown>);
        });
        ws!.once('close', () => reject(new Error('connection closed')));
        ws!.send(msg);
      });
      ws!.removeAllListeners('close');
      if (reply.type === 'error') throw Object.assign(new Error(`${reply.code}: ${reply.message}`), { reply });
    },
    clear: (e) => {
      const reply = (e as { reply?: { code?: unknown; message?: unknown } }).reply;
      return typeof reply?.message === 'string' && reply.message.length > 0 && reply.code !== 'internal';
    },
    close: async () => {
      ws?.close();
      await server.close();
      served.dispose();
    },
  });
  return targets;
}

/** Runs `n` mutated inputs through each target, seeded. */
export async function fuzz(n: number, seed: number, only?: string[], progress?: (line: string) => void): Promise<FuzzReport[]> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-fuzz-'));
  let unhandled = 0;
  const onUnhandled = () => void unhandled++;
  process.on('unhandledRejection', onUnhandled);
  const reports: FuzzReport[] = [];
  try {
    for (const t of await makeTargets(work)) {
      if (only && !only.includes(t.name)) {
        await t.close();
        continue;
      }
      const rng = new Rng(seed);
      const r: FuzzReport = { reader: t.name, inputs: 0, ok: 0, errors: 0, unclear: 0, slow: 0, examples: [], seconds: 0 };
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const s0 = performance.now();
        if (process.env.FUZZ_TRACE && progress) progress(`${t.name}: input ${i} starts`);
        let outcome: Outcome;
        try {
          await t.run(rng);
          outcome = 'ok';
        } catch (e) {
          outcome = t.clear(e) ? 'error' : 'unclear';
          if (outcome === 'unclear' && r.examples.length < 5) r.examples.push(`input ${i}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`.slice(0, 300));
        }
        const took = performance.now() - s0;
        if (took > 1000) {
          r.slow++;
          if (r.examples.length < 5) r.examples.push(`input ${i}: slow (${(took / 1000).toFixed(1)} s, ${outcome})`);
          progress?.(`${t.name}: input ${i} took ${(took / 1000).toFixed(1)} s (${outcome})`);
        }
        if (progress && (i + 1) % 500 === 0) progress(`${t.name}: ${i + 1}/${n} inputs, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        r.inputs++;
        if (outcome === 'ok') r.ok++;
        else if (outcome === 'error') r.errors++;
        else r.unclear++;
      }
      r.seconds = (performance.now() - t0) / 1000;
      reports.push(r);
      await t.close();
    }
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await fs.rm(work, { recursive: true, force: true });
  }
  if (unhandled) reports.push({ reader: 'unhandled rejections', inputs: 0, ok: 0, errors: 0, unclear: unhandled, slow: 0, examples: [], seconds: 0 });
  return reports;
}

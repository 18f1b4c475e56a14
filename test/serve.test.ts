/**
 * The policy server: replies equal in-process predictions for the same seeds; every client gets
 * exactly its own replies under concurrency; bad messages get error replies naming the problem
 * while the connection and other clients keep being served; tokens are enforced; shutdown answers
 * what is queued; PushT episodes run through the server equal in-process ones with the same latency
 * model; and the CLI (serve, eval --server) end to end.
 */
import { describe, expect, it, afterAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encode } from '@msgpack/msgpack';
import { useWasmEngine } from './helpers/engine.js';
import { onedp, onedpAsync } from './helpers/cli.js';
import { loadStateDict, stateDict } from '../src/nn/state_dict.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { OneDpPolicy } from '../src/distill/onedp.js';
import type { DiffusionPolicyConfig } from '../src/policy/diffusion_policy.js';
import { defaultVisionConfig } from '../src/policy/obs_encoder.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { servedPolicy, startServer, type PolicyServer } from '../src/serve/server.js';
import { PolicyClient, PolicyServerError, RemotePolicy, callSeeds } from '../src/serve/client.js';
import { evaluatePushTAsync } from '../src/eval/pusht.js';
import { Rng } from '../src/util/rng.js';
import type { Policy } from '../src/policy/types.js';

useWasmEngine();

const PC: DiffusionPolicyConfig = {
  obsDim: 20,
  actionDim: 2,
  horizon: 8,
  nObsSteps: 2,
  nActionSteps: 4,
  unet: { diffusionStepEmbedDim: 16, downDims: [8, 16], kernelSize: 5, nGroups: 4, condPredictScale: true },
  noise: { kind: 'edm', numSteps: 5, sigmaMin: 0.002, sigmaMax: 80, sigmaData: 0.5, rho: 7, pMean: -1.2, pStd: 1.2 },
};
const NORM = LinearNormalizer.fit({
  obs: { values: Float32Array.from({ length: 40 }, (_, i) => (i * 37) % 500), dim: 20 },
  action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 },
});

function makePolicy(): OneDpPolicy {
  const p = new OneDpPolicy(PC, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, NORM, 3);
  const rng = new Rng(21);
  const sd = stateDict(p.generator);
  for (const [name, t] of sd) t.data = Float32Array.from(t.data as Float32Array, () => (/block\.1\.weight$/.test(name) ? 1 : 0) + 0.3 * rng.normal());
  loadStateDict(p.generator, sd);
  return p;
}

const servers: PolicyServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function serve(p: Policy, opts: { token?: string; maxMessageBytes?: number } = {}): Promise<PolicyServer> {
  const s = await startServer({ policy: servedPolicy(p, { runtime: 'tfjs', source: 'test', digestOf: 'test', obsDim: 20 }), port: 0, ...opts });
  servers.push(s);
  return s;
}

const obsOf = (batch: number, seed: number) => {
  const r = new Rng(seed);
  return Float32Array.from({ length: batch * 2 * 20 }, () => 50 + 400 * r.uniform());
};

describe('policy server', () => {
  const policy = makePolicy();

  it('answers info and act; a reply equals the in-process prediction with the same seeds, whatever the concurrency', async () => {
    const server = await serve(policy);
    const clients = await Promise.all(Array.from({ length: 8 }, () => PolicyClient.connect(server.url)));
    expect(clients[0].policy).toMatchObject({ kind: 'onedp-s', runtime: 'tfjs', nObsSteps: 2, nActionSteps: 4, horizon: 8, actionDim: 2, obsDim: 20, protocol: 1 });
    // 8 clients x 4 requests in flight at once, each with its own observation and seeds.
    const jobs = clients.flatMap((c, ci) => Array.from({ length: 4 }, (_, k) => ({ c, batch: 1 + ((ci + k) % 3), seed: ci * 10 + k })));
    const replies = await Promise.all(jobs.map((j) => j.c.act({ batch: j.batch, data: { obs: obsOf(j.batch, j.seed) } }, { seeds: Array.from({ length: j.batch }, (_, i) => j.seed * 7 + i) })));
    jobs.forEach((j, n) => {
      const want = policy.predictAction({ batch: j.batch, data: { obs: obsOf(j.batch, j.seed) } }, { rngs: Array.from({ length: j.batch }, (_, i) => new Rng(j.seed * 7 + i)) });
      expect(Array.from(replies[n].chunk)).toEqual(want.chunk.flat(2).map(Math.fround));
      expect(replies[n].batch).toBe(j.batch);
      expect(replies[n].actions.length).toBe(j.batch * 4 * 2);
      expect(replies[n].timing.queueMs).toBeGreaterThanOrEqual(0);
      expect(replies[n].policy.kind).toBe('onedp-s');
    });
    expect(server.stats.served).toBe(jobs.length);
    const pong = await clients[0].ping();
    expect(pong.rttMs).toBeGreaterThanOrEqual(0);
    clients.forEach((c) => c.close());
  });

  it('bad messages get error replies naming the problem; the connection and other clients keep being served', async () => {
    const server = await serve(policy, { maxMessageBytes: 4096 });
    const c = await PolicyClient.connect(server.url);
    const other = await PolicyClient.connect(server.url);
    const nextError = () =>
      new Promise<{ code: string; message: string }>((resolve) => {
        const ws = (c as unknown as { ws: { onmessage: (ev: { data: unknown }) => void } }).ws;
        const prev = ws.onmessage;
        ws.onmessage = (ev) => {
          ws.onmessage = prev;
          const bytes = new Uint8Array(ev.data as ArrayBuffer);
          import('@msgpack/msgpack').then(({ decode }) => resolve(decode(bytes) as { code: string; message: string }));
        };
      });
    const cases: [Uint8Array, string, RegExp][] = [
      [new Uint8Array([0xc1, 0x00, 0xff]), 'bad-message', /not a msgpack message/],
      // A header claiming 2^27 elements in a 9-byte message: refused, not allocated (fuzzing found it took 0.8 s).
      [new Uint8Array([0xdd, 0x08, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04]), 'bad-message', /Max length exceeded: array length \(134217728\)/],
      [encode([1, 2, 3]), 'bad-message', /must be a msgpack map/],
      [encode({ v: 1, type: 'act' }), 'bad-message', /"id" must be an integer/],
      [encode({ v: 2, type: 'act', id: 1 }), 'bad-message', /protocol version 2 is not served/],
      [encode({ v: 1, type: 'fly', id: 1 }), 'bad-message', /unknown request type "fly"/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: [1, 2, 3] }), 'bad-shape', /"obs" has 3 values; batch 1 x 2 steps x 20 values needs 40/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: [...new Array(39).fill(1), NaN] }), 'non-finite', /"obs" value 39 is NaN/],
      [encode({ v: 1, type: 'act', id: 1, batch: 0, obs: [] }), 'bad-shape', /"batch" must be a positive integer/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: new Array(40).fill(1), seeds: [1, 2] }), 'bad-shape', /"seeds" must hold 1 integers/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: new Array(40).fill(1), images: { wrist: new Uint8Array(3) } }), 'bad-shape', /no camera "wrist"/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: new Uint8Array(6) }), 'bad-shape', /6 bytes is not a whole number of float32/],
      [encode({ v: 1, type: 'act', id: 1, batch: 1, obs: new Array(1200).fill(1.5) }), 'too-large', /exceeds the server's limit of 4096/],
    ];
    for (const [bytes, code, message] of cases) {
      const e = nextError();
      c.sendRaw(bytes);
      const err = await e;
      expect(err.code, String(message)).toBe(code);
      expect(err.message).toMatch(message);
    }
    // The same connection still works, and so does the other client.
    const ok = await c.act({ batch: 1, data: { obs: obsOf(1, 1) } });
    expect(ok.chunk.length).toBe(16);
    expect((await other.act({ batch: 1, data: { obs: obsOf(1, 2) } })).chunk.length).toBe(16);
    await expect(c.act({ batch: 2, data: { obs: obsOf(1, 1) } })).rejects.toThrow(PolicyServerError);
    expect(server.stats.errors).toBe(cases.length + 1);
    c.close();
    other.close();
  });

  it('tokens: loopback may go without; with a token, a missing or wrong one is refused; non-loopback needs one', async () => {
    const server = await serve(policy, { token: 'correct-horse' });
    await expect(PolicyClient.connect(server.url)).rejects.toThrow(/401/);
    await expect(PolicyClient.connect(server.url, { token: 'wrong-horse!' })).rejects.toThrow(/401/);
    const c = await PolicyClient.connect(server.url, { token: 'correct-horse' });
    expect((await c.act({ batch: 1, data: { obs: obsOf(1, 3) } })).batch).toBe(1);
    c.close();
    await expect(startServer({ policy: servedPolicy(policy, { runtime: 'tfjs', source: 't', digestOf: 't', obsDim: 20 }), host: '0.0.0.0', port: 0 })).rejects.toThrow(/requires --token/);
  });

  it('shutdown answers every queued request and refuses new ones', async () => {
    const server = await startServer({ policy: servedPolicy(policy, { runtime: 'tfjs', source: 't', digestOf: 't', obsDim: 20 }), port: 0 });
    const c = await PolicyClient.connect(server.url);
    const queued = Array.from({ length: 6 }, (_, k) => c.act({ batch: 4, data: { obs: obsOf(4, k) } }));
    // Let the requests reach the server before it starts to close.
    await new Promise((r) => setTimeout(r, 30));
    const closing = server.close();
    const late = c.act({ batch: 1, data: { obs: obsOf(1, 9) } });
    const done = await Promise.all(queued);
    expect(done.map((r) => r.batch)).toEqual([4, 4, 4, 4, 4, 4]);
    await expect(late).rejects.toThrow(/shutting-down|closed/);
    await closing;
  });

  it('PushT episodes through the server equal in-process episodes under the same latency model', async () => {
    const server = await serve(policy);
    const remote = new RemotePolicy(await PolicyClient.connect(server.url));
    const opts = { seeds: [11, 12, 13], batchSize: 3, maxSteps: 40, latencyReps: 0, realtime: { latency: { kind: 'nfe' as const, perNfeMs: 150 } } };
    const viaServer = await evaluatePushTAsync(remote, opts);
    // In process: the same per-call seeds the client sends.
    const local = { kind: policy.kind, nObsSteps: 2, nActionSteps: 4, horizon: 8, actionDim: 2, dispose: () => {}, predict: async (o: Parameters<typeof policy.predictAction>[0], q: { rngs?: Rng[]; seed?: number } = {}) => policy.predictAction(o, q.rngs ? { rngs: callSeeds(q.rngs).map((s) => new Rng(s)) } : { seed: q.seed }) };
    const inProcess = await evaluatePushTAsync(local, opts);
    expect(viaServer.episodes).toEqual(inProcess.episodes);
    expect(viaServer.realtime?.meanDelayPeriods).toBe(2);
    remote.dispose();
  });

  it('an image policy through the server: camera frames travel as uint8 and the episodes equal in-process ones', async () => {
    const pc: DiffusionPolicyConfig = { ...PC, obsDim: 2, vision: defaultVisionConfig() };
    const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from([10, 20, 500, 400]), dim: 2 }, action: { values: Float32Array.from([0, 10, 512, 500]), dim: 2 } });
    const p = new OneDpPolicy(pc, { method: 'onedp-s', tInit: 65, sigmaInit: 2.5 }, norm, 4);
    const s = await startServer({ policy: servedPolicy(p, { runtime: 'tfjs', source: 'test', digestOf: 'test', obsDim: 2, cameraSize: 96 }), port: 0 });
    servers.push(s);
    const remote = new RemotePolicy(await PolicyClient.connect(s.url));
    expect(remote.cameras).toEqual(['image']);
    const opts = { seeds: [21], batchSize: 1, maxSteps: 12, latencyReps: 0, realtime: { latency: { kind: 'nfe' as const, perNfeMs: 50 } } };
    const viaServer = await evaluatePushTAsync(remote, opts);
    const local = { kind: p.kind, nObsSteps: 2, nActionSteps: 4, horizon: 8, actionDim: 2, cameras: ['image'], dispose: () => {}, predict: async (o: Parameters<typeof p.predictAction>[0], q: { rngs?: Rng[]; seed?: number } = {}) => p.predictAction(o, q.rngs ? { rngs: callSeeds(q.rngs).map((x) => new Rng(x)) } : { seed: q.seed }) };
    const inProcess = await evaluatePushTAsync(local, opts);
    expect(viaServer.episodes).toEqual(inProcess.episodes);
    expect(viaServer.episodes[0].predictions).toBeGreaterThan(1);
    remote.dispose();
    p.dispose();
  });

  it('CLI: onedp serve and onedp eval --server end to end, SIGTERM stops it cleanly; a public bind without a token is refused', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-serve-'));
    await saveCheckpoint(path.join(dir, 'ck'), 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: PC, generator: policy.gen, normalizer: NORM.toJSON(), step: 1 }, tensors: { generator: stateDict(policy.generator) } });
    const child = onedpAsync(['serve', '--policy', path.join(dir, 'ck'), '--port', '0', '--token', 'a-long-token']);
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        const line = out.split('\n')[0];
        if (out.includes('\n')) resolve(JSON.parse(line).url as string);
      });
      child.on('exit', () => reject(new Error(`serve exited: ${err}`)));
    });
    expect(JSON.parse(out.split('\n')[0]).policy.runtime).toBe('onnx');
    const ev = onedp(['eval', '--server', url, '--token', 'a-long-token', '--seeds', '0:2', '--max-steps', '16', '--latency', 'nfe:40', '--out', path.join(dir, 'ev')]);
    expect(ev.code, ev.stderr).toBe(0);
    const summary = JSON.parse(ev.stdout);
    expect(summary).toMatchObject({ server: url, kind: 'onedp-s', runtime: 'onnx', episodes: 2 });
    expect(summary.realtime.meanDelayPeriods).toBe(1);
    const noToken = onedp(['eval', '--server', url, '--seeds', '0:1']);
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/401/);
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(err).toMatch(/SIGTERM: answering queued requests[\s\S]*stopped after \d+ replies/);
    const pub = onedp(['serve', '--policy', path.join(dir, 'ck'), '--host', '0.0.0.0', '--port', '0']);
    expect(pub.code).toBe(2);
    expect(pub.stderr).toMatch(/requires --token/);
  });
});

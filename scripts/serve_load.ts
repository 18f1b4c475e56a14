/**
 * Load test of the policy server on loopback: 1, 8 and 32 concurrent clients, each sending
 * batch-1 requests back to back, every reply checked to be the one its request asked for (same id,
 * and the chunk the policy gives for that request's observation and seed).
 *   npx tsx scripts/serve_load.ts <checkpoint or bundle> [requests per client = 50] [--runtime onnx|tfjs]
 * Prints one JSON line per client count: p50 / p99 round trip, throughput, mismatches.
 */
import { initEngine } from '../src/engine/index.js';
import { loadPolicy } from '../src/policy/load.js';
import { openOnnxPolicy, planRuntime, type RuntimeChoice } from '../src/export/runtime.js';
import { servedPolicy, startServer } from '../src/serve/server.js';
import { PolicyClient } from '../src/serve/client.js';
import { Rng } from '../src/util/rng.js';
import type { AsyncPolicy, Policy } from '../src/policy/types.js';

const [where, perClientArg] = process.argv.slice(2);
const runtime = (process.argv.includes('--runtime') ? process.argv[process.argv.indexOf('--runtime') + 1] : 'auto') as RuntimeChoice;
const perClient = Number(perClientArg ?? 50);
await initEngine();
const plan = await planRuntime(where, runtime);
const policy: Policy | AsyncPolicy = plan.runtime === 'onnx' ? await openOnnxPolicy(where, plan.isBundle) : await loadPolicy(where);
const served = servedPolicy(policy, { runtime: plan.runtime, source: where, digestOf: where, obsDim: 20 });
const server = await startServer({ policy: served, port: 0 });
function obsFor(c: number, k: number): Float32Array {
  const r = new Rng(1000 * c + k);
  return Float32Array.from({ length: 2 * 20 }, () => 50 + 400 * r.uniform());
}
// Expected chunks, computed in process for every (client, request) before the load starts.
const expected = new Map<string, Float32Array>();
for (let ci = 0; ci < 32; ci++) {
  for (let k = 0; k < perClient; k++) {
    const o = { batch: 1, data: { obs: obsFor(ci, k) } };
    const q = { rngs: [new Rng(ci * 100000 + k)] };
    const out = await ('predictAction' in policy ? policy.predictAction(o, q) : policy.predict(o, q));
    expected.set(`${ci}:${k}`, Float32Array.from(out.chunk.flat(2)));
  }
}
for (const clients of [1, 8, 32]) {
  const pc = await Promise.all(Array.from({ length: clients }, () => PolicyClient.connect(server.url)));
  const rtts: number[] = [];
  let mismatches = 0;
  const t0 = performance.now();
  await Promise.all(
    pc.map(async (c, ci) => {
      for (let k = 0; k < perClient; k++) {
        const obs = obsFor(ci, k);
        const s = performance.now();
        const r = await c.act({ batch: 1, data: { obs } }, { seeds: [ci * 100000 + k] });
        rtts.push(performance.now() - s);
        const want = expected.get(`${ci}:${k}`)!;
        if (want.length !== r.chunk.length || want.some((v, i) => v !== r.chunk[i])) mismatches++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  rtts.sort((a, b) => a - b);
  const q = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(p * rtts.length))];
  console.log(JSON.stringify({ clients, requests: rtts.length, p50Ms: +q(0.5).toFixed(2), p99Ms: +q(0.99).toFixed(2), throughputPerS: +(rtts.length / seconds).toFixed(0), mismatches, runtime: plan.runtime }));
  pc.forEach((c) => c.close());
}
await server.close();
process.exit(0);

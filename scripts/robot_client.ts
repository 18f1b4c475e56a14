/**
 * A robot-side client, as a robot process would run one: PushT stands in for the robot and ticks
 * at its 10 Hz control rate in wall-clock time, while `AsyncActor` keeps the next action chunk in
 * flight to a policy server (or to an exported bundle in this process).
 *   npx tsx scripts/robot_client.ts ws://127.0.0.1:8765 [episodes = 3] [--token T] [--steps 300] [--seed 100000] [--ahead auto|N]
 *   npx tsx scripts/robot_client.ts runs/export/onedp-s [episodes]     (an onnxruntime bundle, in process)
 * Prints one JSON line per episode (score, steps that held for lack of an action, stale actions
 * dropped, round trips) and a summary.
 */
import { PolicyClient, RemotePolicy } from '../src/serve/client.js';
import { AsyncActor } from '../src/serve/async_actor.js';
import { OnnxPolicy } from '../src/export/runtime.js';
import { initEngine } from '../src/engine/index.js';
import { checkPushTPolicy, keypointAgentPosition, keypointObs, makePushTEnv } from '../src/eval/pusht.js';
import { CONTROL_PERIOD_MS } from '../src/eval/harness.js';
import type { AsyncPolicy } from '../src/policy/types.js';

const args = process.argv.slice(2);
const flag = (name: string, def: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : def);
const positional = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1].startsWith('--')));
const [where, episodesArg] = positional;
if (!where) {
  console.error('usage: robot_client.ts <ws://server | bundle dir> [episodes] [--token T] [--steps N] [--seed S]');
  process.exit(2);
}
const episodes = Number(episodesArg ?? 3);
const maxSteps = Number(flag('--steps', '300'));
const seed0 = Number(flag('--seed', '100000'));
const aheadFlag = flag('--ahead', 'auto');
const requestAhead = aheadFlag === 'auto' ? 'auto' : Number(aheadFlag);

let policy: AsyncPolicy;
let obsDim: number;
if (/^wss?:\/\//.test(where)) {
  const client = await PolicyClient.connect(where, { token: flag('--token', '') || undefined });
  policy = new RemotePolicy(client);
  obsDim = client.policy.obsDim;
} else {
  await initEngine();
  const p = await OnnxPolicy.load(where);
  policy = p;
  obsDim = p.manifest.obsDim;
}
checkPushTPolicy({ obsDim, cameras: policy.cameras }, where);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const pct = (xs: number[], q: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] : NaN);
const scores: number[] = [];
for (let e = 0; e < episodes; e++) {
  const seed = seed0 + e;
  const env = makePushTEnv(0);
  let obs = keypointObs(env.reset(seed));
  const actor = new AsyncActor(policy, { controlPeriodMs: CONTROL_PERIOD_MS, seed, requestAhead, onError: (err) => console.error(`request failed: ${err.message}`) });
  let score = 0;
  let late = 0;
  const start = performance.now();
  for (let k = 0; k < maxSteps; k++) {
    // The robot's clock: tick k happens at start + k periods, whatever the policy is doing.
    await sleep(start + k * CONTROL_PERIOD_MS - performance.now());
    if (performance.now() - (start + k * CONTROL_PERIOD_MS) > CONTROL_PERIOD_MS / 2) late++;
    const a = actor.act(obs);
    // Nothing queued yet: hold the agent where it is.
    const r = env.step(a ? [a[0], a[1]] : keypointAgentPosition(obs));
    score = Math.max(score, r.reward);
    obs = keypointObs(r.observation);
    if (r.terminated) break;
  }
  await actor.idle();
  const s = actor.stats;
  scores.push(score);
  console.log(JSON.stringify({ seed, score: +score.toFixed(4), steps: s.steps, requests: s.requests, heldSteps: s.underruns, spareSteps: s.spareSteps, staleDropped: s.staleDropped, delaySteps: { p50: pct(s.delaySteps, 0.5), max: Math.max(...s.delaySteps) }, latencyMs: { p50: +pct(s.latencyMs, 0.5).toFixed(2), p99: +pct(s.latencyMs, 0.99).toFixed(2) }, lateTicks: late }));
}
console.log(JSON.stringify({ episodes, meanScore: +(scores.reduce((a, b) => a + b, 0) / scores.length).toFixed(4) }));
await policy.dispose();
process.exit(0);

/**
 * The demo page: PushT at its 10 Hz control rate on a canvas, driven by a policy that runs in
 * the page (policy_worker.ts), through the same `AsyncActor` a robot uses with `onedp serve`:
 * the world ticks on time, a chunk is asked for before the current one runs out, and a late
 * chunk's stale actions are dropped. A person drags the T while the policy acts.
 *
 * Everything PushT is onedp's own code from src/ (environment, renderer, observations), as in
 * Node; `window.onedpDemo` exposes the state and a lockstep rollout for the end-to-end test.
 */
import { PushTEnv, SUCCESS_COVERAGE, WORKSPACE_SIZE, GOAL_POSE, tPolygons, type Vec2 } from '../../src/envs/pusht.js';
import { drawPushT, renderPushT } from '../../src/envs/render.js';
import { AsyncActor } from '../../src/serve/async_actor.js';
import { checkPushTPolicy, pushtObserver, pushtRollout } from '../../src/eval/pusht.js';
import { CONTROL_PERIOD_MS, type StepObservation } from '../../src/eval/harness.js';
import type { PolicyOutput } from '../../src/policy/types.js';
import { PolicyWorker, type WorkerPolicy } from './worker_policy.js';
import { $, BundleCache, ControlLoop, StatusLine, fmt, median, type Choice } from './page.js';
import type { DemoApi, DemoState } from './api.js';


const BUILT_IN: Choice[] = [
  { id: 'onedp-s', label: 'OneDP-S (1 network evaluation)', key: 'policies/onedp-s/' },
  { id: 'ddim-10', label: 'Diffusion policy, DDIM-10', key: 'policies/dp/', sampler: 'ddim-10' },
  { id: 'ddpm-100', label: 'Diffusion policy, DDPM-100', key: 'policies/dp/', sampler: 'ddpm' },
];

const canvas = $<HTMLCanvasElement>('scene');
const ctx = canvas.getContext('2d')!;
const select = $<HTMLSelectElement>('policy');
const seedInput = $<HTMLInputElement>('seed');
const pauseButton = $<HTMLButtonElement>('pause');
const statusLine = $<HTMLParagraphElement>('status');

const worker = new PolicyWorker();
const bundles = new BundleCache(worker);
const status = new StatusLine(statusLine);
const choices = [...BUILT_IN];

let env = new PushTEnv<'keypoints' | 'state'>({ obsType: 'keypoints' });
let observer = pushtObserver({ cameras: [] });
let obs: StepObservation = observer.observe(env.reset(Number(seedInput.value)));
let policy: WorkerPolicy | null = null;
let actor: AsyncActor | null = null;
let current = '';
let step = 0;
let successAt: number | null = null;
let lastOutput: PolicyOutput | null = null;
const tickTimes: number[] = [];
/** The block held by the pointer: where it should be, in workspace units. */
let drag: { dx: number; dy: number; x: number; y: number } | null = null;

const setStatus = (text: string, isError = false) => status.set(text, isError);

function refreshChoices(): void {
  select.replaceChildren(...choices.map((c) => new Option(c.label, c.id, false, c.id === current)));
}

const openBundle = (c: Choice) => bundles.open(c.key);

/** Bumped by every `choose`: only the latest call installs its policy. */
let chooseGen = 0;
/** Failed requests in a row; a policy that keeps failing is stopped rather than retried 10 times a second. */
let failuresInRow = 0;
const MAX_FAILURES_IN_ROW = 5;

/** Switches to a policy; the world keeps running, held still until the first chunk comes. */
async function choose(id: string, seed = Number(seedInput.value)): Promise<void> {
  const c = choices.find((x) => x.id === id);
  if (!c) throw new Error(`no policy "${id}"`);
  const gen = ++chooseGen;
  current = id;
  refreshChoices();
  setStatus(`loading ${c.label}…`);
  actor?.reset();
  actor = null;
  policy?.dispose();
  policy = null;
  let p: WorkerPolicy | null = null;
  try {
    await openBundle(c);
    p = await worker.use(c.key, seed, c.sampler);
    checkPushTPolicy({ obsDim: p.manifest.obsDim, cameras: p.cameras }, c.label);
    // A later choose (another policy, or a reset) has taken over meanwhile.
    if (gen !== chooseGen) return p.dispose();
    policy = p;
    failuresInRow = 0;
    useObserver(p);
    const installed = p;
    actor = new AsyncActor(p, {
      controlPeriodMs: CONTROL_PERIOD_MS,
      seed,
      onError: (e) => {
        if (policy !== installed) return;
        setStatus(e.message, true);
        if (++failuresInRow >= MAX_FAILURES_IN_ROW) {
          actor = null;
          setStatus(`${c.label} stopped after ${failuresInRow} failed requests in a row: ${e.message}`, true);
        }
      },
    });
    setStatus(`${c.label}: ${p.kind}, ${p.sampler}`);
  } catch (e) {
    if (p && policy !== p) p.dispose();
    if (gen === chooseGen) setStatus((e as Error).message, true);
  }
}

/** Image policies observe the rendered frame: the environment changes type, the world stays. */
function useObserver(p: WorkerPolicy): void {
  observer = pushtObserver(p);
  if (env.obsType !== observer.envObs) {
    const state = env.getSimState();
    env = new PushTEnv({ obsType: observer.envObs });
    env.setSimState(state);
  }
  obs = observer.observe(env.observation());
}

function reset(seed: number): void {
  obs = observer.observe(env.reset(seed));
  step = 0;
  successAt = null;
  lastOutput = null;
  tickTimes.length = 0;
  // A fresh noise stream and history for the policy too, so that a seed replays alike.
  if (current) void choose(current, seed);
  draw();
}

function tick(): void {
  if (drag) {
    const s = env.getSimState();
    env.setSimState({ ...s, block: [drag.x, drag.y, s.block[2]] });
    obs = observer.observe(env.observation());
  }
  const a = actor ? actor.act(obs) : null;
  if (policy?.lastOutput && policy.lastOutput !== lastOutput) {
    lastOutput = policy.lastOutput;
    failuresInRow = 0;
  }
  const r = env.step(a ? [a[0], a[1]] : observer.agentPosition(obs));
  obs = observer.observe(r.observation);
  step++;
  if (successAt === null && r.info.coverage > SUCCESS_COVERAGE) successAt = step;
  tickTimes.push(performance.now());
  if (tickTimes.length > 11) tickTimes.shift();
  draw();
  readout();
}

const loop = new ControlLoop(CONTROL_PERIOD_MS, tick);

function draw(): void {
  const scale = canvas.width / WORKSPACE_SIZE;
  drawPushT(ctx, { agent: env.agentPos(), block: env.blockPose(), goal: GOAL_POSE }, scale);
  // The latest chunk's planned agent targets, faded: how far the world has moved since.
  const chunk = lastOutput?.chunk[0];
  if (chunk) {
    ctx.fillStyle = 'rgba(255,140,0,0.7)';
    for (const [x, y] of chunk) {
      ctx.beginPath();
      ctx.arc(x, y, 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
}


function state(): DemoState {
  const s = actor?.stats;
  const dt = tickTimes.length > 1 ? (tickTimes[tickTimes.length - 1] - tickTimes[0]) / (tickTimes.length - 1) : NaN;
  return {
    policy: current,
    ready: policy !== null,
    step,
    coverage: env.coverage(),
    success: successAt !== null,
    successAt,
    agent: env.agentPos(),
    block: env.blockPose(),
    inferenceMs: policy?.lastComputeMs ?? NaN,
    inferenceMsMedian: median(policy?.computeMs ?? []),
    roundTripMsMedian: median(s?.latencyMs ?? []),
    obsEncodingMs: lastOutput?.timing.obsEncodingMs ?? NaN,
    actionPredictionMs: lastOutput?.timing.actionPredictionMs ?? NaN,
    roundTripMs: s?.latencyMs.at(-1) ?? NaN,
    nfe: lastOutput?.timing.nfe ?? NaN,
    controlHz: 1000 / dt,
    chunkAgeSteps: actor?.actionAge ?? null,
    replies: s?.replies ?? 0,
    heldSteps: s?.underruns ?? 0,
    paused: loop.paused,
    errors: [...status.errors],
  };
}

function readout(): void {
  const s = state();
  $('coverage').textContent = `${(s.coverage * 100).toFixed(1)} %`;
  $('success').textContent = s.successAt === null ? 'not yet' : `yes, at step ${s.successAt} (${((s.successAt * CONTROL_PERIOD_MS) / 1000).toFixed(1)} s)`;
  $('step').textContent = String(s.step);
  $('infer').textContent = `${fmt(s.inferenceMs)} ms (encode ${fmt(s.obsEncodingMs, 2)}, act ${fmt(s.actionPredictionMs)}); median ${fmt(s.inferenceMsMedian)}`;
  $('rtt').textContent = `${fmt(s.roundTripMs)} ms; median ${fmt(s.roundTripMsMedian)}`;
  $('nfe').textContent = fmt(s.nfe, 0);
  $('rate').textContent = `${fmt(s.controlHz)} Hz`;
  $('age').textContent = s.chunkAgeSteps === null ? 'holding' : `${s.chunkAgeSteps} step${s.chunkAgeSteps === 1 ? '' : 's'} (${s.chunkAgeSteps * CONTROL_PERIOD_MS} ms)`;
  $('held').textContent = String(s.heldSteps);
}

// Dragging: the block follows the pointer (its angle kept) and is set at each tick.
function workspacePoint(e: PointerEvent): Vec2 {
  const r = canvas.getBoundingClientRect();
  return [((e.clientX - r.left) * WORKSPACE_SIZE) / r.width, ((e.clientY - r.top) * WORKSPACE_SIZE) / r.height];
}

function insideConvex(p: Vec2, poly: readonly Vec2[]): boolean {
  let sign = 0;
  for (let i = 0; i < poly.length; i++) {
    const a = poly[i];
    const b = poly[(i + 1) % poly.length];
    const c = Math.sign((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]));
    if (c !== 0 && sign !== 0 && c !== sign) return false;
    if (c !== 0) sign = c;
  }
  return true;
}

const clampIn = (v: number) => Math.min(WORKSPACE_SIZE - 40, Math.max(40, v));

canvas.addEventListener('pointerdown', (e) => {
  const p = workspacePoint(e);
  const pose = env.blockPose();
  if (!tPolygons(pose).some((q) => insideConvex(p, q))) return;
  drag = { dx: pose[0] - p[0], dy: pose[1] - p[1], x: pose[0], y: pose[1] };
  canvas.setPointerCapture(e.pointerId);
  canvas.classList.add('dragging');
});
canvas.addEventListener('pointermove', (e) => {
  if (!drag) return;
  const p = workspacePoint(e);
  drag.x = clampIn(p[0] + drag.dx);
  drag.y = clampIn(p[1] + drag.dy);
  if (loop.paused) {
    const s = env.getSimState();
    env.setSimState({ ...s, block: [drag.x, drag.y, s.block[2]] });
    obs = observer.observe(env.observation());
    draw();
  }
});
const endDrag = () => {
  drag = null;
  canvas.classList.remove('dragging');
};
canvas.addEventListener('pointerup', endDrag);
canvas.addEventListener('pointercancel', endDrag);

select.addEventListener('change', () => void choose(select.value));
$('reset').addEventListener('click', () => reset(Number(seedInput.value)));
pauseButton.addEventListener('click', () => {
  if (loop.paused) loop.run();
  else loop.pause();
  pauseButton.textContent = loop.paused ? 'Resume' : 'Pause';
  readout();
});
$<HTMLInputElement>('files').addEventListener('change', async (e) => {
  const files = [...((e.target as HTMLInputElement).files ?? [])];
  try {
    const { key, manifest } = await worker.openFiles(files);
    addYours(key, `Yours: ${manifest.kind} (${files.find((f) => f.name.endsWith('.onnx') && f.name !== manifest.files.encoder)?.name ?? 'graph'})`);
    bundles.add(key);
    await choose('yours');
  } catch (err) {
    setStatus((err as Error).message, true);
  }
});

function addYours(key: string, label: string, sampler?: string): void {
  const i = choices.findIndex((c) => c.id === 'yours');
  if (i >= 0) choices.splice(i, 1);
  choices.push({ id: 'yours', label, key, sampler });
}

declare global {
  interface Window {
    onedpDemo: DemoApi;
  }
}

window.onedpDemo = {
  state,
  choose,
  reset,
  async rollout(id, seed, steps) {
    const c = choices.find((x) => x.id === id);
    if (!c) throw new Error(`no policy "${id}"`);
    await openBundle(c);
    const p = await worker.use(c.key, seed, c.sampler);
    try {
      return await pushtRollout(p, seed, steps);
    } finally {
      p.dispose();
    }
  },
  frame(st) {
    return [...renderPushT({ agent: [st[0], st[1]], block: [st[2], st[3], st[4]], goal: GOAL_POSE }, 96)];
  },
  blockOnPage() {
    const r = canvas.getBoundingClientRect();
    const s = r.width / WORKSPACE_SIZE;
    // The middle of the T's bar: inside the block whatever its angle.
    const bar = tPolygons(env.blockPose())[0];
    const [bx, by] = [bar.reduce((a, p) => a + p[0], 0) / bar.length, bar.reduce((a, p) => a + p[1], 0) / bar.length];
    return { x: r.left + bx * s, y: r.top + by * s, scale: s };
  },
};

// Sharp on high-density screens: the backing store at device pixels.
canvas.width = canvas.height = Math.round(WORKSPACE_SIZE * Math.min(2, window.devicePixelRatio || 1));

const params = new URLSearchParams(location.search);
if (params.has('seed')) seedInput.value = String(Number(params.get('seed')) || 0);
const fromUrl = params.get('policy');
if (fromUrl) addYours(fromUrl.endsWith('/') ? fromUrl : `${fromUrl}/`, `Yours: ${fromUrl}`, params.get('sampler') ?? undefined);
reset(Number(seedInput.value));
void choose(fromUrl ? 'yours' : 'onedp-s');
loop.run();

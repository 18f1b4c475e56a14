/**
 * The Lift page: robomimic-style Lift in MuJoCo's own WebAssembly build, stepping at the task's
 * 20 Hz in the page, driven by an exported policy in the policy worker through the same
 * `AsyncActor` a robot uses. While no chunk is queued the gripper holds still (no motion, a
 * closed gripper kept closed), as `onedp eval --env lift --realtime` does.
 *
 * The task, its observations and the drawing are onedp's own code from src/, unchanged from Node;
 * `window.onedpLift` exposes the state and a lockstep rollout for the end-to-end test.
 */
import { loadMujoco } from '../../src/envs/mujoco/sim.js';
import { CUBE_HALF, LiftEnv, LIFT_HEIGHT, TABLE_TOP } from '../../src/envs/mujoco/lift.js';
import { drawManipulation } from '../../src/envs/mujoco/render.js';
import { manipulationHold, manipulationObserver, manipulationRollout, ROBOMIMIC_OBS_SPEC } from '../../src/eval/manipulation.js';
import { flatHistories, lowdimOf, type StepObservation } from '../../src/eval/harness.js';
import { AsyncActor } from '../../src/serve/async_actor.js';
import type { PolicyOutput } from '../../src/policy/types.js';
import { Rng } from '../../src/util/rng.js';
import { PolicyWorker, type WorkerPolicy } from './worker_policy.js';
import { $, BundleCache, ControlLoop, StatusLine, fmt, median, type Choice } from './page.js';
import type { LiftDemoApi, LiftDemoState } from './api.js';

const CONTROL_PERIOD_MS = 50;
/**
 * A tick that asks for a chunk waits this long for it, as a synchronous robot loop computing
 * inside its period would: a one-step policy's chunk (a few ms) then acts on the observation it
 * was computed from. Lift's actions are deltas of up to 5 cm a step, and a chunk whose first
 * action is always lost to the wait fails nearly every episode (the README's real-time table:
 * this page's one-step policy 0.12 without a budget, 0.74 with one, as in lockstep).
 */
const BUDGET_MS = 40;


const CHOICES: Choice[] = [
  { id: 'onedp', label: 'OneDP (1 network evaluation)', key: 'policies/lift-onedp/' },
  { id: 'ddim-10', label: 'Diffusion policy, DDIM-10', key: 'policies/lift-dp/', sampler: 'ddim-10' },
  { id: 'ddpm-100', label: 'Diffusion policy, DDPM-100', key: 'policies/lift-dp/', sampler: 'ddpm' },
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
const observe = manipulationObserver(ROBOMIMIC_OBS_SPEC);
const hold = manipulationHold(ROBOMIMIC_OBS_SPEC);
const env = LiftEnv.createWith(await loadMujoco());
const nudges = new Rng(1);

let obs: StepObservation = observe(env.reset(Number(seedInput.value)));
let policy: WorkerPolicy | null = null;
let actor: AsyncActor | null = null;
let current = '';
let step = 0;
let successAt: number | null = null;
let lastOutput: PolicyOutput | null = null;
let failuresInRow = 0;
let chooseGen = 0;
const tickTimes: number[] = [];
const setStatus = (text: string, isError = false) => status.set(text, isError);
const openBundle = (c: Choice) => bundles.open(c.key);

function choice(id: string): Choice {
  const c = CHOICES.find((x) => x.id === id);
  if (!c) throw new Error(`no policy "${id}"`);
  return c;
}

/** The bundle must observe what this page observes: robomimic's low-dimensional keys. */
function checkObsDim(p: WorkerPolicy, label: string): void {
  const dim = lowdimOf(obs).length;
  if (p.manifest.obsDim !== dim || p.cameras.length > 0) throw new Error(`${label}: the bundle observes ${p.manifest.obsDim} values${p.cameras.length ? ' and images' : ''}; Lift's robomimic observation has ${dim}`);
}

async function choose(id: string, seed = Number(seedInput.value)): Promise<void> {
  const c = choice(id);
  const gen = ++chooseGen;
  current = id;
  select.value = id;
  setStatus(`loading ${c.label}…`);
  actor?.reset();
  actor = null;
  policy?.dispose();
  policy = null;
  let p: WorkerPolicy | null = null;
  try {
    await openBundle(c);
    p = await worker.use(c.key, seed, c.sampler);
    checkObsDim(p, c.label);
    // One call to warm the runtime up (its first is several times slower), so that the episode's
    // first chunk comes within the budget too. Its noise is drawn from a stream of its own.
    const w = await worker.use(c.key, seed + 1, c.sampler);
    try {
      const o = observe(env.observation());
      await w.predict(flatHistories([{ hist: [o, o] }], w.nObsSteps));
    } finally {
      w.dispose();
    }
    if (gen !== chooseGen) return p.dispose();
    policy = p;
    failuresInRow = 0;
    const installed = p;
    actor = new AsyncActor(p, {
      controlPeriodMs: CONTROL_PERIOD_MS,
      budgetMs: BUDGET_MS,
      seed,
      onError: (e) => {
        if (policy !== installed) return;
        setStatus(e.message, true);
        if (++failuresInRow >= 5) {
          actor = null;
          setStatus(`${c.label} stopped after ${failuresInRow} failed requests in a row: ${e.message}`, true);
        }
      },
    });
    // The episode starts over with the policy: what it does depends on where it starts, and a
    // start spent holding still while the bundle loaded is not one the demonstrations had.
    restart(seed);
    setStatus(`${c.label}: ${p.kind}, ${p.sampler}`);
  } catch (e) {
    if (p && policy !== p) p.dispose();
    if (gen === chooseGen) setStatus((e as Error).message, true);
  }
}

function restart(seed: number): void {
  obs = observe(env.reset(seed));
  step = 0;
  endedFor = 0;
  successAt = null;
  lastOutput = null;
  draw();
  readout();
}

/** Restarts the seed's episode, and the policy with a fresh noise stream and history (once it is loaded, the episode restarts again). */
function reset(seed: number): void {
  restart(seed);
  if (current) void choose(current, seed);
}

function placeCube(x: number, y: number): void {
  env.placeCube(x, y);
  obs = observe(env.observation());
  draw();
}

/** Ticks to show a finished episode (lifted, or out of time) before the next seed's starts. */
const PAUSE_BETWEEN_EPISODES = 30;
let endedFor = 0;

/** Ticks the control rate is measured over (2 s): catch-up ticks after a tick that waited for its chunk average out. */
const RATE_WINDOW = 41;

async function tick(running: () => boolean): Promise<void> {
  // Every tick of the world's clock counts, whether or not an episode is running.
  tickTimes.push(performance.now());
  if (tickTimes.length > RATE_WINDOW) tickTimes.shift();
  if (successAt !== null || step >= env.horizon) {
    // The episode is over, as the harness ends it: the robot holds (a lifted cube stays up), then
    // the next seed starts with the same policy (its history and queue cleared).
    if (++endedFor >= PAUSE_BETWEEN_EPISODES) {
      seedInput.value = String(Number(seedInput.value) + 1);
      actor?.reset();
      restart(Number(seedInput.value));
    } else {
      obs = observe(env.step(hold(obs)).observation);
      draw();
    }
    return;
  }
  const a = actor ? await actor.actWithin(obs) : null;
  // Paused (or paused and resumed) while this tick waited: the world does not step for it.
  if (!running()) return;
  if (policy?.lastOutput && policy.lastOutput !== lastOutput) {
    lastOutput = policy.lastOutput;
    failuresInRow = 0;
  }
  const r = env.step(a ?? hold(obs));
  obs = observe(r.observation);
  step++;
  if (successAt === null && r.info.success) successAt = step;
  draw();
  readout();
}

const loop = new ControlLoop(CONTROL_PERIOD_MS, tick);

function draw(): void {
  drawManipulation(ctx, env.sim, canvas.width, canvas.height);
}


function state(): LiftDemoState {
  const s = actor?.stats;
  const dt = tickTimes.length > 1 ? (tickTimes[tickTimes.length - 1] - tickTimes[0]) / (tickTimes.length - 1) : NaN;
  const cube = env.cubePos();
  return {
    policy: current,
    ready: policy !== null,
    step,
    cubeHeight: cube[2] - CUBE_HALF - TABLE_TOP,
    cube,
    gripper: env.eefPos(),
    success: successAt !== null,
    successAt,
    inferenceMs: policy?.lastComputeMs ?? NaN,
    inferenceMsMedian: median(policy?.computeMs ?? []),
    roundTripMs: s?.latencyMs.at(-1) ?? NaN,
    nfe: lastOutput?.timing.nfe ?? NaN,
    controlHz: 1000 / dt,
    replies: s?.replies ?? 0,
    heldSteps: s?.underruns ?? 0,
    recentDelays: s?.delaySteps.slice(-10) ?? [],
    lateChunks: s?.delaySteps.filter((d) => d > 0).length ?? 0,
    paused: loop.paused,
    errors: [...status.errors],
  };
}

function readout(): void {
  const s = state();
  $('height').textContent = `${(100 * s.cubeHeight).toFixed(1)} cm (success above ${100 * LIFT_HEIGHT} cm)`;
  $('success').textContent = s.successAt === null ? 'not yet' : `yes, at step ${s.successAt} (${((s.successAt * CONTROL_PERIOD_MS) / 1000).toFixed(2)} s)`;
  $('step').textContent = String(s.step);
  $('infer').textContent = `${fmt(s.inferenceMs, 2)} ms; median ${fmt(s.inferenceMsMedian, 2)}`;
  $('rtt').textContent = `${fmt(s.roundTripMs)} ms`;
  $('nfe').textContent = fmt(s.nfe, 0);
  $('rate').textContent = `${fmt(s.controlHz)} Hz`;
  $('held').textContent = String(s.heldSteps);
}

select.replaceChildren(...CHOICES.map((c) => new Option(c.label, c.id)));
select.addEventListener('change', () => void choose(select.value));
$('reset').addEventListener('click', () => reset(Number(seedInput.value)));
$('nudge').addEventListener('click', () => placeCube(0.16 * nudges.uniform() - 0.08, 0.16 * nudges.uniform() - 0.08));
pauseButton.addEventListener('click', () => {
  if (loop.paused) loop.run();
  else loop.pause();
  // The rate restarts with the clock.
  tickTimes.length = 0;
  pauseButton.textContent = loop.paused ? 'Resume' : 'Pause';
  readout();
});

declare global {
  interface Window {
    onedpLift: LiftDemoApi;
  }
}

window.onedpLift = {
  state,
  choose,
  reset,
  placeCube,
  async rollout(id, seed, steps) {
    const c = choice(id);
    await openBundle(c);
    const p = await worker.use(c.key, seed, c.sampler);
    try {
      return await manipulationRollout('lift', p, seed, steps);
    } finally {
      p.dispose();
    }
  },
};

canvas.width = canvas.height = Math.round(512 * Math.min(2, window.devicePixelRatio || 1));

const params = new URLSearchParams(location.search);
if (params.has('seed')) seedInput.value = String(Number(params.get('seed')) || 0);
reset(Number(seedInput.value));
void choose(params.get('policy') ?? 'onedp');
loop.run();

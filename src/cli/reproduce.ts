/**
 * `onedp reproduce pusht-state|pusht-image`: the larger PushT experiments behind the README's
 * tables (image: the same recipe on camera frames + agent position, with smaller defaults).
 * Several training seeds, DDPM and EDM teachers, OneDP-S and OneDP-D from each (and
 * Consistency Policy from the EDM teacher when available), every policy evaluated on the same
 * 100 test seeds, latency measured on a quiet machine at the end.
 *
 * Every stage writes its result into the run directory and is skipped when it is already
 * there, so a killed run continues where it stopped (training resumes from its checkpoint).
 * Training seeds can run as parallel processes (`--jobs`): wasm runs on one thread, so each
 * process uses one core.
 */
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine } from '../engine/index.js';
import { collectPushT } from '../envs/collect.js';
import { writeReplayBuffer, readReplayBuffer } from '../data/zarr.js';
import { IMAGE_OBS_SPEC, policyBuffer, specKeys } from '../data/obs_spec.js';
import { defaultVisionConfig } from '../policy/obs_encoder.js';
import type { ReplayBuffer } from '../data/replay.js';
import { defaultPolicyConfig, type DiffusionPolicy } from '../policy/diffusion_policy.js';
import { trainPolicy } from '../train/trainer.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { loadDiffusionPolicy, loadPolicy } from '../policy/load.js';
import { distillOneDp, DEFAULT_DISTILL_CONFIG } from '../distill/distill.js';
import { distillConsistency } from '../distill/consistency.js';
import { DDIMScheduler, DDPMScheduler, EDMScheduler } from '../diffusion/index.js';
import type { NoiseScheduler } from '../diffusion/types.js';
import { meanStd, parseSeedRange, summarize, type EpisodeResult } from '../eval/harness.js';
import { evaluatePushT, pushtLatency } from '../eval/pusht.js';
import { writeFileAtomic } from '../io/safetensors.js';
import type { Policy } from '../policy/types.js';
import { noiseConfig } from './train.js';
import { UsageError, parseIntFlag, parseIntList } from './errors.js';
import { resolvePath } from './commands.js';

export type Teacher = 'ddpm' | 'edm';

export type Experiment = 'pusht-state' | 'pusht-image';

export interface ReproduceOptions {
  experiment: Experiment;
  out: string;
  episodes: number;
  trainSteps: number;
  batchSize: number;
  lr: number;
  downDims: number[];
  stepEmbed: number;
  /** Image experiment: ResNet-18 stage widths of the encoder. */
  encoderWidths: number[];
  /** OneDP distillation steps and batch size. */
  distillSteps: number;
  distillBatchSize: number;
  /** Consistency Policy distillation steps (at the pre-training batch size). */
  cpSteps: number;
  lrGenerator: number;
  lrScore: number;
  /** Consistency Policy learning rate and dropout. */
  cpLr: number;
  cpDropout: number;
  /** Learning curve of the first training seed's one-step policies: evaluate every N steps (0: off). */
  curveEvery: number;
  curveSeeds: number;
  /** The training seed whose learning curves are recorded (default: the first). */
  curveSeed?: number;
  /** Real-time table: per-NFE costs (ms) to simulate; empty: off. */
  realtimeNfeMs: number[];
  /** Block moves per episode in the real-time table. */
  perturb: number;
  trainSeeds: number[];
  teachers: Teacher[];
  testSeeds: number[];
  latencyReps: number;
  jobs: number;
  progress: 'auto' | 'bar' | 'lines' | 'none';
}

const STATE_OBS_SPEC = 'keypoint,state[0:2]';
const obsSpec = (o: ReproduceOptions) => (o.experiment === 'pusht-image' ? IMAGE_OBS_SPEC : STATE_OBS_SPEC);
/** Flags the parent sets for its child processes. */
const OVERRIDDEN = ['--train-seeds', '--teachers', '--curve-seed', '--stage', '--jobs', '--progress'];
const log = (s: string) => process.stderr.write(`[reproduce] ${s}\n`);

/** One evaluated configuration: a row of the table. */
interface RowSpec {
  slug: string;
  label: string;
  teacher: Teacher;
  /** The checkpoint directory (relative to the teacher's directory) and, for DP, the sampler. */
  policy: string;
  sampler?: () => NoiseScheduler;
  /** Consistency Policy: chained steps. */
  steps?: number;
}

function rowSpecs(teachers: Teacher[]): RowSpec[] {
  const rows: RowSpec[] = [];
  if (teachers.includes('ddpm')) {
    rows.push(
      { slug: 'dp-ddpm-100', label: 'DP (DDPM)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDPMScheduler() },
      { slug: 'dp-ddim-10', label: 'DP (DDIM)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDIMScheduler({ numInferenceSteps: 10 }) },
      { slug: 'dp-ddim-1', label: 'DP (DDIM, 1 step)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDIMScheduler({ numInferenceSteps: 1 }) },
      { slug: 'onedp-d', label: 'OneDP-D', teacher: 'ddpm', policy: 'onedp-d' },
      { slug: 'onedp-s', label: 'OneDP-S', teacher: 'ddpm', policy: 'onedp-s' },
    );
  }
  if (teachers.includes('edm')) {
    rows.push(
      { slug: 'dp-edm-18', label: 'DP-EDM (Heun 18)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 18 }) },
      { slug: 'dp-edm-10', label: 'DP-EDM (Heun 10)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 10 }) },
      { slug: 'dp-edm-1', label: 'DP-EDM (1 step)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 1 }) },
      { slug: 'onedp-d', label: 'OneDP-D (EDM teacher)', teacher: 'edm', policy: 'onedp-d' },
      { slug: 'onedp-s', label: 'OneDP-S (EDM teacher)', teacher: 'edm', policy: 'onedp-s' },
      { slug: 'cp-1', label: 'CP (1 step)', teacher: 'edm', policy: 'cp', steps: 1 },
      { slug: 'cp-3', label: 'CP (3 steps)', teacher: 'edm', policy: 'cp', steps: 3 },
    );
  }
  return rows;
}

const seedDir = (o: ReproduceOptions, seed: number, teacher: Teacher) => path.join(o.out, `seed-${seed}`, teacher);
const dataPath = (o: ReproduceOptions) => path.join(o.out, 'pusht.zarr');

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

async function readJson<T>(p: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(p, 'utf8')) as T;
  } catch {
    return null;
  }
}

async function addTiming(dir: string, stage: string, seconds: number): Promise<void> {
  const file = path.join(dir, 'timing.json');
  const t = (await readJson<Record<string, number>>(file)) ?? {};
  // Accumulated, so a stage resumed after a kill counts all its compute.
  t[stage] = (t[stage] ?? 0) + seconds;
  await writeFileAtomic(file, JSON.stringify(t, null, 1));
}

async function checkpointStep(dir: string): Promise<number> {
  try {
    const ck = await loadCheckpoint(dir);
    return Number(ck.meta.step ?? 0);
  } catch {
    return -1;
  }
}

async function loadBuffer(o: ReproduceOptions): Promise<ReplayBuffer> {
  return policyBuffer(await readReplayBuffer(dataPath(o), { keys: specKeys(obsSpec(o)) }), obsSpec(o), dataPath(o));
}

async function loadRowPolicy(dir: string, spec: RowSpec): Promise<Policy> {
  if (!spec.sampler) return loadPolicy(path.join(dir, spec.policy), spec.steps ? { steps: spec.steps } : {});
  const dp = await loadDiffusionPolicy(path.join(dir, spec.policy));
  dp.sampler = spec.sampler();
  return dp;
}

interface StoredEval {
  meanScore: number;
  stdScore: number;
  successRate: number;
  meanStepsToSuccess: number | null;
  wallSeconds: number;
  episodes: EpisodeResult[];
}

interface CurvePoint {
  step: number;
  score: number;
  success: number;
  seconds: number;
}

/**
 * Score against distillation steps on the first `curveSeeds` test seeds, for the first training
 * seed only (evaluation time is not counted in the distillation's wall-clock).
 */
function curveRecorder(o: ReproduceOptions, seed: number, label: string) {
  const points: CurvePoint[] = [];
  const on = o.curveEvery > 0 && seed === (o.curveSeed ?? o.trainSeeds[0]);
  const started = performance.now();
  let evalMs = 0;
  const seeds = o.testSeeds.slice(0, o.curveSeeds);
  return {
    hook: on
      ? {
          snapshotEvery: o.curveEvery,
          onSnapshot: (step: number, policy: Policy) => {
            const t0 = performance.now();
            const r = evaluatePushT(policy, { seeds, batchSize: 50, latencyReps: 0 });
            points.push({ step, score: r.meanScore, success: r.successRate, seconds: (t0 - started - evalMs) / 1000 });
            evalMs += performance.now() - t0;
            log(`curve ${label} step ${step}: score ${r.meanScore.toFixed(3)}`);
          },
        }
      : {},
    evalSeconds: () => evalMs / 1000,
    save: async (file: string) => {
      if (on) await writeFileAtomic(file, JSON.stringify({ label, seeds: seeds.length, points }, null, 1));
    },
  };
}

/**
 * One distillation into `<dir>/<name>` unless its checkpoint is complete: the teacher loaded
 * from `<dir>/dp`, a learning curve for the curve seed, and the wall-clock without the curve's
 * evaluations.
 */
async function distillStage(
  o: ReproduceOptions,
  seed: number,
  dir: string,
  name: string,
  label: string,
  run: (teacher: DiffusionPolicy, hook: ReturnType<typeof curveRecorder>['hook']) => Promise<{ policy: Policy; wallSeconds: number }>,
): Promise<void> {
  const steps = name === 'cp' ? o.cpSteps : o.distillSteps;
  if ((await checkpointStep(path.join(dir, name))) >= steps) return;
  log(`seed ${seed} ${path.basename(dir)}: distilling ${name}, ${steps} steps`);
  const teacher = await loadDiffusionPolicy(path.join(dir, 'dp'));
  const curve = curveRecorder(o, seed, label);
  const res = await run(teacher, curve.hook);
  await curve.save(path.join(dir, `curve-${name}.json`));
  res.policy.dispose();
  teacher.dispose();
  await addTiming(dir, `distill ${name}`, res.wallSeconds - curve.evalSeconds());
}

/** Everything for one training seed: train both teachers, distil, evaluate (no latency). */
async function runSeed(o: ReproduceOptions, seed: number): Promise<void> {
  const buffer = await loadBuffer(o);
  for (const teacher of o.teachers) {
    const dir = seedDir(o, seed, teacher);
    await fs.mkdir(dir, { recursive: true });
    const dpDir = path.join(dir, 'dp');
    if ((await checkpointStep(dpDir)) < o.trainSteps) {
      log(`seed ${seed} ${teacher}: pre-training ${o.trainSteps} steps`);
      const image = o.experiment === 'pusht-image';
      const policyConfig = defaultPolicyConfig(image ? 2 : 20, 2, {
        unet: { diffusionStepEmbedDim: o.stepEmbed, downDims: o.downDims, kernelSize: 5, nGroups: 8, condPredictScale: true },
        noise: noiseConfig(teacher),
        ...(image ? { vision: defaultVisionConfig({ widths: o.encoderWidths }) } : {}),
      });
      const res = await trainPolicy({
        policy: policyConfig,
        buffer,
        outDir: dpDir,
        resume: true,
        train: { steps: o.trainSteps, batchSize: o.batchSize, lr: o.lr, seed, warmupSteps: Math.min(500, Math.floor(o.trainSteps / 10)), checkpointEvery: Math.max(500, Math.floor(o.trainSteps / 6)) },
        progress: o.progress,
        provenance: { dataset: dataPath(o), obsSpec: obsSpec(o), recipe: `reproduce ${o.experiment}` },
      });
      res.policy.dispose();
      await addTiming(dir, 'pretraining', res.wallSeconds);
    }
    const provenance = { teacher: dpDir, dataset: dataPath(o), obsSpec: obsSpec(o) };
    for (const method of ['onedp-s', 'onedp-d'] as const) {
      await distillStage(o, seed, dir, method, `${method} (${teacher} teacher)`, (t, hook) =>
        distillOneDp({ teacher: t, buffer, config: { method, steps: o.distillSteps, batchSize: o.distillBatchSize, seed, lrGenerator: o.lrGenerator, lrScore: o.lrScore }, outDir: path.join(dir, method), progress: o.progress, provenance, ...hook }),
      );
    }
    if (teacher === 'edm') {
      await distillStage(o, seed, dir, 'cp', 'CP 1-step (edm teacher)', (t, hook) =>
        distillConsistency({ teacher: t, buffer, config: { steps: o.cpSteps, batchSize: o.batchSize, seed, lr: o.cpLr, dropout: o.cpDropout }, outDir: path.join(dir, 'cp'), progress: o.progress, provenance, ...hook }),
      );
    }
    for (const spec of rowSpecs([teacher])) {
      const file = path.join(dir, 'eval', `${spec.slug}.json`);
      if (await exists(file)) continue;
      const policy = await loadRowPolicy(dir, spec);
      const res = evaluatePushT(policy, { seeds: o.testSeeds, batchSize: 50, latencyReps: 0 });
      policy.dispose();
      log(`seed ${seed} ${spec.label}: score ${res.meanScore.toFixed(3)}, success ${res.successRate.toFixed(2)} (${res.wallSeconds.toFixed(0)} s)`);
      const stored: StoredEval = { meanScore: res.meanScore, stdScore: res.stdScore, successRate: res.successRate, meanStepsToSuccess: res.meanStepsToSuccess, wallSeconds: res.wallSeconds, episodes: res.episodes };
      await fs.mkdir(path.dirname(file), { recursive: true });
      await writeFileAtomic(file, JSON.stringify(stored));
    }
  }
}

/** Runs every (training seed, teacher) pair as a child process, at most `jobs` at a time. */
async function runSeedsInParallel(o: ReproduceOptions, argv: string[]): Promise<void> {
  const queue = o.trainSeeds.flatMap((seed) => o.teachers.map((teacher) => [seed, teacher] as const));
  const total = queue.length;
  const runOne = (seed: number, teacher: Teacher) =>
    new Promise<void>((resolve, reject) => {
      const args = [...process.execArgv, process.argv[1], ...argv, '--train-seeds', String(seed), '--teachers', teacher, '--curve-seed', String(o.trainSeeds[0]), '--stage', 'seed', '--jobs', '1', '--progress', 'lines'];
      // The cores are shared out between the parallel processes unless the user chose.
      const threads = process.env.ONEDP_THREADS || String(Math.max(1, Math.floor((os.availableParallelism?.() ?? os.cpus().length) / Math.min(o.jobs, total))));
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, ONEDP_THREADS: threads } });
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`training seed ${seed} (${teacher} teacher) failed (exit ${code}); rerun the same command to continue`))));
    });
  const workers = Array.from({ length: Math.min(o.jobs, queue.length) }, async () => {
    for (let job = queue.shift(); job !== undefined; job = queue.shift()) await runOne(job[0], job[1]);
  });
  await Promise.all(workers);
}

interface AggregateRow {
  method: string;
  teacher: Teacher;
  nfe: number;
  /** Mean over training seeds of the per-seed mean score, and the std across seeds. */
  score: number;
  scoreSeedStd: number;
  /** Std over all episodes. */
  scoreEpisodeStd: number;
  success: number;
  completionSteps: number | null;
  perSeed: number[];
  obsMs: number;
  actionMs: number;
  hz: number;
}

interface RealtimeCell {
  score: number;
  success: number;
  completionSeconds: number | null;
  meanDelayPeriods: number | null;
}

/**
 * The dynamic case (issue: a world that moves while the policy thinks): the first seed's
 * policies on PushT whose block is moved when the agent nears it, first with the simulator
 * waiting for the policy, then in real time with a fixed per-NFE cost per column.
 */
async function realtimeTable(o: ReproduceOptions): Promise<{ columns: string[]; rows: { method: string; cells: RealtimeCell[] }[] }> {
  const columns = ['waits for the policy', ...o.realtimeNfeMs.map((ms) => `real time, ${ms} ms/NFE`)];
  const rows: { method: string; cells: RealtimeCell[] }[] = [];
  const specs = rowSpecs(o.teachers).filter((r) => ['dp-ddpm-100', 'dp-ddim-10', 'onedp-d', 'onedp-s', 'dp-edm-18'].includes(r.slug) && (r.teacher === 'ddpm' || r.slug !== 'onedp-d'));
  for (const spec of specs) {
    const cells: RealtimeCell[] = [];
    for (const ms of [0, ...o.realtimeNfeMs]) {
      const file = path.join(o.out, 'realtime', `${spec.teacher}-${spec.slug}-perturb${o.perturb}-${ms}ms.json`);
      let cell = await readJson<RealtimeCell>(file);
      if (!cell) {
        const policy = await loadRowPolicy(seedDir(o, o.trainSeeds[0], spec.teacher), spec);
        const res = evaluatePushT(policy, { seeds: o.testSeeds, batchSize: 50, latencyReps: 0, perturb: o.perturb, ...(ms > 0 ? { realtime: { latency: { kind: 'nfe' as const, perNfeMs: ms } } } : {}) });
        policy.dispose();
        cell = { score: res.meanScore, success: res.successRate, completionSeconds: res.meanCompletionSeconds, meanDelayPeriods: res.realtime?.meanDelayPeriods ?? null };
        await fs.mkdir(path.dirname(file), { recursive: true });
        await writeFileAtomic(file, JSON.stringify(cell));
        log(`real time ${spec.label} (${spec.teacher}) ${ms} ms/NFE: score ${cell.score.toFixed(3)}, success ${cell.success.toFixed(2)}`);
      }
      cells.push(cell);
    }
    rows.push({ method: spec.label, cells });
  }
  return { columns, rows };
}

function realtimeMarkdown(o: ReproduceOptions, t: Awaited<ReturnType<typeof realtimeTable>>): string[] {
  if (t.rows.length === 0) return [];
  const cell = (c: RealtimeCell) =>
    `${c.score.toFixed(3)} / ${c.success.toFixed(2)} / ${c.completionSeconds === null ? '-' : `${c.completionSeconds.toFixed(1)} s`}${c.meanDelayPeriods === null ? '' : ` (delay ${c.meanDelayPeriods.toFixed(1)})`}`;
  return [
    `Perturbed PushT (the block is moved ${o.perturb === 1 ? 'once' : `${o.perturb} times`} per episode when the agent comes near it), first training seed, ${o.testSeeds.length} test seeds. ` +
      'Each cell: score / success / completion time (simulated seconds to success), and the mean delay in 100 ms control periods between an observation and the first action of its chunk.',
    '',
    `| method | ${t.columns.join(' | ')} |`,
    `|---|${t.columns.map(() => '---').join('|')}|`,
    ...t.rows.map((r) => `| ${r.method} | ${r.cells.map(cell).join(' | ')} |`),
    '',
  ];
}

interface Curve {
  label: string;
  seeds: number;
  points: CurvePoint[];
}

async function readCurves(o: ReproduceOptions): Promise<Curve[]> {
  const curves: Curve[] = [];
  for (const teacher of o.teachers) {
    const dir = seedDir(o, o.trainSeeds[0], teacher);
    for (const f of (await fs.readdir(dir)).filter((n) => n.startsWith('curve-')).sort()) {
      const c = await readJson<Curve>(path.join(dir, f));
      if (c) curves.push(c);
    }
  }
  return curves;
}

function curveTable(curves: Curve[]): string[] {
  if (curves.length === 0) return [];
  const steps = [...new Set(curves.flatMap((c) => c.points.map((p) => p.step)))].sort((a, b) => a - b);
  return [
    `Learning curves (first training seed, score on the first ${curves[0].seeds} test seeds, against distillation steps):`,
    '',
    `| steps | ${curves.map((c) => c.label).join(' | ')} |`,
    `|---|${curves.map(() => '---').join('|')}|`,
    ...steps.map((st) => `| ${st} | ${curves.map((c) => c.points.find((p) => p.step === st)?.score.toFixed(3) ?? '-').join(' | ')} |`),
    '',
  ];
}

async function aggregate(o: ReproduceOptions): Promise<{ rows: AggregateRow[]; timing: Record<string, number[]> }> {
  const rows: AggregateRow[] = [];
  for (const spec of rowSpecs(o.teachers)) {
    const evals: StoredEval[] = [];
    for (const seed of o.trainSeeds) {
      const e = await readJson<StoredEval>(path.join(seedDir(o, seed, spec.teacher), 'eval', `${spec.slug}.json`));
      if (!e) throw new Error(`${seedDir(o, seed, spec.teacher)}: no evaluation for ${spec.slug}; rerun the recipe to finish it`);
      evals.push(e);
    }
    const all = summarize(evals.flatMap((e) => e.episodes), 0);
    // Latency of the first seed's policy, measured alone on the machine.
    const policy = await loadRowPolicy(seedDir(o, o.trainSeeds[0], spec.teacher), spec);
    const lat = pushtLatency(policy, o.testSeeds, o.latencyReps);
    policy.dispose();
    const perSeed = evals.map((e) => e.meanScore);
    const [score, scoreSeedStd] = meanStd(perSeed);
    rows.push({
      method: spec.label,
      teacher: spec.teacher,
      nfe: lat.nfe,
      score,
      scoreSeedStd,
      scoreEpisodeStd: all.stdScore,
      success: all.successRate,
      completionSteps: all.meanStepsToSuccess,
      perSeed,
      obsMs: lat.obsEncodingMs,
      actionMs: lat.actionPredictionMs,
      hz: lat.hz,
    });
    log(`${spec.label}: score ${rows[rows.length - 1].score.toFixed(3)}, action ${lat.actionPredictionMs.toFixed(2)} ms`);
  }
  const timing: Record<string, number[]> = {};
  for (const teacher of o.teachers)
    for (const seed of o.trainSeeds) {
      const t = (await readJson<Record<string, number>>(path.join(seedDir(o, seed, teacher), 'timing.json'))) ?? {};
      for (const [k, v] of Object.entries(t)) (timing[`${teacher} ${k}`] ??= []).push(v);
    }
  return { rows, timing };
}

function renderReport(o: ReproduceOptions, rows: AggregateRow[], timing: Record<string, number[]>, curves: Curve[], rt: Awaited<ReturnType<typeof realtimeTable>>, info: { frames: number; params: number; encoderParams: number; backend: string }): string {
  const f = (v: number, d = 3) => v.toFixed(d);
  const ratio = (a: string, b: string) => {
    const ra = rows.find((r) => r.method === a);
    const rb = rows.find((r) => r.method === b);
    return ra && rb ? `${(ra.actionMs / rb.actionMs).toFixed(1)}x` : '-';
  };
  const t = (k: string) => meanStd(timing[k] ?? [])[0];
  const image = o.experiment === 'pusht-image';
  const lines = [
    `# onedp reproduce ${o.experiment}`,
    '',
    `${o.episodes} scripted-expert demonstrations (${info.frames} frames); ` +
      (image ? `observation: 96x96 camera frames (random 84x84 crops in training, centre crops in evaluation) + agent position; ResNet-18 encoder with stage widths ${o.encoderWidths.join('/')} (GroupNorm, spatial softmax, ${(info.encoderParams / 1e6).toFixed(2)}M parameters); ` : 'observation: 9 block keypoints + agent position; ') +
      `ConditionalUnet1D ${o.downDims.join('/')} (step embedding ${o.stepEmbed}, ${(info.params / 1e6).toFixed(2)}M parameters), ` +
      `${o.trainSteps} steps at batch ${o.batchSize}, lr ${o.lr}; OneDP distillation ${o.distillSteps} steps at batch ${o.distillBatchSize} per method (lr ${o.lrGenerator} / ${o.lrScore}, ${DEFAULT_DISTILL_CONFIG.lrSchedule} schedule, generator average ${DEFAULT_DISTILL_CONFIG.emaDecay}), CP ${o.cpSteps} steps at batch ${o.batchSize}; training seeds ${o.trainSeeds.join(', ')}; ` +
      `${o.testSeeds.length} test seeds (${o.testSeeds[0]}..${o.testSeeds[o.testSeeds.length - 1]}), the same for every row. Backend: ${info.backend}.`,
    '',
    'Score: mean over training seeds of the mean max-coverage over test episodes (+- std across training seeds; episode std in brackets). ' +
      'Latency: median of batch-1 calls of the first seed\'s policy, measured after training with nothing else running.',
    '',
    '| method | teacher | NFE | score | per seed | success | steps to success | obs ms | action ms | Hz |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.method} | ${r.teacher.toUpperCase()} | ${r.nfe} | ${f(r.score)} +- ${f(r.scoreSeedStd)} (${f(r.scoreEpisodeStd, 2)}) | ${r.perSeed.map((s) => f(s, 2)).join(' / ')} | ${f(r.success, 2)} | ${r.completionSteps === null ? '-' : r.completionSteps.toFixed(1)} | ${f(r.obsMs, 3)} | ${f(r.actionMs, 2)} | ${r.hz.toFixed(1)} |`,
    ),
    '',
    `Action-latency ratios: DDPM-100 / OneDP-S ${ratio('DP (DDPM)', 'OneDP-S')}, DDIM-10 / OneDP-S ${ratio('DP (DDIM)', 'OneDP-S')}, ` +
      `DDPM-100 / OneDP-D ${ratio('DP (DDPM)', 'OneDP-D')}, DDIM-10 / OneDP-D ${ratio('DP (DDIM)', 'OneDP-D')}.`,
    '',
    'Stage wall-clock (mean over seeds) as it ran, with the seeds in parallel processes and whatever else the machine did; `npm run bench -- --only distill` gives the per-step cost ratios measured back to back.',
    '',
    '| stage (mean over seeds) | seconds | share of pre-training |',
    '|---|---|---|',
    ...Object.keys(timing).map((k) => {
      const teacher = k.split(' ')[0];
      return `| ${k} | ${t(k).toFixed(0)} | ${k.endsWith('pretraining') ? '-' : `${((100 * t(k)) / t(`${teacher} pretraining`)).toFixed(1)}%`} |`;
    }),
    '',
    ...curveTable(curves),
    ...realtimeMarkdown(o, rt),
  ];
  return lines.join('\n');
}

export async function reproducePushTState(o: ReproduceOptions, stage: 'all' | 'seed' | 'report', argv: string[]): Promise<void> {
  await fs.mkdir(o.out, { recursive: true });
  const backend = await initEngine();
  if (stage !== 'seed' && !(await exists(path.join(dataPath(o), '.zgroup')))) {
    log(`collecting ${o.episodes} expert demonstrations`);
    const res = collectPushT({ episodes: o.episodes, seed: 0, images: o.experiment === 'pusht-image' });
    await writeReplayBuffer(dataPath(o), res.buffer);
  }
  if (stage === 'seed') {
    for (const s of o.trainSeeds) await runSeed(o, s);
    return;
  }
  if (stage === 'all') {
    if (o.jobs > 1 && o.trainSeeds.length * o.teachers.length > 1) await runSeedsInParallel(o, argv);
    else for (const s of o.trainSeeds) await runSeed(o, s);
  }
  const { rows, timing } = await aggregate(o);
  const buffer = await loadBuffer(o);
  const dp = await loadDiffusionPolicy(path.join(seedDir(o, o.trainSeeds[0], o.teachers[0]), 'dp'));
  const curves = await readCurves(o);
  const rt = o.realtimeNfeMs.length ? await realtimeTable(o) : { columns: [], rows: [] };
  const encoderParams = dp.model.obsEncoder?.numParameters() ?? 0;
  const report = renderReport(o, rows, timing, curves, rt, { frames: buffer.numFrames, params: dp.unet.numParameters(), encoderParams, backend });
  dp.dispose();
  await writeFileAtomic(path.join(o.out, 'report.md'), report);
  await writeFileAtomic(path.join(o.out, 'results.json'), JSON.stringify({ options: o, rows, timing, curves, realtime: rt }, null, 1));
  console.log(report);
}

function dropoutFlag(v: string): number {
  const x = Number(v);
  if (!(x >= 0 && x < 1)) throw new UsageError(`--cp-dropout must be in [0, 1), got "${v}"`);
  return x;
}

function perturbFlag(v: string): number {
  const n = Number(v);
  if (![0, 1, 2].includes(n)) throw new UsageError(`--perturb must be 0, 1 or 2, got "${v}"`);
  return n;
}

export function registerReproduceCommand(program: Command): void {
  program
    .command('reproduce')
    .description('the larger experiment behind the README table (resumable; rerun the same command to continue)')
    .argument('<experiment>', 'pusht-state or pusht-image')
    .option('--out <dir>', 'run directory (default runs/reproduce-<experiment>)')
    .option('--episodes <n>', 'expert demonstrations (default: state 200, image 100)')
    .option('--train-steps <n>', 'pre-training steps per teacher (default: state 5000, image 2000)')
    .option('--batch-size <n>', 'batch size (default: state 64, image 32)')
    .option('--lr <x>', 'pre-training learning rate', '1e-3')
    .option('--down-dims <list>', 'U-Net channels', '32,64')
    .option('--step-embed <n>', 'diffusion step embedding size', '64')
    .option('--encoder-widths <list>', 'pusht-image: ResNet-18 stage widths (the spec\'s: 64,128,256,512)', '16,32,64,128')
    .option('--distill-steps <n>', 'OneDP distillation steps per method (default: 200)')
    .option('--distill-batch-size <n>', 'OneDP distillation batch size', String(DEFAULT_DISTILL_CONFIG.batchSize))
    .option('--cp-steps <n>', 'Consistency Policy distillation steps (default: state 300, image 200)')
    .option('--lr-generator <x>', 'OneDP generator learning rate', String(DEFAULT_DISTILL_CONFIG.lrGenerator))
    .option('--lr-score <x>', 'OneDP-S score-network learning rate', String(DEFAULT_DISTILL_CONFIG.lrScore))
    .option('--cp-lr <x>', 'Consistency Policy learning rate (paper 1e-4)', '1e-3')
    .option('--cp-dropout <x>', 'Consistency Policy dropout (paper 0.2)', '0')
    .option('--curve-every <n>', 'evaluate the first seed\'s one-step policies every N distillation steps (0: off; default: state 50, image 0)')
    .option('--curve-seeds <n>', 'test seeds per learning-curve point', '50')
    .option('--realtime-nfe-ms <list>', 'real-time table: simulated ms per network evaluation, one column each ("" for none; default: state 3,86, image none)')
    .option('--perturb <n>', 'real-time table: block moves per episode (0-2)', '1')
    .option('--curve-seed <n>', 'training seed whose learning curves are recorded (default: the first)')
    .option('--train-seeds <list>', 'training seeds (default: state 0,1, image 0)')
    .option('--teachers <list>', 'ddpm, edm or both', 'ddpm,edm')
    .option('--test-seeds <A:B>', 'test seeds', '100000:100100')
    .option('--latency-reps <n>', 'batch-1 calls per latency measurement', '30')
    .option('--jobs <n>', '(training seed, teacher) pairs run in parallel processes', '2')
    .option('--stage <s>', 'all, seed (train/distil/evaluate the given seeds only) or report', 'all')
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .action(async (experiment: string, f: Record<string, string>) => {
      if (experiment !== 'pusht-state' && experiment !== 'pusht-image') throw new UsageError(`unknown experiment "${experiment}"; available: pusht-state, pusht-image`);
      const image = experiment === 'pusht-image';
      const dflt = (v: string | undefined, state: string, img: string) => v ?? (image ? img : state);
      f.out = dflt(f.out, 'runs/reproduce-pusht-state', 'runs/reproduce-pusht-image');
      f.episodes = dflt(f.episodes, '200', '100');
      f.trainSteps = dflt(f.trainSteps, '5000', '2000');
      f.batchSize = dflt(f.batchSize, '64', '32');
      f.distillSteps = dflt(f.distillSteps, '200', '200');
      f.cpSteps = dflt(f.cpSteps, '300', '200');
      f.curveEvery = dflt(f.curveEvery, '50', '0');
      f.realtimeNfeMs = dflt(f.realtimeNfeMs, '3,86', '');
      f.trainSeeds = dflt(f.trainSeeds, '0,1', '0');
      if (!['all', 'seed', 'report'].includes(f.stage)) throw new UsageError(`--stage must be all, seed or report, got "${f.stage}"`);
      let testSeeds: number[];
      try {
        testSeeds = parseSeedRange(f.testSeeds);
      } catch (e) {
        throw new UsageError(`--test-seeds: ${(e as Error).message}`);
      }
      const teachers = f.teachers.split(',').map((s) => s.trim());
      for (const t of teachers) if (t !== 'ddpm' && t !== 'edm') throw new UsageError(`--teachers: "${t}" is not ddpm or edm`);
      const positive = (name: string, v: string) => {
        const x = Number(v);
        if (!(x > 0)) throw new UsageError(`--${name} must be a positive number, got "${v}"`);
        return x;
      };
      const lr = positive('lr', f.lr);
      const o: ReproduceOptions = {
        experiment,
        out: resolvePath(f.out),
        episodes: parseIntFlag('episodes', f.episodes),
        trainSteps: parseIntFlag('train-steps', f.trainSteps),
        batchSize: parseIntFlag('batch-size', f.batchSize),
        lr,
        downDims: parseIntList('down-dims', f.downDims),
        stepEmbed: parseIntFlag('step-embed', f.stepEmbed),
        encoderWidths: parseIntList('encoder-widths', f.encoderWidths),
        distillSteps: parseIntFlag('distill-steps', f.distillSteps),
        distillBatchSize: parseIntFlag('distill-batch-size', f.distillBatchSize),
        cpSteps: parseIntFlag('cp-steps', f.cpSteps),
        lrGenerator: positive('lr-generator', f.lrGenerator),
        lrScore: positive('lr-score', f.lrScore),
        cpLr: positive('cp-lr', f.cpLr),
        cpDropout: dropoutFlag(f.cpDropout),
        curveEvery: Number(f.curveEvery) === 0 ? 0 : parseIntFlag('curve-every', f.curveEvery),
        curveSeeds: parseIntFlag('curve-seeds', f.curveSeeds),
        trainSeeds: parseIntList('train-seeds', f.trainSeeds, { min: 0 }),
        curveSeed: f.curveSeed === undefined ? undefined : parseIntList('curve-seed', f.curveSeed, { min: 0 })[0],
        realtimeNfeMs: f.realtimeNfeMs.trim() === '' ? [] : f.realtimeNfeMs.split(',').map((v) => positive('realtime-nfe-ms', v)),
        perturb: perturbFlag(f.perturb),
        teachers: teachers as Teacher[],
        testSeeds,
        latencyReps: parseIntFlag('latency-reps', f.latencyReps),
        jobs: parseIntFlag('jobs', f.jobs),
        progress: f.progress as 'auto',
      };
      // The child processes get the same flags (minus the ones they override).
      const argv = process.argv.slice(2).filter((_, i, a) => !OVERRIDDEN.includes(a[i]) && !OVERRIDDEN.includes(a[i - 1]));
      await reproducePushTState(o, f.stage as 'all', argv);
    });
}

/**
 * The experiment pipeline behind `onedp quickstart` and `onedp reproduce` (PushT, and the MuJoCo
 * tasks through `task.ts`): expert
 * demonstrations -> a diffusion-policy teacher per (training seed, noise schedule) -> OneDP-S,
 * OneDP-D and Consistency Policy students -> every row of the table evaluated on the same test
 * seeds -> aggregation over training seeds, batch-1 latency on a quiet machine, the real-time
 * perturbed table, learning curves and the report.
 *
 * Every stage writes its result into the run directory and is skipped when it is already there,
 * so a killed run continues where it stopped (training resumes from its checkpoint). Each
 * attempt at a stage is timed separately (`timing.json`). (Training seed, teacher) pairs can run
 * as parallel processes (`jobs`), the cores shared out between them.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { defaultVisionConfig } from '../policy/obs_encoder.js';
import type { ReplayBuffer } from '../data/replay.js';
import { defaultPolicyConfig, type DiffusionPolicy } from '../policy/diffusion_policy.js';
import { trainPolicy } from '../train/trainer.js';
import { latestCheckpoint, loadCheckpoint } from '../train/checkpoint.js';
import { loadDiffusionPolicy, loadPolicy } from '../policy/load.js';
import { distillOneDp, resolveDistillConfig } from '../distill/distill.js';
import { distillConsistency } from '../distill/consistency.js';
import { DDIMScheduler, DDPMScheduler, EDMScheduler } from '../diffusion/index.js';
import type { NoiseScheduler } from '../diffusion/types.js';
import { meanStd, summarize, type EpisodeResult } from '../eval/harness.js';
import { evaluatePushT } from '../eval/pusht.js';
import { experimentTask } from './task.js';
import { writeFileAtomic } from '../io/safetensors.js';
import type { Policy } from '../policy/types.js';
import { describeEngine } from '../engine/index.js';
import { childNodeArgs, runInProcesses } from './processes.js';
import { noiseKind, validateExperiment, type ExperimentOptions, type NoiseKind, type RowSlug } from './recipe.js';

const log = (s: string) => process.stderr.write(`[experiment] ${s}\n`);

/** One row of the table: which checkpoint, sampled how. */
export interface RowSpec {
  slug: RowSlug;
  label: string;
  teacher: NoiseKind;
  /** The checkpoint directory under the teacher's directory. */
  policy: 'dp' | 'onedp-s' | 'onedp-d' | 'cp';
  sampler?: () => NoiseScheduler;
  /** Consistency Policy: chained steps. */
  steps?: number;
}

const ROW_SPECS: RowSpec[] = [
  { slug: 'dp-ddpm-100', label: 'DP (DDPM)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDPMScheduler() },
  { slug: 'dp-ddim-10', label: 'DP (DDIM)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDIMScheduler({ numInferenceSteps: 10 }) },
  { slug: 'dp-ddim-1', label: 'DP (DDIM, 1 step)', teacher: 'ddpm', policy: 'dp', sampler: () => new DDIMScheduler({ numInferenceSteps: 1 }) },
  { slug: 'onedp-d', label: 'OneDP-D', teacher: 'ddpm', policy: 'onedp-d' },
  { slug: 'onedp-s', label: 'OneDP-S', teacher: 'ddpm', policy: 'onedp-s' },
  { slug: 'dp-edm-18', label: 'DP-EDM (Heun 18)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 18 }) },
  { slug: 'dp-edm-10', label: 'DP-EDM (Heun 10)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 10 }) },
  { slug: 'dp-edm-1', label: 'DP-EDM (1 step)', teacher: 'edm', policy: 'dp', sampler: () => new EDMScheduler({ numSteps: 1 }) },
  { slug: 'onedp-d', label: 'OneDP-D (EDM teacher)', teacher: 'edm', policy: 'onedp-d' },
  { slug: 'onedp-s', label: 'OneDP-S (EDM teacher)', teacher: 'edm', policy: 'onedp-s' },
  { slug: 'cp-1', label: 'CP (1 step)', teacher: 'edm', policy: 'cp', steps: 1 },
  { slug: 'cp-3', label: 'CP (3 steps)', teacher: 'edm', policy: 'cp', steps: 3 },
];

/** The table's rows for these options, in table order. */
export function rowSpecs(o: Pick<ExperimentOptions, 'teachers' | 'rows'>, teacher?: NoiseKind): RowSpec[] {
  return ROW_SPECS.filter((r) => o.teachers.includes(r.teacher) && o.rows.includes(r.slug) && (teacher === undefined || r.teacher === teacher));
}

export const obsSpecOf = (o: Pick<ExperimentOptions, 'experiment'>): string => experimentTask(o.experiment).obsSpec;
export const seedDir = (o: ExperimentOptions, seed: number, teacher: NoiseKind): string => path.join(o.out, `seed-${seed}`, teacher);
export const dataPath = (o: ExperimentOptions): string => path.join(o.out, experimentTask(o.experiment).dataFile);
const curveSeedOf = (o: ExperimentOptions): number => o.curveSeed ?? o.trainSeeds[0];

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

export async function readJson<T>(p: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.readFile(p, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Stage -> the wall-clock seconds of each attempt (a stage resumed after a kill has several). */
export type Timing = Record<string, number[]>;

async function recordAttempt(dir: string, stage: string, seconds: number): Promise<void> {
  const file = path.join(dir, 'timing.json');
  const t = (await readJson<Timing>(file)) ?? {};
  (t[stage] ??= []).push(seconds);
  await writeFileAtomic(file, JSON.stringify(t, null, 1));
}

async function checkpointStep(dir: string): Promise<number> {
  try {
    return Number((await loadCheckpoint(dir)).meta.step ?? 0);
  } catch {
    return -1;
  }
}

export async function loadBuffer(o: ExperimentOptions): Promise<ReplayBuffer> {
  return experimentTask(o.experiment).loadBuffer(dataPath(o));
}

export async function loadRowPolicy(dir: string, spec: RowSpec): Promise<Policy> {
  if (!spec.sampler) return loadPolicy(path.join(dir, spec.policy), spec.steps ? { steps: spec.steps } : {});
  const dp = await loadDiffusionPolicy(path.join(dir, spec.policy));
  dp.sampler = spec.sampler();
  return dp;
}

export interface StoredEval {
  meanScore: number;
  stdScore: number;
  successRate: number;
  meanStepsToSuccess: number | null;
  wallSeconds: number;
  episodes: EpisodeResult[];
}

export interface CurvePoint {
  step: number;
  score: number;
  success: number;
  /** Wall-clock of the stage up to this point, evaluations excluded. */
  seconds: number;
}

export interface Curve {
  label: string;
  /** What the steps count: distillation or pre-training. */
  kind: 'distill' | 'pretrain';
  teacher: NoiseKind;
  seeds: number;
  points: CurvePoint[];
}

/** Collects the demonstrations once. */
export async function ensureDemonstrations(o: ExperimentOptions): Promise<void> {
  const task = experimentTask(o.experiment);
  if (await task.hasData(dataPath(o))) return;
  log(`collecting ${o.episodes} expert demonstrations`);
  const t0 = performance.now();
  await fs.mkdir(o.out, { recursive: true });
  await task.collect(o.episodes, dataPath(o));
  await recordAttempt(o.out, 'demonstrations', (performance.now() - t0) / 1000);
}

/**
 * Evaluations on the curve seed's first `curveSeeds` test seeds, their time kept apart from the
 * stage's. Points of an earlier attempt (`prior`) are kept and not measured again, and the
 * seconds of new points continue from the last of them.
 */
function curveRecorder(o: ExperimentOptions, seed: number, label: string, kind: Curve['kind'], teacher: NoiseKind, every: number, prior: Curve | null = null) {
  const points: CurvePoint[] = [...(prior?.points ?? [])];
  const offset = points.length ? points[points.length - 1].seconds : 0;
  const on = every > 0 && seed === curveSeedOf(o);
  const started = performance.now();
  let evalMs = 0;
  const seeds = o.testSeeds.slice(0, o.curveSeeds);
  const task = experimentTask(o.experiment);
  const measure = async (step: number, policy: Policy) => {
    if (points.some((p) => p.step === step)) return;
    const t0 = performance.now();
    const r = await task.evaluate(policy, seeds);
    points.push({ step, score: r.meanScore, success: r.successRate, seconds: offset + (t0 - started - evalMs) / 1000 });
    evalMs += performance.now() - t0;
    log(`curve ${label} step ${step}: score ${r.meanScore.toFixed(3)}`);
  };
  return {
    on,
    measure,
    evalSeconds: () => evalMs / 1000,
    save: async (file: string) => {
      if (on) await writeFileAtomic(file, JSON.stringify({ label, kind, teacher, seeds: seeds.length, points } satisfies Curve, null, 1));
    },
  };
}

/** Pre-trains the teacher unless its checkpoint has the steps; true when it trained. */
async function pretrainStage(o: ExperimentOptions, seed: number, teacher: NoiseKind, buffer: ReplayBuffer, dir: string): Promise<boolean> {
  const dpDir = path.join(dir, 'dp');
  const have = await checkpointStep(dpDir);
  if (have === o.trainSteps) return false;
  // Resuming cannot shorten a run: a teacher trained past the recipe would be reported under the wrong step count.
  if (have > o.trainSteps) throw new Error(`${dpDir}: the teacher has trained ${have} steps, the recipe asks ${o.trainSteps}; use another --out, or remove that folder to train again`);
  log(have > 0 ? `seed ${seed} ${teacher}: pre-training resumes at step ${have} of ${o.trainSteps}` : `seed ${seed} ${teacher}: pre-training ${o.trainSteps} steps`);
  const image = experimentTask(o.experiment).image;
  // Image policies see the agent's position beside the camera; others the whole low-dimensional observation.
  const policyConfig = defaultPolicyConfig(image ? 2 : buffer.frameSize('obs'), buffer.frameSize('action'), {
    unet: { diffusionStepEmbedDim: o.stepEmbed, downDims: o.downDims, kernelSize: 5, nGroups: 8, condPredictScale: true },
    noise: noiseKind(teacher),
    ...(image ? { vision: defaultVisionConfig({ widths: o.encoderWidths }) } : {}),
  });
  const curveFile = path.join(dir, 'curve-pretrain.json');
  const curve = curveRecorder(o, seed, `DP (${teacher.toUpperCase()})`, 'pretrain', teacher, o.pretrainCurveEvery, await readJson<Curve>(curveFile));
  const checkpointEvery = curve.on ? o.pretrainCurveEvery : Math.max(500, Math.floor(o.trainSteps / 6));
  const res = await trainPolicy({
    policy: policyConfig,
    buffer,
    outDir: dpDir,
    resume: true,
    train: { steps: o.trainSteps, batchSize: o.batchSize, lr: o.lr, seed, warmupSteps: Math.min(500, Math.floor(o.trainSteps / 10)), checkpointEvery },
    progress: o.progress,
    provenance: { dataset: dataPath(o), obsSpec: obsSpecOf(o), recipe: o.title },
    ...(curve.on
      ? {
          onCheckpoint: async ({ step, dir: ck }: { step: number; dir: string }) => {
            const dp = await loadDiffusionPolicy(ck);
            await curve.measure(step, dp);
            dp.dispose();
            // Saved at once: after a kill, resumed training does not pass these steps again.
            await curve.save(curveFile);
          },
        }
      : {}),
  });
  res.policy.dispose();
  await curve.save(curveFile);
  await recordAttempt(dir, 'pretraining', res.wallSeconds);
  return true;
}

/** The training step of the checkpoint a student was distilled from (-1: unknown). */
async function studentTeacherStep(dir: string): Promise<number> {
  try {
    const prov = (await loadCheckpoint(dir)).meta.provenance as { teacherStep?: number } | undefined;
    return Number(prov?.teacherStep ?? -1);
  } catch {
    return -1;
  }
}

/** Whether a student was distilled with these settings (the keys of `want` its config must equal). */
async function sameSettings(dir: string, want: Record<string, unknown>): Promise<boolean> {
  try {
    const have = (await loadCheckpoint(dir)).meta.distillConfig as Record<string, unknown> | undefined;
    return Object.entries(want).every(([k, v]) => have?.[k] === v);
  } catch {
    return false;
  }
}

/**
 * One distillation into `<dir>/<name>` unless its checkpoint is complete: a learning curve for
 * the curve seed, and the wall-clock without the curve's evaluations.
 */
async function distillStage(o: ExperimentOptions, seed: number, teacherKind: NoiseKind, buffer: ReplayBuffer, dir: string, name: 'onedp-s' | 'onedp-d' | 'cp'): Promise<boolean> {
  const steps = name === 'cp' ? o.cpSteps : o.distillSteps;
  const teacherStep = await checkpointStep(path.join(dir, 'dp'));
  const onedpConfig = name === 'cp' ? null : resolveDistillConfig({ method: name, steps, batchSize: o.distillBatchSize, seed, lrGenerator: o.lrGenerator, lrScore: o.lrScore });
  // OneDP-D has no score network, so its score rate does not matter.
  // The step count too: a student distilled for more steps than the recipe now asks is redone.
  const settings = onedpConfig
    ? { steps, lrGenerator: onedpConfig.lrGenerator, batchSize: onedpConfig.batchSize, ...(name === 'onedp-s' ? { lrScore: onedpConfig.lrScore } : {}) }
    : { steps, lr: o.cpLr, dropout: o.cpDropout, batchSize: o.batchSize };
  // Done unless unfinished, distilled from another state of the teacher, or with other settings.
  const student = path.join(dir, name);
  if ((await checkpointStep(student)) >= steps && (await studentTeacherStep(student)) === teacherStep && (await sameSettings(student, settings))) return false;
  log(`seed ${seed} ${teacherKind}: distilling ${name}, ${steps} steps`);
  const teacher: DiffusionPolicy = await loadDiffusionPolicy(path.join(dir, 'dp'));
  const label = name === 'cp' ? `CP 1-step (${teacherKind} teacher)` : `${name} (${teacherKind} teacher)`;
  const curve = curveRecorder(o, seed, label, 'distill', teacherKind, o.curveEvery);
  const hook = curve.on ? { snapshotEvery: o.curveEvery, onSnapshot: (step: number, p: Policy) => curve.measure(step, p) } : {};
  const provenance = { teacher: path.join(dir, 'dp'), teacherStep, dataset: dataPath(o), obsSpec: obsSpecOf(o) };
  const outDir = path.join(dir, name);
  const res =
    name === 'cp'
      ? await distillConsistency({ teacher, buffer, config: { steps, batchSize: o.batchSize, seed, lr: o.cpLr, dropout: o.cpDropout }, outDir, progress: o.progress, provenance, ...hook })
      : await distillOneDp({ teacher, buffer, config: onedpConfig!, outDir, progress: o.progress, provenance, ...hook });
  await curve.save(path.join(dir, `curve-${name}.json`));
  res.policy.dispose();
  teacher.dispose();
  await recordAttempt(dir, `distill ${name}`, res.wallSeconds - curve.evalSeconds());
  return true;
}

/** Everything for one (training seed, teacher): train, distil, evaluate every row (no latency). */
export async function runSeed(o: ExperimentOptions, seed: number, teacher: NoiseKind): Promise<void> {
  const buffer = await loadBuffer(o);
  const dir = seedDir(o, seed, teacher);
  await fs.mkdir(dir, { recursive: true });
  const rows = rowSpecs(o, teacher);
  // An evaluation is stale once its policy was trained again.
  const invalidate = async (policy: RowSpec['policy']) => {
    for (const r of rows) if (r.policy === policy) await fs.rm(path.join(dir, 'eval', `${r.slug}.json`), { force: true });
  };
  if (await pretrainStage(o, seed, teacher, buffer, dir)) await invalidate('dp');
  for (const method of ['onedp-s', 'onedp-d', 'cp'] as const) {
    if (rows.some((r) => r.policy === method) && (await distillStage(o, seed, teacher, buffer, dir, method))) await invalidate(method);
  }
  for (const spec of rows) {
    const file = path.join(dir, 'eval', `${spec.slug}.json`);
    if (await exists(file)) continue;
    const policy = await loadRowPolicy(dir, spec);
    const res = await experimentTask(o.experiment).evaluate(policy, o.testSeeds);
    policy.dispose();
    log(`seed ${seed} ${spec.label}: score ${res.meanScore.toFixed(3)}, success ${res.successRate.toFixed(2)} (${res.wallSeconds.toFixed(0)} s)`);
    const stored: StoredEval = { meanScore: res.meanScore, stdScore: res.stdScore, successRate: res.successRate, meanStepsToSuccess: res.meanStepsToSuccess, wallSeconds: res.wallSeconds, episodes: res.episodes };
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, JSON.stringify(stored));
    await recordAttempt(dir, `eval ${spec.slug}`, res.wallSeconds);
  }
}

/** The child process that runs one (seed, teacher) pair: see seed_worker.ts. */
function workerEntry(): string {
  const here = import.meta.url;
  return fileURLToPath(new URL(here.endsWith('.ts') ? './seed_worker.ts' : './seed_worker.js', here));
}

/** Runs every (training seed, teacher) pair as a child process, at most `jobs` at a time. */
async function runPairsInParallel(o: ExperimentOptions): Promise<void> {
  const optionsFile = path.join(o.out, 'options.json');
  await writeFileAtomic(optionsFile, JSON.stringify(o, null, 1));
  const jobs = o.trainSeeds.flatMap((seed) =>
    o.teachers.map((teacher) => ({ label: `training seed ${seed} (${teacher} teacher)`, args: [...childNodeArgs(workerEntry()), optionsFile, String(seed), teacher] })),
  );
  await runInProcesses(jobs, o.jobs);
}

export interface AggregateRow {
  slug: RowSlug;
  method: string;
  teacher: NoiseKind;
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

export interface RealtimeCell {
  score: number;
  success: number;
  completionSeconds: number | null;
  meanDelayPeriods: number | null;
}

export interface RealtimeTable {
  columns: string[];
  rows: { method: string; cells: RealtimeCell[] }[];
}

/** Identifies the checkpoint a row's policy loads: a digest of its checkpoint.json. */
async function policyStamp(dir: string, policy: RowSpec['policy']): Promise<string> {
  const latest = await latestCheckpoint(path.join(dir, policy, 'checkpoints'));
  const text = latest ? await fs.readFile(path.join(latest, 'checkpoint.json'), 'utf8').catch(() => '') : '';
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * The dynamic case: the curve seed's policies on PushT whose block is moved when the agent nears
 * it, first with the simulator waiting for the policy, then in real time at a fixed per-NFE cost.
 */
async function realtimeTable(o: ExperimentOptions): Promise<RealtimeTable> {
  const columns = ['waits for the policy', ...o.realtimeNfeMs.map((ms) => `real time, ${ms} ms/NFE`)];
  const rows: RealtimeTable['rows'] = [];
  const specs = rowSpecs(o).filter((r) => ['dp-ddpm-100', 'dp-ddim-10', 'onedp-d', 'onedp-s', 'dp-edm-18'].includes(r.slug) && (r.teacher === 'ddpm' || r.slug !== 'onedp-d'));
  for (const spec of specs) {
    const cells: RealtimeCell[] = [];
    for (const ms of [0, ...o.realtimeNfeMs]) {
      const file = path.join(o.out, 'realtime', `${spec.teacher}-${spec.slug}-perturb${o.perturb}-${ms}ms.json`);
      // A cell is stale once its policy was trained or distilled again.
      const stamp = await policyStamp(seedDir(o, curveSeedOf(o), spec.teacher), spec.policy);
      let cell = await readJson<RealtimeCell & { policy?: string }>(file);
      if (!cell || cell.policy !== stamp) {
        const policy = await loadRowPolicy(seedDir(o, curveSeedOf(o), spec.teacher), spec);
        const res = evaluatePushT(policy, { seeds: o.testSeeds, batchSize: 50, latencyReps: 0, perturb: o.perturb, ...(ms > 0 ? { realtime: { latency: { kind: 'nfe' as const, perNfeMs: ms } } } : {}) });
        policy.dispose();
        cell = { score: res.meanScore, success: res.successRate, completionSeconds: res.meanCompletionSeconds, meanDelayPeriods: res.realtime?.meanDelayPeriods ?? null, policy: stamp };
        await fs.mkdir(path.dirname(file), { recursive: true });
        await writeFileAtomic(file, JSON.stringify(cell));
        log(`real time ${spec.label} ${ms} ms/NFE: score ${cell.score.toFixed(3)}, success ${cell.success.toFixed(2)}`);
      }
      cells.push(cell);
    }
    rows.push({ method: spec.label, cells });
  }
  return { columns, rows };
}

async function readCurves(o: ExperimentOptions): Promise<Curve[]> {
  const curves: Curve[] = [];
  for (const teacher of o.teachers) {
    const dir = seedDir(o, curveSeedOf(o), teacher);
    const files = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => n.startsWith('curve-')).sort();
    for (const f of files) {
      const c = await readJson<Curve>(path.join(dir, f));
      if (c) curves.push({ ...c, kind: c.kind ?? 'distill', teacher: c.teacher ?? teacher });
    }
  }
  return curves;
}

/** Per-row results over training seeds, with the curve seed's batch-1 latency measured now. */
async function aggregate(o: ExperimentOptions): Promise<{ rows: AggregateRow[]; timing: Record<string, Timing> }> {
  const rows: AggregateRow[] = [];
  for (const spec of rowSpecs(o)) {
    const evals: StoredEval[] = [];
    for (const seed of o.trainSeeds) {
      const e = await readJson<StoredEval>(path.join(seedDir(o, seed, spec.teacher), 'eval', `${spec.slug}.json`));
      if (!e) throw new Error(`${seedDir(o, seed, spec.teacher)}: no evaluation for ${spec.slug}; rerun the same command to finish it`);
      evals.push(e);
    }
    const all = summarize(evals.flatMap((e) => e.episodes), 0);
    const policy = await loadRowPolicy(seedDir(o, curveSeedOf(o), spec.teacher), spec);
    const lat = await experimentTask(o.experiment).latency(policy, o.testSeeds, o.latencyReps);
    policy.dispose();
    const perSeed = evals.map((e) => e.meanScore);
    const [score, scoreSeedStd] = meanStd(perSeed);
    rows.push({
      slug: spec.slug,
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
    log(`${spec.label}: score ${score.toFixed(3)}, success ${all.successRate.toFixed(2)}, action ${lat.actionPredictionMs.toFixed(2)} ms`);
  }
  const timing: Record<string, Timing> = { all: (await readJson<Timing>(path.join(o.out, 'timing.json'))) ?? {} };
  for (const teacher of o.teachers)
    for (const seed of o.trainSeeds) timing[`seed-${seed}/${teacher}`] = (await readJson<Timing>(path.join(seedDir(o, seed, teacher), 'timing.json'))) ?? {};
  return { rows, timing };
}

export interface ExperimentResult {
  options: ExperimentOptions;
  rows: AggregateRow[];
  timing: Record<string, Timing>;
  curves: Curve[];
  realtime: RealtimeTable;
  info: { frames: number; episodes: number; params: number; encoderParams: number; engine: string };
}

export type Stage = 'all' | 'train' | 'report';

/**
 * Runs the experiment: `all` trains what is missing and reports; `train` only trains, distils
 * and evaluates (no report); `report` only aggregates what is there. Returns the results and
 * writes `<out>/report.md` (with plots) and `results.json` unless `stage` is `train`.
 */
export async function runExperiment(o: ExperimentOptions, stage: Stage = 'all'): Promise<ExperimentResult | null> {
  validateExperiment(o);
  await fs.mkdir(o.out, { recursive: true });
  if (stage !== 'report') {
    await ensureDemonstrations(o);
    if (o.jobs > 1 && o.trainSeeds.length * o.teachers.length > 1) await runPairsInParallel(o);
    else for (const seed of o.trainSeeds) for (const teacher of o.teachers) await runSeed(o, seed, teacher);
  }
  if (stage === 'train') return null;
  const { rows, timing } = await aggregate(o);
  const buffer = await loadBuffer(o);
  const dp = await loadDiffusionPolicy(path.join(seedDir(o, curveSeedOf(o), o.teachers[0]), 'dp'));
  const info = { frames: buffer.numFrames, episodes: buffer.numEpisodes, params: dp.unet.numParameters(), encoderParams: dp.model.obsEncoder?.numParameters() ?? 0, engine: describeEngine() };
  dp.dispose();
  const curves = await readCurves(o);
  const realtime = o.realtimeNfeMs.length ? await realtimeTable(o) : { columns: [], rows: [] };
  const result: ExperimentResult = { options: o, rows, timing, curves, realtime, info };
  const { renderExperimentReport } = await import('./report.js');
  const report = await renderExperimentReport(result);
  await writeFileAtomic(path.join(o.out, 'report.md'), report);
  await writeFileAtomic(path.join(o.out, 'results.json'), JSON.stringify(result, null, 1));
  return result;
}

/**
 * `onedp reproduce <experiment>`: the larger experiments behind the README's tables: PushT
 * (state, image), a MuJoCo task (lift-ph, square-ph, lift-mh, square-mh), or `manipulation`, which
 * runs the MuJoCo tasks and writes the table across tasks with PushT as a column. A thin map from
 * flags onto presets of the experiment pipeline (src/experiments/).
 */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PRESETS, experimentOptions, type ExperimentOptions, type NoiseKind, type PresetName } from '../experiments/recipe.js';
import { runExperiment, type ExperimentResult } from '../experiments/pipeline.js';
import { combinedTable } from '../experiments/combined.js';
import { MANIPULATION_EXPERIMENTS, parseManipulationExperiment } from '../envs/mujoco/tasks.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { renderExperimentReport } from '../experiments/report.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';
import { experimentFlagOverrides, EXPERIMENT_FLAGS } from './experiment_flags.js';
import { parseThreadsFlag, startEngine, THREADS_OPTION } from './engine.js';

const EXPERIMENTS = ['pusht-state', 'pusht-image', ...MANIPULATION_EXPERIMENTS, 'manipulation'];
const MANIPULATION_DEFAULT = ['lift-ph', 'square-ph'];
/** Where `manipulation` looks for PushT's column when --pusht is not given. */
const PUSHT_RESULTS = 'runs/reproduce-pusht-state/results.json';

export function registerReproduceCommand(program: Command): void {
  const p = PRESETS['pusht-state'];
  const cmd = program
    .command('reproduce')
    .description('the larger experiment behind the README table (resumable; rerun the same command to continue)')
    .argument('<experiment>', EXPERIMENTS.join(', '))
    .option('--out <dir>', 'run directory (default runs/reproduce-<experiment>)');
  for (const [flag, help] of EXPERIMENT_FLAGS) cmd.option(flag, help);
  cmd
    .option('--train-seeds <list>', `training seeds (default: pusht-state ${p.trainSeeds.join(',')}, pusht-image and the MuJoCo tasks ${PRESETS['lift-ph'].trainSeeds.join(',')})`)
    .option('--teachers <list>', 'ddpm, edm or both (default both)')
    .option('--curve-seed <n>', "training seed whose curves are recorded (default: the first)")
    .option('--jobs <n>', `(training seed, teacher) pairs run in parallel processes (default ${p.jobs})`)
    .option('--stage <s>', 'all, seed (train, distil and evaluate only) or report', 'all')
    .option('--tasks <list>', `manipulation: the MuJoCo experiments, run one after the other (default ${MANIPULATION_DEFAULT.join(',')})`)
    .option('--pusht <results.json>', `manipulation: results of a PushT experiment for the PushT column (default: ${PUSHT_RESULTS} when it exists)`)
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .option(...THREADS_OPTION)
    .action(async (experiment: string, f: Record<string, string | undefined>) => {
      if (!(EXPERIMENTS as readonly string[]).includes(experiment)) throw new UsageError(`unknown experiment "${experiment}"; available: ${EXPERIMENTS.join(', ')}`);
      const stage = f.stage ?? 'all';
      if (!['all', 'seed', 'report'].includes(stage)) throw new UsageError(`--stage must be all, seed or report, got "${stage}"`);
      const over: Partial<ExperimentOptions> = experimentFlagOverrides(f);
      if (f.trainSeeds) over.trainSeeds = parseList('train-seeds', f.trainSeeds);
      if (f.teachers) {
        const teachers = f.teachers.split(',').map((s) => s.trim());
        for (const t of teachers) if (t !== 'ddpm' && t !== 'edm') throw new UsageError(`--teachers: "${t}" is not ddpm or edm`);
        over.teachers = teachers as NoiseKind[];
      }
      if (f.curveSeed !== undefined) over.curveSeed = parseIntFlag('curve-seed', f.curveSeed, 0);
      if (f.jobs) over.jobs = parseIntFlag('jobs', f.jobs);
      const threads = parseThreadsFlag(f.threads);
      const progress = (f.progress ?? 'auto') as 'auto';
      const out = resolvePath(f.out ?? `runs/reproduce-${experiment}`);
      const options = (name: PresetName, dir: string): ExperimentOptions => {
        try {
          return experimentOptions(name, { ...over, out: dir, progress });
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
      };
      if (experiment !== 'manipulation') {
        if (f.tasks || f.pusht) throw new UsageError('--tasks and --pusht apply to the manipulation experiment only');
        const o = options(experiment as PresetName, out);
        await startEngine(threads);
        const result = await runExperiment(o, stage === 'seed' ? 'train' : (stage as 'all' | 'report'));
        if (result) console.log(await renderExperimentReport(result));
        return;
      }
      const tasks = (f.tasks ?? MANIPULATION_DEFAULT.join(',')).split(',').map((t) => t.trim());
      for (const t of tasks) if (!parseManipulationExperiment(t)) throw new UsageError(`--tasks: "${t}" is not one of ${MANIPULATION_EXPERIMENTS.join(', ')}`);
      const all = tasks.map((t) => options(t as PresetName, path.join(out, t)));
      const pushtFile = resolvePath(f.pusht ?? PUSHT_RESULTS);
      const pusht = await readPushtResults(pushtFile, f.pusht !== undefined);
      await startEngine(threads);
      const results: ExperimentResult[] = [];
      for (const o of all) {
        const r = await runExperiment(o, stage === 'seed' ? 'train' : (stage as 'all' | 'report'));
        if (r) results.push(r);
      }
      if (stage === 'seed') return;
      const columns = [...(pusht ? [{ title: 'PushT', result: pusht }] : []), ...results.map((r, i) => ({ title: tasks[i], result: r }))];
      const report = [
        '# onedp reproduce manipulation: the table across tasks',
        '',
        pusht ? `PushT's column: ${path.relative(out, pushtFile)}.` : `No PushT column: run \`onedp reproduce pusht-state\` (or \`npm start\`) first, or pass --pusht <results.json>.`,
        '',
        ...combinedTable(columns),
        '',
        'Each task\'s own report (stage times, learning curves, plots): ' + tasks.map((t) => `[${t}](${t}/report.md)`).join(', ') + '.',
        '',
      ].join('\n');
      await writeFileAtomic(path.join(out, 'report.md'), report);
      await writeFileAtomic(path.join(out, 'results.json'), JSON.stringify({ pusht: pushtFile ?? null, tasks: results }, null, 1));
      console.log(report);
    });
}

/** A PushT experiment's results.json; null when the default file is absent. Anything else wrong is a usage error naming the file. */
async function readPushtResults(file: string, given: boolean): Promise<ExperimentResult | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    if (!given) return null;
    throw new UsageError(`--pusht: ${file} not found`);
  }
  let r: Partial<ExperimentResult>;
  try {
    r = JSON.parse(text) as Partial<ExperimentResult>;
  } catch (e) {
    throw new UsageError(`${file}: not JSON (${(e as Error).message})`);
  }
  if (!r || !Array.isArray(r.rows) || typeof r.options?.experiment !== 'string') throw new UsageError(`${file}: not an experiment's results.json (no rows and options)`);
  if (!r.options.experiment.startsWith('pusht')) throw new UsageError(`${file}: holds the results of ${r.options.experiment}, not of a PushT experiment`);
  return r as ExperimentResult;
}

function parseList(name: string, v: string): number[] {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.some((n) => !Number.isInteger(n) || n < 0)) throw new UsageError(`--${name} must be a comma-separated list of non-negative integers, got "${v}"`);
  return parts;
}

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
import { readJson, runExperiment, type ExperimentResult } from '../experiments/pipeline.js';
import { combinedTable } from '../experiments/combined.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { renderExperimentReport } from '../experiments/report.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';
import { experimentFlagOverrides, EXPERIMENT_FLAGS } from './experiment_flags.js';
import { parseThreadsFlag, startEngine, THREADS_OPTION } from './engine.js';

const SINGLE = ['pusht-state', 'pusht-image', 'lift-ph', 'square-ph', 'lift-mh', 'square-mh'] as const;
const EXPERIMENTS = [...SINGLE, 'manipulation'] as const;
const MANIPULATION_DEFAULT = ['lift-ph', 'square-ph'];
/** Where `manipulation` looks for PushT's column when --pusht is not given, in order. */
const PUSHT_RESULTS = ['runs/reproduce-pusht-state/results.json', 'runs/quickstart/results.json'];

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
    .option('--pusht <results.json>', `manipulation: results of a PushT experiment for the PushT column (default: the first of ${PUSHT_RESULTS.join(', ')} that exists)`)
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
      for (const t of tasks) if (!/^(lift|square)-(ph|mh)$/.test(t)) throw new UsageError(`--tasks: "${t}" is not one of lift-ph, square-ph, lift-mh, square-mh`);
      const all = tasks.map((t) => options(t as PresetName, path.join(out, t)));
      const pushtFile = f.pusht ? resolvePath(f.pusht) : await firstExisting(PUSHT_RESULTS.map((p) => resolvePath(p)));
      const pusht = pushtFile ? await readJson<ExperimentResult>(pushtFile) : null;
      if (f.pusht && !pusht) throw new UsageError(`--pusht: cannot read ${f.pusht} as an experiment's results.json`);
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
        pusht ? `PushT's column: ${path.relative(out, pushtFile!)}.` : `No PushT column: run \`onedp reproduce pusht-state\` (or \`npm start\`) first, or pass --pusht <results.json>.`,
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

async function firstExisting(files: string[]): Promise<string | null> {
  for (const file of files) {
    if (
      await fs.access(file).then(
        () => true,
        () => false,
      )
    )
      return file;
  }
  return null;
}

function parseList(name: string, v: string): number[] {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.some((n) => !Number.isInteger(n) || n < 0)) throw new UsageError(`--${name} must be a comma-separated list of non-negative integers, got "${v}"`);
  return parts;
}

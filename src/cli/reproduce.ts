/**
 * `onedp reproduce pusht-state|pusht-image`: the larger PushT experiments behind the README's
 * tables. A thin map from flags onto a preset of the experiment pipeline (src/experiments/).
 */
import type { Command } from 'commander';
import { PRESETS, experimentOptions, type ExperimentOptions, type NoiseKind } from '../experiments/recipe.js';
import { runExperiment } from '../experiments/pipeline.js';
import { renderExperimentReport } from '../experiments/report.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';
import { experimentFlagOverrides, EXPERIMENT_FLAGS } from './experiment_flags.js';
import { parseThreadsFlag, startEngine, THREADS_OPTION } from './engine.js';

const EXPERIMENTS = ['pusht-state', 'pusht-image'] as const;

export function registerReproduceCommand(program: Command): void {
  const p = PRESETS['pusht-state'];
  const cmd = program
    .command('reproduce')
    .description('the larger experiment behind the README table (resumable; rerun the same command to continue)')
    .argument('<experiment>', EXPERIMENTS.join(' or '))
    .option('--out <dir>', 'run directory (default runs/reproduce-<experiment>)');
  for (const [flag, help] of EXPERIMENT_FLAGS) cmd.option(flag, help);
  cmd
    .option('--train-seeds <list>', `training seeds (default: state ${p.trainSeeds.join(',')}, image ${PRESETS['pusht-image'].trainSeeds.join(',')})`)
    .option('--teachers <list>', 'ddpm, edm or both (default both)')
    .option('--curve-seed <n>', "training seed whose curves are recorded (default: the first)")
    .option('--jobs <n>', `(training seed, teacher) pairs run in parallel processes (default ${p.jobs})`)
    .option('--stage <s>', 'all, seed (train, distil and evaluate only) or report', 'all')
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
      let o: ExperimentOptions;
      try {
        o = experimentOptions(experiment as 'pusht-state', { ...over, out: resolvePath(f.out ?? `runs/reproduce-${experiment}`), progress: (f.progress ?? 'auto') as 'auto' });
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      await startEngine(threads);
      const result = await runExperiment(o, stage === 'seed' ? 'train' : (stage as 'all' | 'report'));
      if (result) console.log(await renderExperimentReport(result));
    });
}

function parseList(name: string, v: string): number[] {
  const parts = v.split(',').map((s) => Number(s.trim()));
  if (parts.some((n) => !Number.isInteger(n) || n < 0)) throw new UsageError(`--${name} must be a comma-separated list of non-negative integers, got "${v}"`);
  return parts;
}

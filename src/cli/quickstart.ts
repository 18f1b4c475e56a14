/**
 * `onedp quickstart` (the main job, `npm start`): the whole PushT pipeline on a small default,
 * the `quickstart` preset of the experiment pipeline (src/experiments/): expert demonstrations ->
 * DDPM diffusion policy -> OneDP-S and OneDP-D -> DP (DDPM-100, DDIM-10, DDIM-1) and both
 * one-step policies evaluated on the same test seeds -> a table in the shape of the paper's
 * Table 1 with latency, runs/<name>/report.md (with plots) and results.json. Resumable.
 */
import type { Command } from 'commander';
import * as path from 'node:path';
import { experimentOptions, type ExperimentOptions } from '../experiments/recipe.js';
import { runExperiment } from '../experiments/pipeline.js';
import { renderExperimentReport } from '../experiments/report.js';
import { UsageError } from './errors.js';
import { resolvePath } from './commands.js';
import { experimentFlagOverrides, EXPERIMENT_FLAGS } from './experiment_flags.js';
import { parseThreadsFlag, startEngine, THREADS_OPTION } from './engine.js';

export function registerQuickstartCommand(program: Command): void {
  const cmd = program
    .command('quickstart')
    .description('the end-to-end PushT pipeline on a small default (state: a few minutes on 2 cores with the native kernels; image: longer); resumable')
    .option('--obs <kind>', 'state (keypoints + agent position) or image (camera frames + agent position)', 'state')
    .option('--name <name>', 'run name under --runs (default quickstart, or quickstart-image)')
    .option('--runs <dir>', 'runs directory', 'runs');
  for (const [flag, help] of EXPERIMENT_FLAGS) cmd.option(flag, help);
  cmd
    .option('--progress <mode>', 'auto, bar, lines or none', 'auto')
    .option(...THREADS_OPTION)
    .action(async (f: Record<string, string | undefined>) => {
      if (f.obs !== 'state' && f.obs !== 'image') throw new UsageError(`--obs must be state or image, got "${f.obs}"`);
      const image = f.obs === 'image';
      const name = f.name ?? (image ? 'quickstart-image' : 'quickstart');
      const threads = parseThreadsFlag(f.threads);
      let o: ExperimentOptions;
      try {
        o = experimentOptions(image ? 'quickstart-image' : 'quickstart', { ...experimentFlagOverrides(f), out: path.join(resolvePath(f.runs ?? 'runs'), name), progress: (f.progress ?? 'auto') as 'auto' });
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      await startEngine(threads);
      const result = await runExperiment(o);
      if (result) console.log(await renderExperimentReport(result));
    });
}

/** `onedp study <grid>`: a recipe study (src/experiments/studies.ts), resumable, with plots. */
import type { Command } from 'commander';
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { STUDIES, studyConfigs } from '../experiments/studies.js';
import { runStudyConfig, studyDataset, type StudyCurve } from '../experiments/study.js';
import { renderStudyReport } from '../experiments/study_report.js';
import { childNodeArgs, runInProcesses } from '../experiments/processes.js';
import { parseSeedRange } from '../eval/harness.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';
import { startEngine } from './engine.js';

const log = (s: string) => process.stderr.write(`[study] ${s}\n`);

interface StudyFlags {
  out?: string;
  only?: string;
  jobs: string;
  testSeeds: string;
  report?: boolean;
  progress: string;
}

async function readCurves(root: string, names: string[]): Promise<StudyCurve[]> {
  const out: StudyCurve[] = [];
  for (const n of names) {
    try {
      out.push(JSON.parse(await fs.readFile(path.join(root, n, 'curve.json'), 'utf8')) as StudyCurve);
    } catch {
      // not run yet
    }
  }
  return out;
}

export function registerStudyCommand(program: Command): void {
  program
    .command('study')
    .argument('<grid>', `a recipe study: ${Object.keys(STUDIES).join(', ')}`)
    .description('train each configuration of a recipe study, evaluate it at every checkpoint, and plot score against steps and wall-clock')
    .option('--out <dir>', 'study directory (default runs/study-<grid>)')
    .option('--only <names>', 'comma-separated configuration names to run')
    .option('--jobs <n>', 'configurations trained at once, one process and core each', '2')
    .option('--test-seeds <A:B>', 'test seeds for every evaluation', '100000:100050')
    .option('--report', 'only render report.md and the plots from what has been measured')
    .option('--progress <mode>', 'auto, bar, lines or none', 'none')
    .action(async (grid: string, f: StudyFlags) => {
      if (!(grid in STUDIES)) throw new UsageError(`unknown study "${grid}"; known: ${Object.keys(STUDIES).join(', ')}`);
      const all = studyConfigs(grid);
      const names = f.only ? f.only.split(',').map((s) => s.trim()) : all.map((c) => c.name);
      const unknown = names.filter((n) => !all.some((c) => c.name === n));
      if (unknown.length) throw new UsageError(`--only: no configuration ${unknown.map((u) => `"${u}"`).join(', ')} in ${grid}; it has ${all.map((c) => c.name).join(', ')}`);
      let testSeeds: number[];
      try {
        testSeeds = parseSeedRange(f.testSeeds);
      } catch (e) {
        throw new UsageError(`--test-seeds: ${(e as Error).message}`);
      }
      const jobs = parseIntFlag('jobs', f.jobs);
      const root = resolvePath(f.out ?? path.join('runs', `study-${grid}`));
      await fs.mkdir(root, { recursive: true });
      if (!f.report) {
        if (jobs > 1 && names.length > 1) {
          // Demonstrations first, once per count, so parallel children never write the same dataset.
          for (const episodes of new Set(names.map((n) => all.find((c) => c.name === n)!.episodes))) await studyDataset(root, episodes);
          // One child per configuration, `jobs` at a time, the cores shared out between them.
          const child = (name: string) => [...childNodeArgs(process.argv[1]), 'study', grid, '--out', root, '--only', name, '--jobs', '1', '--test-seeds', f.testSeeds, '--progress', f.progress];
          await runInProcesses(names.map((name) => ({ label: `configuration ${name}`, args: child(name) })), jobs);
        } else {
          const { engine } = await startEngine();
          for (const name of names) {
            const cfg = all.find((c) => c.name === name)!;
            log(`${name}: ${cfg.steps} steps, evaluated every ${cfg.evalEvery} (${engine})`);
            await runStudyConfig(cfg, { root, testSeeds, engine, progress: f.progress as 'none', log });
          }
          if (f.only) return;
        }
      }
      const curves = await readCurves(root, all.map((c) => c.name));
      const report = await renderStudyReport(grid, curves, root);
      await writeFileAtomic(path.join(root, 'report.md'), report);
      console.log(report);
    });
}

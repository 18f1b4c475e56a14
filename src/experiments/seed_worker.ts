/**
 * Child process of `runExperiment` with `jobs` > 1: runs one (training seed, teacher) pair.
 * Usage: node [--import tsx] seed_worker.(ts|js) <options.json> <seed> <ddpm|edm>
 */
import { promises as fs } from 'node:fs';
import { initEngine } from '../engine/index.js';
import { runSeed } from './pipeline.js';
import type { ExperimentOptions, NoiseKind } from './recipe.js';

async function main(): Promise<void> {
  const [file, seed, teacher] = process.argv.slice(2);
  if (!file || seed === undefined || (teacher !== 'ddpm' && teacher !== 'edm')) throw new Error('usage: seed_worker <options.json> <seed> <ddpm|edm>');
  const o = JSON.parse(await fs.readFile(file, 'utf8')) as ExperimentOptions;
  await initEngine();
  await runSeed({ ...o, progress: 'lines' }, Number(seed), teacher as NoiseKind);
}

main().catch((e: unknown) => {
  process.stderr.write(`experiment worker: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});

import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine, tf, describeEngine, engineInfo, loadNative, CUSTOM_KERNELS, NATIVE_KERNELS } from '../engine/index.js';
import { UsageError } from './errors.js';
import { registerTrainCommands } from './train.js';
import { registerDistillCommand } from './distill.js';
import { registerDatasetCommands } from './dataset.js';
import { registerEvalCommand } from './eval.js';
import { registerEnvCommands } from './env.js';
import { registerQuickstartCommand } from './quickstart.js';
import { registerReproduceCommand } from './reproduce.js';
import { registerStudyCommand } from './study.js';
import { registerExportCommand } from './export.js';
import { registerServeCommand } from './serve.js';

export function registerCommands(program: Command): void {
  program
    .command('info')
    .description('show the tensor engine: backend, native or wasm kernels, threads')
    .action(async () => {
      const backend = await initEngine();
      console.log(`engine: ${describeEngine()} (tfjs ${tf.version.tfjs})`);
      if (backend === 'wasm') {
        console.log(`onedp wasm kernels: ${CUSTOM_KERNELS.join(', ')}`);
        const native = loadNative();
        if (engineInfo().kernels === 'native') console.log(`native kernels (${native.detail}): ${NATIVE_KERNELS.join(', ')}`);
        else console.log(`native kernels: not in use (${native.detail})`);
      }
    });
  registerTrainCommands(program);
  registerDistillCommand(program);
  registerDatasetCommands(program);
  registerEvalCommand(program);
  registerEnvCommands(program);
  registerQuickstartCommand(program);
  registerReproduceCommand(program);
  registerStudyCommand(program);
  registerExportCommand(program);
  registerServeCommand(program);
}

/** Reads a JSON file, naming it in every error. */
export async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    throw new UsageError(`${file}: file not found`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

export function resolvePath(p: string): string {
  return path.resolve(process.cwd(), p);
}

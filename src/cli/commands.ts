import type { Command } from 'commander';
import { initEngine, tf, CUSTOM_KERNELS } from '../engine/index.js';

export function registerCommands(program: Command): void {
  program
    .command('info')
    .description('show the tensor backend and the kernels onedp registered')
    .action(async () => {
      const backend = await initEngine();
      console.log(`backend: ${backend} (tfjs ${tf.version.tfjs})`);
      if (backend === 'wasm') console.log(`onedp wasm kernels: ${CUSTOM_KERNELS.join(', ')}`);
    });
}

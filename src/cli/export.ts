/** `onedp export`: a policy checkpoint as an ONNX bundle (graphs + policy.json). */
import type { Command } from 'commander';
import { exportOnnx, isExportWeights } from '../export/export.js';
import { OnnxPolicy, loadOnnxRuntime } from '../export/runtime.js';
import { UsageError } from './errors.js';
import { resolvePath } from './commands.js';

export function registerExportCommand(program: Command): void {
  program
    .command('export')
    .description('export a policy checkpoint (diffusion policy, OneDP-S/D, Consistency Policy) for onnxruntime')
    .requiredOption('--policy <ckpt>', 'checkpoint directory or run directory')
    .requiredOption('--out <dir>', 'bundle directory: encoder.onnx, the action graph and policy.json')
    .option('--format <name>', 'export format (onnx)', 'onnx')
    .option('--weights <type>', "float32 (parity with tfjs), or int8 / int4: the U-Net's large layers as 8- or 4-bit weights for onnxruntime's MatMulNBits (faster when reading weights bounds the time)", 'float32')
    .action(async (f: { policy: string; out: string; format: string; weights: string }) => {
      if (f.format !== 'onnx') throw new UsageError(`--format must be onnx, got "${f.format}"`);
      if (!isExportWeights(f.weights)) throw new UsageError(`--weights must be float32, int8 or int4, got "${f.weights}"`);
      const r = await exportOnnx(resolvePath(f.policy), resolvePath(f.out), { weights: f.weights });
      console.log(`exported ${r.manifest.kind}${r.manifest.weights === 'float32' ? '' : ` (${r.manifest.weights} weights)`} to ${r.dir}: ${r.files.join(', ')}`);
      // Loading the bundle back checks that onnxruntime accepts the graphs as written.
      if (await loadOnnxRuntime()) {
        const p = await OnnxPolicy.load(r.dir);
        await p.dispose();
        console.log('onnxruntime loads it');
      }
    });
}

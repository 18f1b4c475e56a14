import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { tf } from '../../src/engine/index.js';
import { readSafetensors, toFloat32, type SafeTensor } from '../../src/io/safetensors.js';
import type { UnetConfig } from '../../src/nn/unet1d.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const REFERENCE = path.join(FIXTURES, 'reference');

export function tensorOf(t: SafeTensor): tf.Tensor {
  return tf.tensor(toFloat32(t), t.shape, 'float32');
}

/** The reference's constructor arguments (snake_case) as a UnetConfig. */
export async function referenceUnet(variant: 'unet1d' | 'unet1d_noscale') {
  const weights = await readSafetensors(path.join(REFERENCE, `${variant}_weights.safetensors`));
  const io = await readSafetensors(path.join(REFERENCE, `${variant}_io.safetensors`));
  const c = JSON.parse(weights.metadata.config) as Record<string, unknown>;
  const config: UnetConfig = {
    inputDim: c.input_dim as number,
    globalCondDim: c.global_cond_dim as number,
    diffusionStepEmbedDim: c.diffusion_step_embed_dim as number,
    downDims: c.down_dims as number[],
    kernelSize: c.kernel_size as number,
    nGroups: c.n_groups as number,
    condPredictScale: c.cond_predict_scale as boolean,
  };
  return { weights, io, config };
}

/** The ResNet fixture's weights, rebuilt by the formula in the fixture README. */
export function referenceEncoderWeights(): Map<string, SafeTensor> {
  const spec = JSON.parse(readFileSync(path.join(REFERENCE, 'resnet18gn_params.json'), 'utf8')) as { parameters: [string, number[]][] };
  const sd = new Map<string, SafeTensor>();
  spec.parameters.forEach(([name, shape], j) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const base = Math.sin(0.37 * i + 0.11 * (j + 1));
      d[i] = shape.length >= 2 ? base / Math.sqrt(fanIn) : name.endsWith('weight') ? 1 + 0.1 * base : 0.1 * base;
    }
    sd.set(name, { dtype: 'F32', shape, data: d });
  });
  return sd;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

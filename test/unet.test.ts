import { describe, expect, it } from 'vitest';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { referenceUnet, tensorOf, maxAbsDiff } from './helpers/fixtures.js';
import { ConditionalUnet1D, PUSHT_IMAGE_UNET, PUSHT_STATE_UNET } from '../src/nn/unet1d.js';
import { buildContext } from '../src/nn/module.js';
import { loadStateDict, stateDict } from '../src/nn/state_dict.js';

useWasmEngine();

describe('ConditionalUnet1D parity with the reference', () => {
  it.each(['unet1d', 'unet1d_noscale'] as const)('%s reproduces the reference output within 1e-4', async (variant) => {
    const { weights, io, config } = await referenceUnet(variant);
    const net = new ConditionalUnet1D(config);
    expect(net.numParameters()).toBe(variant === 'unet1d' ? 276_578 : 260_002);
    loadStateDict(net, weights.tensors);
    const y = net.forward(tensorOf(io.tensors.get('sample')!), tensorOf(io.tensors.get('timestep')!), tensorOf(io.tensors.get('global_cond')!));
    expect(y.shape).toEqual([3, 16, 2]);
    expect(maxAbsDiff(y.dataSync(), io.tensors.get('output')!.data as Float32Array)).toBeLessThan(1e-4);
  });

  it('parameters come out in the reference state dict order and round-trip exactly', async () => {
    const { weights, config } = await referenceUnet('unet1d');
    const net = new ConditionalUnet1D(config);
    loadStateDict(net, weights.tensors);
    const back = stateDict(net);
    expect([...back.keys()]).toEqual([...weights.tensors.keys()]);
    for (const [k, t] of weights.tensors) {
      expect(back.get(k)!.shape, k).toEqual(t.shape);
      expect(maxAbsDiff(back.get(k)!.data as Float32Array, t.data as Float32Array), k).toBe(0);
    }
  });

  it.each(['final_conv.1.weight', 'final_conv.0.block.1.weight', 'diffusion_step_encoder.3.weight'])(
    'scaling %s by 1.01 moves the output by more than 1e-3 (the parity test can fail)',
    async (name) => {
      const { weights, io, config } = await referenceUnet('unet1d');
      const net = new ConditionalUnet1D(config);
      const perturbed = new Map(weights.tensors);
      const t = weights.tensors.get(name)!;
      perturbed.set(name, { ...t, data: Float32Array.from(t.data as Float32Array).map((v) => v * 1.01) });
      loadStateDict(net, perturbed);
      const y = net.forward(tensorOf(io.tensors.get('sample')!), tensorOf(io.tensors.get('timestep')!), tensorOf(io.tensors.get('global_cond')!));
      expect(maxAbsDiff(y.dataSync(), io.tensors.get('output')!.data as Float32Array)).toBeGreaterThan(1e-3);
    },
  );
});

describe('ConditionalUnet1D configuration', () => {
  it('has the published parameter counts (PushT state 65,783,298; PushT image 251,511,938)', () => {
    expect(new ConditionalUnet1D(PUSHT_STATE_UNET, buildContext({ meta: true })).numParameters()).toBe(65_783_298);
    expect(new ConditionalUnet1D(PUSHT_IMAGE_UNET, buildContext({ meta: true })).numParameters()).toBe(251_511_938);
  });

  it('initialises like PyTorch: uniform within 1/sqrt(fan_in), GroupNorm 1 and 0', () => {
    const net = new ConditionalUnet1D({ inputDim: 2, globalCondDim: 10, diffusionStepEmbedDim: 16, downDims: [16, 32], kernelSize: 5, nGroups: 8, condPredictScale: true }, buildContext({ seed: 1 }));
    const sd = stateDict(net);
    const w = sd.get('down_modules.0.0.blocks.0.block.0.weight')!; // (16, 2, 5): fan_in 10
    const vals = Array.from(w.data as Float32Array);
    const bound = 1 / Math.sqrt(10);
    expect(Math.max(...vals.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...vals.map(Math.abs))).toBeGreaterThan(0.8 * bound);
    expect(Array.from(sd.get('down_modules.0.0.blocks.0.block.1.weight')!.data as Float32Array).every((v) => v === 1)).toBe(true);
    expect(Array.from(sd.get('down_modules.0.0.blocks.0.block.1.bias')!.data as Float32Array).every((v) => v === 0)).toBe(true);
    // ConvTranspose1d: PyTorch takes fan_in from out_channels * k.
    const up = Array.from(sd.get('up_modules.0.2.conv.weight')!.data as Float32Array);
    expect(Math.max(...up.map(Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(16 * 4));
  });

  it('the same seed gives the same weights', () => {
    const cfg = { inputDim: 2, globalCondDim: 4, diffusionStepEmbedDim: 8, downDims: [8, 16], kernelSize: 3, nGroups: 4, condPredictScale: false };
    const a = stateDict(new ConditionalUnet1D(cfg, buildContext({ seed: 5 })));
    const b = stateDict(new ConditionalUnet1D(cfg, buildContext({ seed: 5 })));
    const c = stateDict(new ConditionalUnet1D(cfg, buildContext({ seed: 6 })));
    const k = 'final_conv.1.weight';
    expect(maxAbsDiff(a.get(k)!.data as Float32Array, b.get(k)!.data as Float32Array)).toBe(0);
    expect(maxAbsDiff(a.get(k)!.data as Float32Array, c.get(k)!.data as Float32Array)).toBeGreaterThan(0);
  });

  it('rejects inputs of the wrong shape with a message naming the shapes', async () => {
    const { config } = await referenceUnet('unet1d');
    const net = new ConditionalUnet1D(config);
    expect(() => net.forward(tf.zeros([2, 16, 3]), 0, tf.zeros([2, 20]))).toThrow(/sample must be \(B, T, 2\), got \[2,16,3\]/);
    expect(() => net.forward(tf.zeros([2, 16, 2]), 0, tf.zeros([2, 19]))).toThrow(/global_cond must be \(2, 20\)/);
    expect(() => net.forward(tf.zeros([2, 10, 2]), 0, tf.zeros([2, 20]))).toThrow(/multiple of 4/);
  });

  it('trains: gradients reach every parameter', () => {
    const net = new ConditionalUnet1D({ inputDim: 2, globalCondDim: 6, diffusionStepEmbedDim: 8, downDims: [8, 16], kernelSize: 3, nGroups: 4, condPredictScale: true }, buildContext({ seed: 2 }));
    const x = tf.randomNormal([4, 8, 2], 0, 1, 'float32', 1);
    const c = tf.randomNormal([4, 6], 0, 1, 'float32', 2);
    const { grads } = tf.variableGrads(() => net.forward(x, tf.tensor1d([1, 5, 50, 99]), c).square().mean() as tf.Scalar, net.variables());
    for (const [name, p] of net.namedParameters()) {
      const g = grads[p.v.name];
      expect(g, name).toBeDefined();
      expect(g.abs().max().dataSync()[0], name).toBeGreaterThan(0);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasmEngine } from './helpers/engine.js';
import { REFERENCE, referenceUnet } from './helpers/fixtures.js';
import {
  f16Tensor,
  floatToHalf,
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  toFloat32,
  writeSafetensors,
  type SafeTensor,
} from '../src/io/safetensors.js';
import { ConditionalUnet1D } from '../src/nn/unet1d.js';
import { buildContext } from '../src/nn/module.js';
import { loadStateDict, stateDict } from '../src/nn/state_dict.js';

useWasmEngine();

async function tmpdir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'onedp-st-'));
}

describe('safetensors', () => {
  it('reads the reference files (F32 weights, I64 timesteps, metadata)', async () => {
    const io = await readSafetensors(path.join(REFERENCE, 'unet1d_io.safetensors'));
    const ts = io.tensors.get('timestep')!;
    expect(ts.dtype).toBe('I64');
    expect(Array.from(ts.data as BigInt64Array)).toEqual([0n, 37n, 99n]);
    expect(io.tensors.get('sample')!.shape).toEqual([3, 16, 2]);
    const w = await readSafetensors(path.join(REFERENCE, 'unet1d_weights.safetensors'));
    expect(JSON.parse(w.metadata.config).down_dims).toEqual([16, 32, 64]);
  });

  it('round-trips F32, F16, BF16, F64, I64, I32, U8 and metadata exactly', async () => {
    const f32 = new Float32Array([1.5, -2.25, 3.1415927, 0, -0]);
    const tensors: Record<string, SafeTensor> = {
      a: { dtype: 'F32', shape: [5], data: f32 },
      h: f16Tensor([2, 2], new Float32Array([1, -0.5, 65504, 6.1035156e-5])),
      bf: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
      d: { dtype: 'F64', shape: [1, 2], data: new Float64Array([Math.PI, -1e300]) },
      i: { dtype: 'I64', shape: [3], data: new BigInt64Array([0n, -5n, 9007199254740993n]) },
      j: { dtype: 'I32', shape: [2], data: new Int32Array([7, -7]) },
      u: { dtype: 'U8', shape: [2, 1], data: new Uint8Array([0, 255]) },
      empty: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
    };
    const dir = await tmpdir();
    const file = path.join(dir, 'x.safetensors');
    await writeSafetensors(file, tensors, { config: '{"k":1}' });
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual({ config: '{"k":1}' });
    expect([...back.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [k, t] of Object.entries(tensors)) {
      const b = back.tensors.get(k)!;
      expect(b.dtype, k).toBe(t.dtype);
      expect(b.shape, k).toEqual(t.shape);
      expect(Array.from(b.data as ArrayLike<number>), k).toEqual(Array.from(t.data as ArrayLike<number>));
    }
    expect(Array.from(toFloat32(back.tensors.get('h')!))).toEqual([1, -0.5, 65504, 6.103515625e-5]);
    expect(Array.from(toFloat32(back.tensors.get('bf')!))).toEqual([1, -2]);
    // The data section starts 8-byte aligned.
    const bytes = await fs.readFile(file);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
  });

  it('rounds to half precision to nearest even', () => {
    expect(floatToHalf(1)).toBe(0x3c00);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie to even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(floatToHalf(2 ** -25)).toBe(0); // tie to even at the subnormal boundary
  });

  it('reports truncated, corrupt and inconsistent files with the file name', async () => {
    const dir = await tmpdir();
    const good = serializeSafetensors({ w: { dtype: 'F32', shape: [4, 4], data: new Float32Array(16) } });
    const trunc = path.join(dir, 'trunc.safetensors');
    await fs.writeFile(trunc, good.subarray(0, good.length - 8));
    await expect(readSafetensors(trunc)).rejects.toThrow(/trunc\.safetensors: tensor "w" ends at byte 64 .* only 56 bytes/);
    const tiny = path.join(dir, 'tiny.safetensors');
    await fs.writeFile(tiny, good.subarray(0, 5));
    await expect(readSafetensors(tiny)).rejects.toThrow(/tiny\.safetensors: file is 5 bytes/);
    const garbage = new Uint8Array(good);
    garbage[10] = 0x7b; // '{' inside the JSON
    garbage[11] = 0x7b;
    expect(() => parseSafetensors(garbage, 'g.safetensors')).toThrow(/g\.safetensors: header is not valid JSON/);
    const hdrLen = new Uint8Array(good);
    new DataView(hdrLen.buffer).setBigUint64(0, 1n << 40n, true);
    expect(() => parseSafetensors(hdrLen, 'h.safetensors')).toThrow(/h\.safetensors: header length .* exceeds the file size/);
    await expect(readSafetensors(path.join(dir, 'missing.safetensors'))).rejects.toThrow(/missing\.safetensors: file not found/);
    const badShape = serializeSafetensors({ w: { dtype: 'F32', shape: [2], data: new Float32Array(2) } });
    const text = new TextDecoder().decode(badShape).replace('"shape":[2]', '"shape":[3]');
    expect(() => parseSafetensors(new TextEncoder().encode(text), 's.safetensors')).toThrow(/s\.safetensors: tensor "w" \(F32 \[3\]\) needs 12 bytes but data_offsets span 8/);
  });

  it('writes atomically: a failed write leaves the previous file intact', async () => {
    const dir = await tmpdir();
    const file = path.join(dir, 'w.safetensors');
    await writeSafetensors(file, { a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    const bad = { a: { dtype: 'F32' as const, shape: [2], data: new Float32Array([1]) } };
    await expect(writeSafetensors(file, bad)).rejects.toThrow(/1 values for shape \[2\]/);
    const back = await readSafetensors(file);
    expect(Array.from(back.tensors.get('a')!.data as Float32Array)).toEqual([1]);
    expect((await fs.readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('state dicts', () => {
  it('a model saved and loaded through a file is bit-identical', async () => {
    const cfg = { inputDim: 2, globalCondDim: 6, diffusionStepEmbedDim: 8, downDims: [8, 16], kernelSize: 3, nGroups: 4, condPredictScale: true };
    const a = new ConditionalUnet1D(cfg, buildContext({ seed: 1 }));
    const b = new ConditionalUnet1D(cfg, buildContext({ seed: 2 }));
    const file = path.join(await tmpdir(), 'm.safetensors');
    await writeSafetensors(file, stateDict(a));
    loadStateDict(b, (await readSafetensors(file)).tensors, { source: file });
    const sa = stateDict(a);
    for (const [k, t] of stateDict(b)) expect(Array.from(t.data as Float32Array), k).toEqual(Array.from(sa.get(k)!.data as Float32Array));
  });

  it('loads half-precision weights', async () => {
    const { weights, config } = await referenceUnet('unet1d');
    const half = new Map<string, SafeTensor>();
    for (const [k, t] of weights.tensors) half.set(k, f16Tensor(t.shape, t.data as Float32Array));
    const net = new ConditionalUnet1D(config);
    loadStateDict(net, parseSafetensors(serializeSafetensors(half)).tensors);
    const w = stateDict(net).get('final_conv.1.weight')!.data as Float32Array;
    const ref = weights.tensors.get('final_conv.1.weight')!.data as Float32Array;
    for (let i = 0; i < w.length; i++) expect(Math.abs(w[i] - ref[i])).toBeLessThan(1e-3 * Math.abs(ref[i]) + 1e-7);
  });

  it('missing, unexpected and wrongly shaped tensors are named with both shapes, and nothing is loaded', async () => {
    const { weights, config } = await referenceUnet('unet1d');
    const net = new ConditionalUnet1D(config, buildContext({ seed: 9 }));
    const before = stateDict(net).get('final_conv.1.bias')!.data as Float32Array;
    const bad = new Map(weights.tensors);
    bad.delete('mid_modules.0.blocks.0.block.0.bias');
    bad.set('extra.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    bad.set('final_conv.1.weight', { dtype: 'F32', shape: [2, 16, 3], data: new Float32Array(96) });
    let msg = '';
    try {
      loadStateDict(net, bad, { source: 'ckpt.safetensors' });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^ckpt\.safetensors: state dict does not match the model/);
    expect(msg).toContain('missing tensor "mid_modules.0.blocks.0.block.0.bias" (expected shape [64])');
    expect(msg).toContain('unexpected tensor "extra.weight"');
    expect(msg).toContain('tensor "final_conv.1.weight" has shape [2,16,3] but the model expects [2,16,1]');
    expect(Array.from(stateDict(net).get('final_conv.1.bias')!.data as Float32Array)).toEqual(Array.from(before));
    // Non-strict mode ignores extras but still insists on every parameter.
    const extra = new Map(weights.tensors);
    extra.set('extra.weight', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    expect(() => loadStateDict(net, extra, { strict: false })).not.toThrow();
  });
});

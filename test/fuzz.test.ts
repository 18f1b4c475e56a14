/**
 * A seeded sample of the mutation fuzzing in scripts/fuzz.ts: every reader of outside input
 * (safetensors, checkpoints, zarr, ONNX bundles, server messages) either loads a mutated input or
 * rejects it with onedp's own error naming the source; no TypeError from an unchecked field, no
 * slow input, no unhandled rejection. The mutations must also be real: some inputs fail.
 */
import { describe, expect, it } from 'vitest';
import { useWasmEngine } from './helpers/engine.js';
import { fuzz } from './helpers/fuzz.js';

useWasmEngine();

describe('fuzzing the readers (seeded sample)', () => {
  it('150 mutated inputs per reader: each loads or gets a clear error', async () => {
    const reports = await fuzz(150, 20261202);
    expect(reports.map((r) => r.reader)).toEqual(['safetensors', 'checkpoint', 'zarr', 'onnx-bundle', 'server-message']);
    for (const r of reports) {
      expect(r.unclear, `${r.reader}: ${r.examples.join('; ')}`).toBe(0);
      expect(r.slow, r.reader).toBe(0);
      expect(r.inputs).toBe(150);
      expect(r.errors, `${r.reader} rejected nothing: the mutations do not reach it`).toBeGreaterThan(10);
    }
  }, 240_000);
});

import type { SafeTensor } from '../../src/io/safetensors.js';

/** Bit-for-bit equality of two state dicts (the frozen-teacher checks). */
export function sameWeights(a: Map<string, SafeTensor>, b: Map<string, SafeTensor>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, t] of a) {
    const other = b.get(k);
    if (!other) return false;
    const x = t.data as Float32Array;
    const y = other.data as Float32Array;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  }
  return true;
}

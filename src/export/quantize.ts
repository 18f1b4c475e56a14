/**
 * Weight-only quantisation for onnxruntime's `MatMulNBits` (com.microsoft): a PyTorch-layout
 * (out, in) weight becomes `bits`-bit integers in blocks of `blockSize` along `in`, each block
 * with its own float scale (symmetric: the zero point is 2^(bits-1), onnxruntime's default).
 * At batch 1 a large policy's forward is bound by reading its weights (bench deploy: the 65.8M
 * U-Net's 263 MB of float32 take 6-8 ms to stream on 2 cores), so fewer bytes per weight is
 * what makes it faster; the activations stay float32.
 */
export type QuantBits = 4 | 8;

export interface QuantizedWeight {
  /** (N, kBlocks, blockSize * bits / 8) packed integers, low nibble first for 4 bits. */
  packed: Uint8Array;
  /** (N * kBlocks) scales. */
  scales: Float32Array;
  n: number;
  k: number;
  kBlocks: number;
  blob: number;
}

/** Quantises `w` (n rows of k values) and returns the packing plus, for tests, the dequantised values. */
export function quantizeRows(w: Float32Array, n: number, k: number, bits: QuantBits, blockSize: number): QuantizedWeight & { dequantized: Float32Array } {
  if (w.length !== n * k) throw new Error(`quantize: ${w.length} values are not ${n} rows of ${k}`);
  if (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0) throw new Error(`quantize: block size must be a power of two >= 16, got ${blockSize}`);
  const kBlocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const packed = new Uint8Array(n * kBlocks * blob);
  const scales = new Float32Array(n * kBlocks);
  const dequantized = new Float32Array(n * k);
  const zp = 1 << (bits - 1);
  const qmax = (1 << bits) - 1;
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < kBlocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(k, k0 + blockSize);
      let amax = 0;
      for (let c = k0; c < k1; c++) amax = Math.max(amax, Math.abs(w[r * k + c]));
      // Symmetric: +-amax maps to +-(zp - 1), so the grid is the same on both sides of zero.
      const scale = Math.fround(amax > 0 ? amax / (zp - 1) : 1);
      scales[r * kBlocks + b] = scale;
      const off = (r * kBlocks + b) * blob;
      for (let i = 0; i < blockSize; i++) {
        const c = k0 + i;
        // Past the row's end: the zero point, a weight of 0.
        const q = c < k1 ? Math.max(0, Math.min(qmax, Math.round(w[r * k + c] / scale) + zp)) : zp;
        if (c < k1) dequantized[r * k + c] = (q - zp) * scale;
        if (bits === 8) packed[off + i] = q;
        else packed[off + (i >> 1)] |= i & 1 ? q << 4 : q;
      }
    }
  }
  return { packed, scales, n, k, kBlocks, blob, dequantized };
}

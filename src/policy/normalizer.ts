/**
 * Per-dimension linear normalisation to [-1, 1] from the training set's min and max ("limits"
 * mode of Diffusion Policy): scale = 2/(max-min), offset = -1 - scale*min; dimensions whose
 * range is below 1e-4 keep scale 1.
 *
 * Unnormalising, a dimension that was constant in the fitted data returns that constant. Diffusion
 * Policy's scale-1 mapping would pass a model's error there straight through: a scripted
 * demonstrator that never tilts the gripper gives constant rotation actions at -1, a bound, and a
 * one-step generator's small misses of that bound became tilts that add up over an episode.
 */
const RANGE_EPS = 1e-4;
export interface NormalizerParams {
  scale: number[];
  offset: number[];
  /** Statistics of the fitted data, kept for inspection. */
  min: number[];
  max: number[];
}

export class LinearNormalizer {
  constructor(readonly params: Record<string, NormalizerParams>) {}

  static fit(data: Record<string, { values: Float32Array; dim: number }>, rangeEps = RANGE_EPS): LinearNormalizer {
    const params: Record<string, NormalizerParams> = {};
    for (const [key, { values, dim }] of Object.entries(data)) {
      if (values.length === 0 || values.length % dim !== 0) throw new Error(`normalizer: "${key}" has ${values.length} values, not a multiple of ${dim}`);
      const min = new Array<number>(dim).fill(Infinity);
      const max = new Array<number>(dim).fill(-Infinity);
      for (let i = 0; i < values.length; i++) {
        const d = i % dim;
        const v = values[i];
        if (!Number.isFinite(v)) throw new Error(`normalizer: "${key}" contains a non-finite value at index ${i}`);
        if (v < min[d]) min[d] = v;
        if (v > max[d]) max[d] = v;
      }
      const scale = min.map((lo, d) => (max[d] - lo < rangeEps ? 1 : 2 / (max[d] - lo)));
      const offset = min.map((lo, d) => -1 - scale[d] * lo);
      params[key] = { scale, offset, min, max };
    }
    return new LinearNormalizer(params);
  }

  private get(key: string): NormalizerParams {
    const p = this.params[key];
    if (!p) throw new Error(`normalizer has no statistics for "${key}" (has: ${Object.keys(this.params).join(', ')})`);
    return p;
  }

  dim(key: string): number {
    return this.get(key).scale.length;
  }

  /** x * scale + offset along the last dimension of a flat (..., dim) array. */
  normalize(key: string, x: Float32Array): Float32Array {
    const { scale, offset } = this.get(key);
    const d = scale.length;
    if (x.length % d !== 0) throw new Error(`normalizer: "${key}" expects a multiple of ${d} values, got ${x.length}`);
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * scale[i % d] + offset[i % d];
    return out;
  }

  unnormalize(key: string, y: Float32Array): Float32Array {
    const { scale, offset } = this.get(key);
    const d = scale.length;
    if (y.length % d !== 0) throw new Error(`normalizer: "${key}" expects a multiple of ${d} values, got ${y.length}`);
    const fixed = this.constants(key);
    const out = new Float32Array(y.length);
    for (let i = 0; i < y.length; i++) out[i] = fixed[i % d] ?? (y[i] - offset[i % d]) / scale[i % d];
    return out;
  }

  /**
   * Per dimension, the value of a dimension that was constant in the fitted data, else null.
   * Known only when the statistics were kept (all null otherwise).
   */
  constants(key: string): (number | null)[] {
    const { scale, min, max } = this.get(key);
    const d = scale.length;
    return min.length === d && max.length === d ? min.map((lo, j) => (max[j] - lo < RANGE_EPS ? lo : null)) : new Array<null>(d).fill(null);
  }

  toJSON(): Record<string, NormalizerParams> {
    return this.params;
  }

  static fromJSON(json: unknown, source = 'normalizer'): LinearNormalizer {
    if (!json || typeof json !== 'object') throw new Error(`${source}: normalizer is missing`);
    const params: Record<string, NormalizerParams> = {};
    for (const [k, v] of Object.entries(json as Record<string, unknown>)) {
      if (!v || typeof v !== 'object') throw new Error(`${source}: normalizer entry "${k}" is not an object`);
      const p = v as Partial<NormalizerParams>;
      const ok = (a: unknown): a is number[] => Array.isArray(a) && a.every((x) => typeof x === 'number' && Number.isFinite(x));
      if (!ok(p.scale) || !ok(p.offset) || p.scale.length !== p.offset.length) throw new Error(`${source}: normalizer entry "${k}" is malformed`);
      // A zero scale would turn every unnormalised action into Infinity.
      if (p.scale.includes(0)) throw new Error(`${source}: normalizer entry "${k}" has a zero scale`);
      params[k] = { scale: p.scale, offset: p.offset, min: ok(p.min) ? p.min : [], max: ok(p.max) ? p.max : [] };
    }
    return new LinearNormalizer(params);
  }
}

/**
 * An in-memory replay buffer in the layout of Diffusion Policy's zarr datasets: each key is a
 * frame-major array (N, ...frameShape) over all episodes, and `episodeEnds` holds cumulative
 * frame counts.
 */
export interface ArrayData {
  /** Flat values, frame-major. */
  data: Float32Array | Uint8Array;
  /** Shape of one frame, e.g. [5] for state or [96, 96, 3] for an image. */
  frameShape: number[];
}

export class ReplayBuffer {
  readonly arrays: Map<string, ArrayData>;
  readonly episodeEnds: number[];

  constructor(arrays: Record<string, ArrayData> | Map<string, ArrayData>, episodeEnds: number[], source = 'replay buffer') {
    this.arrays = arrays instanceof Map ? arrays : new Map(Object.entries(arrays));
    this.episodeEnds = episodeEnds;
    const n = this.numFrames;
    let prev = 0;
    for (const e of episodeEnds) {
      if (!Number.isInteger(e) || e <= prev) throw new Error(`${source}: episode_ends must be strictly increasing positive integers, got ${JSON.stringify(episodeEnds.slice(0, 10))}`);
      prev = e;
    }
    for (const [k, a] of this.arrays) {
      const per = a.frameShape.reduce((x, y) => x * y, 1);
      if (a.data.length !== per * n) {
        throw new Error(`${source}: array "${k}" holds ${a.data.length / per} frames but episode_ends says ${n}`);
      }
    }
  }

  get numFrames(): number {
    return this.episodeEnds.length ? this.episodeEnds[this.episodeEnds.length - 1] : 0;
  }

  get numEpisodes(): number {
    return this.episodeEnds.length;
  }

  episodeRange(i: number): [number, number] {
    return [i === 0 ? 0 : this.episodeEnds[i - 1], this.episodeEnds[i]];
  }

  get(key: string): ArrayData {
    const a = this.arrays.get(key);
    if (!a) throw new Error(`replay buffer has no array "${key}" (has: ${[...this.arrays.keys()].join(', ')})`);
    return a;
  }

  frameSize(key: string): number {
    return this.get(key).frameShape.reduce((x, y) => x * y, 1);
  }

  /** Appends one episode given per-key frame arrays of equal length. */
  static concat(episodes: Record<string, ArrayData>[], source = 'episodes'): ReplayBuffer {
    if (episodes.length === 0) throw new Error(`${source}: no episodes`);
    const keys = Object.keys(episodes[0]);
    const ends: number[] = [];
    let total = 0;
    for (const ep of episodes) {
      const k0 = keys[0];
      const len = ep[k0].data.length / ep[k0].frameShape.reduce((x, y) => x * y, 1);
      total += len;
      ends.push(total);
    }
    const arrays: Record<string, ArrayData> = {};
    for (const k of keys) {
      const first = episodes[0][k];
      const per = first.frameShape.reduce((x, y) => x * y, 1);
      const out = first.data instanceof Uint8Array ? new Uint8Array(total * per) : new Float32Array(total * per);
      let pos = 0;
      for (const ep of episodes) {
        const a = ep[k];
        if (!a) throw new Error(`${source}: an episode lacks "${k}"`);
        out.set(a.data, pos);
        pos += a.data.length;
      }
      arrays[k] = { data: out, frameShape: first.frameShape };
    }
    return new ReplayBuffer(arrays, ends, source);
  }
}

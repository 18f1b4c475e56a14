/**
 * Fixed-length training windows cut from episodes, as Diffusion Policy's SequenceSampler:
 * windows may start up to `padBefore` frames before an episode and end up to `padAfter` frames
 * after it, and the missing frames repeat the episode's first or last frame.
 */
import type { ReplayBuffer } from './replay.js';

export interface SequenceOptions {
  sequenceLength: number;
  padBefore: number;
  padAfter: number;
}

interface Window {
  bufferStart: number;
  bufferEnd: number;
  sampleStart: number;
  sampleEnd: number;
}

export class SequenceSampler {
  readonly windows: Window[] = [];

  constructor(
    readonly buffer: ReplayBuffer,
    readonly opts: SequenceOptions,
  ) {
    const { sequenceLength: L, padBefore, padAfter } = opts;
    for (let e = 0; e < buffer.numEpisodes; e++) {
      const [start, end] = buffer.episodeRange(e);
      const len = end - start;
      const minStart = -padBefore;
      const maxStart = len - L + padAfter;
      for (let idx = minStart; idx <= maxStart; idx++) {
        const bufferStart = Math.max(idx, 0) + start;
        const bufferEnd = Math.min(idx + L, len) + start;
        const startOffset = bufferStart - (idx + start);
        const endOffset = idx + L + start - bufferEnd;
        this.windows.push({ bufferStart, bufferEnd, sampleStart: startOffset, sampleEnd: L - endOffset });
      }
    }
  }

  get length(): number {
    return this.windows.length;
  }

  /** Writes the first `steps` frames of window `i` of `key` (edge-padded) into `out` at `offset`. */
  fill(key: string, i: number, out: Float32Array | Uint8Array, offset: number, steps = this.opts.sequenceLength): void {
    const w = this.windows[i];
    const { data } = this.buffer.get(key);
    const per = this.buffer.frameSize(key);
    for (let t = 0; t < steps; t++) {
      const s = Math.min(Math.max(t, w.sampleStart), w.sampleEnd - 1);
      const frame = w.bufferStart + (s - w.sampleStart);
      const src = frame * per;
      const dst = offset + t * per;
      if (out instanceof Uint8Array === data instanceof Uint8Array) out.set(data.subarray(src, src + per), dst);
      else for (let j = 0; j < per; j++) out[dst + j] = data[src + j];
    }
  }

  /** A batch of windows for `key` as floats: (indices.length, steps, ...frame) flat. */
  batch(key: string, indices: number[], steps = this.opts.sequenceLength): Float32Array {
    const per = this.buffer.frameSize(key);
    const out = new Float32Array(indices.length * steps * per);
    indices.forEach((idx, b) => this.fill(key, idx, out, b * steps * per, steps));
    return out;
  }

  /** Like `batch`, keeping the stored type (uint8 images stay uint8, a quarter of the memory). */
  frames(key: string, indices: number[], steps = this.opts.sequenceLength): Float32Array | Uint8Array {
    const per = this.buffer.frameSize(key);
    const out = this.buffer.get(key).data instanceof Uint8Array ? new Uint8Array(indices.length * steps * per) : new Float32Array(indices.length * steps * per);
    indices.forEach((idx, b) => this.fill(key, idx, out, b * steps * per, steps));
    return out;
  }
}

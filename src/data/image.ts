/**
 * Image preprocessing of the visuomotor policies (spec onedp.md sections 1 and 3): uint8 frames
 * become float values in [-1, 1] (v / 127.5 - 1), cropped to the encoder's square input. Training
 * draws an independent random crop for every frame (each of the To history frames of each
 * sample, as the reference flattens (B, To) before its crop randomiser); evaluation takes the
 * centre crop.
 */
import type { Rng } from '../util/rng.js';

/** Top-left corner of a crop: [row, column]. */
export type CropOffset = [number, number];

/** The centre crop's corner: floor((size - crop) / 2) on both axes (6 for 84 out of 96). */
export function centerCropOffset(size: number, crop: number): CropOffset {
  checkCrop(size, crop);
  const o = Math.floor((size - crop) / 2);
  return [o, o];
}

/** Uniform corners over every position the crop fits in, 0..size-crop inclusive on each axis. */
export function randomCropOffsets(n: number, size: number, crop: number, rng: Rng): CropOffset[] {
  checkCrop(size, crop);
  const span = size - crop + 1;
  return Array.from({ length: n }, () => {
    const r = rng.int(0, span);
    const c = rng.int(0, span);
    return [r, c] as CropOffset;
  });
}

function checkCrop(size: number, crop: number): void {
  if (!Number.isInteger(crop) || crop < 1 || crop > size) throw new Error(`image crop ${crop} does not fit in ${size}x${size} frames`);
}

/**
 * `n` square frames (n, size, size, channels), uint8 (or float in 0..255), to cropped float
 * images (n, crop, crop, channels) in [-1, 1], one corner per frame.
 */
export function cropAndNormalize(frames: Uint8Array | Float32Array, n: number, size: number, channels: number, crop: number, offsets: CropOffset[]): Float32Array {
  checkCrop(size, crop);
  const per = size * size * channels;
  if (frames.length !== n * per) throw new Error(`images: expected ${n} frames of ${size}x${size}x${channels} values (${n * per}), got ${frames.length}`);
  if (offsets.length !== n) throw new Error(`images: ${offsets.length} crop offsets for ${n} frames`);
  const out = new Float32Array(n * crop * crop * channels);
  const rowLen = crop * channels;
  let o = 0;
  for (let i = 0; i < n; i++) {
    const [r0, c0] = offsets[i];
    if (r0 < 0 || c0 < 0 || r0 + crop > size || c0 + crop > size) throw new Error(`images: crop at (${r0}, ${c0}) leaves the ${size}x${size} frame`);
    for (let r = 0; r < crop; r++) {
      const src = i * per + ((r0 + r) * size + c0) * channels;
      for (let j = 0; j < rowLen; j++) out[o++] = frames[src + j] / 127.5 - 1;
    }
  }
  return out;
}

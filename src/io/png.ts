/** PNG strips of rendered frames (Node only: encodes through @napi-rs/canvas). */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** RGB bytes (3 per pixel) to opaque RGBA (4 per pixel), as canvases and the GIF encoder take them. */
export function rgbToRgba(rgb: Uint8Array): Uint8Array {
  const n = rgb.length / 3;
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    out[4 * i] = rgb[3 * i];
    out[4 * i + 1] = rgb[3 * i + 1];
    out[4 * i + 2] = rgb[3 * i + 2];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** Encodes square RGB frames laid side by side as a PNG file. */
export async function writePngStrip(file: string, frames: Uint8Array[], size: number): Promise<void> {
  const { createCanvas } = await import('@napi-rs/canvas');
  const canvas = createCanvas(size * frames.length, size);
  const ctx = canvas.getContext('2d');
  frames.forEach((rgb, k) => {
    const img = ctx.createImageData(size, size);
    img.data.set(rgbToRgba(rgb));
    ctx.putImageData(img, k * size, 0);
  });
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, canvas.toBuffer('image/png'));
}

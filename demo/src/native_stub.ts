/**
 * src/engine/native.ts for the browser (vite.config.ts swaps it in): onedp's native addon is a
 * Node module, so the page reports none and tfjs keeps its own kernels.
 */
import type { NativeStatus } from '../../src/engine/native.js';

export type { NativeAddon, NativeInfo, NativeStatus } from '../../src/engine/native.js';

const NONE: NativeStatus = { addon: null, detail: 'not available in the browser' };

export function loadNative(): NativeStatus {
  return NONE;
}

export function parseThreads(v: string | number, source: string): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error(`${source} must be an integer from 1 to 256, got ${JSON.stringify(v)}`);
  return n;
}

export function defaultThreads(): number {
  return 1;
}

export function setThreads(n: number): void {
  parseThreads(n, 'threads');
}

export function getThreads(): number {
  return 1;
}

/** Messages between the page and its policy worker (policy_worker.ts). */
import type { BundleManifest } from '../../src/export/manifest.js';
import type { ObservationBatch, PolicyOutput } from '../../src/policy/types.js';

export type WorkerRequest =
  /** Loads a bundle's two graphs under `key` (its URL or file names). */
  | { type: 'open'; id: number; key: string; manifest: unknown; encoder: ArrayBuffer; action: ArrayBuffer }
  /** A policy over an opened bundle with its own noise stream and sampler; answers its handle. */
  | { type: 'use'; id: number; key: string; seed: number; sampler?: string }
  | { type: 'predict'; id: number; handle: number; obs: ObservationBatch }
  | { type: 'drop'; id: number; handle: number };

export type WorkerReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

export interface UseResult {
  handle: number;
  manifest: BundleManifest;
  /** The sampler's name for the readout ("ddpm-100", "ddim-10", "one step"). */
  sampler: string;
}

export interface PredictResult {
  output: PolicyOutput;
  /** The worker's own time for the call (ms), encoder and action graph together. */
  computeMs: number;
}

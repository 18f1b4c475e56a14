/**
 * policy.json, the description of an exported bundle, and the policy shape it gives. Types and
 * constants only, so that a page's main thread can describe a policy running in a worker without
 * bundling the runtime (bundle.ts).
 */
import type { NormalizerParams } from '../policy/normalizer.js';
import type { VisionConfig } from '../policy/vision_config.js';
import type { DiffusionPolicyConfig } from '../policy/diffusion_policy.js';
import type { OneDpGeneratorConfig } from '../distill/onedp.js';
import type { ConsistencySampling } from '../distill/cp_sampling.js';
import type { PolicyShape } from '../policy/types.js';

export const BUNDLE_FORMAT = 'onedp-onnx';
export const BUNDLE_VERSION = 1;

/** float32 keeps parity with tfjs; int8 / int4 read a quarter / an eighth of the bytes. */
export const EXPORT_WEIGHTS = ['float32', 'int8', 'int4'] as const;
export type ExportWeights = (typeof EXPORT_WEIGHTS)[number];

export function isExportWeights(v: unknown): v is ExportWeights {
  return (EXPORT_WEIGHTS as readonly unknown[]).includes(v);
}

export type BundleKind = 'onedp-s' | 'onedp-d' | 'diffusion-policy' | 'consistency-policy';

/** policy.json: everything needed to run the graphs. */
export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: number;
  kind: BundleKind;
  opset: number;
  obsDim: number;
  actionDim: number;
  horizon: number;
  nObsSteps: number;
  nActionSteps: number;
  /** Image policies: the cameras (encoder inputs of uint8 frames) and their crop. */
  vision?: VisionConfig;
  /** Per-dimension scale and offset: normalised = raw * scale + offset. */
  normalizer: Record<string, NormalizerParams>;
  /** The training noise schedule (DDPM or EDM). */
  noise: DiffusionPolicyConfig['noise'];
  /** OneDP: the generator's fixed time. */
  generator?: OneDpGeneratorConfig;
  /** Consistency Policy: its noise levels. */
  sampling?: ConsistencySampling;
  files: { encoder: string; action: string };
  /** The action graph's large layers as 8- or 4-bit weights (MatMulNBits), or float32. */
  weights: ExportWeights;
  /** Graph inputs and outputs with their shapes ("batch" is symbolic). */
  io: Record<string, { inputs: Record<string, (number | string)[]>; outputs: Record<string, (number | string)[]> }>;
  policyConfig: DiffusionPolicyConfig;
  source: { checkpoint: string; step: unknown; exportedAt: string };
}

/** A policy's shape, as its bundle's policy.json gives it. */
export abstract class BundleShape implements PolicyShape {
  constructor(readonly manifest: BundleManifest) {}

  get kind(): string {
    return this.manifest.kind;
  }
  get nObsSteps(): number {
    return this.manifest.nObsSteps;
  }
  get nActionSteps(): number {
    return this.manifest.nActionSteps;
  }
  get horizon(): number {
    return this.manifest.horizon;
  }
  get actionDim(): number {
    return this.manifest.actionDim;
  }
  get cameras(): readonly string[] {
    return this.manifest.vision?.cameras ?? [];
  }
}

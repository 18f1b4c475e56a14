/**
 * An image policy's camera configuration and its checks, apart from the encoder network
 * (obs_encoder.ts) so that runtimes that only read it (onnxruntime bundles, the browser demo)
 * import no model code.
 */
export interface VisionConfig {
  /** Camera keys, in the order their features are concatenated (PushT: ["image"]). */
  cameras: string[];
  /** Side of the square uint8 RGB frames in the data (PushT: 96). */
  frameSize: number;
  /** Side of the crops the encoder sees: random in training, centred in evaluation (84). */
  cropSize: number;
  /** Image encoder per camera: spatial-softmax keypoints, output features and ResNet stage widths. */
  encoder: { numKeypoints: number; featureDim: number; widths: number[] };
}

export function validateVisionConfig(v: VisionConfig, source: string): void {
  if (!Array.isArray(v.cameras) || v.cameras.length === 0 || v.cameras.some((k) => typeof k !== 'string' || !k || k === 'obs' || k === 'action')) {
    throw new Error(`${source}: vision.cameras must be a non-empty list of keys other than "obs" and "action", got ${JSON.stringify(v.cameras)}`);
  }
  if (new Set(v.cameras).size !== v.cameras.length) throw new Error(`${source}: vision.cameras repeats a key: ${JSON.stringify(v.cameras)}`);
  if (!Number.isInteger(v.frameSize) || !Number.isInteger(v.cropSize) || v.cropSize < 1 || v.cropSize > v.frameSize) {
    throw new Error(`${source}: vision.cropSize (${v.cropSize}) must be an integer no larger than frameSize (${v.frameSize})`);
  }
  const e = v.encoder;
  if (!e || !Number.isInteger(e.numKeypoints) || e.numKeypoints < 1 || !Number.isInteger(e.featureDim) || e.featureDim < 1) {
    throw new Error(`${source}: vision.encoder needs positive integer numKeypoints and featureDim, got ${JSON.stringify(e)}`);
  }
  if (!Array.isArray(e.widths) || e.widths.length !== 4 || e.widths.some((c) => !Number.isInteger(c) || c < 16 || c % 16 !== 0)) {
    throw new Error(`${source}: vision.encoder.widths must be 4 multiples of 16, got ${JSON.stringify(e.widths)}`);
  }
}

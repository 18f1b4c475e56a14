/**
 * The image encoder (nn/resnet.ts: ResNet-18 trunk with GroupNorm, spatial-softmax keypoints,
 * linear projection) as ONNX nodes, from its PyTorch-layout state dict, in NCHW as PyTorch
 * runs it. `emitCameraEncoder` adds the evaluation-time preprocessing in front: uint8 frames,
 * the centre crop and the [-1, 1] scaling of data/image.ts, so that a robot feeds camera frames
 * as they come.
 */
import { resnetOutputSize } from '../nn/resnet.js';
import { centerCropOffset } from '../data/image.js';
import type { OnnxGraph } from './graph.js';
import { groupNorm, linear, type WeightSource } from './unet.js';

function conv2d(g: OnnxGraph, w: WeightSource, prefix: string, x: string, stride: number, padding: number): string {
  const k = w.get(`${prefix}.weight`).shape[2];
  const inputs = [x, w.init(g, `${prefix}.weight`)];
  if (w.has(`${prefix}.bias`)) inputs.push(w.init(g, `${prefix}.bias`));
  return g.op('Conv', inputs, { kernel_shape: [k, k], strides: [stride, stride], pads: [padding, padding, padding, padding] });
}

/** GroupNorm(C/16, C), as the encoder builds every norm. */
function gn(g: OnnxGraph, w: WeightSource, prefix: string, x: string): string {
  return groupNorm(g, w, prefix, x, Math.floor(w.get(`${prefix}.weight`).shape[0] / 16), 1e-5, 2);
}

function basicBlock(g: OnnxGraph, w: WeightSource, p: string, x: string, stride: number): string {
  let h = g.op('Relu', [gn(g, w, `${p}.bn1`, conv2d(g, w, `${p}.conv1`, x, stride, 1))]);
  h = gn(g, w, `${p}.bn2`, conv2d(g, w, `${p}.conv2`, h, 1, 1));
  const id = w.has(`${p}.downsample.0.weight`) ? gn(g, w, `${p}.downsample.1`, conv2d(g, w, `${p}.downsample.0`, x, stride, 0)) : x;
  return g.op('Relu', [g.op('Add', [h, id])]);
}

/** images (N, 3, S, S) in [-1, 1] -> (N, featureDim); `p` is the encoder's prefix ending in ".". */
export function emitImageEncoder(g: OnnxGraph, w: WeightSource, p: string, images: string, imageSize: number): string {
  let x = g.op('Relu', [gn(g, w, `${p}backbone.1`, conv2d(g, w, `${p}backbone.0`, images, 2, 3))]);
  x = g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  for (let layer = 0; layer < 4; layer++) {
    x = basicBlock(g, w, `${p}backbone.${4 + layer}.0`, x, layer === 0 ? 1 : 2);
    x = basicBlock(g, w, `${p}backbone.${4 + layer}.1`, x, 1);
  }
  // Spatial softmax: a softmax over the h*w positions of each keypoint map, then the expected
  // (x, y) as one MatMul with the position grid (h*w, 2), giving [kp0.x, kp0.y, kp1.x, ...].
  const s = resnetOutputSize(imageSize);
  const k = w.get(`${p}pool.nets.weight`).shape[0];
  const maps = g.op('Reshape', [conv2d(g, w, `${p}pool.nets`, x, 1, 0), g.int64('kp_shape', [0, k, s * s])]);
  const att = g.op('Softmax', [maps], { axis: 2 });
  const lin = (i: number, n: number) => (n === 1 ? -1 : -1 + (2 * i) / (n - 1));
  const grid = new Float32Array(s * s * 2);
  for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) {
    grid[(i * s + j) * 2] = lin(j, s);
    grid[(i * s + j) * 2 + 1] = lin(i, s);
  }
  const kp = g.op('Reshape', [g.op('MatMul', [att, g.float('kp_grid', grid, [s * s, 2])]), g.int64('kp_flat', [0, 2 * k])]);
  return linear(g, w, `${p}linear`, kp);
}

/**
 * uint8 frames `frames` (B, To, size, size, 3) -> features (B, To, featureDim): the centre crop,
 * v / 127.5 - 1, NHWC to NCHW, the encoder.
 */
export function emitCameraEncoder(g: OnnxGraph, w: WeightSource, prefix: string, frames: string, nObsSteps: number, size: number, crop: number): string {
  const [o] = centerCropOffset(size, crop);
  const f = g.op('Cast', [frames], { to: 1 });
  const cropped = g.op('Slice', [f, g.int64('crop_start', [o, o]), g.int64('crop_end', [o + crop, o + crop]), g.int64('crop_axes', [2, 3])]);
  const scaled = g.op('Sub', [g.op('Div', [cropped, g.float('c127_5', [127.5], [])]), g.float('one', [1], [])]);
  const nchw = g.op('Transpose', [g.op('Reshape', [scaled, g.int64('frames_shape', [-1, crop, crop, 3])])], { perm: [0, 3, 1, 2] });
  const feat = emitImageEncoder(g, w, prefix, nchw, crop);
  const dim = w.get(`${prefix}linear.weight`).shape[0];
  return g.op('Reshape', [feat, g.int64('feat_shape', [-1, nObsSteps, dim])]);
}

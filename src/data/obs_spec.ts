/**
 * Low-dimensional observation vectors assembled from dataset arrays. A spec is a comma-separated
 * list of keys with optional column slices, e.g. `keypoint,state[0:2]`: the 9 block keypoints
 * and the agent position, the 20-D PushT observation of Diffusion Policy.
 */
import { ReplayBuffer, type ArrayData } from './replay.js';

export interface ObsPart {
  key: string;
  from: number;
  to: number | null;
}

export function parseObsSpec(spec: string): ObsPart[] {
  const parts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new Error(`observation spec "${spec}" is empty`);
  return parts.map((p) => {
    const m = /^([A-Za-z0-9_\-/]+)(?:\[(\d*):(\d*)\])?$/.exec(p);
    if (!m) throw new Error(`observation spec: cannot parse "${p}" (expected key or key[a:b])`);
    return { key: m[1], from: m[2] ? Number(m[2]) : 0, to: m[3] ? Number(m[3]) : null };
  });
}

/**
 * `image`: the visuomotor observation of PushT, the camera frames (dataset array `img`, policy
 * camera `image`) plus the agent position (`state[0:2]`).
 */
export const IMAGE_OBS_SPEC = 'image';

export function isImageSpec(spec: string): boolean {
  return spec.trim() === IMAGE_OBS_SPEC;
}

/**
 * The training buffer for an observation spec: `obs` and `action`, plus the `image` camera
 * (the uint8 frames, not copied) for the image spec.
 */
export function policyBuffer(buffer: ReplayBuffer, spec: string, source = 'dataset'): ReplayBuffer {
  if (!isImageSpec(spec)) return lowdimBuffer(buffer, spec);
  if (!buffer.arrays.has('img')) throw new Error(`${source}: has no "img" array, so it cannot train an image policy (collect with onedp env collect --obs image)`);
  const img = buffer.get('img');
  if (!(img.data instanceof Uint8Array) || img.frameShape.length !== 3 || img.frameShape[2] !== 3 || img.frameShape[0] !== img.frameShape[1]) {
    throw new Error(`${source}: "img" must hold square uint8 RGB frames, got ${img.data.constructor.name} [${img.frameShape}]`);
  }
  const low = lowdimBuffer(buffer, 'state[0:2]');
  return new ReplayBuffer({ obs: low.get('obs'), action: low.get('action'), image: img }, buffer.episodeEnds, source);
}

/** The dataset arrays `policyBuffer` reads for a spec (so large image arrays are read only when needed). */
export function specKeys(spec: string, actionKey = 'action'): string[] {
  if (isImageSpec(spec)) return ['img', 'state', actionKey];
  return [...new Set([...parseObsSpec(spec).map((p) => p.key), actionKey])];
}

/** robomimic's low-dimensional observation keys, as its datasets name them. */
export const ROBOMIMIC_LOWDIM_KEYS = ['object', 'robot0_eef_pos', 'robot0_eef_quat', 'robot0_gripper_qpos'];

/** The default observation for a dataset: PushT's keypoints + agent position when present, robomimic's low-dim keys in an HDF5 dataset. */
export function defaultObsSpec(buffer: ReplayBuffer): string {
  if (buffer.arrays.has('obs')) return 'obs';
  if (buffer.arrays.has('keypoint') && buffer.arrays.has('state')) return 'keypoint,state[0:2]';
  if (buffer.arrays.has('state')) return 'state';
  // robomimic's low-dimensional observations, in its order (issue 18's tasks).
  const robomimic = ROBOMIMIC_LOWDIM_KEYS.filter((k) => buffer.arrays.has(k));
  if (robomimic.length) return robomimic.join(',');
  throw new Error(`cannot choose an observation: dataset has ${[...buffer.arrays.keys()].join(', ')}; pass --obs`);
}

/** Columns of one frame that a part selects. */
function columns(buffer: ReplayBuffer, part: ObsPart): [number, number] {
  const n = buffer.frameSize(part.key);
  const to = part.to ?? n;
  if (part.from >= to || to > n) throw new Error(`observation spec: ${part.key}[${part.from}:${part.to ?? ''}] is outside its ${n} values per frame`);
  return [part.from, to];
}

/** A buffer with `obs` (the spec's columns) and `action`, ready for training. */
export function lowdimBuffer(buffer: ReplayBuffer, spec: string, actionKey = 'action'): ReplayBuffer {
  const parts = parseObsSpec(spec);
  const cols = parts.map((p) => columns(buffer, p));
  const dim = cols.reduce((s, [a, b]) => s + b - a, 0);
  const n = buffer.numFrames;
  const obs = new Float32Array(n * dim);
  for (let f = 0; f < n; f++) {
    let o = f * dim;
    parts.forEach((p, i) => {
      const src = buffer.get(p.key).data;
      const per = buffer.frameSize(p.key);
      for (let c = cols[i][0]; c < cols[i][1]; c++) obs[o++] = src[f * per + c];
    });
  }
  const act = buffer.get(actionKey);
  const arrays: Record<string, ArrayData> = {
    obs: { data: obs, frameShape: [dim] },
    action: { data: act.data instanceof Float32Array ? act.data : Float32Array.from(act.data), frameShape: [buffer.frameSize(actionKey)] },
  };
  return new ReplayBuffer(arrays, buffer.episodeEnds);
}

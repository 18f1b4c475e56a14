/**
 * A synthetic bimodal demonstration set for tests and demos: every episode starts from the same
 * observation, and half the demonstrations sweep left, half right, along a smooth arc. A policy
 * that averages modes (as a regression policy does) lands in the middle, where no demonstration
 * goes; a diffusion policy should sample both.
 */
import { ReplayBuffer } from './replay.js';
import { Rng } from '../util/rng.js';

export interface BimodalOptions {
  episodes?: number;
  length?: number;
  seed?: number;
  /** Standard deviation of per-step jitter on the actions. */
  noise?: number;
}

/** The noiseless action at step t of an episode going `dir` (+1 right, -1 left). */
export function bimodalAction(dir: number, t: number, length: number): [number, number] {
  const s = (t + 1) / length;
  return [dir * s, 0.5 * Math.sin(Math.PI * s)];
}

/** obs_t = the position reached (the previous action), starting at the origin. */
export function bimodalDataset(opts: BimodalOptions = {}): ReplayBuffer {
  const episodes = opts.episodes ?? 40;
  const length = opts.length ?? 24;
  const noise = opts.noise ?? 0.01;
  const rng = new Rng(opts.seed ?? 0);
  const eps = [];
  for (let e = 0; e < episodes; e++) {
    const dir = e % 2 === 0 ? 1 : -1;
    const obs = new Float32Array(length * 2);
    const act = new Float32Array(length * 2);
    let pos: [number, number] = [0, 0];
    for (let t = 0; t < length; t++) {
      obs[2 * t] = pos[0];
      obs[2 * t + 1] = pos[1];
      const [ax, ay] = bimodalAction(dir, t, length);
      act[2 * t] = ax + noise * rng.normal();
      act[2 * t + 1] = ay + noise * rng.normal();
      pos = [act[2 * t], act[2 * t + 1]];
    }
    eps.push({ obs: { data: obs, frameShape: [2] }, action: { data: act, frameShape: [2] } });
  }
  return ReplayBuffer.concat(eps, 'bimodal dataset');
}

/**
 * Expert demonstrations as a replay buffer in the reference PushT layout: `state` (N,5),
 * `keypoint` (N,9,2), `action` (N,2), `n_contacts` (N,1) and, with images, `img` (N,96,96,3).
 * Each frame is the observation before the action taken from it; episodes end at success.
 */
import { ReplayBuffer, type ArrayData } from '../data/replay.js';
import { PushTEnv, blockKeypoints } from './pusht.js';
import { PushTExpert } from './expert.js';

export interface CollectOptions {
  episodes: number;
  seed: number;
  images?: boolean;
  /** Keep episodes that hit the 300-step limit (default false: only successes, as the human demos). */
  keepFailures?: boolean;
  onEpisode?: (info: { index: number; seed: number; success: boolean; length: number }) => void;
}

export interface CollectResult {
  buffer: ReplayBuffer;
  attempted: number;
  succeeded: number;
  meanLength: number;
}

export function collectPushT(opts: CollectOptions): CollectResult {
  const episodes: Record<string, ArrayData>[] = [];
  let attempted = 0;
  let succeeded = 0;
  let totalLen = 0;
  for (let seed = opts.seed; episodes.length < opts.episodes; seed++) {
    attempted++;
    if (attempted > opts.episodes * 2 + 10) throw new Error(`collect: the expert failed too often (${succeeded} successes in ${attempted} attempts)`);
    const env = new PushTEnv({ obsType: 'state' });
    const expert = new PushTExpert();
    expert.reset(seed);
    let obs = env.reset(seed);
    const state: number[] = [];
    const keypoint: number[] = [];
    const action: number[] = [];
    const contacts: number[] = [];
    const imgs: Uint8Array[] = [];
    let success = false;
    for (;;) {
      const a = expert.act(obs);
      state.push(...obs);
      for (const [x, y] of blockKeypoints(env.blockPose())) keypoint.push(x, y);
      if (opts.images) imgs.push(env.render(96));
      action.push(a[0], a[1]);
      const r = env.step(a);
      contacts.push(r.info.nContacts);
      obs = r.observation;
      if (r.terminated || r.truncated) {
        success = r.terminated;
        break;
      }
    }
    const length = action.length / 2;
    opts.onEpisode?.({ index: episodes.length, seed, success, length });
    if (!success && !opts.keepFailures) continue;
    if (success) succeeded++;
    totalLen += length;
    const ep: Record<string, ArrayData> = {
      state: { data: Float32Array.from(state), frameShape: [5] },
      keypoint: { data: Float32Array.from(keypoint), frameShape: [9, 2] },
      action: { data: Float32Array.from(action), frameShape: [2] },
      n_contacts: { data: Float32Array.from(contacts), frameShape: [1] },
    };
    if (opts.images) {
      const img = new Uint8Array(imgs.length * 96 * 96 * 3);
      imgs.forEach((f, i) => img.set(f, i * f.length));
      ep.img = { data: img, frameShape: [96, 96, 3] };
    }
    episodes.push(ep);
  }
  return { buffer: ReplayBuffer.concat(episodes, 'collected demonstrations'), attempted, succeeded, meanLength: totalLen / episodes.length };
}

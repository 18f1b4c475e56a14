/** Issue 4 benchmarks: PushT environment steps per second and rendered frames per second. */
import { PushTEnv } from '../src/envs/pusht.js';
import { PushTExpert } from '../src/envs/expert.js';
import type { BenchRow } from './harness.js';

export async function benchEnv(rows: BenchRow[]): Promise<void> {
  // Steps under the expert's actions (contacts included), state observations.
  const env = new PushTEnv({ obsType: 'state' });
  const expert = new PushTExpert();
  let steps = 0;
  let t0 = performance.now();
  for (let seed = 0; performance.now() - t0 < 3000; seed++) {
    expert.reset(seed);
    let obs = env.reset(seed);
    for (;;) {
      const a = expert.act(obs);
      const r = env.step(a);
      obs = r.observation;
      steps++;
      if (r.terminated || r.truncated) break;
    }
  }
  let ms = performance.now() - t0;
  rows.push({ section: 'env', name: 'PushT step with expert actions (state obs, planner included)', ms: ms / steps, extra: { 'steps/s': (1000 * steps) / ms } });
  // Physics alone: random targets.
  steps = 0;
  env.reset(1);
  t0 = performance.now();
  let k = 0;
  while (performance.now() - t0 < 2000) {
    const r = env.step([50 + ((k * 97) % 412), 50 + ((k * 61) % 412)]);
    k++;
    steps++;
    if (r.terminated || r.truncated) env.reset(k);
  }
  ms = performance.now() - t0;
  rows.push({ section: 'env', name: 'PushT step, random targets (state obs)', ms: ms / steps, extra: { 'steps/s': (1000 * steps) / ms } });
  for (const size of [96, 512]) {
    let frames = 0;
    t0 = performance.now();
    while (performance.now() - t0 < 2000) {
      env.render(size);
      frames++;
    }
    ms = performance.now() - t0;
    rows.push({ section: 'env', name: `render ${size}x${size} RGB`, ms: ms / frames, extra: { 'frames/s': (1000 * frames) / ms } });
  }
}

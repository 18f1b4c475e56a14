import { beforeAll, describe, expect, it } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { useWasmEngine } from './helpers/engine.js';
import { onedp } from './helpers/cli.js';
import { DiffusionPolicy, defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { buildContext } from '../src/nn/module.js';
import { stateDict } from '../src/nn/state_dict.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { contiguousShards, evaluateParallel, loadPolicySource, workerCount } from '../src/eval/parallel.js';
import { evaluatePushT } from '../src/eval/pusht.js';

useWasmEngine();

const SEEDS = [100000, 100001, 100002, 100003, 100004, 100005];

/**
 * A small untrained PushT state policy saved as a diffusion-policy checkpoint: its actions are
 * noise spread over the workspace, which moves the agent (and now and then the block) about.
 */
async function tinyCheckpoint(dir: string): Promise<string> {
  const config = defaultPolicyConfig(20, 2, { unet: { diffusionStepEmbedDim: 16, downDims: [16, 32], kernelSize: 3, nGroups: 4, condPredictScale: true } });
  const span = (dim: number) => ({ values: Float32Array.from({ length: 2 * dim }, (_, i) => (i < dim ? 0 : 512)), dim });
  const normalizer = LinearNormalizer.fit({ obs: span(20), action: span(2) });
  const policy = new DiffusionPolicy(config, normalizer, buildContext({ seed: 7 }));
  const run = path.join(dir, 'run');
  await saveCheckpoint(path.join(run, 'checkpoints'), 'step-0000000', {
    meta: { kind: 'diffusion-policy', policyConfig: config, normalizer: normalizer.toJSON() },
    tensors: { ema: stateDict(policy.model) },
  });
  policy.dispose();
  return run;
}

describe('evaluation on worker threads', () => {
  let dir = '';
  let run = '';
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-workers-'));
    run = await tinyCheckpoint(dir);
  });

  it('splits seeds into contiguous shards and checks the worker count', () => {
    expect(contiguousShards([1, 2, 3, 4, 5, 6, 7], 3)).toEqual([[1, 2], [3, 4], [5, 6, 7]]);
    expect(contiguousShards([1, 2], 2)).toEqual([[1], [2]]);
    expect(workerCount(8, 3)).toBe(3);
    expect(workerCount(2, 50)).toBe(2);
    for (const bad of [0, -1, 1.5, NaN]) expect(() => workerCount(bad, 10)).toThrow(/workers must be a positive integer/);
  });

  it('gives bit-identical episodes with 1 and 2 workers, ordinary and real-time on the perturbed task', async () => {
    const source = { checkpoint: run, sampler: 'ddim-2' };
    const policy = await loadPolicySource(source);
    for (const extra of [{}, { perturb: 1, realtime: { latency: { kind: 'nfe' as const, perNfeMs: 60 } } }]) {
      const opts = { seeds: SEEDS, maxSteps: 40, batchSize: 4, ...extra };
      const one = evaluatePushT(policy, { ...opts, latencyReps: 0 });
      const seen: number[] = [];
      const two = await evaluateParallel(source, { ...opts, workers: 2, latencyReps: 2, policy, onEpisode: (e) => seen.push(e.seed) });
      expect(two.episodes).toEqual(one.episodes);
      expect(two.episodes.map((e) => e.seed)).toEqual(SEEDS);
      expect([...seen].sort()).toEqual(SEEDS);
      for (const k of ['meanScore', 'stdScore', 'successRate', 'meanStepsToSuccess', 'meanCompletionSeconds', 'realtime'] as const) expect(two[k]).toEqual(one[k]);
      // Measured afterwards in this thread.
      expect(two.latency?.nfe).toBe(2);
    }
    // Untrained, but the block does get pushed, so the comparison covers the dynamics.
    const moved = (await evaluateParallel(source, { seeds: SEEDS, maxSteps: 40, batchSize: 4, workers: 1, latencyReps: 0 })).episodes;
    expect(moved.some((e) => e.score > 0)).toBe(true);
    policy.dispose();
  });

  it('reports a worker that fails (a bad checkpoint) as an error naming its shard', async () => {
    const missing = path.join(dir, 'nowhere');
    await expect(evaluateParallel({ checkpoint: missing }, { seeds: SEEDS, workers: 2, latencyReps: 0 })).rejects.toThrow(/eval worker \d\/2 \(seeds 10000\d\.\.10000\d\): .*nowhere: no such checkpoint/);
    await expect(evaluateParallel({ checkpoint: run, sampler: 'cp-3' }, { seeds: SEEDS, workers: 2, latencyReps: 0 })).rejects.toThrow(/eval worker .*use ddpm/);
    await expect(evaluateParallel({ checkpoint: run }, { seeds: SEEDS, workers: 0 })).rejects.toThrow(/workers must be a positive integer, got 0/);
  });

  it('onedp eval --workers 3 writes the same episodes as --workers 1; bad counts are usage errors', async () => {
    // Workers run tfjs; the single-thread run would pick onnxruntime, whose last-bit rounding differs.
    const args = (w: string, out: string) => ['eval', '--policy', run, '--seeds', '100000:100006', '--sampler', 'ddim-2', '--max-steps', '30', '--batch', '5', '--workers', w, '--runtime', w === '1' ? 'tfjs' : 'auto', '--out', out];
    const a = onedp(args('1', path.join(dir, 'w1')));
    expect(a.code, a.stderr).toBe(0);
    const b = onedp(args('3', path.join(dir, 'w3')));
    expect(b.code, b.stderr).toBe(0);
    const read = async (d: string, f: string) => JSON.parse(await fs.readFile(path.join(dir, d, f), 'utf8'));
    expect(await read('w3', 'episodes.json')).toEqual(await read('w1', 'episodes.json'));
    const [s1, s3] = [await read('w1', 'summary.json'), await read('w3', 'summary.json')];
    expect(s1.workers).toBe(1);
    expect(s3.workers).toBe(3);
    for (const k of ['meanScore', 'stdScore', 'successRate', 'meanStepsToSuccess', 'episodes']) expect(s3[k]).toEqual(s1[k]);
    // Progress lines come from the workers, one per episode.
    expect(b.stderr.match(/^seed \d+: score/gm)).toHaveLength(6);

    for (const bad of ['0', 'abc', '1.5']) {
      const r = onedp(['eval', '--policy', run, '--workers', bad]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.trim()).toBe(`onedp: error: --workers must be an integer >= 1, got "${bad}"`);
    }
    const r = onedp(['eval', '--policy', run, '--workers', '2', '--render', '1', '--out', path.join(dir, 'r')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--render records frames in the main thread/);
  });
});

/** `onedp eval`: success, score and latency of any policy checkpoint on PushT. */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine } from '../engine/index.js';
import { loadPolicy } from '../policy/load.js';
import { DiffusionPolicy } from '../policy/diffusion_policy.js';
import { parseSampler } from '../diffusion/index.js';
import { parseSeedRange } from '../eval/harness.js';
import { evaluatePushT } from '../eval/pusht.js';
import { writeFileAtomic } from '../io/safetensors.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description('evaluate a policy checkpoint on PushT (receding horizon, seeded starts)')
    .requiredOption('--policy <ckpt>', 'diffusion-policy or onedp checkpoint / run directory')
    .option('--env <name>', 'environment', 'pusht')
    .option('--seeds <A:B>', 'test seeds, B exclusive', '100000:100050')
    .option('--sampler <name>', 'for diffusion policies: ddpm, ddim-N or edm-N (default: the training schedule)')
    .option('--batch <n>', 'episodes stepped together', '25')
    .option('--out <dir>', 'write episodes.json and summary.json here')
    .action(async (f: { policy: string; env: string; seeds: string; sampler?: string; batch: string; out?: string }) => {
      if (f.env !== 'pusht') throw new UsageError(`--env must be pusht, got "${f.env}"`);
      let seeds: number[];
      try {
        seeds = parseSeedRange(f.seeds);
      } catch (e) {
        throw new UsageError(`--seeds: ${(e as Error).message}`);
      }
      const batch = parseIntFlag('batch', f.batch);
      await initEngine();
      const policy = await loadPolicy(resolvePath(f.policy));
      if (f.sampler) {
        if (!(policy instanceof DiffusionPolicy)) throw new UsageError(`--sampler applies to diffusion policies; ${f.policy} is a one-step ${policy.kind} policy`);
        policy.sampler = parseSampler(f.sampler, policy.config.noise.kind as 'ddpm' | 'edm');
      }
      if (policy instanceof DiffusionPolicy && policy.config.obsDim !== 20) {
        throw new UsageError(`${f.policy}: policy observes ${policy.config.obsDim} values per step; PushT evaluation provides the 20-D keypoint observation`);
      }
      const res = evaluatePushT(policy, {
        seeds,
        batchSize: batch,
        onEpisode: (e) => process.stderr.write(`seed ${e.seed}: score ${e.score.toFixed(3)}${e.success ? ` success at step ${e.stepsToSuccess}` : ''}\n`),
      });
      const summary = {
        policy: f.policy,
        kind: policy.kind,
        sampler: policy instanceof DiffusionPolicy ? policy.sampler.toJSON() : null,
        seeds: f.seeds,
        episodes: res.episodes.length,
        meanScore: res.meanScore,
        stdScore: res.stdScore,
        successRate: res.successRate,
        meanStepsToSuccess: res.meanStepsToSuccess,
        latency: res.latency,
        wallSeconds: res.wallSeconds,
      };
      if (f.out) {
        const dir = resolvePath(f.out);
        await fs.mkdir(dir, { recursive: true });
        await writeFileAtomic(path.join(dir, 'episodes.json'), JSON.stringify(res.episodes, null, 1));
        await writeFileAtomic(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 1));
      }
      console.log(JSON.stringify(summary, null, 1));
    });
}

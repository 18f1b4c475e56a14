/** `onedp collect pusht` and `onedp render`. */
import type { Command } from 'commander';
import { collectPushT } from '../envs/collect.js';
import { PushTEnv } from '../envs/pusht.js';
import { PushTExpert } from '../envs/expert.js';
import { writeReplayBuffer } from '../data/zarr.js';
import { writePngStrip } from '../io/png.js';
import { UsageError, parseIntFlag } from './errors.js';
import { resolvePath } from './commands.js';
import { MANIPULATION_TASKS, isManipulationTask } from '../envs/mujoco/tasks.js';

export function registerEnvCommands(program: Command): void {
  program
    .command('collect')
    .description('record scripted-expert demonstrations: PushT into a zarr replay buffer, MuJoCo tasks (lift, square) into a robomimic HDF5 file')
    .argument('<env>', 'environment: pusht, lift or square')
    .option('--episodes <n>', 'successful episodes to record', '100')
    .option('--seed <n>', 'first reset seed (episodes use consecutive seeds)', '0')
    .option('--obs <kind>', 'pusht: state (default) or image (also store 96x96 frames)', 'state')
    .option('--quality <q>', 'lift, square: ph (proficient, default) or mh (mixed: slower, noisy, hesitant, some regrasps)', 'ph')
    .requiredOption('--out <path>', 'zarr directory to write (pusht), or .hdf5 file (lift, square)')
    .action(async (env: string, f: { episodes: string; seed: string; obs: string; quality: string; out: string }) => {
      if (isManipulationTask(env)) {
        if (f.quality !== 'ph' && f.quality !== 'mh') throw new UsageError(`--quality must be ph or mh, got "${f.quality}"`);
        if (!/\.(hdf5|h5)$/i.test(f.out)) throw new UsageError(`--out for ${env} must be an .hdf5 file, got "${f.out}"`);
        const episodes = parseIntFlag('episodes', f.episodes);
        const t0 = performance.now();
        const { collectManipulation } = await import('../envs/mujoco/collect.js');
        const { writeRobomimic, robomimicFrames } = await import('../data/hdf5.js');
        const res = await collectManipulation(env, {
          episodes,
          seed: parseIntFlag('seed', f.seed, 0),
          quality: f.quality,
          onEpisode: (e) => process.stderr.write(`episode ${e.index + 1}/${episodes} seed ${e.seed}: ${e.success ? 'success' : 'FAILED'} in ${e.length} steps\n`),
        });
        await writeRobomimic(resolvePath(f.out), res.dataset);
        const frames = robomimicFrames(res.dataset);
        console.log(JSON.stringify({ out: f.out, demos: res.dataset.demos.length, frames, attempted: res.attempted, successRate: Number((res.succeeded / res.attempted).toFixed(3)), meanLength: Number((frames / res.dataset.demos.length).toFixed(1)), seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) }));
        return;
      }
      if (env !== 'pusht') throw new UsageError(`unknown environment "${env}" (known: pusht, ${MANIPULATION_TASKS.join(', ')})`);
      if (f.obs !== 'state' && f.obs !== 'image') throw new UsageError(`--obs must be state or image, got "${f.obs}"`);
      const episodes = parseIntFlag('episodes', f.episodes);
      const t0 = performance.now();
      const res = collectPushT({
        episodes,
        seed: parseIntFlag('seed', f.seed, 0),
        images: f.obs === 'image',
        onEpisode: (e) => process.stderr.write(`episode ${e.index + 1}/${episodes} seed ${e.seed}: ${e.success ? 'success' : 'FAILED'} in ${e.length} steps\n`),
      });
      await writeReplayBuffer(resolvePath(f.out), res.buffer);
      console.log(JSON.stringify({ out: f.out, episodes: res.buffer.numEpisodes, frames: res.buffer.numFrames, attempted: res.attempted, meanLength: Number(res.meanLength.toFixed(1)), seconds: Number(((performance.now() - t0) / 1000).toFixed(1)) }));
    });

  program
    .command('render')
    .description('write a PNG of a PushT state, or a strip of an expert episode')
    .requiredOption('--out <file>', 'PNG file')
    .option('--state <values>', 'agent_x,agent_y,block_x,block_y,block_angle')
    .option('--seed <n>', 'reset seed (the start state, or the expert episode with --strip)')
    .option('--strip <n>', 'frames in an expert-episode strip (evenly spaced)')
    .option('--size <px>', 'frame size', '256')
    .action(async (f: { out: string; state?: string; seed?: string; strip?: string; size: string }) => {
      const size = parseIntFlag('size', f.size, 8);
      const env = new PushTEnv({ obsType: 'state' });
      if (f.state) {
        const v = f.state.split(',').map(Number);
        if (v.length !== 5 || v.some((x) => !Number.isFinite(x))) throw new UsageError(`--state must be 5 numbers, got "${f.state}"`);
        env.resetTo(v);
      } else {
        env.reset(parseIntFlag('seed', f.seed ?? '0', 0));
      }
      const frames: Uint8Array[] = [];
      if (f.strip) {
        const n = parseIntFlag('strip', f.strip);
        const expert = new PushTExpert();
        expert.reset(parseIntFlag('seed', f.seed ?? '0', 0));
        const all: Uint8Array[] = [env.render(size)];
        let obs = env.getState();
        for (;;) {
          const r = env.step(expert.act(obs));
          obs = r.observation as number[];
          all.push(env.render(size));
          if (r.terminated || r.truncated) break;
        }
        for (let i = 0; i < n; i++) frames.push(all[Math.round((i * (all.length - 1)) / Math.max(1, n - 1))]);
      } else {
        frames.push(env.render(size));
      }
      await writePngStrip(resolvePath(f.out), frames, size);
      console.log(JSON.stringify({ out: f.out, frames: frames.length, size }));
    });
}

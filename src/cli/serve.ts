/** `onedp serve`: a policy behind a WebSocket for robot processes (protocol in src/serve/protocol.ts). */
import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { initEngine } from '../engine/index.js';
import { applySampler, loadPolicy } from '../policy/load.js';
import { ChunkPolicy } from '../policy/chunk_policy.js';
import { BundleError, openOnnxPolicy, planRuntime, type RuntimeChoice } from '../export/runtime.js';
import { servedPolicy, startServer, type ServedPolicy } from '../serve/server.js';
import { UsageError, parseIntFlag } from './errors.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { createHash } from 'node:crypto';
import { resolvePath } from './commands.js';

interface ServeFlags {
  policy: string;
  host: string;
  port: string;
  token?: string;
  runtime: string;
  sampler?: string;
  maxMessageBytes: string;
}

/** A digest of the policy's files (checkpoint or bundle), so clients can tell policies apart. */
async function digestSource(dir: string): Promise<string> {
  const names = (await fs.readdir(dir)).filter((n) => /\.(json|safetensors|onnx)$/.test(n) && !n.startsWith('.') && n !== 'optimizer.safetensors').sort();
  const h = createHash('sha256');
  for (const n of names) h.update(n).update(await fs.readFile(path.join(dir, n)));
  return h.digest('hex');
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve a policy over WebSocket (msgpack protocol v1) to robot processes')
    .requiredOption('--policy <path>', 'checkpoint, run directory or exported bundle')
    .option('--host <addr>', 'address to bind; anything but loopback requires --token', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', '8765')
    .option('--token <t>', 'shared secret clients send as "Authorization: Bearer <t>" or ?token=<t> (at least 8 characters)')
    .option('--runtime <name>', 'auto (onnxruntime for bundles and checkpoints when it loads), tfjs or onnx', 'auto')
    .option('--sampler <name>', 'diffusion policies: ddpm, ddim-N or edm-N; consistency policies: cp-1 or cp-3')
    .option('--max-message-bytes <n>', 'largest request answered', String(8 * 1024 * 1024))
    .action(async (f: ServeFlags) => {
      const port = parseIntFlag('port', f.port, 0);
      if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
      const maxMessageBytes = parseIntFlag('max-message-bytes', f.maxMessageBytes, 1024);
      const where = resolvePath(f.policy);
      let plan;
      try {
        plan = await planRuntime(where, f.runtime as RuntimeChoice);
      } catch (e) {
        throw e instanceof BundleError ? new UsageError(e.message) : e;
      }
      let served: ServedPolicy;
      let dispose: () => Promise<void> | void;
      // tfjs serves the policy, or runs a sampler's updates between onnxruntime calls.
      await initEngine();
      // Only the checkpoint's directory is needed here (for the policy's digest), not its weights again.
      const checkpointDir = async () => (await loadCheckpoint(where, { metaOnly: true })).path;
      if (plan.runtime === 'onnx') {
        let p;
        try {
          p = await openOnnxPolicy(where, plan.isBundle, { sampler: f.sampler });
        } catch (e) {
          throw f.sampler || e instanceof BundleError ? new UsageError(`${f.sampler ? '--sampler: ' : ''}${(e as Error).message}`) : e;
        }
        const srcDir = plan.isBundle ? where : await checkpointDir();
        served = servedPolicy(p, { runtime: 'onnx', source: f.policy, digestOf: await digestSource(srcDir), obsDim: p.manifest.obsDim, cameraSize: p.manifest.vision?.frameSize });
        dispose = () => p.dispose();
      } else {
        const p = await loadPolicy(where);
        if (f.sampler) {
          try {
            applySampler(p, f.sampler);
          } catch (e) {
            throw new UsageError(`--sampler: ${(e as Error).message}`);
          }
        }
        const cfg = p instanceof ChunkPolicy ? p.config : null;
        served = servedPolicy(p, { runtime: 'tfjs', source: f.policy, digestOf: await digestSource(await checkpointDir()), obsDim: cfg?.obsDim ?? 0, cameraSize: cfg?.vision?.frameSize });
        dispose = () => p.dispose();
      }
      const log = (line: string) => process.stderr.write(`onedp serve: ${line}\n`);
      let server;
      try {
        server = await startServer({ policy: served, host: f.host, port, token: f.token, maxMessageBytes, log });
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EADDRINUSE') throw new UsageError(`--port ${port}: already in use on ${f.host}`);
        if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--host ${f.host}: not an address of this machine`);
        throw new UsageError((e as Error).message);
      }
      const i = served.info;
      log(`${i.kind} (${i.runtime}, policy id ${i.id}) on ${server.url}${f.token ? ' (token required)' : ''}; Ctrl-C stops`);
      // Console output is line-buffered for scripts that wait for the address.
      console.log(JSON.stringify({ url: server.url, policy: i }));
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) return;
          stopping = true;
          log(`${sig}: answering queued requests, refusing new ones`);
          void server.close().then(async () => {
            await dispose();
            log(`stopped after ${server.stats.served} replies (${server.stats.errors} errors, ${server.stats.connections} connections)`);
            resolve();
          });
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
    });
}

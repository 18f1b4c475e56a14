/**
 * `npm run bench [-- --quick] [-- --only SECTION] [-- --peer]`: runs the benchmarks, prints a
 * table and writes bench/results/latest.json and latest.md (plus a dated copy of the JSON).
 * `--peer` adds PyTorch's times (bench/peer/) to the speed section, from the same run.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine, tf, describeEngine } from '../src/engine/index.js';
import { fmt, table, type BenchRow } from './harness.js';
import { benchNn, benchBig } from './nn.js';
import { benchTrain } from './train.js';
import { benchDistill } from './distill.js';
import { benchEnv } from './env.js';
import { benchImage } from './image.js';
import { benchSpeed } from './speed.js';
import { benchDeploy } from './deploy.js';
import { benchBrowser } from './browser.js';
import { benchMujoco } from './mujoco.js';

type Section = (rows: BenchRow[], opts: { quick: boolean; peer: boolean }) => Promise<void | Record<string, unknown>>;

const SECTIONS: Record<string, Section> = {
  speed: benchSpeed,
  nn: benchNn,
  train: benchTrain,
  distill: benchDistill,
  env: benchEnv,
  image: benchImage,
  deploy: benchDeploy,
  browser: benchBrowser,
  mujoco: benchMujoco,
  big: benchBig,
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const peer = args.includes('--peer');
  const onlyIdx = args.indexOf('--only');
  // `big` runs only when asked for: it needs a fresh wasm heap.
  const only = onlyIdx >= 0 ? args[onlyIdx + 1].split(',') : Object.keys(SECTIONS).filter((k) => k !== 'big');
  const backend = await initEngine();
  const engine = describeEngine();
  const rows: BenchRow[] = [];
  const sectionMeta: Record<string, unknown> = {};
  // Report each result as it lands: some benchmarks take minutes on 2 cores.
  const push = rows.push.bind(rows);
  rows.push = (...items: BenchRow[]) => {
    for (const r of items) process.stderr.write(`  ${r.section}: ${r.name}: ${fmt(r.ms, 2)} ms${r.gflops ? `, ${fmt(r.gflops)} GFLOPS` : ''}\n`);
    return push(...items);
  };
  for (const name of only) {
    const section = SECTIONS[name];
    if (!section) throw new Error(`unknown bench section "${name}"; known: ${Object.keys(SECTIONS).join(', ')}`);
    process.stderr.write(`bench: ${name}...\n`);
    const m = await section(rows, { quick, peer });
    if (m) sectionMeta[name] = m;
  }
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    backend,
    engine,
    tfjs: tf.version.tfjs,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    quick,
    ...sectionMeta,
  };
  const speed = sectionMeta.speed as { peakGflops?: { cores: number; allCores: number; oneCore: number; isa: string } | null; peer?: { torch?: string; threads?: number; skipped?: string } | null } | undefined;
  const notes: string[] = [];
  if (speed?.peakGflops) notes.push(`fp32 peak, measured with a multiply-add loop (${speed.peakGflops.isa}): ${speed.peakGflops.oneCore.toFixed(0)} GFLOPS on one core, ${speed.peakGflops.allCores.toFixed(0)} on ${speed.peakGflops.cores}; "% of peak" is GEMM FLOPs per second against the latter.`);
  if (speed?.peer) notes.push(speed.peer.torch ? `PyTorch ${speed.peer.torch} on ${speed.peer.threads} threads (bench/peer/), same run.` : `PyTorch: ${speed.peer.skipped}`);
  const md = `# onedp benchmarks\n\n${meta.date}, Node ${meta.node}, ${engine} (tfjs ${meta.tfjs}), ${meta.cores} x ${meta.cpu}${quick ? ', quick' : ''}\n\n${notes.map((n) => `${n}\n`).join('')}\n${table(rows)}\n`;
  console.log(md);
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  await fs.mkdir(dir, { recursive: true });
  const json = JSON.stringify({ meta, rows }, null, 1);
  // A partial run (--only) writes its own files, so it never replaces the full results.
  const tag = onlyIdx >= 0 ? `-${only.join('+')}` : '';
  await fs.writeFile(path.join(dir, `latest${tag}.json`), json);
  await fs.writeFile(path.join(dir, `latest${tag}.md`), md);
  await fs.writeFile(path.join(dir, `${meta.date.slice(0, 10)}${tag}.json`), json);
}

main().catch((e: unknown) => {
  console.error(`bench failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});

/**
 * Mutation fuzzing of every reader of outside input (test/helpers/fuzz.ts):
 *   npx tsx scripts/fuzz.ts [inputs per reader = 10000] [readers, comma-separated] > report.jsonl
 * One JSON line per reader: inputs, loaded, clear errors, unclear errors (defects), slow inputs.
 */
import { initEngine } from '../src/engine/index.js';
import { fuzz } from '../test/helpers/fuzz.js';

await initEngine({ backend: 'wasm' });
const n = Number(process.argv[2] ?? 10000);
for (const r of await fuzz(n, 1, process.argv[3] ? process.argv[3].split(',') : undefined, (line) => process.stderr.write(`${line}\n`))) console.log(JSON.stringify(r));
process.exit(0);

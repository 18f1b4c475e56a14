/**
 * Measures the scripted PushT expert: success rate and episode length over seeded starts, and how
 * varied its pushes are (faces chosen overall, first push of each episode, and different first
 * pushes from the same start under different expert seeds).
 *
 *   npx tsx scripts/expert_eval.ts [episodes=100] [firstSeed=0]
 */
import { FACE_NAMES, rolloutExpert } from '../src/envs/expert.js';

const episodes = Number(process.argv[2] ?? 100);
const firstSeed = Number(process.argv[3] ?? 0);

function entropyBits(counts: readonly number[]): number {
  const total = counts.reduce((s, c) => s + c, 0);
  return -counts.reduce((s, c) => (c > 0 ? s + (c / total) * Math.log2(c / total) : s), 0);
}

const faceCounts = new Array<number>(FACE_NAMES.length).fill(0);
const firstCounts = new Array<number>(FACE_NAMES.length).fill(0);
const lengths: number[] = [];
const failures: string[] = [];
let successes = 0;
let pushes = 0;
const t0 = performance.now();
for (let seed = firstSeed; seed < firstSeed + episodes; seed++) {
  const ep = rolloutExpert(seed);
  lengths.push(ep.length);
  if (ep.success) successes++;
  else failures.push(`seed ${seed} (max coverage ${ep.maxCoverage.toFixed(3)})`);
  for (const f of ep.pushFaces) faceCounts[f]++;
  if (ep.pushFaces.length > 0) firstCounts[ep.pushFaces[0]]++;
  pushes += ep.pushFaces.length;
}
const seconds = (performance.now() - t0) / 1000;
const steps = lengths.reduce((s, l) => s + l, 0);
const successLengths = lengths.filter((_, i) => !failures.some((f) => f.startsWith(`seed ${firstSeed + i} `)));

// Multimodality: the same start, different expert seeds.
const starts = Math.min(20, episodes);
const expertSeeds = 5;
let distinctFirst = 0;
let distinctSequences = 0;
for (let seed = firstSeed; seed < firstSeed + starts; seed++) {
  const firsts = new Set<number>();
  const sequences = new Set<string>();
  for (let k = 0; k < expertSeeds; k++) {
    const ep = rolloutExpert(seed, { expertSeed: 7919 * (k + 1) + seed });
    firsts.add(ep.pushFaces[0]);
    sequences.add(ep.pushFaces.slice(0, 4).join(','));
  }
  distinctFirst += firsts.size;
  distinctSequences += sequences.size;
}

const pct = (c: number, t: number) => `${((100 * c) / t).toFixed(1)}%`;
console.log(`episodes            ${episodes} (seeds ${firstSeed}..${firstSeed + episodes - 1})`);
console.log(`success rate        ${(successes / episodes).toFixed(3)}`);
console.log(`mean length         ${(steps / episodes).toFixed(1)} steps (successful episodes: ${(successLengths.reduce((s, l) => s + l, 0) / Math.max(1, successLengths.length)).toFixed(1)})`);
console.log(`pushes per episode  ${(pushes / episodes).toFixed(1)}`);
console.log(`push faces          ${FACE_NAMES.map((n, i) => `${n} ${pct(faceCounts[i], pushes)}`).join(', ')}`);
console.log(`face entropy        ${entropyBits(faceCounts).toFixed(2)} bits (max ${Math.log2(FACE_NAMES.length).toFixed(2)})`);
console.log(`first push faces    ${FACE_NAMES.map((n, i) => `${n} ${firstCounts[i]}`).join(', ')} (entropy ${entropyBits(firstCounts).toFixed(2)} bits)`);
console.log(`same start, ${expertSeeds} expert seeds: ${(distinctFirst / starts).toFixed(2)} distinct first faces, ${(distinctSequences / starts).toFixed(2)} distinct 4-push face sequences (mean over ${starts} starts)`);
console.log(`failures            ${failures.length ? failures.join('; ') : 'none'}`);
console.log(`time                ${seconds.toFixed(1)} s for ${steps} env steps with planning (${(steps / seconds).toFixed(0)} steps/s)`);

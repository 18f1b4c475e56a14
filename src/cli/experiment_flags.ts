/** The recipe flags `quickstart` and `reproduce` share, mapped onto experiment overrides. */
import type { ExperimentOptions } from '../experiments/recipe.js';
import { parseSeedRange } from '../eval/harness.js';
import { UsageError, parseFloatFlag, parseIntFlag, parseIntList } from './errors.js';

/** [flag, help] pairs; every default comes from the preset. */
export const EXPERIMENT_FLAGS: [string, string][] = [
  ['--episodes <n>', 'expert demonstrations'],
  ['--train-steps <n>', 'pre-training steps per teacher'],
  ['--batch-size <n>', 'pre-training batch size'],
  ['--lr <x>', 'pre-training learning rate'],
  ['--down-dims <list>', 'U-Net channels per level'],
  ['--step-embed <n>', 'diffusion step embedding size'],
  ['--encoder-widths <list>', "image experiments: ResNet-18 stage widths (the spec's: 64,128,256,512)"],
  ['--distill-steps <n>', 'OneDP distillation steps per method'],
  ['--distill-batch-size <n>', 'OneDP distillation batch size'],
  ['--cp-steps <n>', 'Consistency Policy distillation steps'],
  ['--lr-generator <x>', 'OneDP generator learning rate'],
  ['--lr-score <x>', 'OneDP-S score-network learning rate'],
  ['--cp-lr <x>', 'Consistency Policy learning rate (paper 1e-4)'],
  ['--cp-dropout <x>', 'Consistency Policy dropout (paper 0.2)'],
  ['--curve-every <n>', "evaluate the curve seed's one-step policies every N distillation steps (0: off)"],
  ['--pretrain-curve-every <n>', "evaluate the curve seed's teachers every N pre-training steps (0: off)"],
  ['--curve-seeds <n>', 'test seeds per curve point'],
  ['--realtime-nfe-ms <list>', 'real-time table: simulated ms per network evaluation, one column each ("" for none)'],
  ['--perturb <n>', 'real-time table: block moves per episode (0-2)'],
  ['--test-seeds <A:B>', 'test seeds'],
  ['--latency-reps <n>', 'batch-1 calls per latency measurement'],
];

const positive = (name: string, v: string): number => parseFloatFlag(name, v, { min: 0, exclusiveMin: true });

/** Overrides from the flags that were given; bad values are usage errors naming the flag. */
export function experimentFlagOverrides(f: Record<string, string | undefined>): Partial<ExperimentOptions> {
  const o: Partial<ExperimentOptions> = {};
  const int = (k: string, flag: string, min = 1) => (f[k] === undefined ? undefined : parseIntFlag(flag, f[k]!, min));
  const set = <K extends keyof ExperimentOptions>(key: K, v: ExperimentOptions[K] | undefined) => {
    if (v !== undefined) o[key] = v;
  };
  set('episodes', int('episodes', 'episodes'));
  set('trainSteps', int('trainSteps', 'train-steps'));
  set('batchSize', int('batchSize', 'batch-size'));
  if (f.lr !== undefined) o.lr = positive('lr', f.lr);
  if (f.downDims !== undefined) o.downDims = parseIntList('down-dims', f.downDims);
  set('stepEmbed', int('stepEmbed', 'step-embed'));
  if (f.encoderWidths !== undefined) o.encoderWidths = parseIntList('encoder-widths', f.encoderWidths);
  set('distillSteps', int('distillSteps', 'distill-steps'));
  set('distillBatchSize', int('distillBatchSize', 'distill-batch-size'));
  set('cpSteps', int('cpSteps', 'cp-steps'));
  if (f.lrGenerator !== undefined) o.lrGenerator = positive('lr-generator', f.lrGenerator);
  if (f.lrScore !== undefined) o.lrScore = positive('lr-score', f.lrScore);
  if (f.cpLr !== undefined) o.cpLr = positive('cp-lr', f.cpLr);
  if (f.cpDropout !== undefined) {
    const x = Number(f.cpDropout);
    if (!(x >= 0 && x < 1)) throw new UsageError(`--cp-dropout must be in [0, 1), got "${f.cpDropout}"`);
    o.cpDropout = x;
  }
  set('curveEvery', int('curveEvery', 'curve-every', 0));
  set('pretrainCurveEvery', int('pretrainCurveEvery', 'pretrain-curve-every', 0));
  set('curveSeeds', int('curveSeeds', 'curve-seeds'));
  if (f.realtimeNfeMs !== undefined) o.realtimeNfeMs = f.realtimeNfeMs.trim() === '' ? [] : f.realtimeNfeMs.split(',').map((v) => positive('realtime-nfe-ms', v));
  if (f.perturb !== undefined) {
    if (!/^[012]$/.test(f.perturb.trim())) throw new UsageError(`--perturb must be 0, 1 or 2, got "${f.perturb}"`);
    o.perturb = Number(f.perturb);
  }
  if (f.testSeeds !== undefined) {
    try {
      o.testSeeds = parseSeedRange(f.testSeeds);
    } catch (e) {
      throw new UsageError(`--test-seeds: ${(e as Error).message}`);
    }
  }
  set('latencyReps', int('latencyReps', 'latency-reps'));
  return o;
}

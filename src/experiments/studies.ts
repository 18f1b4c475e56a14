/**
 * The recipe studies `onedp study` runs. Each entry varies one thing a researcher would vary
 * (demonstrations, U-Net width, batch size, learning rate, steps, DDPM or EDM) against a base,
 * and is evaluated on the same test seeds at every checkpoint.
 */
import type { StudyConfig } from './study.js';

type Variant = Partial<StudyConfig> & { name: string };

/** The base of the PushT-state study: the earlier reproduction's recipe run much longer. */
const PUSHT_BASE: Omit<StudyConfig, 'name'> = {
  episodes: 200,
  downDims: [32, 64],
  stepEmbed: 64,
  batchSize: 64,
  lr: 1e-3,
  steps: 40_000,
  warmupSteps: 500,
  noise: 'ddpm',
  evalEvery: 5_000,
  seed: 0,
};

const PUSHT_VARIANTS: Variant[] = [
  { name: 'base' },
  { name: 'demos-500', episodes: 500 },
  { name: 'demos-100', episodes: 100 },
  { name: 'wide-64-128-b256', downDims: [64, 128], batchSize: 256, steps: 10_000, evalEvery: 1_250 },
  { name: 'b256', batchSize: 256, steps: 16_000, evalEvery: 2_000 },
  { name: 'lr-3e-4', lr: 3e-4 },
  { name: 'edm', noise: 'edm' },
];

export const STUDIES: Record<string, { base: Omit<StudyConfig, 'name'>; variants: Variant[] }> = {
  'pusht-recipe': { base: PUSHT_BASE, variants: PUSHT_VARIANTS },
};

export function studyConfigs(grid: string): StudyConfig[] {
  const s = STUDIES[grid];
  if (!s) throw new Error(`unknown study "${grid}"`);
  return s.variants.map((v) => ({ ...s.base, ...v }));
}

/**
 * Cosine learning-rate schedule with linear warm-up, stepped per batch (diffusers'
 * `get_cosine_schedule_with_warmup`, half a cycle).
 */
export function cosineWithWarmup(step: number, warmupSteps: number, totalSteps: number): number {
  if (step < warmupSteps) return step / Math.max(1, warmupSteps);
  const progress = (step - warmupSteps) / Math.max(1, totalSteps - warmupSteps);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/**
 * Running work inside a gradient computation without recording it on the tape.
 *
 * Why: tfjs records every kernel that runs while any `variableGrads` is active, and nested
 * gradient computations share one tape, so a nested update (OneDP-S trains its score network
 * inside the generator's gradient, to share one generator forward) is recorded twice over:
 * its forward, its backward and its optimiser step, with every tensor they save kept alive
 * until the outer gradient finishes. tfjs has no public "no gradient" scope; this lends the
 * engine an empty tape for the duration of `fn` and restores the outer one afterwards. What
 * `fn` computes is treated as a constant by the outer gradient, which is what a stop-gradient
 * means. Results are the same; only the bookkeeping goes.
 */
import * as tf from '@tensorflow/tfjs';

interface TapeState {
  activeTape: unknown[] | null;
  gradientDepth: number;
}

export function withoutTape<T>(fn: () => T): T {
  const state = (tf.engine() as unknown as { state: TapeState }).state;
  const tape = state.activeTape;
  const depth = state.gradientDepth;
  if (depth === 0) return fn();
  state.activeTape = null;
  state.gradientDepth = 0;
  try {
    return fn();
  } finally {
    state.activeTape = tape;
    state.gradientDepth = depth;
  }
}

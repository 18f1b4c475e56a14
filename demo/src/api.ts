/** What the page exposes as `window.onedpDemo`, for the end-to-end test and for scripting it. */
export interface DemoState {
  /** The chosen policy's id (onedp-s, ddim-10, ddpm-100, yours) and whether it is loaded. */
  policy: string;
  ready: boolean;
  /** Control steps since the last reset, and the block's coverage of the goal now. */
  step: number;
  coverage: number;
  success: boolean;
  successAt: number | null;
  agent: [number, number];
  block: [number, number, number];
  /** The latest chunk: the worker's compute time, its split, and the round trip seen by the page (ms). */
  inferenceMs: number;
  obsEncodingMs: number;
  actionPredictionMs: number;
  roundTripMs: number;
  /** Medians over this policy's chunks so far (ms). */
  inferenceMsMedian: number;
  roundTripMsMedian: number;
  nfe: number;
  /** Ticks per second over the last ten. */
  controlHz: number;
  /** Steps since the observation the executing action's chunk was computed from; null: holding. */
  chunkAgeSteps: number | null;
  replies: number;
  heldSteps: number;
  paused: boolean;
  /** Errors shown on the page. */
  errors: string[];
}

export interface DemoApi {
  state(): DemoState;
  choose(id: string): Promise<void>;
  reset(seed: number): void;
  /** A lockstep episode (the world waits for each chunk) of a policy with its own noise stream. */
  rollout(id: string, seed: number, steps: number): Promise<{ actions: number[][]; states: number[][] }>;
  /** The 96x96 camera frame of a PushT state [agent x, y, block x, y, angle], as the page renders it. */
  frame(state: number[]): number[];
  /** A point inside the block on the page (CSS pixels), and CSS pixels per workspace unit. */
  blockOnPage(): { x: number; y: number; scale: number };
}

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

/** What the Lift page (lift.html) exposes as `window.onedpLift`. */
export interface LiftDemoState {
  policy: string;
  ready: boolean;
  step: number;
  /** The cube's bottom above the table (m); its centre and the gripper's point between the fingertips (world m). */
  cubeHeight: number;
  cube: [number, number, number];
  gripper: [number, number, number];
  /** Whether the cube has been lifted past 4 cm this episode, and at which step. */
  success: boolean;
  successAt: number | null;
  inferenceMs: number;
  inferenceMsMedian: number;
  roundTripMs: number;
  nfe: number;
  controlHz: number;
  replies: number;
  heldSteps: number;
  /** Control steps between asking for each of the last ten chunks and acting on it (0: within the tick's budget). */
  recentDelays: number[];
  /** Chunks since the policy was loaded (chosen, or Reset) that missed the compute budget (and so acted a step or more late). */
  lateChunks: number;
  paused: boolean;
  errors: string[];
}

export interface LiftDemoApi {
  state(): LiftDemoState;
  choose(id: string): Promise<void>;
  reset(seed: number): void;
  /** Moves the cube to (x, y) on the table (m from its centre). */
  placeCube(x: number, y: number): void;
  /** A lockstep episode of a policy with its own noise stream: actions and policy observations. */
  rollout(id: string, seed: number, steps: number): Promise<{ actions: number[][]; states: number[][]; success: boolean }>;
}

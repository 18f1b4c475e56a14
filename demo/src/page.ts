/**
 * What the demo pages (PushT, Lift) share: the status line with its log of errors, bundles opened
 * once per page, the control loop that ticks on time whatever the policy is doing, and the
 * readout's number formatting.
 */
import type { PolicyWorker } from './worker_policy.js';

/** A policy a page offers: a bundle folder URL (ending in "/") or a file-picker key, and its sampler. */
export interface Choice {
  id: string;
  label: string;
  key: string;
  sampler?: string;
}

/** The page's element with this id. */
export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** The status line; errors are also kept (the latest 20, each once in a row) for `state()`. */
export class StatusLine {
  readonly errors: string[] = [];
  constructor(private readonly el: HTMLElement) {}

  set(text: string, isError = false): void {
    this.el.textContent = text;
    this.el.className = isError ? '' : 'ok';
    // The state is read every tick: an error repeated in a row is logged once.
    if (isError && this.errors.at(-1) !== text) this.errors.push(text);
    if (this.errors.length > 20) this.errors.splice(0, this.errors.length - 20);
  }
}

/** Opens each bundle folder (or file-picker key) once; a failed open is tried again next time. */
export class BundleCache {
  private readonly opened = new Map<string, Promise<unknown>>();
  constructor(private readonly worker: PolicyWorker) {}

  open(key: string): Promise<unknown> {
    if (!this.opened.has(key)) {
      const p = this.worker.openUrl(key);
      this.opened.set(key, p);
      p.catch(() => this.opened.delete(key));
    }
    return this.opened.get(key)!;
  }

  /** Records a bundle opened some other way (the file picker). */
  add(key: string): void {
    this.opened.set(key, Promise.resolve());
  }
}

/**
 * Tick k at start + k periods, whatever the policy is doing. A page in the background is
 * throttled: the loop then starts afresh rather than catching up in a burst. `tick` may be
 * asynchronous (a synchronous robot loop waiting for its chunk); the next tick is scheduled when
 * it returns, and a tick that outlives a pause (or a pause and a resume) sees `running()` false
 * and schedules nothing, so only one loop ever runs.
 */
export class ControlLoop {
  paused = false;
  private start = performance.now();
  private k = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;

  constructor(
    private readonly periodMs: number,
    private readonly tick: (running: () => boolean) => void | Promise<void>,
  ) {}

  /** Starts ticking (or resumes), from now. */
  run(): void {
    this.paused = false;
    this.generation++;
    this.start = performance.now();
    this.k = 0;
    this.schedule();
  }

  pause(): void {
    this.paused = true;
    this.generation++;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    this.k++;
    let due = this.start + this.k * this.periodMs;
    if (performance.now() - due > 5 * this.periodMs) {
      this.start = performance.now();
      this.k = 0;
      due = this.start;
    }
    const mine = this.generation;
    const running = () => mine === this.generation;
    this.timer = setTimeout(async () => {
      if (!running()) return;
      await this.tick(running);
      if (running()) this.schedule();
    }, Math.max(0, due - performance.now()));
  }
}

export const median = (xs: readonly number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] : NaN);
export const fmt = (v: number | undefined | null, digits = 1) => (v === undefined || v === null || !Number.isFinite(v) ? '–' : v.toFixed(digits));

/** Bad command-line input: reported as one line, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseIntFlag(name: string, v: string, min = 1): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export function parseFloatFlag(name: string, v: string, opts: { min?: number; exclusiveMin?: boolean } = {}): number {
  const n = Number(v);
  const min = opts.min ?? -Infinity;
  if (!Number.isFinite(n) || n < min || (opts.exclusiveMin && n === min)) throw new UsageError(`--${name} must be a number${Number.isFinite(min) ? ` ${opts.exclusiveMin ? '>' : '>='} ${min}` : ''}, got "${v}"`);
  return n;
}

export function parseIntList(name: string, v: string, opts: { min?: number } = {}): number[] {
  const min = opts.min ?? 1;
  const parts = v.split(',').map((s) => Number(s.trim()));
  const what = min === 0 ? 'non-negative' : 'positive';
  if (parts.length === 0 || parts.some((n) => !Number.isInteger(n) || n < min)) throw new UsageError(`--${name} must be a comma-separated list of ${what} integers, got "${v}"`);
  return parts;
}

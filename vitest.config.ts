import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 120_000,
    // Each file gets its own process, so a wasm backend never leaks kernels into another file.
    pool: 'forks',
    // vitest leaves one core free by default; on the 2-core CI machine that serialises the
    // minute-long training tests.
    maxWorkers: 2,
    // The longest files first, so the two workers finish together.
    sequence: { shuffle: false },
  },
});

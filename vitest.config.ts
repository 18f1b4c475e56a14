import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Each file gets its own process, so a wasm backend never leaks kernels into another file.
    pool: 'forks',
  },
});

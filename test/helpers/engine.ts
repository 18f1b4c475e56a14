import { beforeAll } from 'vitest';
import { initEngine } from '../../src/engine/index.js';

/** Every test file runs on the wasm backend with onedp's kernels, as users do. */
export function useWasmEngine(): void {
  beforeAll(async () => {
    await initEngine({ backend: 'wasm' });
  });
}

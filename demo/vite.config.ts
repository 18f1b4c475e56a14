/**
 * The browser demo's build (`npm run demo`). The page imports onedp's own environment, renderer,
 * bundle policy and async actor from src/, unchanged, but for one file: src/engine/native.ts
 * loads onedp's Node addon (training kernels), and the page gets a stub that reports none, so
 * tfjs runs its plain kernels for the samplers' few elementwise updates.
 *
 * onnxruntime-web's wasm binary is an asset of the build (its bundle asks for it with
 * `new URL(..., import.meta.url)`), and asset paths are relative, so the built folder works from
 * any static host, under any path.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const here = path.dirname(fileURLToPath(import.meta.url));
export function nativeStub(): Plugin {
  const engine = '/src/engine/';
  return {
    name: 'onedp-native-stub',
    enforce: 'pre',
    resolveId(source, importer) {
      // Importer ids use forward slashes on every platform once normalised.
      if (source === './native.js' && importer?.replace(/\\/g, '/').includes(engine)) return path.join(here, 'src', 'native_stub.ts');
      return null;
    },
  };
}

export default defineConfig({
  root: here,
  // Relative asset paths: the page works from any folder of any static host.
  base: './',
  plugins: [nativeStub()],
  worker: { format: 'es', plugins: () => [nativeStub()] },
  build: {
    outDir: path.join(here, 'dist'),
    emptyOutDir: true,
    target: 'es2022',
    // The worker carries tfjs and onnxruntime-web (2 MB); the PushT page itself is 230 kB. The
    // Lift page carries MuJoCo's WebAssembly build, embedded in its 11 MB module.
    chunkSizeWarningLimit: 12288,
    // Transforming onnxruntime-web's 14 MB bundle dominates the build; that is expected.
    rolldownOptions: {
      checks: { pluginTimings: false },
      // Two pages: PushT (index.html) and Lift in MuJoCo (lift.html).
      input: { index: path.join(here, 'index.html'), lift: path.join(here, 'lift.html') },
    },
  },
  preview: { host: '127.0.0.1' },
});

/** The browser bench page (bench/browser.ts builds and serves it); the demo's policies are its assets. */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import { nativeStub } from '../../demo/vite.config.js';

const here = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  publicDir: path.join(here, '..', '..', 'demo', 'public'),
  plugins: [nativeStub()],
  worker: { format: 'es', plugins: () => [nativeStub()] },
  build: { outDir: path.join(here, 'dist'), emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 12288 },
  logLevel: 'warn',
});

#!/usr/bin/env node
// Builds onedp's native kernels (native/) with node-gyp, as `npm install` runs it.
//
// Never fails the install: without a compiler, Node's headers or node-gyp, onedp runs on its
// wasm kernels, and this prints why. Never downloads: node-gyp is pointed at the headers that
// come with Node (npm's `nodedir`, else the ones beside the node binary), and the build is
// skipped when there are none. `ONEDP_NATIVE=0` skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const say = (msg) => process.stderr.write(`onedp native: ${msg}\n`);

function headersDir() {
  const candidates = [process.env.npm_config_nodedir, path.resolve(path.dirname(process.execPath), '..')].filter(Boolean);
  return candidates.find((d) => existsSync(path.join(d, 'include', 'node', 'node_api.h'))) ?? null;
}

function nodeGyp() {
  // npm puts its bundled node-gyp on PATH for scripts and names it in npm_config_node_gyp.
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const bundled = path.resolve(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, bundled];
  return null;
}

function main() {
  if (['0', 'false', 'off'].includes(process.env.ONEDP_NATIVE ?? '')) {
    say('skipped (ONEDP_NATIVE=0); onedp will use its wasm kernels');
    return;
  }
  const nodedir = headersDir();
  if (!nodedir) {
    say("skipped: Node's C headers (include/node/node_api.h) are not on this machine; onedp will use its wasm kernels");
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) {
    say('skipped: node-gyp not found (it comes with npm); onedp will use its wasm kernels');
    return;
  }
  const t0 = Date.now();
  const r = spawnSync(gyp[0], [gyp[1], 'rebuild', '--release', `--nodedir=${nodedir}`, '--loglevel=error'], { cwd: nativeDir, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    say(`build failed (${r.error ? r.error.message : `exit ${r.status}`}); onedp will use its wasm kernels`);
    return;
  }
  say(`built in ${((Date.now() - t0) / 1000).toFixed(1)} s: native/build/Release/onedp_native.node`);
}

main();

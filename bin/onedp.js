#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx onedp` works without a build step.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
// tsx resolved from this package, so the command works from any working directory.
const tsx = import.meta.resolve('tsx');
const r = spawnSync(process.execPath, ['--import', tsx, path.join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);

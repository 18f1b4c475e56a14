#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx onedp` works without a build step. tsx is
// registered in this process (not a child), so signals reach the CLI: SIGTERM to `onedp serve`
// stops the server itself rather than orphaning it.
import { register } from 'tsx/esm/api';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as path from 'node:path';
const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
register();
const { runCli } = await import(pathToFileURL(path.join(root, 'src/cli/main.ts')).href);
runCli(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`onedp: error: ${String(e)}\n`);
    process.exit(1);
  },
);

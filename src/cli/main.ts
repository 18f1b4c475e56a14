/**
 * The `onedp` command line. Every command reports bad input as one clear line (file and
 * problem) and a non-zero exit status, never a stack trace.
 */
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands.js';

import { UsageError } from './errors.js';

export { UsageError };

export async function runCli(argv: string[]): Promise<number> {
  const program = new Command();
  program.name('onedp').description('One-Step Diffusion Policy: train, distill and evaluate diffusion policies').exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerCommands(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`onedp: error: ${msg}\n`);
    if (process.env.ONEDP_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
    return e instanceof UsageError ? 2 : 1;
  }
}

// Run when executed directly (tsx src/cli/main.ts ...).
if (process.argv[1] && /main\.[tj]s$/.test(process.argv[1])) {
  runCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`onedp: error: ${String(e)}\n`);
      process.exit(1);
    },
  );
}

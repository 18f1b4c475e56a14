/**
 * The browser section (`npm run bench -- --only browser`): builds bench/browser/ with Vite, serves
 * it on localhost and runs it in headless Chromium (Debian's, through playwright-core): batch-1
 * latency of the demo's policies on onnxruntime-web and on tfjs's wasm backend, side by side in
 * one page. Skipped, with the reason, when Chromium is not installed.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRow } from './harness.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../demo/chromium.js';

const here = path.dirname(fileURLToPath(import.meta.url));
interface Row {
  policy: string;
  runtime: string;
  ms: number;
}

export async function benchBrowser(rows: BenchRow[], opts: { quick: boolean }): Promise<Record<string, unknown>> {
  if (!existsSync(CHROMIUM)) return { skipped: `no Chromium at ${CHROMIUM} (apt-get install chromium, or set ONEDP_CHROMIUM)` };
  const vite = await import('vite');
  const configFile = path.join(here, 'browser', 'vite.config.ts');
  await vite.build({ configFile, logLevel: 'error' });
  const server = await vite.preview({ configFile, logLevel: 'error', preview: { port: 0, host: '127.0.0.1' } });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const page = await browser.newPage();
    await page.goto(`${server.resolvedUrls!.local[0]}?minMs=${opts.quick ? 500 : 3000}`);
    const result = (await page.evaluate(() => (window as unknown as { benchResult: Promise<unknown> }).benchResult)) as { rows: Row[]; userAgent: string; tfjs: string };
    const ort = new Map(result.rows.filter((r) => r.runtime.startsWith('onnxruntime')).map((r) => [r.policy, r.ms]));
    for (const r of result.rows) {
      const o = ort.get(r.policy);
      rows.push({ section: 'browser', name: `${r.policy}, ${r.runtime}`, ms: r.ms, extra: { Hz: +(1000 / r.ms).toFixed(1), ...(o && !r.runtime.startsWith('onnxruntime') ? { 'x onnxruntime-web': +(r.ms / o).toFixed(2) } : {}) } });
    }
    return { chromium: result.userAgent.match(/Chrome\/[\d.]+/)?.[0] ?? result.userAgent, tfjs: result.tfjs };
  } finally {
    await browser.close();
    await new Promise<void>((r) => server.httpServer.close(() => r()));
  }
}

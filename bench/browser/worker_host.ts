/** Runs the bench in a worker, as the demo runs its policy, and exposes the result to the driver. */
declare global {
  interface Window {
    benchResult: Promise<unknown>;
  }
}
const worker = new Worker(new URL('./bench_worker.ts', import.meta.url), { type: 'module' });
window.benchResult = new Promise((resolve, reject) => {
  worker.onmessage = (e: MessageEvent<{ ok: boolean; result?: unknown; error?: string }>) => {
    document.getElementById('out')!.textContent = JSON.stringify(e.data, null, 1);
    if (e.data.ok) resolve(e.data.result);
    else reject(new Error(e.data.error));
  };
  worker.onerror = (e) => reject(new Error(e.message));
});
worker.postMessage({ minMs: Number(new URLSearchParams(location.search).get('minMs') ?? 2000) });
export {};

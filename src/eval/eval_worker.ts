/**
 * Worker-thread entry of `evaluateParallel` (parallel.ts): evaluates one shard of seeds and
 * posts each episode as it finishes, then all of them (or the error that stopped it).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { initEngine } from '../engine/index.js';
import { evaluateShard, loadPolicySource, type EvalWorkerData, type EvalWorkerMessage } from './parallel.js';

const port = parentPort;
if (!port) throw new Error('eval_worker runs only as a worker thread (see evaluateParallel)');
const post = (m: EvalWorkerMessage): void => port.postMessage(m);

try {
  const data = workerData as EvalWorkerData;
  await initEngine(data.engine);
  const policy = await loadPolicySource(data.source);
  const res = await evaluateShard(policy, data.shard, 0, (episode) => post({ type: 'episode', episode }));
  post({ type: 'done', episodes: res.episodes, realtime: res.realtime });
  policy.dispose();
} catch (e) {
  const err = e instanceof Error ? e : new Error(String(e));
  post({ type: 'error', name: err.name, message: err.message, stack: err.stack });
}

/** The page's side of the policy worker: bundles opened there, and policies as `AsyncPolicy`. */
import { BundleShape, type BundleManifest } from '../../src/export/manifest.js';
import type { AsyncPolicy, ObservationBatch, PolicyOutput } from '../../src/policy/types.js';
import type { PredictResult, UseResult, WorkerReply, WorkerRequest } from './protocol.js';

type Body<T> = T extends unknown ? Omit<T, 'id'> : never;

export class PolicyWorker {
  private readonly worker = new Worker(new URL('./policy_worker.ts', import.meta.url), { type: 'module' });
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  /** Set when the worker died: every call fails at once with this. */
  private failed: string | null = null;

  constructor() {
    this.worker.onmessage = (e: MessageEvent<WorkerReply>) => {
      const r = e.data;
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else p.reject(new Error(r.error));
    };
    const die = (why: string) => {
      this.failed = `the policy worker failed: ${why}`;
      for (const p of this.pending.values()) p.reject(new Error(this.failed));
      this.pending.clear();
    };
    this.worker.onerror = (e) => die(e.message || 'its script did not load');
    this.worker.onmessageerror = () => die('a message could not be decoded');
  }

  call<T>(msg: Body<WorkerRequest>, transfer: Transferable[] = []): Promise<T> {
    if (this.failed) return Promise.reject(new Error(this.failed));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /** Fetches a bundle folder (its policy.json names the graphs) and opens it; `base` ends in "/". */
  async openUrl(base: string): Promise<BundleManifest> {
    const get = async (file: string) => {
      let res: Response;
      try {
        res = await fetch(new URL(file, new URL(base, location.href)));
      } catch (e) {
        throw new Error(`${base}${file}: cannot fetch it (${(e as Error).message})`);
      }
      if (!res.ok) throw new Error(`${base}${file}: HTTP ${res.status}`);
      return res;
    };
    let manifest: { files?: { encoder?: unknown; action?: unknown } };
    try {
      manifest = (await (await get('policy.json')).json()) as typeof manifest;
    } catch (e) {
      throw new Error(`${base}policy.json: ${(e as Error).message}`);
    }
    const files = manifest?.files;
    // Plain names in the bundle's folder, checked before anything is fetched.
    const plain = (f: unknown): f is string => typeof f === 'string' && f.length > 0 && !/[\\/:?#]/.test(f);
    if (!plain(files?.encoder) || !plain(files?.action)) throw new Error(`${base}policy.json: not an onedp bundle ("files" must name the encoder and action graphs in its folder)`);
    const [encoder, action] = await Promise.all([get(files.encoder).then((r) => r.arrayBuffer()), get(files.action).then((r) => r.arrayBuffer())]);
    return this.open(base, manifest, encoder, action);
  }

  /** Opens a bundle chosen with a file picker: policy.json and the two graphs it names. */
  async openFiles(files: File[]): Promise<{ key: string; manifest: BundleManifest }> {
    const byName = new Map(files.map((f) => [f.name, f]));
    const json = byName.get('policy.json');
    if (!json) throw new Error(`choose an exported bundle's policy.json together with its .onnx files (got ${files.map((f) => f.name).join(', ') || 'nothing'})`);
    let manifest: { files?: { encoder?: unknown; action?: unknown } };
    try {
      manifest = JSON.parse(await json.text()) as typeof manifest;
    } catch (e) {
      throw new Error(`policy.json: not valid JSON (${(e as Error).message})`);
    }
    const need = [manifest?.files?.encoder, manifest?.files?.action];
    if (!need.every((n) => typeof n === 'string')) throw new Error('policy.json: not an onedp bundle ("files" must name the encoder and action graphs)');
    const missing = (need as string[]).filter((n) => !byName.has(n));
    if (missing.length) throw new Error(`policy.json names ${missing.join(' and ')}; choose ${missing.length > 1 ? 'them' : 'it'} too`);
    const key = `file:${files.map((f) => `${f.name}@${f.lastModified}`).join(',')}/`;
    const [encoder, action] = await Promise.all((need as string[]).map((n) => byName.get(n)!.arrayBuffer()));
    return { key, manifest: await this.open(key, manifest, encoder, action) };
  }

  private async open(key: string, manifest: unknown, encoder: ArrayBuffer, action: ArrayBuffer): Promise<BundleManifest> {
    const r = await this.call<{ manifest: BundleManifest }>({ type: 'open', key, manifest, encoder, action }, [encoder, action]);
    return r.manifest;
  }

  async use(key: string, seed: number, sampler?: string): Promise<WorkerPolicy> {
    const r = await this.call<UseResult>({ type: 'use', key, seed, sampler });
    return new WorkerPolicy(this, r);
  }
}

/**
 * A policy in the worker. Its noise comes from its own stream there (seeded at `use`), so calls
 * ignore the `rngs` an `AsyncActor` passes: a generator object does not cross to a worker.
 */
export class WorkerPolicy extends BundleShape implements AsyncPolicy {
  readonly sampler: string;
  /** The worker's compute time of the latest call (ms), and its output. */
  lastComputeMs = NaN;
  lastOutput: PolicyOutput | null = null;
  /** Every call's compute time (ms), for the page's medians. */
  readonly computeMs: number[] = [];

  constructor(
    private readonly host: PolicyWorker,
    private readonly r: UseResult,
  ) {
    super(r.manifest);
    this.sampler = r.sampler;
  }

  async predict(obs: ObservationBatch): Promise<PolicyOutput> {
    const r = await this.host.call<PredictResult>({ type: 'predict', handle: this.r.handle, obs });
    this.lastComputeMs = r.computeMs;
    this.computeMs.push(r.computeMs);
    this.lastOutput = r.output;
    return r.output;
  }

  dispose(): void {
    void this.host.call({ type: 'drop', handle: this.r.handle });
  }
}

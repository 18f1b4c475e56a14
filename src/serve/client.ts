/**
 * The robot side of the policy server: `PolicyClient` (requests and replies matched by id) and
 * `RemotePolicy`, which makes a server look like any asynchronous policy to onedp's harnesses.
 * Runs in Node (with `ws`) and in the browser (its WebSocket).
 */
import type { AsyncPolicy, ObservationBatch, PolicyOutput } from '../policy/types.js';
import { nest, toObservationBatch } from '../policy/types.js';
import type { Rng } from '../util/rng.js';
import { PROTOCOL_VERSION, decodeReply, encodeMessage, type ActionReply, type PolicyInfo, type Reply } from './protocol.js';

/** The part of the WebSocket API the client uses (the browser's and `ws`'s both have it). */
interface Socket {
  binaryType: string;
  readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onopen: (() => void) | null;
}

export class PolicyServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyServerError';
  }
}

async function openSocket(url: string, token?: string): Promise<Socket> {
  const g = globalThis as { WebSocket?: new (url: string) => Socket };
  if (typeof window !== 'undefined' && g.WebSocket) {
    // Browsers cannot set headers on a WebSocket: the token goes in the query.
    const u = new URL(url);
    if (token) u.searchParams.set('token', token);
    return new g.WebSocket(u.toString());
  }
  const { default: WS } = await import('ws');
  return new WS(url, token ? { headers: { authorization: `Bearer ${token}` } } : {}) as unknown as Socket;
}

export class PolicyClient {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closed: Error | null = null;
  policy!: PolicyInfo;

  private constructor(private readonly ws: Socket) {
    ws.onmessage = (ev) => {
      let r: Reply;
      try {
        const d = ev.data;
        r = decodeReply(d instanceof Uint8Array ? d : new Uint8Array(d as ArrayBuffer));
      } catch {
        return;
      }
      const id = (r as { id: number | null }).id;
      const p = id === null ? undefined : this.pending.get(id);
      if (!p) return;
      this.pending.delete(id!);
      if (r.type === 'error') p.reject(new PolicyServerError(r.code, `policy server: ${r.code}: ${r.message}`));
      else p.resolve(r);
    };
    ws.onclose = (ev) => {
      this.closed = new PolicyServerError('closed', `policy server closed the connection (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`);
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
    };
  }

  /** Connects and asks the server which policy it serves. */
  static async connect(url: string, opts: { token?: string; timeoutMs?: number } = {}): Promise<PolicyClient> {
    const ws = await openSocket(url, opts.token);
    ws.binaryType = 'arraybuffer';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new PolicyServerError('timeout', `no connection to ${url} within ${opts.timeoutMs ?? 10000} ms`)), opts.timeoutMs ?? 10000);
      ws.onopen = () => {
        clearTimeout(timer);
        resolve();
      };
      ws.onerror = (e) => {
        clearTimeout(timer);
        const msg = (e as { message?: string }).message ?? 'connection failed';
        reject(new PolicyServerError(/401/.test(msg) ? 'unauthorized' : 'connect', `cannot connect to ${url}: ${msg}`));
      };
    });
    ws.onerror = null;
    const c = new PolicyClient(ws);
    const r = await c.request({ type: 'info' });
    if (r.type !== 'info') throw new PolicyServerError('bad-reply', 'the server did not answer the info request');
    c.policy = r.policy;
    return c;
  }

  private request(m: Record<string, unknown>): Promise<Reply> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++ >>> 0;
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(encodeMessage({ v: PROTOCOL_VERSION, id, ...m }));
    });
  }

  /** One chunk for a batch of observation histories; `seeds` (one per row) fix the noise. */
  async act(obs: ObservationBatch | number[][][], opts: { seeds?: number[] } = {}): Promise<ActionReply> {
    const b = toObservationBatch(obs);
    const images: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(b.data)) if (k !== 'obs' && v instanceof Uint8Array) images[k] = v;
    const o = b.data.obs;
    const r = await this.request({ type: 'act', batch: b.batch, obs: o instanceof Float32Array ? o : Float32Array.from(o ?? []), images, seeds: opts.seeds ?? null });
    if (r.type !== 'action') throw new PolicyServerError('bad-reply', `expected an action reply, got ${r.type}`);
    return r;
  }

  /** Round trip and the server's clock relative to this one (ms). */
  async ping(): Promise<{ rttMs: number; offsetMs: number }> {
    const t0 = Date.now();
    const r = await this.request({ type: 'ping', t: t0 });
    const t1 = Date.now();
    if (r.type !== 'pong') throw new PolicyServerError('bad-reply', `expected pong, got ${r.type}`);
    return { rttMs: t1 - t0, offsetMs: r.serverTime - (t0 + t1) / 2 };
  }

  /** Sends raw bytes (for tests of the server's handling of bad input). */
  sendRaw(data: Uint8Array): void {
    this.ws.send(data);
  }

  close(): void {
    this.ws.close(1000);
  }
}

/**
 * One noise seed per row for one call, drawn from each row's generator: what a remote call sends.
 * In-process, `new Rng(seed)` per row then gives the same noise the server uses.
 */
export function callSeeds(rngs: Rng[]): number[] {
  return rngs.map((r) => r.nextU32());
}

/**
 * A served policy as an `AsyncPolicy`: each row's noise seed is drawn from that row's generator,
 * so an episode's noise does not depend on the batch or the transport, and the reported
 * latency is the round trip as the robot sees it (obsEncodingMs is the server's encoding,
 * actionPredictionMs the rest of the round trip: prediction, queueing and the network).
 */
export class RemotePolicy implements AsyncPolicy {
  constructor(readonly client: PolicyClient) {}
  get kind(): string {
    return this.client.policy.kind;
  }
  get nObsSteps(): number {
    return this.client.policy.nObsSteps;
  }
  get nActionSteps(): number {
    return this.client.policy.nActionSteps;
  }
  get horizon(): number {
    return this.client.policy.horizon;
  }
  get actionDim(): number {
    return this.client.policy.actionDim;
  }
  get cameras(): readonly string[] {
    return this.client.policy.cameras.map((c) => c.name);
  }

  async predict(obs: ObservationBatch | number[][][], opts: { seed?: number; rngs?: Rng[] } = {}): Promise<PolicyOutput> {
    const b = toObservationBatch(obs);
    const seeds = opts.rngs ? callSeeds(opts.rngs) : opts.seed !== undefined ? Array.from({ length: b.batch }, (_, i) => (opts.seed! + i) >>> 0) : undefined;
    const t0 = performance.now();
    const r = await this.client.act(b, { seeds });
    const rtt = performance.now() - t0;
    const { horizon, actionDim, nActionSteps } = r;
    return {
      actions: nest(r.actions, r.batch, nActionSteps, actionDim),
      chunk: nest(r.chunk, r.batch, horizon, actionDim),
      timing: { obsEncodingMs: r.timing.obsEncodingMs, actionPredictionMs: Math.max(0, rtt - r.timing.obsEncodingMs), nfe: r.timing.nfe },
    };
  }

  dispose(): void {
    this.client.close();
  }
}

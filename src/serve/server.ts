/**
 * `onedp serve`: a WebSocket policy server (protocol.ts) for robot processes. Requests are answered
 * in arrival order, one policy call at a time (the policy uses the machine's cores itself), each
 * reply carrying its timings (encoding, prediction, time queued) and the policy's identity.
 *
 * Bad input never takes the server down: a malformed, oversized, wrongly shaped or NaN-carrying
 * message gets an error reply naming the problem and the connection stays open; only a frame
 * beyond the hard payload cap (4 x maxMessageBytes) makes the WebSocket layer close that one
 * connection. Loopback binds need no token; any other address requires one.
 */
import * as http from 'node:http';
import { timingSafeEqual, createHash } from 'node:crypto';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { AsyncPolicy, ObservationBatch, Policy, PolicyOutput } from '../policy/types.js';
import { Rng } from '../util/rng.js';
import { PROTOCOL_VERSION, ProtocolError, decodeRequest, encodeMessage, type ActRequest, type PolicyInfo, type Reply } from './protocol.js';

/** A policy as the server calls it: synchronous (tfjs) or asynchronous (onnxruntime). */
export interface ServedPolicy {
  info: PolicyInfo;
  predict(obs: ObservationBatch, opts: { rngs?: Rng[] }): PolicyOutput | Promise<PolicyOutput>;
}

export function servedPolicy(policy: Policy | AsyncPolicy, meta: { runtime: 'tfjs' | 'onnx'; source: string; digestOf: string; obsDim: number; cameraSize?: number }): ServedPolicy {
  const info: PolicyInfo = {
    id: createHash('sha256').update(meta.digestOf).digest('hex').slice(0, 16),
    kind: policy.kind,
    runtime: meta.runtime,
    source: meta.source,
    obsDim: meta.obsDim,
    actionDim: policy.actionDim,
    horizon: policy.horizon,
    nObsSteps: policy.nObsSteps,
    nActionSteps: policy.nActionSteps,
    cameras: (policy.cameras ?? []).map((name) => ({ name, size: meta.cameraSize ?? 0 })),
    protocol: PROTOCOL_VERSION,
  };
  const predict = 'predictAction' in policy ? (o: ObservationBatch, q: { rngs?: Rng[] }) => policy.predictAction(o, q) : (o: ObservationBatch, q: { rngs?: Rng[] }) => policy.predict(o, q);
  return { info, predict };
}

export interface ServeOptions {
  policy: ServedPolicy;
  host?: string;
  port?: number;
  token?: string;
  /** Largest request answered (bytes); larger ones get a too-large error. Default 8 MiB. */
  maxMessageBytes?: number;
  /** Requests waiting beyond this many get a busy error. Default 256. */
  maxQueue?: number;
  log?: (line: string) => void;
}

export interface ServerStats {
  connections: number;
  requests: number;
  errors: number;
  served: number;
}

export interface PolicyServer {
  url: string;
  port: number;
  stats: ServerStats;
  /** Graceful: refuses new requests, answers those already queued, then closes. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\./.test(host);
}

function tokenOf(req: http.IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (auth && /^Bearer /i.test(auth)) return auth.slice(7).trim();
  const q = new URL(req.url ?? '/', 'http://x').searchParams.get('token');
  return q;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function startServer(opts: ServeOptions): Promise<PolicyServer> {
  const host = opts.host ?? '127.0.0.1';
  const token = opts.token ?? null;
  if (!isLoopback(host) && !token) throw new Error(`serving on ${host} (not loopback) requires --token: anyone who can reach the port could drive the robot`);
  if (token !== null && token.length < 8) throw new Error('--token must be at least 8 characters');
  const maxBytes = opts.maxMessageBytes ?? 8 * 1024 * 1024;
  const maxQueue = opts.maxQueue ?? 256;
  const log = opts.log ?? (() => {});
  const policy = opts.policy;
  const info = policy.info;
  const stats: ServerStats = { connections: 0, requests: 0, errors: 0, served: 0 };
  let draining = false;
  const queue: { ws: WebSocket; req: ActRequest; received: number }[] = [];
  let working: Promise<void> | null = null;

  const send = (ws: WebSocket, m: Reply): void => {
    if (ws.readyState === ws.OPEN) ws.send(encodeMessage(m));
  };
  const fail = (ws: WebSocket, e: unknown, id: number | null): void => {
    stats.errors++;
    const pe = e instanceof ProtocolError ? e : new ProtocolError('internal', (e as Error)?.message ?? String(e), id);
    send(ws, { v: PROTOCOL_VERSION, type: 'error', id: pe.id ?? id, code: pe.code, message: pe.message });
  };

  /** The request checked against the policy's shapes, as the policy's observation batch. */
  const toBatch = (r: ActRequest): ObservationBatch => {
    const per = info.nObsSteps * info.obsDim;
    if (r.obs.length !== r.batch * per) {
      throw new ProtocolError('bad-shape', `"obs" has ${r.obs.length} values; batch ${r.batch} x ${info.nObsSteps} steps x ${info.obsDim} values needs ${r.batch * per}`, r.id);
    }
    const data: ObservationBatch['data'] = { obs: r.obs };
    for (const cam of info.cameras) {
      const img = r.images[cam.name];
      const want = r.batch * info.nObsSteps * cam.size * cam.size * 3;
      if (!img) throw new ProtocolError('bad-shape', `missing "images.${cam.name}" (${want} uint8 values)`, r.id);
      if (img.length !== want) throw new ProtocolError('bad-shape', `"images.${cam.name}" has ${img.length} bytes; batch ${r.batch} x ${info.nObsSteps} frames of ${cam.size}x${cam.size}x3 needs ${want}`, r.id);
      data[cam.name] = img;
    }
    const extra = Object.keys(r.images).filter((k) => !info.cameras.some((c) => c.name === k));
    if (extra.length) throw new ProtocolError('bad-shape', `this policy has no camera ${extra.map((k) => JSON.stringify(k)).join(', ')}`, r.id);
    return { batch: r.batch, data };
  };

  const work = async (): Promise<void> => {
    while (queue.length) {
      const { ws, req, received } = queue.shift()!;
      const started = performance.now();
      try {
        const out = await policy.predict(toBatch(req), req.seeds ? { rngs: req.seeds.map((s) => new Rng(s)) } : {});
        const flat = (x: number[][][]) => Float32Array.from(x.flat(2));
        send(ws, {
          v: PROTOCOL_VERSION,
          type: 'action',
          id: req.id,
          batch: req.batch,
          nActionSteps: info.nActionSteps,
          horizon: info.horizon,
          actionDim: info.actionDim,
          actions: flat(out.actions),
          chunk: flat(out.chunk),
          timing: { obsEncodingMs: out.timing.obsEncodingMs, actionPredictionMs: out.timing.actionPredictionMs, queueMs: started - received, serverMs: performance.now() - received, nfe: out.timing.nfe },
          policy: { id: info.id, kind: info.kind },
        });
        stats.served++;
      } catch (e) {
        fail(ws, e, req.id);
      }
    }
    working = null;
  };

  const onMessage = (ws: WebSocket, raw: RawData, isBinary: boolean): void => {
    const received = performance.now();
    stats.requests++;
    const bytes = Array.isArray(raw) ? Buffer.concat(raw) : raw instanceof ArrayBuffer ? Buffer.from(raw) : raw;
    try {
      if (!isBinary) throw new ProtocolError('bad-message', 'requests are msgpack in binary frames, not text');
      if (bytes.length > maxBytes) throw new ProtocolError('too-large', `request of ${bytes.length} bytes exceeds the server's limit of ${maxBytes}`);
      const req = decodeRequest(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      if (req.type === 'info') return send(ws, { v: PROTOCOL_VERSION, type: 'info', id: req.id, policy: info });
      if (req.type === 'ping') return send(ws, { v: PROTOCOL_VERSION, type: 'pong', id: req.id, t: req.t, serverTime: Date.now() });
      if (draining) throw new ProtocolError('shutting-down', 'the server is shutting down and takes no new requests', req.id);
      if (queue.length >= maxQueue) throw new ProtocolError('busy', `${queue.length} requests are waiting; try again`, req.id);
      toBatch(req);
      queue.push({ ws, req, received });
      working ??= work();
    } catch (e) {
      fail(ws, e, null);
    }
  };

  const httpServer = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('onedp policy server: connect with a WebSocket (protocol version 1)\n');
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4 * maxBytes });
  httpServer.on('upgrade', (req, socket, head) => {
    if (draining) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\n\r\n');
      return;
    }
    const given = tokenOf(req);
    if (token !== null && (given === null || !sameToken(given, token))) {
      log(`refused a connection from ${req.socket.remoteAddress}: ${given === null ? 'no token' : 'wrong token'}`);
      socket.end('HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\n\r\nthis policy server needs a token\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });
  wss.on('connection', (ws: WebSocket) => {
    stats.connections++;
    ws.on('message', (raw, isBinary) => onMessage(ws, raw, isBinary));
    ws.on('error', (e) => log(`connection error: ${e.message}`));
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(opts.port ?? 8765, host, () => resolve());
  });
  const addr = httpServer.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 8765);
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `ws://${shownHost}:${port}`,
    port,
    stats,
    close: async () => {
      draining = true;
      await working;
      for (const ws of wss.clients) ws.close(1001, 'server shutting down');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}

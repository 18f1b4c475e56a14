/**
 * The policy server's wire protocol, version 1: msgpack maps in binary WebSocket frames. No Node
 * imports, so the browser's client uses the same code.
 *
 * Requests (client -> server), each with a client-chosen `id` the reply repeats:
 *   { v: 1, type: "info", id }
 *   { v: 1, type: "act", id, batch, obs, images?, seeds? }
 *       obs: float32 values (batch x nObsSteps x obsDim), little-endian bytes (bin) or numbers;
 *       images: per camera, uint8 frames (batch x nObsSteps x H x W x 3) as bin;
 *       seeds: one uint32 per row for the policy's noise (else the server's own stream).
 *   { v: 1, type: "ping", id, t }           t: the client's clock (ms), echoed back
 * Replies (server -> client):
 *   { v: 1, type: "info", id, policy }
 *   { v: 1, type: "action", id, batch, nActionSteps, horizon, actionDim,
 *     actions (bin float32, batch x nActionSteps x actionDim), chunk (bin, batch x horizon x actionDim),
 *     timing: { obsEncodingMs, actionPredictionMs, queueMs, serverMs, nfe }, policy: { id, kind } }
 *   { v: 1, type: "pong", id, t, serverTime }
 *   { v: 1, type: "error", id (or null when the request had none), code, message }
 * Error codes: bad-message, bad-shape, non-finite, too-large, busy, shutting-down, internal.
 * Authentication happens at the WebSocket upgrade (`Authorization: Bearer <token>` or
 * `?token=<token>`); a refused upgrade gets HTTP 401.
 */
import { decode, encode } from '@msgpack/msgpack';

export const PROTOCOL_VERSION = 1;

export type ErrorCode = 'bad-message' | 'bad-shape' | 'non-finite' | 'too-large' | 'busy' | 'shutting-down' | 'internal';

/** What a client learns about the served policy. */
export interface PolicyInfo {
  /** A digest of the policy's files: two servers with the same id serve the same weights. */
  id: string;
  kind: string;
  runtime: 'tfjs' | 'onnx';
  source: string;
  obsDim: number;
  actionDim: number;
  horizon: number;
  nObsSteps: number;
  nActionSteps: number;
  cameras: { name: string; size: number }[];
  protocol: number;
}

export interface ActRequest {
  v: number;
  type: 'act';
  id: number;
  batch: number;
  obs: Float32Array;
  images: Record<string, Uint8Array>;
  seeds: number[] | null;
}

export type Request = ActRequest | { v: number; type: 'info'; id: number } | { v: number; type: 'ping'; id: number; t: number };

export interface ActionReply {
  v: number;
  type: 'action';
  id: number;
  batch: number;
  nActionSteps: number;
  horizon: number;
  actionDim: number;
  actions: Float32Array;
  chunk: Float32Array;
  timing: { obsEncodingMs: number; actionPredictionMs: number; queueMs: number; serverMs: number; nfe: number };
  policy: { id: string; kind: string };
}

export type Reply =
  | ActionReply
  | { v: number; type: 'info'; id: number; policy: PolicyInfo }
  | { v: number; type: 'pong'; id: number; t: number; serverTime: number }
  | { v: number; type: 'error'; id: number | null; code: ErrorCode; message: string };

/** A request the server rejects, with the code and message of its error reply. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly id: number | null = null,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export function f32Bytes(x: Float32Array): Uint8Array {
  return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** Copies bin bytes (possibly unaligned inside the message) into a Float32Array. */
export function bytesF32(b: Uint8Array, what: string, id: number | null): Float32Array {
  if (b.byteLength % 4 !== 0) throw new ProtocolError('bad-shape', `${what}: ${b.byteLength} bytes is not a whole number of float32 values`, id);
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

export function encodeMessage(m: Request | Reply | Record<string, unknown>): Uint8Array {
  const out: Record<string, unknown> = { ...m };
  for (const [k, v] of Object.entries(out)) if (v instanceof Float32Array) out[k] = f32Bytes(v);
  if (out.images && typeof out.images === 'object') out.images = { ...(out.images as Record<string, unknown>) };
  return encode(out);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
}

function requestId(m: Record<string, unknown>): number | null {
  return typeof m.id === 'number' && Number.isInteger(m.id) && m.id >= 0 && m.id <= 0xffffffff ? m.id : null;
}

/** Flattens nested number arrays (a non-TypeScript client's convenience), checking every leaf. */
function flattenNumbers(x: unknown, out: number[], what: string, id: number | null, depth = 0): void {
  if (depth > 4) throw new ProtocolError('bad-shape', `${what}: nested deeper than (batch, steps, values)`, id);
  if (Array.isArray(x)) {
    for (const y of x) flattenNumbers(y, out, what, id, depth + 1);
    return;
  }
  if (typeof x !== 'number') throw new ProtocolError('bad-message', `${what}: expected numbers, found ${x === null ? 'null' : typeof x}`, id);
  out.push(x);
}

/**
 * Decodes and checks a request's form (the server checks shapes against its policy). Throws a
 * ProtocolError naming the problem.
 */
/**
 * msgpack decoding bounded by the message: a collection cannot hold more entries than the bytes
 * that remain, so a corrupt header claiming 2^31 elements is refused instead of allocated (a
 * 33-byte message took 0.8 s before these limits; found by fuzzing).
 */
function decodeBounded(data: Uint8Array): unknown {
  const n = data.length;
  return decode(data, { maxStrLength: n, maxBinLength: n, maxArrayLength: n, maxMapLength: n, maxExtLength: n });
}

export function decodeRequest(data: Uint8Array): Request {
  let m: unknown;
  try {
    m = decodeBounded(data);
  } catch (e) {
    throw new ProtocolError('bad-message', `not a msgpack message (${(e as Error).message})`);
  }
  if (!isObject(m)) throw new ProtocolError('bad-message', 'a request must be a msgpack map');
  const id = requestId(m);
  if (id === null) throw new ProtocolError('bad-message', `"id" must be an integer in 0..2^32-1, got ${JSON.stringify(m.id) ?? typeof m.id}`);
  if (m.v !== PROTOCOL_VERSION) throw new ProtocolError('bad-message', `protocol version ${JSON.stringify(m.v)} is not served; this server speaks version ${PROTOCOL_VERSION}`, id);
  if (m.type === 'info') return { v: 1, type: 'info', id };
  if (m.type === 'ping') {
    if (typeof m.t !== 'number' || !Number.isFinite(m.t)) throw new ProtocolError('bad-message', 'ping: "t" must be a finite number', id);
    return { v: 1, type: 'ping', id, t: m.t };
  }
  if (m.type !== 'act') throw new ProtocolError('bad-message', `unknown request type ${JSON.stringify(m.type)} (expected act, info or ping)`, id);
  const batch = m.batch ?? 1;
  if (typeof batch !== 'number' || !Number.isInteger(batch) || batch < 1) throw new ProtocolError('bad-shape', `"batch" must be a positive integer, got ${JSON.stringify(batch)}`, id);
  let obs: Float32Array;
  if (m.obs instanceof Uint8Array) obs = bytesF32(m.obs, '"obs"', id);
  else if (Array.isArray(m.obs)) {
    const flat: number[] = [];
    flattenNumbers(m.obs, flat, '"obs"', id);
    obs = Float32Array.from(flat);
  } else throw new ProtocolError('bad-message', '"obs" must be float32 bytes or an array of numbers', id);
  for (let i = 0; i < obs.length; i++) {
    if (!Number.isFinite(obs[i])) throw new ProtocolError('non-finite', `"obs" value ${i} is ${obs[i]}`, id);
  }
  const images: Record<string, Uint8Array> = {};
  if (m.images !== undefined && m.images !== null) {
    if (!isObject(m.images)) throw new ProtocolError('bad-message', '"images" must map camera names to uint8 bytes', id);
    for (const [cam, v] of Object.entries(m.images)) {
      if (!(v instanceof Uint8Array)) throw new ProtocolError('bad-message', `"images.${cam}" must be uint8 bytes`, id);
      images[cam] = v;
    }
  }
  let seeds: number[] | null = null;
  if (m.seeds !== undefined && m.seeds !== null) {
    if (!Array.isArray(m.seeds) || m.seeds.length !== batch || !m.seeds.every((s) => typeof s === 'number' && Number.isInteger(s) && s >= 0 && s <= 0xffffffff)) {
      throw new ProtocolError('bad-shape', `"seeds" must hold ${batch} integers in 0..2^32-1 (one per row)`, id);
    }
    seeds = m.seeds as number[];
  }
  return { v: 1, type: 'act', id, batch, obs, images, seeds };
}

/** Decodes a reply on the client side; float arrays come back as Float32Array. */
export function decodeReply(data: Uint8Array): Reply {
  const m = decodeBounded(data);
  if (!isObject(m) || typeof m.type !== 'string') throw new Error('policy server sent a message that is not a reply');
  if (m.type === 'action') {
    const id = requestId(m);
    return { ...(m as unknown as ActionReply), actions: bytesF32(m.actions as Uint8Array, 'actions', id), chunk: bytesF32(m.chunk as Uint8Array, 'chunk', id) };
  }
  return m as unknown as Reply;
}

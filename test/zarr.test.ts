import { afterAll, describe, expect, it, vi } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Blosc from 'numcodecs/blosc';
import { FIXTURES } from './helpers/fixtures.js';
import { ReplayBuffer, type ArrayData } from '../src/data/replay.js';
import { appendEpisodes, datasetInfo, readReplayBuffer, writeReplayBuffer } from '../src/data/zarr.js';

const MINI = path.join(FIXTURES, 'interchange', 'pusht_mini_replay.zarr');
const SUMMARY = path.join(FIXTURES, 'interchange', 'pusht_mini_replay.summary.json');

const made: string[] = [];
afterAll(() => Promise.all(made.map((d) => fs.rm(d, { recursive: true, force: true }))));

async function tmpdir(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'onedp-zarr-'));
  made.push(d);
  return d;
}

/** A writable copy of the mini fixture (a checkout may hold it read-only). */
async function copyMini(): Promise<string> {
  const dst = path.join(await tmpdir(), 'mini.zarr');
  await fs.cp(MINI, dst, { recursive: true });
  const walk = async (p: string): Promise<void> => {
    const st = await fs.stat(p);
    await fs.chmod(p, st.isDirectory() ? 0o755 : 0o644);
    if (st.isDirectory()) for (const e of await fs.readdir(p)) await walk(path.join(p, e));
  };
  await walk(dst);
  return dst;
}

async function editJson(file: string, edit: (j: Record<string, unknown>) => void): Promise<void> {
  const j = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  edit(j);
  await fs.writeFile(file, JSON.stringify(j));
}

/** The fixture stores episode_ends uncompressed, so a chunk is just the int64 bytes. */
async function setEpisodeEnds(root: string, ends: number[]): Promise<void> {
  await fs.writeFile(path.join(root, 'meta', 'episode_ends', '0'), new Uint8Array(BigInt64Array.from(ends, BigInt).buffer));
}

/** Matches an error message that starts with `prefix` and then matches `rest`. */
function startsWith(prefix: string, rest: string): RegExp {
  return new RegExp('^' + prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + rest);
}

function sum64(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** Bit-exact comparison (distinguishes -0 and NaN payloads, unlike toEqual on values). */
function bytesOf(a: Float32Array | Uint8Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function expectSameBuffer(got: ReplayBuffer, want: ReplayBuffer): void {
  expect(got.episodeEnds).toEqual(want.episodeEnds);
  expect([...got.arrays.keys()].sort()).toEqual([...want.arrays.keys()].sort());
  for (const [k, w] of want.arrays) {
    const g = got.get(k);
    expect(g.frameShape, k).toEqual(w.frameShape);
    expect(g.data.constructor, k).toBe(w.data.constructor);
    expect(bytesOf(g.data).equals(bytesOf(w.data)), k).toBe(true);
  }
}

/** Deterministic pseudo-random buffer: float arrays with awkward values, and a uint8 "image". */
function makeBuffer(episodeLengths: number[], seed: number): ReplayBuffer {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const n = episodeLengths.reduce((a, b) => a + b, 0);
  const floats = (per: number) => Float32Array.from({ length: n * per }, () => (rnd() - 0.5) * 10 ** Math.floor(rnd() * 12 - 6));
  const state = floats(5);
  state.set([-0, Math.fround(Math.PI), 3.4e38, 1e-45], 0);
  const arrays: Record<string, ArrayData> = {
    state: { data: state, frameShape: [5] },
    action: { data: floats(2), frameShape: [2] },
    keypoint: { data: floats(18), frameShape: [9, 2] },
    img: { data: Uint8Array.from({ length: n * 8 * 8 * 3 }, () => Math.floor(rnd() * 256)), frameShape: [8, 8, 3] },
  };
  const ends: number[] = [];
  let t = 0;
  for (const len of episodeLengths) ends.push((t += len));
  return new ReplayBuffer(arrays, ends);
}

describe('zarr replay buffer', () => {
  it('reads the Python-written fixture exactly (sums, episode ends, a row)', async () => {
    const summary = JSON.parse(await fs.readFile(SUMMARY, 'utf8')) as Record<string, number | number[]>;
    const rb = await readReplayBuffer(MINI);
    expect([...rb.arrays.keys()].sort()).toEqual(['action', 'img', 'keypoint', 'n_contacts', 'state']);
    // Summing the decoded float32 values in float64, in order, reproduces numpy's sums bit for bit.
    for (const k of ['state', 'action', 'keypoint', 'img', 'n_contacts']) expect(sum64(rb.get(k).data), k).toBe(summary[k]);
    expect(rb.episodeEnds).toEqual(summary.episode_ends);
    expect(Array.from(rb.get('state').data.subarray(7 * 5, 8 * 5))).toEqual(summary.state_row_7);
    expect(rb.get('img').data).toBeInstanceOf(Uint8Array);
    expect(rb.get('img').frameShape).toEqual([96, 96, 3]);
    expect(rb.get('keypoint').data).toBeInstanceOf(Float32Array);
    expect(rb.get('keypoint').frameShape).toEqual([9, 2]);

    const info = await datasetInfo(MINI);
    expect(info.episodes).toBe(3);
    expect(info.frames).toBe(20);
    const img = info.arrays.find((a) => a.key === 'img')!;
    expect(img).toMatchObject({ dtype: '|u1', shape: [20, 96, 96, 3], chunks: [4, 96, 96, 3], compressor: 'blosc' });
    for (const a of info.arrays) {
      const d: ArrayLike<number> = rb.get(a.key).data;
      let [min, max] = [Infinity, -Infinity];
      for (let i = 0; i < d.length; i++) [min, max] = [Math.min(min, d[i]), Math.max(max, d[i])];
      expect([a.min, a.max], a.key).toEqual([min, max]);
    }
  });

  it('loads only the requested keys', async () => {
    const rb = await readReplayBuffer(MINI, { keys: ['state', 'action'] });
    expect([...rb.arrays.keys()]).toEqual(['state', 'action']);
    const full = await readReplayBuffer(MINI);
    expect(bytesOf(rb.get('state').data).equals(bytesOf(full.get('state').data))).toBe(true);
    expect(rb.episodeEnds).toEqual([5, 12, 20]);
  });

  it('reads other numeric dtypes, chunks split across frame axes, and F order', async () => {
    // Hand-made raw (uncompressed) arrays of shape (7, 5) in chunks of (3, 2): 3 x 3 chunks, all
    // edge chunks partial on both axes. Values are 10 * frame + column.
    const p = await copyMini();
    const value = (r: number, c: number) => 10 * r + c;
    const variants: { key: string; dtype: string; size: number; order: 'C' | 'F'; put: (v: DataView, o: number, x: number) => void }[] = [
      { key: 'f8', dtype: '<f8', size: 8, order: 'C', put: (v, o, x) => v.setFloat64(o, x + 0.5, true) },
      { key: 'i2_f', dtype: '<i2', size: 2, order: 'F', put: (v, o, x) => v.setInt16(o, 100 - x, true) },
      { key: 'i4_be', dtype: '>i4', size: 4, order: 'C', put: (v, o, x) => v.setInt32(o, x, false) },
      { key: 'i8', dtype: '<i8', size: 8, order: 'C', put: (v, o, x) => v.setBigInt64(o, BigInt(x), true) },
    ];
    const want: Record<string, (x: number) => number> = { f8: (x) => x + 0.5, i2_f: (x) => 100 - x, i4_be: (x) => x, i8: (x) => x };
    for (const { key, dtype, size, order, put } of variants) {
      const dir = path.join(p, 'data', key);
      await fs.mkdir(dir);
      const meta = { zarr_format: 2, shape: [7, 5], chunks: [3, 2], dtype, compressor: null, fill_value: 0, order, filters: null };
      await fs.writeFile(path.join(dir, '.zarray'), JSON.stringify(meta));
      for (let ci = 0; ci < 3; ci++) {
        for (let cj = 0; cj < 3; cj++) {
          const view = new DataView(new ArrayBuffer(3 * 2 * size));
          for (let r = 0; r < 3; r++) {
            for (let c = 0; c < 2; c++) {
              const [gr, gc] = [ci * 3 + r, cj * 2 + c];
              const idx = order === 'C' ? r * 2 + c : c * 3 + r;
              if (gr < 7 && gc < 5) put(view, idx * size, value(gr, gc));
            }
          }
          await fs.writeFile(path.join(dir, `${ci}.${cj}`), new Uint8Array(view.buffer));
        }
      }
    }
    await editJson(path.join(p, 'meta', 'episode_ends', '.zarray'), (j) => ((j.shape = [2]), (j.chunks = [2])));
    await setEpisodeEnds(p, [3, 7]);
    const rb = await readReplayBuffer(p, { keys: Object.keys(want) });
    for (const [key, f] of Object.entries(want)) {
      const a = rb.get(key);
      expect(a.data, key).toBeInstanceOf(Float32Array);
      expect(Array.from(a.data), key).toEqual(Array.from({ length: 35 }, (_, i) => f(value(Math.floor(i / 5), i % 5))));
    }
  });

  it('round-trips its own output exactly and writes Python-zarr-compatible metadata', async () => {
    const dir = await tmpdir();
    const out = path.join(dir, 'rt.zarr');
    const rb = makeBuffer([7, 9, 7], 1); // 23 frames: chunks of 5 leave a partial last chunk of 3
    await writeReplayBuffer(out, rb, { chunkFrames: 5 });
    expectSameBuffer(await readReplayBuffer(out), rb);

    for (const g of ['', 'data', 'meta']) expect(JSON.parse(await fs.readFile(path.join(out, g, '.zgroup'), 'utf8'))).toEqual({ zarr_format: 2 });
    const blosc = { id: 'blosc', cname: 'lz4', clevel: 5, shuffle: 1, blocksize: 0 };
    const zarray = async (p: string) => JSON.parse(await fs.readFile(path.join(out, p, '.zarray'), 'utf8')) as Record<string, unknown>;
    const base = { zarr_format: 2, compressor: blosc, order: 'C', fill_value: 0, filters: null };
    expect(await zarray('data/state')).toEqual({ ...base, shape: [23, 5], chunks: [5, 5], dtype: '<f4' });
    expect(await zarray('data/img')).toEqual({ ...base, shape: [23, 8, 8, 3], chunks: [5, 8, 8, 3], dtype: '|u1' });
    expect(await zarray('meta/episode_ends')).toEqual({ ...base, compressor: null, shape: [3], chunks: [3], dtype: '<i8' });
    expect((await fs.readdir(path.join(out, 'data', 'img'))).sort()).toEqual(['.zarray', '0.0.0.0', '1.0.0.0', '2.0.0.0', '3.0.0.0', '4.0.0.0']);

    // A chunk is a standard blosc frame: the last one decodes to 3 real frames plus zero padding.
    const last = await Blosc.fromConfig(blosc).decode(new Uint8Array(await fs.readFile(path.join(out, 'data', 'state', '4.0'))));
    const want = new Uint8Array(5 * 5 * 4);
    want.set(bytesOf(rb.get('state').data.subarray(20 * 5)));
    expect(Buffer.from(last).equals(Buffer.from(want))).toBe(true);

    // Default chunking, overwrite in place, and Python data through our writer.
    const mini = await readReplayBuffer(MINI);
    await writeReplayBuffer(out, mini);
    expectSameBuffer(await readReplayBuffer(out), mini);
    expect(await fs.readdir(dir)).toEqual(['rt.zarr']); // no temporary directories left behind
  });

  it('refuses to replace something that is not a dataset', async () => {
    const dir = await tmpdir();
    await fs.writeFile(path.join(dir, 'notes.txt'), 'keep me');
    await expect(writeReplayBuffer(dir, makeBuffer([2], 3))).rejects.toThrow(startsWith(dir, ': exists and is not a zarr group'));
    expect(await fs.readFile(path.join(dir, 'notes.txt'), 'utf8')).toBe('keep me');
  });

  it('appends episodes', async () => {
    const out = path.join(await tmpdir(), 'app.zarr');
    const a = makeBuffer([4, 6], 1);
    const b = makeBuffer([3, 5, 2], 2);
    await writeReplayBuffer(out, a, { chunkFrames: 3 });
    await appendEpisodes(out, b);
    const got = await readReplayBuffer(out);
    const want = ReplayBuffer.concat(
      [a, b].flatMap((buf) =>
        buf.episodeEnds.map((_, i) => {
          const [s, e] = buf.episodeRange(i);
          const ep: Record<string, ArrayData> = {};
          for (const [k, v] of buf.arrays) ep[k] = { data: v.data.subarray(s * buf.frameSize(k), e * buf.frameSize(k)), frameShape: v.frameShape };
          return ep;
        }),
      ),
    );
    expect(got.episodeEnds).toEqual([4, 10, 13, 18, 20]);
    expectSameBuffer(got, want);
    const meta = JSON.parse(await fs.readFile(path.join(out, 'data', 'state', '.zarray'), 'utf8')) as { chunks: number[] };
    expect(meta.chunks).toEqual([3, 5]); // the dataset's chunking survives the rewrite

    const noImg = new ReplayBuffer({ state: b.get('state'), action: b.get('action'), keypoint: b.get('keypoint') }, b.episodeEnds);
    await expect(appendEpisodes(out, noImg)).rejects.toThrow(startsWith(out, ': cannot append: dataset has arrays \\[action, img, keypoint, state\\]'));
    const wide = new ReplayBuffer({ ...Object.fromEntries(b.arrays), action: { data: new Float32Array(10 * 3), frameShape: [3] } }, b.episodeEnds);
    await expect(appendEpisodes(out, wide)).rejects.toThrow(startsWith(path.join(out, 'data', 'action'), ': cannot append: frame shape \\[3\\]'));
    expect((await readReplayBuffer(out)).episodeEnds).toEqual([4, 10, 13, 18, 20]); // failed appends changed nothing
  });

  describe('corrupt or incomplete datasets fail with the offending path', () => {
    it('nonexistent path, and a directory that is not a zarr group', async () => {
      const dir = await tmpdir();
      const missing = path.join(dir, 'nope.zarr');
      await expect(readReplayBuffer(missing)).rejects.toThrow(startsWith(missing, ': dataset not found'));
      await expect(datasetInfo(missing)).rejects.toThrow(startsWith(missing, ': dataset not found'));
      await expect(readReplayBuffer(dir)).rejects.toThrow(startsWith(dir, ': not a zarr v2 group'));
    });

    it('missing data array or episode_ends', async () => {
      const p = await copyMini();
      await fs.rm(path.join(p, 'data', 'action'), { recursive: true });
      await expect(readReplayBuffer(p, { keys: ['state', 'action'] })).rejects.toThrow(startsWith(path.join(p, 'data', 'action'), ': missing data array "action"'));
      expect((await readReplayBuffer(p)).arrays.has('action')).toBe(false);
      await fs.rm(path.join(p, 'meta', 'episode_ends'), { recursive: true });
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(path.join(p, 'meta', 'episode_ends'), ': missing meta/episode_ends'));
    });

    it('wrong or unsupported dtype', async () => {
      const p = await copyMini();
      await editJson(path.join(p, 'data', 'action', '.zarray'), (j) => (j.dtype = '<U8'));
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(path.join(p, 'data', 'action'), ': unsupported dtype "<U8"'));
      // Readable without the broken array.
      expect((await readReplayBuffer(p, { keys: ['state'] })).numFrames).toBe(20);
      // A dtype that disagrees with the stored bytes is caught at the first chunk.
      await editJson(path.join(p, 'data', 'state', '.zarray'), (j) => (j.dtype = '<f8'));
      await expect(readReplayBuffer(p, { keys: ['state'] })).rejects.toThrow(startsWith(path.join(p, 'data', 'state', '0.0'), ': blosc chunk holds 160 bytes but .* needs 320'));
      await editJson(path.join(p, 'meta', 'episode_ends', '.zarray'), (j) => (j.dtype = '<f8'));
      await expect(readReplayBuffer(p, { keys: [] })).rejects.toThrow(startsWith(path.join(p, 'meta', 'episode_ends'), ': wrong dtype "<f8": episode_ends must be an integer array'));
    });

    it('truncated and missing chunks', async () => {
      const p = await copyMini();
      const chunk = path.join(p, 'data', 'keypoint', '1.0.0');
      await fs.truncate(chunk, 100);
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(chunk, ': truncated or corrupt blosc chunk: header says 571 compressed bytes, file has 100'));
      await expect(datasetInfo(p)).rejects.toThrow(startsWith(chunk, ': truncated'));
      await fs.truncate(chunk, 10);
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(chunk, ': truncated chunk'));

      // zarr semantics: a missing chunk is fill_value (0 here) ...
      await fs.rm(path.join(p, 'data', 'state', '1.0'));
      const rb = await readReplayBuffer(p, { keys: ['state'] });
      expect(Array.from(rb.get('state').data.subarray(8 * 5, 16 * 5)).every((v) => v === 0)).toBe(true);
      // ... but with no fill value it is lost data.
      await editJson(path.join(p, 'data', 'state', '.zarray'), (j) => (j.fill_value = null));
      await expect(readReplayBuffer(p, { keys: ['state'] })).rejects.toThrow(startsWith(path.join(p, 'data', 'state', '1.0'), ': missing chunk file'));
      // Found by fuzzing: a corrupt shape declaring millions of chunks over three files is an
      // error at once, not a search for each chunk and a 1.4 GB allocation.
      const kp = path.join(p, 'data', 'keypoint');
      await editJson(path.join(kp, '.zarray'), (j) => (j.shape = [20, 9000000, 2]));
      await expect(readReplayBuffer(p, { keys: ['keypoint'] })).rejects.toThrow(`${kp}: shape [20,9000000,2] in chunks of [8,9,2] declares 3000000 chunks but only 3 chunk files exist`);
      await expect(datasetInfo(p)).rejects.toThrow(/declares 3000000 chunks/);
      const ends = path.join(p, 'meta', 'episode_ends');
      await editJson(path.join(ends, '.zarray'), (j) => ((j.shape = [3000000]), (j.chunks = [3])));
      await expect(readReplayBuffer(p, { keys: ['state'] })).rejects.toThrow(`${ends}: shape [3000000] in chunks of [3] declares 1000000 chunks but only 1 chunk files exist`);
    });

    it('episode ends that disagree with the data, and arrays that disagree with each other', async () => {
      const p = await copyMini();
      await setEpisodeEnds(p, [5, 12, 25]);
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(path.join(p, 'data', 'action'), ': holds 20 frames but meta/episode_ends ends at 25 \\(episode ends beyond the data\\)'));
      await setEpisodeEnds(p, [5, 5, 20]);
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(path.join(p, 'meta', 'episode_ends'), ': episode ends must be strictly increasing positive integers, but entry 1 is 5 after 5'));
      await setEpisodeEnds(p, [5, 12, 20]);
      await editJson(path.join(p, 'data', 'state', '.zarray'), (j) => (j.shape = [19, 5]));
      await expect(readReplayBuffer(p)).rejects.toThrow(startsWith(path.join(p, 'data', 'state'), ': shape mismatch: 19 frames but data/action has 20'));
    });
  });

  describe('a write that fails halfway', () => {
    const listing = async (dir: string) => (await fs.readdir(dir)).sort();
    it('fails while writing a chunk: the previous dataset is intact and no temporary directory is left', async () => {
      const dir = await tmpdir();
      const out = path.join(dir, 'ds.zarr');
      await writeReplayBuffer(out, makeBuffer([4, 3], 1));
      const before = await readReplayBuffer(out);
      const real = fs.writeFile.bind(fs);
      let calls = 0;
      const spy = vi.spyOn(fs, 'writeFile').mockImplementation(async (...args: Parameters<typeof fs.writeFile>) => {
        // The temporary directory and its first files exist by the fifth write.
        if (++calls === 5) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        return real(...args);
      });
      try {
        await expect(writeReplayBuffer(out, makeBuffer([2, 2, 2], 2))).rejects.toThrow(startsWith(out, ': cannot write dataset: ENOSPC'));
      } finally {
        spy.mockRestore();
      }
      expect(calls).toBeGreaterThanOrEqual(5);
      expect(await listing(dir)).toEqual(['ds.zarr']);
      const after = await readReplayBuffer(out);
      expect(after.episodeEnds).toEqual(before.episodeEnds);
      expect(Array.from(after.get('state').data)).toEqual(Array.from(before.get('state').data));
    });

    it('fails when moving the new dataset into place: the old one is moved back, nothing else remains', async () => {
      const dir = await tmpdir();
      const out = path.join(dir, 'ds.zarr');
      await writeReplayBuffer(out, makeBuffer([4, 3], 1));
      const real = fs.rename.bind(fs);
      let calls = 0;
      // The first rename moves the old dataset aside; the second (new into place) fails.
      const spy = vi.spyOn(fs, 'rename').mockImplementation(async (a, b) => {
        if (++calls === 2) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
        return real(a, b);
      });
      try {
        await expect(writeReplayBuffer(out, makeBuffer([2, 2, 2], 2))).rejects.toThrow(startsWith(out, ': cannot write dataset: EIO'));
      } finally {
        spy.mockRestore();
      }
      expect(await listing(dir)).toEqual(['ds.zarr']);
      expect((await readReplayBuffer(out)).episodeEnds).toEqual([4, 7]);
    });
  });
});

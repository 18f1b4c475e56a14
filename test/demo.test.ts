/**
 * The browser demo end to end (issue 17), in headless Chromium driven by playwright-core: the
 * built page loads with no console errors, the in-page policy acts for 100+ control steps and the
 * coverage changes, a mouse drag moves the block, pause and reset with a seed work, switching to
 * the diffusion policy's DDIM-10 and DDPM-100 works, the page's lockstep episode gives Node's
 * actions (same bundle, seed and noise stream; onnxruntime-web's wasm against onnxruntime-node),
 * a user's bundle loads from the file picker and from ?policy=, and an image policy runs on the
 * page's own 96x96 frames, which equal Node's byte for byte. Screenshots go to
 * test-artifacts/.
 *
 * Needs Debian's chromium (`apt-get install chromium`; `.ci/run` installs it). Without it the
 * file is skipped and says why; nothing else in `npm test` depends on it.
 */
import { existsSync, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { PreviewServer } from 'vite';
import { OnnxPolicy } from '../src/export/runtime.js';
import { pushtRollout } from '../src/eval/pusht.js';
import { GOAL_POSE, PushTEnv } from '../src/envs/pusht.js';
import { renderPushT } from '../src/envs/render.js';
import { initEngine } from '../src/engine/index.js';
import type { DemoApi, DemoState, LiftDemoApi, LiftDemoState } from '../demo/src/api.js';
import { manipulationRollout } from '../src/eval/manipulation.js';
import { createManipulationEnv } from '../src/envs/mujoco/tasks.js';
import type { LiftEnv } from '../src/envs/mujoco/lift.js';
import { defaultPolicyConfig } from '../src/policy/diffusion_policy.js';
import { defaultVisionConfig } from '../src/policy/obs_encoder.js';
import { LinearNormalizer } from '../src/policy/normalizer.js';
import { OneDpPolicy } from '../src/distill/onedp.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';
import { stateDict } from '../src/nn/state_dict.js';
import { exportOnnx } from '../src/export/export.js';
import { Rng } from '../src/util/rng.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../demo/chromium.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const haveChromium = existsSync(CHROMIUM);
const artifacts = path.join(root, 'test-artifacts');
if (!haveChromium) console.warn(`test/demo.test.ts skipped: no Chromium at ${CHROMIUM} (apt-get install chromium, or set ONEDP_CHROMIUM)`);

declare global {
  interface Window {
    onedpDemo: DemoApi;
    onedpLift: LiftDemoApi;
  }
}

/**
 * An image OneDP-S with random weights (PushT's camera at the CPU encoder width), exported into
 * the served folder: the page must render 96x96 frames for it, as Node's evaluation does.
 */
async function imageBundle(dir: string): Promise<void> {
  await initEngine();
  const pc = defaultPolicyConfig(2, 2, { nObsSteps: 2, horizon: 16, nActionSteps: 8, unet: { diffusionStepEmbedDim: 64, downDims: [32, 64], kernelSize: 5, nGroups: 8, condPredictScale: true }, vision: defaultVisionConfig() });
  const rng = new Rng(0);
  const norm = LinearNormalizer.fit({ obs: { values: Float32Array.from({ length: 64 }, () => 512 * rng.uniform()), dim: 2 }, action: { values: Float32Array.from({ length: 64 }, () => 512 * rng.uniform()), dim: 2 } });
  const gen = { method: 'onedp-s' as const, tInit: 65, sigmaInit: 2.5 };
  const p = new OneDpPolicy(pc, gen, norm, 0);
  const ck = `${dir}-checkpoint`;
  await saveCheckpoint(ck, 'step-0000001', { meta: { kind: 'onedp', method: 'onedp-s', policyConfig: pc, generator: gen, normalizer: norm.toJSON(), step: 1 }, tensors: { generator: stateDict(p.generator) } });
  p.dispose();
  await exportOnnx(ck, dir);
}

/** Waits until `pred` holds for a page's state (polling; the pages run in real time). */
async function pollUntil<S>(read: () => Promise<S>, pred: (s: S) => boolean, what: string, timeoutMs = 60_000): Promise<S> {
  const t0 = Date.now();
  for (;;) {
    const s = await read();
    if (pred(s)) return s;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}; state ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The page's own readout, for the log (the issue's note quotes it). */
const summary = (s: DemoState) =>
  `${s.replies} chunks, inference median ${s.inferenceMsMedian.toFixed(2)} ms (last ${s.inferenceMs.toFixed(2)}), round trip median ${s.roundTripMsMedian.toFixed(2)} ms, control ${s.controlHz.toFixed(1)} Hz, executing chunk ${s.chunkAgeSteps} steps old, ${s.heldSteps} held steps`;

describe.skipIf(!haveChromium)('browser demo (headless Chromium)', () => {
  let server: PreviewServer;
  let browser: Browser;
  let page: Page;
  let url = '';
  let outDir = '';
  const consoleErrors: string[] = [];

  const state = () => page.evaluate(() => window.onedpDemo.state()) as Promise<DemoState>;
  const until = (pred: (s: DemoState) => boolean, what: string, timeoutMs?: number) => pollUntil(state, pred, what, timeoutMs);

  beforeAll(async () => {
    const vite = await import('vite');
    outDir = path.join(os.tmpdir(), `onedp-demo-${process.pid}`);
    const configFile = path.join(root, 'demo', 'vite.config.ts');
    await vite.build({ configFile, logLevel: 'error', build: { outDir } });
    await imageBundle(path.join(outDir, 'test-image'));
    server = await vite.preview({ configFile, logLevel: 'error', build: { outDir }, preview: { port: 0, host: '127.0.0.1' } });
    url = server.resolvedUrls!.local[0];
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    mkdirSync(artifacts, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.httpServer.close(() => r()) : r()));
  });

  it('loads with no console errors; OneDP-S acts for 100+ control steps at 10 Hz and the coverage changes', async () => {
    // Seed 100003: the policy reaches the block early (in Node, lockstep: coverage 0.002 at the
    // start, 0.22 after 50 steps, 0.47 after 100).
    await page.goto(`${url}?seed=100003`);
    const first = await until((s) => s.ready && s.replies > 0, 'the first chunk');
    expect(first.policy).toBe('onedp-s');
    const cov0 = first.coverage;
    const s = await until((x) => x.step >= first.step + 100 && Math.abs(x.coverage - cov0) > 0.01, '100 more control steps and a change of coverage', 60_000);
    expect(s.errors).toEqual([]);
    expect(consoleErrors).toEqual([]);
    expect(Math.abs(s.coverage - cov0)).toBeGreaterThan(0.01);
    expect(s.nfe).toBe(1);
    expect(s.inferenceMs).toBeGreaterThan(0);
    expect(s.controlHz).toBeGreaterThan(5);
    expect(s.controlHz).toBeLessThan(15);
    console.log(`demo onedp-s: ${summary(s)}, coverage ${cov0.toFixed(3)} -> ${s.coverage.toFixed(3)}`);
    await page.screenshot({ path: path.join(artifacts, 'demo-onedp-s.png') });
  });

  it('a mouse drag moves the block', async () => {
    const before = await state();
    const p = await page.evaluate(() => window.onedpDemo.blockOnPage());
    await page.mouse.move(p.x, p.y);
    await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(p.x + i * 8, p.y + i * 5);
    // Held for a few ticks: the block is set to the pointer at each one.
    await page.waitForTimeout(400);
    await page.mouse.up();
    const after = await state();
    const moved = Math.hypot(after.block[0] - before.block[0], after.block[1] - before.block[1]);
    // 80 x 50 CSS pixels at the canvas's scale, in workspace units (the policy may push a little too).
    expect(moved).toBeGreaterThan((0.7 * Math.hypot(80, 50)) / p.scale);
    expect(consoleErrors).toEqual([]);
  });

  it('pause stops the world; reset with a seed restarts it at that seed\'s start, as Node\'s PushT', async () => {
    await page.click('#pause');
    const p0 = await until((s) => s.paused, 'the pause');
    await page.waitForTimeout(400);
    expect((await state()).step).toBe(p0.step);
    await page.fill('#seed', '100005');
    await page.click('#reset');
    const r = await state();
    const env = new PushTEnv({ obsType: 'keypoints' });
    env.reset(100005);
    expect(r.step).toBe(0);
    expect(r.block).toEqual(env.blockPose());
    expect(r.agent).toEqual(env.agentPos());
    await page.click('#pause');
    await until((s) => !s.paused && s.step >= 10 && s.ready, 'the world running again');
    expect(consoleErrors).toEqual([]);
  });

  it('switching to DDIM-10 and DDPM-100 works: more network evaluations, longer inference', async () => {
    const one = await state();
    for (const [id, nfe] of [['ddim-10', 10], ['ddpm-100', 100]] as const) {
      await page.selectOption('#policy', id);
      const s0 = await until((s) => s.policy === id && s.ready && s.nfe === nfe, `${id}'s first chunk`);
      const s = await until((x) => x.replies >= 5 && x.step >= s0.step + 30, `${id} acting`);
      expect(s.errors).toEqual([]);
      expect(s.inferenceMs).toBeGreaterThan(one.inferenceMs);
      console.log(`demo ${id}: ${summary(s)}`);
      await page.screenshot({ path: path.join(artifacts, `demo-${id}.png`) });
    }
    expect(consoleErrors).toEqual([]);
  });

  it('the page acts as Node does: same bundle, seed and noise, a 24-step lockstep episode', async () => {
    await initEngine();
    for (const [id, dir, sampler] of [['onedp-s', 'onedp-s', undefined], ['ddim-10', 'dp', 'ddim-10']] as const) {
      const seed = 100003;
      const web = await page.evaluate(([i, s]) => window.onedpDemo.rollout(i, s, 24), [id, seed] as const);
      const node = await OnnxPolicy.load(path.join(root, 'demo', 'public', 'policies', dir), { seed, sampler });
      const ref = await pushtRollout(node, seed, 24);
      await node.dispose();
      expect(web.actions).toHaveLength(24);
      // The runtimes round differently in the last bits (wasm SIMD against native kernels):
      // actions agree to a thousandth of a pixel, and so do the states they lead to.
      const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((r, i) => r.map((v, j) => Math.abs(v - b[i][j]))));
      expect(maxDiff(web.actions, ref.actions)).toBeLessThan(1e-3);
      expect(maxDiff(web.states, ref.states)).toBeLessThan(1e-2);
      // Not trivially equal: the policy moves the agent.
      expect(maxDiff(ref.actions, ref.actions.map(() => ref.actions[0]))).toBeGreaterThan(1);
    }
  });

  it("loads a user's exported bundle from the file picker and from ?policy=, and names what is wrong with a bad one", async () => {
    const bundle = path.join(root, 'demo', 'public', 'policies', 'onedp-s');
    // policy.json without its graphs: one clear line on the page, nothing thrown at the console.
    await page.setInputFiles('#files', [path.join(bundle, 'policy.json')]);
    await until((s) => s.errors.length > 0, 'the error for a bundle without its graphs', 10_000);
    const bad = (await state()).errors.at(-1)!;
    expect(bad).toContain('policy.json names encoder.onnx and generator.onnx');
    await page.setInputFiles('#files', ['policy.json', 'encoder.onnx', 'generator.onnx'].map((f) => path.join(bundle, f)));
    const s0 = await until((s) => s.policy === 'yours' && s.ready, 'the chosen bundle');
    await until((s) => s.replies >= s0.replies + 3 && s.nfe === 1, 'the chosen bundle acting');
    // Choosing the same files again keeps the open sessions, which the running policy uses.
    await page.setInputFiles('#files', ['policy.json', 'encoder.onnx', 'generator.onnx'].map((f) => path.join(bundle, f)));
    const s1 = await until((s) => s.policy === 'yours' && s.ready && s.replies >= 1, 'the same bundle again');
    await until((s) => s.replies >= s1.replies + 3, 'the same bundle acting again');
    expect((await state()).errors).toEqual([bad]);
    // A URL parameter names a bundle folder (and optionally a sampler) on any host.
    await page.goto(`${url}?policy=policies/dp/&sampler=ddim-10&seed=100000`);
    const u = await until((s) => s.policy === 'yours' && s.ready && s.replies >= 2, 'the bundle named in the URL');
    expect(u.nfe).toBe(10);
    expect(consoleErrors).toEqual([]);
  });

  it('runs an image policy: the page renders the 96x96 camera frames, as Node does', async () => {
    await page.goto(`${url}?policy=test-image/&seed=100003`);
    const s = await until((x) => x.policy === 'yours' && x.ready && x.replies >= 3, 'the image policy acting');
    expect(s.nfe).toBe(1);
    expect(s.errors).toEqual([]);
    const web = await page.evaluate(() => window.onedpDemo.rollout('yours', 100003, 16));
    const node = await OnnxPolicy.load(path.join(outDir, 'test-image'), { seed: 100003 });
    const ref = await pushtRollout(node, 100003, 16);
    await node.dispose();
    // Chromium's canvas and @napi-rs/canvas draw the same frame, byte for byte (measured).
    const st = ref.states[8];
    const frameWeb = await page.evaluate((x) => window.onedpDemo.frame(x), st);
    const frameNode = renderPushT({ agent: [st[0], st[1]], block: [st[2], st[3], st[4]], goal: GOAL_POSE }, 96);
    const diffs = frameWeb.map((v, i) => Math.abs(v - frameNode[i]));
    const same = diffs.filter((d) => d === 0).length / diffs.length;
    const meanDiff = diffs.reduce((a, b) => a + b, 0) / diffs.length;
    const maxDiff = Math.max(...web.actions.flatMap((r, i) => r.map((v, j) => Math.abs(v - ref.actions[i][j]))));
    console.log(`image policy, page against Node: ${(100 * same).toFixed(2)}% of frame bytes equal, mean byte difference ${meanDiff.toFixed(4)}; max action difference ${maxDiff.toFixed(4)} px over 16 steps`);
    expect(frameWeb).toHaveLength(96 * 96 * 3);
    expect(same).toBe(1);
    expect(meanDiff).toBe(0);
    // The ResNet encoder rounds differently on wasm and native kernels, and random weights amplify
    // it more than trained ones: 0.015 px measured.
    expect(maxDiff).toBeLessThan(0.1);
    expect(consoleErrors).toEqual([]);
  });

  describe('the Lift page: MuJoCo in the browser', () => {
    let lift: Page;
    const liftErrors: string[] = [];
    const liftState = () => lift.evaluate(() => window.onedpLift.state()) as Promise<LiftDemoState>;
    const liftUntil = (pred: (s: LiftDemoState) => boolean, what: string, timeoutMs?: number) => pollUntil(liftState, pred, what, timeoutMs);

    beforeAll(async () => {
      lift = await browser.newPage({ viewport: { width: 1000, height: 700 } });
      lift.on('console', (m) => {
        if (m.type() === 'error') liftErrors.push(m.text());
      });
      lift.on('pageerror', (e) => liftErrors.push(e.message));
    });

    it('loads MuJoCo and the one-step policy, which picks the cube up in real time at 20 Hz', async () => {
      // Seed 200003: in Node, lockstep, the committed one-step policy lifts the cube at step 16.
      await lift.goto(`${url}lift.html?seed=200003`);
      // MuJoCo's module loads before the page's script goes on.
      await lift.waitForFunction(() => window.onedpLift !== undefined, undefined, { timeout: 60_000 }).catch((e: Error) => {
        throw new Error(`${e.message}; page errors: ${liftErrors.join(' | ')}`);
      });
      const first = await liftUntil((s) => s.ready && s.replies > 0, 'the first chunk');
      expect(first.policy).toBe('onedp');
      expect(first.cubeHeight).toBeLessThan(0.005);
      const s = await liftUntil((x) => x.success || x.step >= 200, 'a lifted cube or 200 steps');
      expect(s.errors).toEqual([]);
      expect(liftErrors).toEqual([]);
      expect(s.nfe).toBe(1);
      console.log(`lift page, one-step policy: ${s.success ? `lifted at step ${s.successAt}` : 'not lifted in 200 steps'}, ${s.replies} chunks (${s.lateChunks} past the 40 ms budget), inference median ${s.inferenceMsMedian.toFixed(2)} ms, round trip ${s.roundTripMs.toFixed(2)} ms, ${s.heldSteps} held steps`);
      // A few ms a chunk against a 40 ms budget: every chunk acts at its own step, as in Node's
      // lockstep rollout, which lifts the cube on this seed. A machine too loaded to keep the
      // budget changes the episode; that is reported, and only then may the cube stay down.
      expect(s.lateChunks).toBeLessThanOrEqual(2);
      if (s.lateChunks === 0) expect(s.success).toBe(true);
      expect(s.controlHz).toBeGreaterThan(10);
      expect(s.controlHz).toBeLessThan(30);
      await lift.screenshot({ path: path.join(artifacts, 'demo-lift.png') });
      // The finished episode is shown for 30 ticks (the cube held up), then the next seed starts.
      const next = await liftUntil((x) => x.step > 0 && x.step < 10 && !x.success, "the next seed's episode", 20_000);
      expect(Number(await lift.inputValue('#seed'))).toBe(200004);
      expect(next.errors).toEqual([]);
    });

    it('reset restarts the seed as Node\'s Lift; "Move the cube" moves it on the table; DDPM-100 takes 100 evaluations', async () => {
      await lift.click('#pause');
      await liftUntil((x) => x.paused, 'the pause');
      await lift.fill('#seed', '200009');
      await lift.click('#reset');
      // Restarted at the seed's start, as Node's Lift, once the policy is back.
      const r = await liftUntil((x) => x.ready && x.step === 0, 'the restart');
      const env = await createManipulationEnv('lift');
      env.reset(200009);
      expect(r.cube).toEqual((env as LiftEnv).cubePos());
      env.dispose();
      const before = r.cube;
      await lift.click('#nudge');
      const after = (await liftState()).cube;
      expect(Math.hypot(after[0] - before[0], after[1] - before[1])).toBeGreaterThan(0.005);
      expect(after[2]).toBeCloseTo(before[2], 6);
      await lift.click('#pause');
      await lift.selectOption('#policy', 'ddpm-100');
      const s = await liftUntil((x) => x.policy === 'ddpm-100' && x.ready && x.nfe === 100, 'a DDPM-100 chunk');
      expect(s.errors).toEqual([]);
      expect(liftErrors).toEqual([]);
    });

    it('acts as Node does: same bundle, seed and noise, and the same MuJoCo, over a lockstep episode', async () => {
      await initEngine();
      for (const [id, dir, sampler] of [['onedp', 'lift-onedp', undefined], ['ddim-10', 'lift-dp', 'ddim-10']] as const) {
        const seed = 200003;
        // The deterministic one-step policy over 40 steps; DDIM-10 over its first two chunks, after
        // which the last-bit differences its ten noisy steps amplify grow through the contacts
        // (measured: 1e-7 for 8 steps, 1e-5 for 16, 1e-2 by step 33).
        const steps = id === 'onedp' ? 40 : 16;
        const web = await lift.evaluate(([i, s, n]) => window.onedpLift.rollout(i, s, n), [id, seed, steps] as const);
        const node = await OnnxPolicy.load(path.join(root, 'demo', 'public', 'policies', dir), { seed, sampler });
        const ref = await manipulationRollout('lift', node, seed, steps);
        await node.dispose();
        expect(web.actions.length).toBe(ref.actions.length);
        expect(web.success).toBe(ref.success);
        const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i][j]))));
        // onnxruntime-web and -node round differently in the last bits; MuJoCo is the same
        // WebAssembly module on both sides.
        expect(maxDiff(web.actions, ref.actions)).toBeLessThan(1e-4);
        expect(maxDiff(web.states, ref.states)).toBeLessThan(1e-4);
        // Not trivially equal: the gripper moves.
        expect(maxDiff(ref.states, ref.states.map(() => ref.states[0]))).toBeGreaterThan(0.02);
      }
      expect(liftErrors).toEqual([]);
    });
  });
});

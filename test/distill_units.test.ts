/**
 * Distillation pieces against hand-computed values: the generator gradient with stub networks
 * whose outputs are known (DDPM and EDM, OneDP-S and -D, every weighting), the injected
 * surrogate, the learning-rate schedules step by step, the errors; Consistency Policy's jump,
 * warm start and teacher ODE step; and distillation improving on its own starting point on
 * held-out observations.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../src/engine/index.js';
import { useWasmEngine } from './helpers/engine.js';
import { DiscreteSchedule } from '../src/diffusion/ddpm.js';
import { EDMScheduler } from '../src/diffusion/edm.js';
import type { NetworkFn } from '../src/diffusion/types.js';
import { ONEDP_S_RATES, DEFAULT_DISTILL_CONFIG, distillOneDp, generatorGradient, injectGradient, resolveDistillConfig, type DistillConfig } from '../src/distill/distill.js';
import { ctmJump, distillConsistency, teacherOdeStep, type ConsistencyPolicy } from '../src/distill/consistency.js';
import { bimodalDataset } from '../src/data/synthetic.js';
import { trainPolicy } from '../src/train/trainer.js';
import { defaultPolicyConfig, type DiffusionPolicy } from '../src/policy/diffusion_policy.js';
import { loadDiffusionPolicy, loadPolicy } from '../src/policy/load.js';
import { noiseKind } from '../src/experiments/recipe.js';
import { heldOut, trainBimodalTeacher } from './helpers/bimodal.js';
import type { Policy } from '../src/policy/types.js';

useWasmEngine();

const tmp = () => fs.mkdtemp(path.join(os.tmpdir(), 'onedp-dunits-'));
const B = 3;
const SHAPE = [B, 4, 2];
const A = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i + 1) * 0.8);
const EPS = Float32Array.from({ length: 24 }, (_, i) => Math.cos(3 * i + 0.5));
/** A network whose output at every element is f(t) for its row's time input t. */
const stub = (f: (t: number) => number): NetworkFn => (x, t) => {
  const tv = t.dataSync();
  const rows = x.shape[0];
  const per = x.size / rows;
  return tf.tensor(Float32Array.from({ length: x.size }, (_, i) => f(tv[Math.floor(i / per)])), x.shape);
};
const grad = (s: Parameters<typeof generatorGradient>[0], ks: number[], teacher: NetworkFn, score: NetworkFn | null) =>
  tf.tidy(() => generatorGradient(s, tf.tensor(A, SHAPE), tf.tensor(EPS, SHAPE), ks, teacher, score).dataSync() as Float32Array);
const close = (got: Float32Array, want: number[], tol = 2e-5) => want.forEach((w, i) => expect(Math.abs(got[i] - w), `element ${i}: ${got[i]} vs ${w}`).toBeLessThan(tol * (1 + Math.abs(w))));

describe('generator gradient (stub networks)', () => {
  const ddpm = new DiscreteSchedule({ numTrainTimesteps: 100 });
  const ks = [3, 50, 90];
  // The teacher predicts eps = t / 100 (so the time each row sees is checked too), psi 0.2.
  const teacher = stub((t) => t / 100);
  const score = stub(() => 0.2);
  const per = 8;
  const row = (i: number) => Math.floor(i / per);

  it('DDPM, spec weighting: OneDP-S g = sigma_k (eps_phi - eps_psi), OneDP-D uses the true noise', () => {
    const s = { discrete: ddpm, edm: null, weighting: 'spec' as const };
    close(grad(s, ks, teacher, score), [...A].map((_, i) => ddpm.sigma(ks[row(i)]) * (ks[row(i)] / 100 - 0.2)));
    close(grad(s, ks, teacher, null), [...A].map((_, i) => ddpm.sigma(ks[row(i)]) * (ks[row(i)] / 100 - EPS[i])));
  });

  it('DDPM, x0 and DMD weightings', () => {
    const gx0 = [...A].map((_, i) => (ddpm.sigma(ks[row(i)]) * (ks[row(i)] / 100 - 0.2)) / Math.sqrt(ddpm.alphaBar[ks[row(i)]]));
    close(grad({ discrete: ddpm, edm: null, weighting: 'x0' }, ks, teacher, score), gx0);
    // DMD divides each row by mean |A - x0_phi(A_k)|, x0_phi = (A_k - sigma eps_phi) / sqrt(abar).
    const scale = [0, 1, 2].map((r) => {
      const k = ks[r];
      let m = 0;
      for (let i = r * per; i < (r + 1) * per; i++) {
        const ak = Math.sqrt(ddpm.alphaBar[k]) * A[i] + ddpm.sigma(k) * EPS[i];
        m += Math.abs(A[i] - (ak - ddpm.sigma(k) * (k / 100)) / Math.sqrt(ddpm.alphaBar[k]));
      }
      return m / per + 1e-4;
    });
    close(grad({ discrete: ddpm, edm: null, weighting: 'dmd' }, ks, teacher, score), gx0.map((g, i) => g / scale[row(i)]), 1e-4);
  });

  it('EDM: OneDP-S g = D_psi - D_phi, OneDP-D g = A - D_phi(A + sigma eps), with EDM preconditioning', () => {
    const edm = new EDMScheduler({ sigmaData: 0.5 });
    const sigmas = [0.05, 1, 20];
    // F_phi = c_noise (the time input the network sees), F_psi = -0.3.
    const teacherF = stub((cn) => cn);
    const scoreF = stub(() => -0.3);
    const pc = sigmas.map((s) => edm.precondition(s));
    const s = { discrete: null, edm, weighting: 'spec' as const };
    close(grad(s, sigmas, teacherF, scoreF), [...A].map((_, i) => pc[row(i)].cOut * (-0.3 - pc[row(i)].cNoise)));
    close(
      grad(s, sigmas, teacherF, null),
      [...A].map((a, i) => {
        const p = pc[row(i)];
        const ak = a + sigmas[row(i)] * EPS[i];
        return a - (p.cSkip * ak + p.cOut * p.cNoise);
      }),
    );
  });

  it('needs a schedule', () => {
    expect(() => grad({ discrete: null, edm: null, weighting: 'spec' }, ks, teacher, score)).toThrow(/needs a DDPM or an EDM schedule/);
  });

  it('the injected surrogate has value 0.5 mean_b ||g||^2 and gradient g / B at A', () => {
    const g = tf.tensor(EPS, SHAPE);
    const a = tf.tensor(A, SHAPE);
    const value = injectGradient(a, g);
    const want = (0.5 * EPS.reduce((s, v) => s + v * v, 0)) / B;
    expect(Math.abs(value.dataSync()[0] - want)).toBeLessThan(1e-5);
    const [dA] = tf.grads((x: tf.Tensor) => injectGradient(x, g))([a]);
    close(dA.dataSync() as Float32Array, [...EPS].map((v) => v / B));
    tf.dispose([g, a, value, dA]);
  });
});

describe('distillation config', () => {
  it('OneDP-S takes its own default rates, OneDP-D the general ones; given rates win', () => {
    expect(resolveDistillConfig({ method: 'onedp-s' })).toMatchObject(ONEDP_S_RATES);
    expect(ONEDP_S_RATES.lrGenerator).not.toBe(DEFAULT_DISTILL_CONFIG.lrGenerator);
    expect(resolveDistillConfig({ method: 'onedp-d' })).toMatchObject({ lrGenerator: DEFAULT_DISTILL_CONFIG.lrGenerator, lrScore: DEFAULT_DISTILL_CONFIG.lrScore });
    // Keys given as undefined (an experiment without its own rates) fall back to the defaults.
    expect(resolveDistillConfig({ method: 'onedp-s', lrGenerator: undefined, lrScore: 5e-4, steps: 7 })).toMatchObject({ lrGenerator: 1e-3, lrScore: 5e-4, steps: 7, batchSize: DEFAULT_DISTILL_CONFIG.batchSize });
  });
});

describe('Consistency Policy pieces', () => {
  it('the teacher ODE step is Heun to u > 0 and Euler to 0, on a denoiser D(x) = c x', () => {
    const edm = new EDMScheduler({ sigmaData: 0.5 });
    // D = c_skip x + c_out F(c_in x); with F = k c_in x the denoiser is linear: D = (c_skip + c_out k c_in) x.
    const k = 0.7;
    const net: NetworkFn = (x) => x.mul(k);
    const lin = (s: number) => {
      const p = edm.precondition(s);
      return p.cSkip + p.cOut * k * p.cIn;
    };
    const t = [2, 2, 0.5];
    const u = [1, 0, 0.1];
    const got = tf.tidy(() => teacherOdeStep(edm, net, tf.tensor(A, SHAPE), t, u, 0.002).dataSync() as Float32Array);
    const want = [...A].map((x, i) => {
      const r = Math.floor(i / 8);
      const d = ((1 - lin(t[r])) * x) / t[r];
      const xe = x + (u[r] - t[r]) * d;
      if (u[r] === 0) return xe;
      const d2 = ((1 - lin(u[r])) * xe) / u[r];
      return x + ((u[r] - t[r]) * (d + d2)) / 2;
    });
    close(got, want, 1e-4);
  });

  it('G(x, t, t) = x, and a warm-started student is one Euler step of its teacher', async () => {
    const buffer = bimodalDataset({ episodes: 4 });
    const cfg = defaultPolicyConfig(2, 2, { unet: { diffusionStepEmbedDim: 16, downDims: [8, 16], kernelSize: 5, nGroups: 4, condPredictScale: true }, noise: noiseKind('edm') });
    const dir = await tmp();
    await trainPolicy({ policy: cfg, buffer, outDir: dir, train: { steps: 3, batchSize: 8, warmupSteps: 1, lr: 1e-3, checkpointEvery: 10 }, progress: 'none' });
    const teacher = await loadDiffusionPolicy(dir);
    const out = await tmp();
    // No steps: the saved student is the warm start.
    await distillConsistency({ teacher, buffer, config: { steps: 0, batchSize: 8, dropout: 0 }, outDir: out, progress: 'none' });
    const cp = (await loadPolicy(out)) as ConsistencyPolicy;
    const edm = new EDMScheduler(cfg.noise.kind === 'edm' ? cfg.noise : {});
    tf.tidy(() => {
      const x = tf.tensor(A, SHAPE).mul(3);
      const cond = tf.randomNormal([B, 4], 0, 1, 'float32', 3);
      const t = [5, 1.2, 0.3];
      const same = ctmJump(cp.student.unet, edm, x, cond, t, t).dataSync() as Float32Array;
      expect([...same]).toEqual([...(x.dataSync() as Float32Array)]);
      const s = [2, 0.5, 0];
      const jump = ctmJump(cp.student.unet, edm, x, cond, t, s).dataSync() as Float32Array;
      const euler = teacherOdeStep(edm, (xin, tin) => teacher.unet.forward(xin, tin, cond), x, t, s.map(() => 0), 0.002);
      // Euler from t to s: x + (s - t)(x - D)/t; teacherOdeStep to 0 gives x - (x - D) = D.
      const d = euler.dataSync() as Float32Array;
      const xv = x.dataSync() as Float32Array;
      close(jump, [...xv].map((xi, i) => {
        const r = Math.floor(i / 8);
        return (s[r] / t[r]) * xi + (1 - s[r] / t[r]) * d[i];
      }), 1e-4);
    });
    teacher.dispose();
    cp.dispose();
  });
});

describe('OneDP distillation improves on its starting point', () => {
  const buffer = bimodalDataset({ episodes: 40 });
  let teacher: DiffusionPolicy;
  beforeAll(async () => {
    const dir = await tmp();
    await trainBimodalTeacher(buffer, dir);
    teacher = await loadDiffusionPolicy(dir);
  });
  const distilled = async (method: 'onedp-s' | 'onedp-d', steps: number) => {
    const out = await tmp();
    await distillOneDp({ teacher, buffer, config: { method, steps, batchSize: 64 }, outDir: out, progress: 'none' });
    const p = await loadPolicy(out);
    const r = heldOut(p);
    p.dispose();
    return r;
  };

  // Measured on this toy (bias / spread over 8 noise seeds): the teacher's DDPM sampler 0.024 /
  // 0.037; OneDP-D 0.14 / 0 -> 0.03 / 0 after 150 steps; OneDP-S 0.13 / 0.15 -> 0.055 / 0.12 at its
  // DDPM rates (0.051 / 0.115 at 3e-4 / 3e-3): its stochastic generator gives up its spread
  // slowly (see the README's distillation notes).
  it('onedp-d: on held-out mid-episode observations, 150 steps beat the undistilled generator by a clear margin', async () => {
    const start = (await distilled('onedp-d', 0));
    const after = (await distilled('onedp-d', 150));
    expect(start.spread).toBe(0);
    expect(after.spread).toBe(0);
    expect(after.bias).toBeLessThan(0.5 * start.bias);
    expect(after.bias).toBeLessThan(0.06);
  });

  it('onedp-s: on held-out mid-episode observations, 150 steps move the mean chunk to the demonstration and narrow the spread', async () => {
    const start = (await distilled('onedp-s', 0));
    const after = (await distilled('onedp-s', 150));
    expect(start.spread).toBeGreaterThan(0.05);
    expect(after.bias).toBeLessThan(0.6 * start.bias);
    expect(after.spread).toBeLessThan(0.95 * start.spread);
  });

  it("OneDP-S follows both learning rates' cosine schedules step by step, and the score network updates as often as asked", async () => {
    const cfg: Partial<DistillConfig> & { method: 'onedp-s' } = { method: 'onedp-s', steps: 5, batchSize: 16, scoreUpdates: 2 };
    const seen: { lrGenerator: number; lrScore: number | null }[] = [];
    const r = await distillOneDp({ teacher, buffer, config: cfg, outDir: await tmp(), progress: 'none', onStep: (i) => void seen.push({ lrGenerator: i.lrGenerator, lrScore: i.lrScore }) });
    seen.forEach((s, step) => {
      const scale = 0.5 * (1 + Math.cos((Math.PI * step) / 5));
      expect(s.lrGenerator).toBeCloseTo(ONEDP_S_RATES.lrGenerator * scale, 12);
      expect(s.lrScore).toBeCloseTo(ONEDP_S_RATES.lrScore * scale, 12);
    });
    expect(seen[4].lrGenerator).toBeLessThan(seen[0].lrGenerator * 0.1);
    // Two score updates per step change the score network's path, so the losses differ from one update.
    const one = await distillOneDp({ teacher, buffer, config: { ...cfg, scoreUpdates: 1 }, outDir: await tmp(), progress: 'none' });
    expect(r.scoreLosses[4]).not.toBe(one.scoreLosses[4]);
  });

  it('rejects bad k ranges, score-update counts and weightings, and stops clearly when it diverges', async () => {
    const go = (config: Partial<DistillConfig> & { method: 'onedp-s' | 'onedp-d' }) => distillOneDp({ teacher, buffer, config: { steps: 2, batchSize: 8, ...config }, outDir: os.tmpdir(), progress: 'none' });
    await expect(go({ method: 'onedp-s', kMin: 50, kMax: 10 })).rejects.toThrow(/kMin\.\.kMax \(50\.\.10\) must lie in 0\.\.99/);
    await expect(go({ method: 'onedp-s', kMax: 100 })).rejects.toThrow(/must lie in 0\.\.99/);
    await expect(go({ method: 'onedp-s', scoreUpdates: 0 })).rejects.toThrow(/scoreUpdates must be a positive integer/);
    await expect(go({ method: 'onedp-d', weighting: 'l2' as 'spec' })).rejects.toThrow(/weighting must be spec, x0 or dmd/);
    await expect(go({ method: 'onedp-s', lrGenerator: 1e30, lrScore: 1e30, lrSchedule: 'constant', steps: 6 })).rejects.toThrow(/distillation diverged at step \d+ .*lower the learning rates/);
  });
});

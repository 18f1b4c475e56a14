/**
 * An independent float64 re-implementation of the ResNet-18/GroupNorm/spatial-softmax encoder,
 * written with plain loops over PyTorch-layout (NCHW, OIHW) weights. Used as a well-conditioned
 * reference for the tfjs encoder.
 */
export type F64Params = Record<string, { shape: number[]; d: Float64Array }>;
interface T {
  c: number;
  h: number;
  w: number;
  d: Float64Array;
}

function conv(x: T, P: F64Params, name: string, stride: number, pad: number, bias?: string): T {
  const W = P[name];
  const [co, ci, kh, kw] = W.shape;
  const ho = Math.floor((x.h + 2 * pad - kh) / stride) + 1;
  const wo = Math.floor((x.w + 2 * pad - kw) / stride) + 1;
  const out = new Float64Array(co * ho * wo);
  for (let o = 0; o < co; o++)
    for (let i = 0; i < ho; i++)
      for (let j = 0; j < wo; j++) {
        let s = bias ? P[bias].d[o] : 0;
        for (let c = 0; c < ci; c++)
          for (let a = 0; a < kh; a++) {
            const y = i * stride + a - pad;
            if (y < 0 || y >= x.h) continue;
            for (let b = 0; b < kw; b++) {
              const xx = j * stride + b - pad;
              if (xx < 0 || xx >= x.w) continue;
              s += x.d[(c * x.h + y) * x.w + xx] * W.d[((o * ci + c) * kh + a) * kw + b];
            }
          }
        out[(o * ho + i) * wo + j] = s;
      }
  return { c: co, h: ho, w: wo, d: out };
}

function gn(x: T, P: F64Params, name: string): T {
  const G = x.c / 16;
  const per = (x.c / G) * x.h * x.w;
  const out = new Float64Array(x.d.length);
  for (let g = 0; g < G; g++) {
    let m = 0;
    for (let k = 0; k < per; k++) m += x.d[g * per + k];
    m /= per;
    let v = 0;
    for (let k = 0; k < per; k++) v += (x.d[g * per + k] - m) ** 2;
    v /= per;
    const r = 1 / Math.sqrt(v + 1e-5);
    for (let k = 0; k < per; k++) {
      const c = g * (x.c / G) + Math.floor(k / (x.h * x.w));
      out[g * per + k] = (x.d[g * per + k] - m) * r * P[name + '.weight'].d[c] + P[name + '.bias'].d[c];
    }
  }
  return { ...x, d: out };
}

const relu = (x: T): T => ({ ...x, d: x.d.map((v) => Math.max(v, 0)) });

function maxpool(x: T): T {
  const ho = Math.floor((x.h + 2 - 3) / 2) + 1;
  const wo = Math.floor((x.w + 2 - 3) / 2) + 1;
  const out = new Float64Array(x.c * ho * wo);
  for (let c = 0; c < x.c; c++)
    for (let i = 0; i < ho; i++)
      for (let j = 0; j < wo; j++) {
        let m = -Infinity;
        for (let a = 0; a < 3; a++)
          for (let b = 0; b < 3; b++) {
            const y = i * 2 + a - 1;
            const xx = j * 2 + b - 1;
            if (y >= 0 && y < x.h && xx >= 0 && xx < x.w) m = Math.max(m, x.d[(c * x.h + y) * x.w + xx]);
          }
        out[(c * ho + i) * wo + j] = m;
      }
  return { c: x.c, h: ho, w: wo, d: out };
}

function block(x: T, P: F64Params, p: string, stride: number): T {
  let h = relu(gn(conv(x, P, p + '.conv1.weight', stride, 1), P, p + '.bn1'));
  h = gn(conv(h, P, p + '.conv2.weight', 1, 1), P, p + '.bn2');
  const id = P[p + '.downsample.0.weight'] ? gn(conv(x, P, p + '.downsample.0.weight', stride, 0), P, p + '.downsample.1') : x;
  return relu({ ...h, d: h.d.map((v, i) => v + id.d[i]) });
}

/** image: one (3, H, W) NCHW image; returns the 64 features. */
export function encoderF64(P: F64Params, image: Float64Array, size: number): Float64Array {
  let x: T = { c: 3, h: size, w: size, d: image };
  x = maxpool(relu(gn(conv(x, P, 'backbone.0.weight', 2, 3), P, 'backbone.1')));
  for (const l of [4, 5, 6, 7]) for (const k of [0, 1]) x = block(x, P, `backbone.${l}.${k}`, l > 4 && k === 0 ? 2 : 1);
  const nets = conv(x, P, 'pool.nets.weight', 1, 0, 'pool.nets.bias');
  const K = nets.c;
  const n = x.h * x.w;
  const kp: number[] = [];
  for (let k = 0; k < K; k++) {
    const f = Array.from(nets.d.subarray(k * n, (k + 1) * n));
    const mx = Math.max(...f);
    const e = f.map((v) => Math.exp(v - mx));
    const s = e.reduce((a, b) => a + b);
    let ex = 0;
    let ey = 0;
    for (let i = 0; i < x.h; i++)
      for (let j = 0; j < x.w; j++) {
        const a = e[i * x.w + j] / s;
        ex += a * (-1 + (2 * j) / (x.w - 1));
        ey += a * (-1 + (2 * i) / (x.h - 1));
      }
    kp.push(ex, ey);
  }
  const L = P['linear.weight'];
  const out = new Float64Array(L.shape[0]);
  for (let o = 0; o < L.shape[0]; o++) {
    let s = P['linear.bias'].d[o];
    for (let i = 0; i < kp.length; i++) s += L.d[o * kp.length + i] * kp[i];
    out[o] = s;
  }
  return out;
}

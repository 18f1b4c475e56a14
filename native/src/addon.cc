// onedp's native training kernels: convolutions, matrix products, GroupNorm with its
// activation, and the AdamW / EMA updates, multi-threaded and deterministic.
//
// They compute in place on the tfjs wasm backend's heap: JS passes the heap (a typed array over
// the wasm memory) and byte offsets of the tensors, so no data is copied in or out. Every call
// is synchronous, so the heap cannot grow (and move) while native code holds its address.
//
// Arguments travel as one Float64Array of numbers per call (offsets and sizes), which costs
// one N-API lookup instead of one per argument.
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gemm.h"

namespace onedp {
namespace {

struct State {
  Pool pool{1};
  GemmScratch gemm;
  Scratch tmp;
  std::vector<double> partial;
};

#define CHECK(call)                                              \
  do {                                                           \
    if ((call) != napi_ok) {                                     \
      napi_throw_error(env, nullptr, "onedp native: " #call);    \
      return nullptr;                                            \
    }                                                            \
  } while (0)

struct Args {
  uint8_t* heap = nullptr;
  const double* a = nullptr;
  size_t n = 0;
  State* st = nullptr;
  float* f(size_t i) const { return reinterpret_cast<float*>(heap + static_cast<size_t>(a[i])); }
  int i(size_t k) const { return static_cast<int>(a[k]); }
  double d(size_t k) const { return a[k]; }
};

// Reads (heap: TypedArray, args: Float64Array) and checks the argument count.
bool readArgs(napi_env env, napi_callback_info info, size_t want, Args& out) {
  size_t argc = 2;
  napi_value argv[2];
  void* data;
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, &data) != napi_ok || argc < 2) {
    napi_throw_type_error(env, nullptr, "onedp native: expected (heap, args)");
    return false;
  }
  napi_typedarray_type t;
  size_t len;
  void* p;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[0], &t, &len, &p, &ab, &off) != napi_ok) {
    napi_throw_type_error(env, nullptr, "onedp native: heap must be a typed array");
    return false;
  }
  out.heap = static_cast<uint8_t*>(p) - off;
  if (napi_get_typedarray_info(env, argv[1], &t, &len, &p, &ab, &off) != napi_ok || t != napi_float64_array) {
    napi_throw_type_error(env, nullptr, "onedp native: args must be a Float64Array");
    return false;
  }
  out.a = static_cast<const double*>(p);
  out.n = len;
  if (len < want) {
    napi_throw_range_error(env, nullptr, ("onedp native: expected " + std::to_string(want) + " args, got " + std::to_string(len)).c_str());
    return false;
  }
  out.st = static_cast<State*>(data);
  return true;
}

ConvGeom geomAt(const Args& a, size_t k) {
  ConvGeom g;
  g.B = a.i(k); g.H = a.i(k + 1); g.W = a.i(k + 2); g.Ci = a.i(k + 3); g.Co = a.i(k + 4);
  g.kh = a.i(k + 5); g.kw = a.i(k + 6); g.sh = a.i(k + 7); g.sw = a.i(k + 8);
  g.ph = a.i(k + 9); g.pw = a.i(k + 10); g.Ho = a.i(k + 11); g.Wo = a.i(k + 12);
  return g;
}

constexpr size_t GEOM = 13;

// C (rows x n) = bias broadcast over rows: the starting value of a GEMM with a bias.
void fillRows(Pool& pool, float* c, const float* bias, long rows, int n) {
  auto fill = [&](int job) {
    const long r0 = (long)job * 256, r1 = std::min(rows, r0 + 256);
    for (long r = r0; r < r1; r++) std::memcpy(c + r * n, bias, sizeof(float) * n);
  };
  const int jobs = (int)((rows + 255) / 256);
  if (rows * n < 65536) {
    for (int j = 0; j < jobs; j++) fill(j);
  } else {
    pool.run(jobs, fill);
  }
}

// args: x, w, y, bias (-1: none), geom.  y (B, Ho, Wo, Co) = conv(x (B, H, W, Ci), w (kh, kw, Ci, Co)) [+ bias]
napi_value Conv2d(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 4 + GEOM, a)) return nullptr;
  const float* x = a.f(0);
  const float* w = a.f(1);
  float* y = a.f(2);
  const bool hasBias = a.d(3) >= 0;
  const ConvGeom g = geomAt(a, 4);
  const int M = g.B * g.Ho * g.Wo, N = g.Co, K = g.taps() * g.Ci;
  if (hasBias) fillRows(a.st->pool, y, a.f(3), M, N);
  DenseB B{w, g.Co, false};
  if (g.taps() == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.Ho == g.H && g.Wo == g.W) {
    gemm(a.st->pool, a.st->gemm, M, N, K, DenseA{x, g.Ci, false}, B, y, g.Co, hasBias);
  } else {
    gemm(a.st->pool, a.st->gemm, M, N, K, Im2colA{x, g, false}, B, y, g.Co, hasBias);
  }
  return nullptr;
}

// args: x, dy, dw, geom.  dw (kh, kw, Ci, Co) = im2col(x)^T dy
napi_value Conv2dBackpropFilter(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 3 + GEOM, a)) return nullptr;
  const float* x = a.f(0);
  const float* dy = a.f(1);
  float* dw = a.f(2);
  const ConvGeom g = geomAt(a, 3);
  const int M = g.taps() * g.Ci, N = g.Co, K = g.B * g.Ho * g.Wo;
  DenseB B{dy, g.Co, false};
  if (g.taps() == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.Ho == g.H && g.Wo == g.W) {
    gemm(a.st->pool, a.st->gemm, M, N, K, DenseA{x, g.Ci, true}, B, dw, g.Co, false);
  } else {
    gemm(a.st->pool, a.st->gemm, M, N, K, Im2colTA{x, g}, B, dw, g.Co, false);
  }
  return nullptr;
}

// args: dy, w, dx, geom.  dx (B, H, W, Ci) = the adjoint of conv applied to dy (B, Ho, Wo, Co).
// Stride 1: a convolution of dy with the rotated filter. Larger strides: G = dy w^T, then each
// input pixel gathers its taps from G in a fixed order (no work on inserted zeros).
napi_value Conv2dBackpropInput(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 3 + GEOM, a)) return nullptr;
  const float* dy = a.f(0);
  const float* w = a.f(1);
  float* dx = a.f(2);
  const ConvGeom g = geomAt(a, 3);
  State& st = *a.st;
  const int T = g.taps();
  if (T == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.Ho == g.H && g.Wo == g.W) {
    gemm(st.pool, st.gemm, g.B * g.H * g.W, g.Ci, g.Co, DenseA{dy, g.Co, false}, DenseB{w, g.Co, true}, dx, g.Ci, false);
    return nullptr;
  }
  if (g.sh == 1 && g.sw == 1) {
    ConvGeom r;  // dy is the image, dx the output
    r.B = g.B; r.H = g.Ho; r.W = g.Wo; r.Ci = g.Co; r.Co = g.Ci;
    r.kh = g.kh; r.kw = g.kw; r.sh = 1; r.sw = 1;
    r.ph = g.kh - 1 - g.ph; r.pw = g.kw - 1 - g.pw; r.Ho = g.H; r.Wo = g.W;
    gemm(st.pool, st.gemm, g.B * g.H * g.W, g.Ci, T * g.Co, Im2colA{dy, r, true}, TransposedFilterB{w, T, g.Ci, g.Co}, dx, g.Ci, false);
    return nullptr;
  }
  const long rowsPerImage = (long)g.Ho * g.Wo;
  const long cols = (long)T * g.Ci;
  // Images per chunk so that G stays within about 16 MB.
  const int chunk = std::max<long>(1, std::min<long>(g.B, (4L << 20) / std::max<long>(1, rowsPerImage * cols)));
  float* G = st.tmp.get((size_t)chunk * rowsPerImage * cols);
  for (int b0 = 0; b0 < g.B; b0 += chunk) {
    const int nb = std::min(chunk, g.B - b0);
    gemm(st.pool, st.gemm, (int)(nb * rowsPerImage), (int)cols, g.Co, DenseA{dy + (long)b0 * rowsPerImage * g.Co, g.Co, false}, DenseB{w, g.Co, true}, G, cols, false);
    const int rows = nb * g.H;
    auto gather = [&](int job) {
      const int bl = job / g.H, ih = job % g.H;
      for (int iw = 0; iw < g.W; iw++) {
        float* d = dx + ((((long)(b0 + bl)) * g.H + ih) * g.W + iw) * g.Ci;
        std::memset(d, 0, sizeof(float) * g.Ci);
        for (int ti = 0; ti < g.kh; ti++) {
          const int nh = ih + g.ph - ti;
          if (nh < 0 || nh % g.sh != 0) continue;
          const int oh = nh / g.sh;
          if (oh >= g.Ho) continue;
          for (int tj = 0; tj < g.kw; tj++) {
            const int nw = iw + g.pw - tj;
            if (nw < 0 || nw % g.sw != 0) continue;
            const int ow = nw / g.sw;
            if (ow >= g.Wo) continue;
            const float* s = G + (((long)bl * g.Ho + oh) * g.Wo + ow) * cols + (long)(ti * g.kw + tj) * g.Ci;
            for (int c = 0; c < g.Ci; c++) d[c] += s[c];
          }
        }
      }
    };
    if (rows * (long)g.W * g.Ci < 65536) {
      for (int j = 0; j < rows; j++) gather(j);
    } else {
      st.pool.run(rows, gather);
    }
  }
  return nullptr;
}

// args: a, b, c, bias (-1: none; N values added to every row), batch, M, N, K, transA, transB,
// aBatchStride, bBatchStride (elements)
napi_value BatchMatMul(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 12, a)) return nullptr;
  const float* A = a.f(0);
  const float* B = a.f(1);
  float* C = a.f(2);
  const bool hasBias = a.d(3) >= 0;
  const int batch = a.i(4), M = a.i(5), N = a.i(6), K = a.i(7);
  const bool ta = a.i(8) != 0, tb = a.i(9) != 0;
  const long sa = (long)a.d(10), sb = (long)a.d(11);
  if (hasBias) fillRows(a.st->pool, C, a.f(3), (long)batch * M, N);
  for (int i = 0; i < batch; i++) {
    DenseA da{A + i * sa, ta ? M : K, ta};
    DenseB db{B + i * sb, tb ? K : N, tb};
    gemm(a.st->pool, a.st->gemm, M, N, K, da, db, C + (long)i * M * N, N, hasBias);
  }
  return nullptr;
}

// ---- reductions ----

// args: x, out, rows, cols, leading (1: out[c] = sum_r x[r, c]; 0: out[r] = sum_c x[r, c]).
// Sums in float64, in index order.
napi_value SumAxes(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 5, a)) return nullptr;
  const float* x = a.f(0);
  float* out = a.f(1);
  const long R = (long)a.d(2), Cn = (long)a.d(3);
  const bool leading = a.i(4) != 0;
  const bool small = R * Cn < 65536;
  if (leading) {
    // Jobs are (column block, row block) pairs with fixed bounds; the row blocks' partial sums
    // are then added in order, so the result does not depend on the thread count.
    constexpr long CB = 64, RB = 512;
    const long colBlocks = (Cn + CB - 1) / CB, rowBlocks = (R + RB - 1) / RB;
    std::vector<double> part((size_t)rowBlocks * Cn, 0.0);
    auto block = [&](int job) {
      const long cb = job % colBlocks, rb = job / colBlocks;
      const long c0 = cb * CB, c1 = std::min(Cn, c0 + CB);
      const long r0 = rb * RB, r1 = std::min(R, r0 + RB);
      double acc[CB] = {};
      for (long r = r0; r < r1; r++) {
        const float* row = x + r * Cn;
        for (long c = c0; c < c1; c++) acc[c - c0] += row[c];
      }
      for (long c = c0; c < c1; c++) part[(size_t)rb * Cn + c] = acc[c - c0];
    };
    const int jobs = (int)(colBlocks * rowBlocks);
    if (small || jobs == 1) {
      for (int j = 0; j < jobs; j++) block(j);
    } else {
      a.st->pool.run(jobs, block);
    }
    for (long c = 0; c < Cn; c++) {
      double t = 0;
      for (long rb = 0; rb < rowBlocks; rb++) t += part[(size_t)rb * Cn + c];
      out[c] = (float)t;
    }
  } else {
    auto rowBlock = [&](int job) {
      const long r0 = (long)job * 64, r1 = std::min(R, r0 + 64);
      for (long r = r0; r < r1; r++) {
        const float* row = x + r * Cn;
        double acc = 0;
        for (long c = 0; c < Cn; c++) acc += row[c];
        out[r] = (float)acc;
      }
    };
    const int jobs = (int)((R + 63) / 64);
    if (small) {
      for (int j = 0; j < jobs; j++) rowBlock(j);
    } else {
      a.st->pool.run(jobs, rowBlock);
    }
  }
  return nullptr;
}

// ---- FiLM: y = h * scale + shift, per image and channel ----

// args: h, e, y, B, L, C, withScale.  h, y (B, L, C); e (B, 2C) = [scale, shift] or (B, C) = shift.
napi_value FilmForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 7, a)) return nullptr;
  const float* h = a.f(0);
  const float* e = a.f(1);
  float* y = a.f(2);
  const int B = a.i(3), L = a.i(4), C = a.i(5);
  const bool withScale = a.i(6) != 0;
  auto one = [&](int b) {
    const float* eb = e + (long)b * (withScale ? 2 * C : C);
    const float* sh = withScale ? eb + C : eb;
    for (int l = 0; l < L; l++) {
      const float* hr = h + ((long)b * L + l) * C;
      float* yr = y + ((long)b * L + l) * C;
      if (withScale) {
        for (int c = 0; c < C; c++) yr[c] = hr[c] * eb[c] + sh[c];
      } else {
        for (int c = 0; c < C; c++) yr[c] = hr[c] + sh[c];
      }
    }
  };
  if ((long)B * L * C < 65536) {
    for (int b = 0; b < B; b++) one(b);
  } else {
    a.st->pool.run(B, one);
  }
  return nullptr;
}

// args: dy, h, e, dh, de, B, L, C, withScale.  dh = dy scale; dscale = sum_l dy h; dshift = sum_l dy.
napi_value FilmBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 9, a)) return nullptr;
  const float* dy = a.f(0);
  const float* h = a.f(1);
  const float* e = a.f(2);
  float* dh = a.f(3);
  float* de = a.f(4);
  const int B = a.i(5), L = a.i(6), C = a.i(7);
  const bool withScale = a.i(8) != 0;
  auto one = [&](int b) {
    const int ew = withScale ? 2 * C : C;
    const float* eb = e + (long)b * ew;
    float* db = de + (long)b * ew;
    float* dshift = withScale ? db + C : db;
    std::vector<double> ss(C, 0.0), st(C, 0.0);
    for (int l = 0; l < L; l++) {
      const long o = ((long)b * L + l) * C;
      for (int c = 0; c < C; c++) {
        const float d = dy[o + c];
        st[c] += d;
        if (withScale) {
          ss[c] += (double)d * h[o + c];
          dh[o + c] = d * eb[c];
        } else {
          dh[o + c] = d;
        }
      }
    }
    for (int c = 0; c < C; c++) {
      dshift[c] = (float)st[c];
      if (withScale) db[c] = (float)ss[c];
    }
  };
  if ((long)B * L * C < 65536) {
    for (int b = 0; b < B; b++) one(b);
  } else {
    a.st->pool.run(B, one);
  }
  return nullptr;
}

// ---- GroupNorm with a fused activation ----

enum Act { kNone = 0, kMish = 1, kRelu = 2 };

typedef int32_t vint __attribute__((vector_size(VL * sizeof(int32_t))));

// exp(x) for a vector: Cephes' expf (range reduction by ln 2, degree-6 polynomial), about 1
// ulp. Written out because libm's expf is scalar; round-to-nearest uses the 1.5 * 2^23 trick,
// so the result does not depend on the rounding-mode or fast-math flags.
inline vfloat vexp(vfloat x) {
  const vfloat hi = vfloat{} + 88.3762626647949f, lo = vfloat{} - 87.3365478515625f;
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  const vfloat magic = vfloat{} + 12582912.f;
  const vfloat n = (x * 1.44269504088896341f + magic) - magic;
  vfloat r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  vfloat p = vfloat{} + 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  const vfloat y = p * (r * r) + r + 1.f;
  const vint e = (__builtin_convertvector(n, vint) + 127) << 23;
  vfloat scale;
  std::memcpy(&scale, &e, sizeof scale);
  return y * scale;
}

// Mish(z) = z tanh(softplus(z)); with u = 1 - sigmoid(z), tanh(softplus(z)) = (1 - u^2) / (1 + u^2).
inline vfloat vact(int act, vfloat z) {
  if (act == kMish) {
    const vfloat s = 1.f / (1.f + vexp(-z));
    const vfloat u = 1.f - s;
    const vfloat q = u * u;
    return z * ((1.f - q) / (1.f + q));
  }
  if (act == kRelu) return z > 0.f ? z : vfloat{};
  return z;
}

inline vfloat vactGrad(int act, vfloat z) {
  if (act == kMish) {
    const vfloat s = 1.f / (1.f + vexp(-z));
    const vfloat u = 1.f - s;
    const vfloat q = u * u;
    const vfloat qp = 1.f + q;
    return (1.f - q) / qp + z * s * (4.f * q / (qp * qp));
  }
  if (act == kRelu) return z > 0.f ? vfloat{} + 1.f : vfloat{};
  return vfloat{} + 1.f;
}

// Loads n < VL floats (zeros beyond) and stores them back: the tail of a row runs the same
// vector arithmetic as its body.
inline vfloat loadPart(const float* p, int n) {
  alignas(64) float t[VL] = {};
  std::memcpy(t, p, sizeof(float) * n);
  return *reinterpret_cast<const vfloat*>(t);
}
inline void storePart(float* p, vfloat v, int n) {
  alignas(64) float t[VL];
  *reinterpret_cast<vfloat*>(t) = v;
  std::memcpy(p, t, sizeof(float) * n);
}

// y[c] = act(x[c] * sc[c] + sh[c]) over one row of C channels.
inline void normActRow(int act, const float* x, const float* sc, const float* sh, float* y, int C) {
  int c = 0;
  for (; c + VL <= C; c += VL) storeu(y + c, vact(act, loadu(x + c) * loadu(sc + c) + loadu(sh + c)));
  if (c < C) {
    const int n = C - c;
    storePart(y + c, vact(act, loadPart(x + c, n) * loadPart(sc + c, n) + loadPart(sh + c, n)), n);
  }
}

// dz[c] = dy[c] act'(x[c] * sc[c] + sh[c]) over one row.
inline void actGradRow(int act, const float* dy, const float* x, const float* sc, const float* sh, float* dz, int C) {
  int c = 0;
  for (; c + VL <= C; c += VL) storeu(dz + c, loadu(dy + c) * vactGrad(act, loadu(x + c) * loadu(sc + c) + loadu(sh + c)));
  if (c < C) {
    const int n = C - c;
    storePart(dz + c, loadPart(dy + c, n) * vactGrad(act, loadPart(x + c, n) * loadPart(sc + c, n) + loadPart(sh + c, n)), n);
  }
}

// args: x, gamma, beta, y, stats, B, N, C, groups, eps, act
// x viewed as (B, N, C); stats (B, groups, 2) = mean, 1/std (float32, as the backward reads them).
napi_value GroupNormForward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 11, a)) return nullptr;
  const float* x = a.f(0);
  const float* gamma = a.f(1);
  const float* beta = a.f(2);
  float* y = a.f(3);
  float* stats = a.f(4);
  const int B = a.i(5), N = a.i(6), C = a.i(7), G = a.i(8);
  const double eps = a.d(9);
  const int act = a.i(10);
  const int cg = C / G;
  const double M = (double)N * cg;
  auto one = [&](int b) {
    std::vector<double> s1(C, 0.0), s2(C, 0.0);
    const float* xb = x + (long)b * N * C;
    float* yb = y + (long)b * N * C;
    for (int n = 0; n < N; n++) {
      const float* r = xb + (long)n * C;
      for (int c = 0; c < C; c++) {
        const double v = r[c];
        s1[c] += v;
        s2[c] += v * v;
      }
    }
    std::vector<float> sc(C), sh(C);
    for (int g = 0; g < G; g++) {
      double t1 = 0, t2 = 0;
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        t1 += s1[c];
        t2 += s2[c];
      }
      const double mean = t1 / M;
      const double var = std::max(0.0, t2 / M - mean * mean);
      const float meanf = (float)mean;
      const float rstdf = (float)(1.0 / std::sqrt(var + eps));
      stats[(b * G + g) * 2] = meanf;
      stats[(b * G + g) * 2 + 1] = rstdf;
      for (int c = g * cg; c < (g + 1) * cg; c++) {
        sc[c] = (float)((double)rstdf * gamma[c]);
        sh[c] = (float)(beta[c] - (double)meanf * rstdf * gamma[c]);
      }
    }
    for (int n = 0; n < N; n++) normActRow(act, xb + (long)n * C, sc.data(), sh.data(), yb + (long)n * C, C);
  };
  if ((long)B * N * C < 16384) {
    for (int b = 0; b < B; b++) one(b);
  } else {
    a.st->pool.run(B, one);
  }
  return nullptr;
}

// args: dy, x, gamma, beta, stats, dx, dgamma, dbeta, B, N, C, groups, act
// With z = GN(x) and dz = dy act'(z): dx = rstd (dz gamma - mean(dz gamma) - xhat mean(dz gamma xhat)).
napi_value GroupNormBackward(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 13, a)) return nullptr;
  const float* dy = a.f(0);
  const float* x = a.f(1);
  const float* gamma = a.f(2);
  const float* beta = a.f(3);
  const float* stats = a.f(4);
  float* dx = a.f(5);
  float* dgamma = a.f(6);
  float* dbeta = a.f(7);
  const int B = a.i(8), N = a.i(9), C = a.i(10), G = a.i(11);
  const int act = a.i(12);
  const int cg = C / G;
  const double M = (double)N * cg;
  // Per-image partial sums of dgamma and dbeta, added in image order afterwards.
  std::vector<double>& part = a.st->partial;
  part.assign((size_t)B * C * 2, 0.0);
  auto one = [&](int b) {
    const long base = (long)b * N * C;
    std::vector<float> sc(C), sh(C);
    for (int c = 0; c < C; c++) {
      const int g = c / cg;
      const float mean = stats[(b * G + g) * 2], rstd = stats[(b * G + g) * 2 + 1];
      sc[c] = (float)((double)rstd * gamma[c]);
      sh[c] = (float)(beta[c] - (double)mean * rstd * gamma[c]);
    }
    // dz (the gradient at the normalised output) is kept in dx until the last pass.
    std::vector<double> sdy(C, 0.0), sdyx(C, 0.0);
    for (int n = 0; n < N; n++) {
      const float* xr = x + base + (long)n * C;
      const float* dr = dy + base + (long)n * C;
      float* o = dx + base + (long)n * C;
      if (act != kNone) {
        actGradRow(act, dr, xr, sc.data(), sh.data(), o, C);
        dr = o;
      }
      for (int c = 0; c < C; c++) {
        sdy[c] += dr[c];
        sdyx[c] += (double)dr[c] * xr[c];
      }
      if (act == kNone) std::memcpy(o, dr, sizeof(float) * C);
    }
    std::vector<double> m1(G, 0.0), m2(G, 0.0);
    double* pg = part.data() + (size_t)b * C * 2;
    for (int c = 0; c < C; c++) {
      const int g = c / cg;
      const double mean = stats[(b * G + g) * 2], rstd = stats[(b * G + g) * 2 + 1];
      const double dyxh = (sdyx[c] - mean * sdy[c]) * rstd;
      pg[c] = dyxh;
      pg[C + c] = sdy[c];
      m1[g] += gamma[c] * sdy[c];
      m2[g] += gamma[c] * dyxh;
    }
    std::vector<float> P(C), Q(C), R(C);
    for (int c = 0; c < C; c++) {
      const int g = c / cg;
      const double mean = stats[(b * G + g) * 2], rstd = stats[(b * G + g) * 2 + 1];
      const double a1 = m1[g] / M, a2 = m2[g] / M;
      P[c] = (float)(rstd * gamma[c]);
      Q[c] = (float)(-rstd * rstd * a2);
      R[c] = (float)(rstd * (mean * rstd * a2 - a1));
    }
    for (int n = 0; n < N; n++) {
      const float* xr = x + base + (long)n * C;
      float* o = dx + base + (long)n * C;
      for (int c = 0; c < C; c++) o[c] = o[c] * P[c] + xr[c] * Q[c] + R[c];
    }
  };
  if ((long)B * N * C < 16384) {
    for (int b = 0; b < B; b++) one(b);
  } else {
    a.st->pool.run(B, one);
  }
  for (int c = 0; c < C; c++) {
    double g = 0, bb = 0;
    for (int b = 0; b < B; b++) {
      g += part[(size_t)b * C * 2 + c];
      bb += part[(size_t)b * C * 2 + C + c];
    }
    dgamma[c] = (float)g;
    dbeta[c] = (float)bb;
  }
  return nullptr;
}

// ---- max pooling's gradient ----

// args: x, dy, dx, B, H, W, C, kh, kw, sh, sw, pt, pl, Ho, Wo.
// dx gets each dy at the position of its window's maximum (the first one in row-major window
// order on ties, as tfjs' cpu kernel); windows overlap, so images are the unit of work.
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 15, a)) return nullptr;
  const float* x = a.f(0);
  const float* dy = a.f(1);
  float* dx = a.f(2);
  const int B = a.i(3), H = a.i(4), W = a.i(5), C = a.i(6), kh = a.i(7), kw = a.i(8), sh = a.i(9), sw = a.i(10), pt = a.i(11), pl = a.i(12), Ho = a.i(13), Wo = a.i(14);
  auto one = [&](int b) {
    const float* xb = x + (long)b * H * W * C;
    float* db = dx + (long)b * H * W * C;
    std::memset(db, 0, sizeof(float) * (size_t)H * W * C);
    for (int oh = 0; oh < Ho; oh++)
      for (int ow = 0; ow < Wo; ow++)
        for (int c = 0; c < C; c++) {
          float best = -INFINITY;
          long at = -1;
          for (int i = 0; i < kh; i++) {
            const int ih = oh * sh - pt + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < kw; j++) {
              const int iw = ow * sw - pl + j;
              if (iw < 0 || iw >= W) continue;
              const long p = ((long)ih * W + iw) * C + c;
              if (xb[p] > best) {
                best = xb[p];
                at = p;
              }
            }
          }
          if (at >= 0) db[at] += dy[(((long)b * Ho + oh) * Wo + ow) * C + c];
        }
  };
  if ((long)B * Ho * Wo * C < 16384) {
    for (int b = 0; b < B; b++) one(b);
  } else {
    a.st->pool.run(B, one);
  }
  return nullptr;
}

// ---- elementwise activation ----

// args: x, y, n, act, dy (-1: forward).  Forward: y = act(x). Backward: y = dy act'(x).
napi_value Activation(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 5, a)) return nullptr;
  const float* x = a.f(0);
  float* y = a.f(1);
  const long n = (long)a.d(2);
  const int act = a.i(3);
  const float* dy = a.d(4) >= 0 ? a.f(4) : nullptr;
  constexpr long P = 1 << 14;
  auto run = [&](int job) {
    const long s = (long)job * P;
    const int len = (int)std::min(P, n - s);
    if (dy) {
      // dz = dy act'(z) with z = x * 1 + 0: the same row helper as GroupNorm's backward.
      static thread_local std::vector<float> ones, zeros;
      if ((int)ones.size() < len) {
        ones.assign(P, 1.f);
        zeros.assign(P, 0.f);
      }
      actGradRow(act, dy + s, x + s, ones.data(), zeros.data(), y + s, len);
    } else {
      int i = 0;
      for (; i + VL <= len; i += VL) storeu(y + s + i, vact(act, loadu(x + s + i)));
      if (i < len) storePart(y + s + i, vact(act, loadPart(x + s + i, len - i)), len - i);
    }
  };
  const int jobs = (int)((n + P - 1) / P);
  if (n < 65536) {
    for (int j = 0; j < jobs; j++) run(j);
  } else {
    a.st->pool.run(jobs, run);
  }
  return nullptr;
}

// ---- optimiser updates over many tensors in one call ----

// Splits the concatenation of `sizes` into pieces of at most `piece` elements.
struct Pieces {
  std::vector<int> tensor;
  std::vector<long> start, len;
  Pieces(const std::vector<long>& sizes, long piece) {
    for (size_t t = 0; t < sizes.size(); t++)
      for (long s = 0; s < sizes[t]; s += piece) {
        tensor.push_back((int)t);
        start.push_back(s);
        len.push_back(std::min(piece, sizes[t] - s));
      }
  }
  int size() const { return (int)tensor.size(); }
};

// args: n, b1, b2, stepSize, bc2, eps, decay, then n x (p, g, m, v, size)
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p = decay p - stepSize m / (sqrt(v) / bc2 + eps)
napi_value AdamW(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 7, a)) return nullptr;
  const int n = a.i(0);
  if (a.n < 7 + 5 * (size_t)n) {
    napi_throw_range_error(env, nullptr, "onedp native: AdamW args too short");
    return nullptr;
  }
  const float b1 = (float)a.d(1), b2 = (float)a.d(2), stepSize = (float)a.d(3), bc2 = (float)a.d(4), eps = (float)a.d(5), decay = (float)a.d(6);
  const float c1 = (float)(1.0 - a.d(1)), c2 = (float)(1.0 - a.d(2));
  std::vector<long> sizes(n);
  for (int t = 0; t < n; t++) sizes[t] = (long)a.d(7 + 5 * t + 4);
  Pieces pc(sizes, 1 << 15);
  auto run = [&](int j) {
    const size_t o = 7 + 5 * (size_t)pc.tensor[j];
    float* p = a.f(o) + pc.start[j];
    const float* g = a.f(o + 1) + pc.start[j];
    float* m = a.f(o + 2) + pc.start[j];
    float* v = a.f(o + 3) + pc.start[j];
    for (long i = 0; i < pc.len[j]; i++) {
      const float mi = b1 * m[i] + c1 * g[i];
      const float vi = b2 * v[i] + c2 * (g[i] * g[i]);
      m[i] = mi;
      v[i] = vi;
      p[i] = decay * p[i] - stepSize * (mi / (std::sqrt(vi) / bc2 + eps));
    }
  };
  long total = 0;
  for (long s : sizes) total += s;
  if (total < 65536) {
    for (int j = 0; j < pc.size(); j++) run(j);
  } else {
    a.st->pool.run(pc.size(), run);
  }
  return nullptr;
}

// args: n, decay, then n x (shadow, param, size).  shadow = decay shadow + (1 - decay) param
napi_value Ema(napi_env env, napi_callback_info info) {
  Args a;
  if (!readArgs(env, info, 2, a)) return nullptr;
  const int n = a.i(0);
  if (a.n < 2 + 3 * (size_t)n) {
    napi_throw_range_error(env, nullptr, "onedp native: EMA args too short");
    return nullptr;
  }
  const float d = (float)a.d(1), c = (float)(1.0 - a.d(1));
  std::vector<long> sizes(n);
  for (int t = 0; t < n; t++) sizes[t] = (long)a.d(2 + 3 * t + 2);
  Pieces pc(sizes, 1 << 15);
  auto run = [&](int j) {
    const size_t o = 2 + 3 * (size_t)pc.tensor[j];
    float* s = a.f(o) + pc.start[j];
    const float* p = a.f(o + 1) + pc.start[j];
    if (d == 0.f) {
      std::memcpy(s, p, sizeof(float) * pc.len[j]);
    } else {
      for (long i = 0; i < pc.len[j]; i++) s[i] = d * s[i] + c * p[i];
    }
  };
  long total = 0;
  for (long s : sizes) total += s;
  if (total < 65536) {
    for (int j = 0; j < pc.size(); j++) run(j);
  } else {
    a.st->pool.run(pc.size(), run);
  }
  return nullptr;
}

// ---- machine facts ----

// Peak fp32 rate of `threads` threads each running independent multiply-add chains, in GFLOPS.
napi_value PeakGflops(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  int32_t threads = 1;
  double seconds = 0.2;
  if (argc > 0) napi_get_value_int32(env, argv[0], &threads);
  if (argc > 1) napi_get_value_double(env, argv[1], &seconds);
  if (threads < 1) threads = 1;
  constexpr int CH = 16;  // chains: enough to cover FMA latency x ports
  const long iters = 1 << 20;
  std::vector<double> rate(threads, 0.0);
  auto body = [&](int t) {
    vfloat acc[CH];
    for (int i = 0; i < CH; i++) acc[i] = vfloat{} + (float)(i + t) * 1e-3f;
    const vfloat mul = vfloat{} + 0.999999f, add = vfloat{} + 1e-7f;
    double flops = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double el = 0;
    do {
      for (long k = 0; k < iters; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < CH; i++) acc[i] = acc[i] * mul + add;
      }
      flops += 2.0 * VL * CH * iters;
      el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (el < seconds);
    float sink = 0;
    for (int i = 0; i < CH; i++) sink += acc[i][0];
    rate[t] = flops / el / 1e9 + (sink == 12345.f ? 1e-9 : 0);
  };
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; t++) ts.emplace_back(body, t);
  body(0);
  for (auto& th : ts) th.join();
  double total = 0;
  for (double r : rate) total += r;
  napi_value out;
  CHECK(napi_create_double(env, total, &out));
  return out;
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void* data;
  CHECK(napi_get_cb_info(env, info, &argc, argv, nullptr, &data));
  int32_t n = 1;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1 || n > 256) {
    napi_throw_range_error(env, nullptr, "onedp native: setThreads takes an integer in 1..256");
    return nullptr;
  }
  static_cast<State*>(data)->pool.resize(n);
  return nullptr;
}

napi_value Info(napi_env env, napi_callback_info info) {
  void* data;
  size_t argc = 0;
  CHECK(napi_get_cb_info(env, info, &argc, nullptr, nullptr, &data));
  State* st = static_cast<State*>(data);
  napi_value o, v;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_create_string_utf8(env, ISA, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, o, "isa", v));
  CHECK(napi_create_int32(env, VL, &v));
  CHECK(napi_set_named_property(env, o, "vectorWidth", v));
  CHECK(napi_create_int32(env, MR, &v));
  CHECK(napi_set_named_property(env, o, "mr", v));
  CHECK(napi_create_int32(env, NR, &v));
  CHECK(napi_set_named_property(env, o, "nr", v));
  CHECK(napi_create_int32(env, st->pool.size(), &v));
  CHECK(napi_set_named_property(env, o, "threads", v));
  CHECK(napi_create_double(env, (double)st->pool.parallelRuns(), &v));
  CHECK(napi_set_named_property(env, o, "parallelRuns", v));
  CHECK(napi_create_int32(env, (int)std::thread::hardware_concurrency(), &v));
  CHECK(napi_set_named_property(env, o, "hardwareThreads", v));
  return o;
}

void Finalize(napi_env, void* data, void*) { delete static_cast<State*>(data); }

napi_value Init(napi_env env, napi_value exports) {
  State* st = new State();
  if (napi_set_instance_data(env, st, Finalize, nullptr) != napi_ok) {
    delete st;
    napi_throw_error(env, nullptr, "onedp native: cannot set instance data");
    return nullptr;
  }
  struct Fn {
    const char* name;
    napi_callback cb;
  } fns[] = {
      {"conv2d", Conv2d},
      {"conv2dBackpropFilter", Conv2dBackpropFilter},
      {"conv2dBackpropInput", Conv2dBackpropInput},
      {"batchMatMul", BatchMatMul},
      {"sum", SumAxes},
      {"film", FilmForward},
      {"activation", Activation},
      {"maxPoolGrad", MaxPoolGrad},
      {"filmGrad", FilmBackward},
      {"groupNorm", GroupNormForward},
      {"groupNormGrad", GroupNormBackward},
      {"adamw", AdamW},
      {"ema", Ema},
      {"peakGflops", PeakGflops},
      {"setThreads", SetThreads},
      {"info", Info},
  };
  for (const Fn& f : fns) {
    napi_value fn;
    CHECK(napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.cb, st, &fn));
    CHECK(napi_set_named_property(env, exports, f.name, fn));
  }
  return exports;
}

}  // namespace
}  // namespace onedp

NAPI_MODULE_INIT() { return onedp::Init(env, exports); }

// Single-precision GEMM, C (M x N) = A (M x K) B (K x N) [+ C], in the BLIS layout: B and A
// are packed into panels of NR columns and MR rows, and a register-blocked micro-kernel
// multiplies one MR x NR tile over a KC slice. A and B are read through accessors, so the same
// driver runs convolutions without materialising im2col matrices.
//
// Why by hand: no BLAS installs from npm without a download, and the wasm backend's GEMM uses
// one core and 128-bit vectors. The vector type follows the build machine's ISA (the addon
// is compiled on the machine that runs it, -march=native).
//
// Determinism: every C element is the sum over K in increasing order, in KC slices, each slice
// accumulated from zero in the micro-kernel and then added to C. Edge tiles run the same
// arithmetic on zero-padded panels. How the work is split between threads therefore changes
// nothing in the result.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pool.h"

namespace onedp {

#if defined(__AVX512F__)
constexpr int VL = 16;
constexpr int MR = 12;
constexpr const char* ISA = "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int VL = 8;
constexpr int MR = 6;
constexpr const char* ISA = "avx2+fma";
#elif defined(__AVX__)
constexpr int VL = 8;
constexpr int MR = 6;
constexpr const char* ISA = "avx";
#else
constexpr int VL = 4;
constexpr int MR = 4;
constexpr const char* ISA = "sse/neon";
#endif
constexpr int NRV = 2;
constexpr int NR = VL * NRV;
constexpr int KC = 256;

typedef float vfloat __attribute__((vector_size(VL * sizeof(float))));

inline vfloat loadu(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storeu(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }

// 64-byte aligned scratch that only grows.
struct Scratch {
  float* p = nullptr;
  size_t n = 0;
  float* get(size_t need) {
    if (need > n) {
      std::free(p);
      n = std::max(need, n * 3 / 2);
      p = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};

// One MR x NR tile: C = (first ? 0 : C) + A_panel * B_panel over kc.
inline void microKernel(int kc, const float* __restrict a, const float* __restrict b, float* c, long ldc, int mr, int nr, bool first) {
  vfloat acc[MR][NRV];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NRV; j++) acc[i][j] = vfloat{};
  for (int k = 0; k < kc; k++) {
    vfloat bv[NRV];
#pragma GCC unroll 4
    for (int j = 0; j < NRV; j++) bv[j] = *reinterpret_cast<const vfloat*>(b + k * NR + j * VL);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      const float av = a[k * MR + i];
#pragma GCC unroll 4
      for (int j = 0; j < NRV; j++) acc[i][j] += av * bv[j];
    }
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; i++)
      for (int j = 0; j < NRV; j++) {
        float* p = c + i * ldc + j * VL;
        storeu(p, first ? acc[i][j] : loadu(p) + acc[i][j]);
      }
    return;
  }
  alignas(64) float t[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NRV; j++) storeu(&t[i][j * VL], acc[i][j]);
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float* p = c + i * ldc + j;
      *p = first ? t[i][j] : *p + t[i][j];
    }
}

// ---- accessors: pack(dst, ...) writes a zero-padded panel ----

// A (M x K) stored row-major with leading dimension ld, or its transpose (stored K x M).
struct DenseA {
  const float* p;
  long ld;
  bool trans;
  // dst[k * MR + i] = A(m0 + i, k0 + k)
  void pack(float* dst, int m0, int mr, int k0, int kc) const {
    if (mr < MR) std::memset(dst, 0, sizeof(float) * MR * kc);
    if (trans) {
      for (int k = 0; k < kc; k++) std::memcpy(dst + k * MR, p + (long)(k0 + k) * ld + m0, sizeof(float) * mr);
    } else {
      for (int i = 0; i < mr; i++) {
        const float* src = p + (long)(m0 + i) * ld + k0;
        for (int k = 0; k < kc; k++) dst[k * MR + i] = src[k];
      }
    }
  }
};

// B (K x N) row-major with leading dimension ld, or its transpose (stored N x K).
struct DenseB {
  const float* p;
  long ld;
  bool trans;
  // dst[k * NR + j] = B(k0 + k, n0 + j)
  void pack(float* dst, int k0, int kc, int n0, int nr) const {
    if (nr < NR) std::memset(dst, 0, sizeof(float) * NR * kc);
    if (!trans) {
      for (int k = 0; k < kc; k++) std::memcpy(dst + k * NR, p + (long)(k0 + k) * ld + n0, sizeof(float) * nr);
    } else {
      for (int j = 0; j < nr; j++) {
        const float* src = p + (long)(n0 + j) * ld + k0;
        for (int k = 0; k < kc; k++) dst[k * NR + j] = src[k];
      }
    }
  }
};

// Geometry of a 2-D convolution in NHWC with a (kh, kw, ci, co) filter. Conv1d is kh = 1.
struct ConvGeom {
  int B, H, W, Ci, Co, kh, kw, sh, sw, ph, pw, Ho, Wo;
  int taps() const { return kh * kw; }
};

// im2col(x) as A: rows (b, oh, ow), columns (tap, ci); zero outside the image.
// With `flip`, taps run in reverse order (the rotated filter of an input gradient).
struct Im2colA {
  const float* x;
  ConvGeom g;  // x is (B, H, W, Ci); outputs Ho x Wo
  bool flip = false;
  void pack(float* dst, int m0, int mr, int k0, int kc) const {
    if (mr < MR) std::memset(dst, 0, sizeof(float) * MR * kc);
    const int T = g.taps();
    const int rowLen = g.kw * g.Ci;
    for (int i = 0; i < mr; i++) {
      const int m = m0 + i;
      const int b = m / (g.Ho * g.Wo);
      const int r = m % (g.Ho * g.Wo);
      const int oh = r / g.Wo, ow = r % g.Wo;
      const int iw0 = ow * g.sw - g.pw;
      // Unflipped, a whole filter row (kw taps x Ci) is contiguous both in K and in x when it
      // lies inside the image: one run instead of kw (the first ResNet layer has Ci = 3).
      const bool rowsInside = !flip && iw0 >= 0 && iw0 + g.kw <= g.W;
      int k = k0;
      while (k < k0 + kc) {
        int tap = k / g.Ci, ci = k % g.Ci;
        const int t = flip ? T - 1 - tap : tap;
        const int ih = oh * g.sh - g.ph + t / g.kw;
        float* d = dst + (k - k0) * MR + i;
        int run;
        const float* s;
        if (rowsInside) {
          const int within = k % rowLen;
          run = std::min(rowLen - within, k0 + kc - k);
          s = (ih < 0 || ih >= g.H) ? nullptr : x + (((long)b * g.H + ih) * g.W + iw0) * g.Ci + within;
        } else {
          run = std::min(g.Ci - ci, k0 + kc - k);
          const int iw = iw0 + t % g.kw;
          s = (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) ? nullptr : x + (((long)b * g.H + ih) * g.W + iw) * g.Ci + ci;
        }
        if (!s) {
          for (int q = 0; q < run; q++) d[q * MR] = 0.f;
        } else {
          for (int q = 0; q < run; q++) d[q * MR] = s[q];
        }
        k += run;
      }
    }
  }
};

// im2col(x) transposed as A: rows (tap, ci), columns (b, oh, ow). For the filter gradient.
struct Im2colTA {
  const float* x;
  ConvGeom g;
  void pack(float* dst, int m0, int mr, int k0, int kc) const {
    if (mr < MR) std::memset(dst, 0, sizeof(float) * MR * kc);
    const int rowLen = g.kw * g.Ci;
    for (int k = 0; k < kc; k++) {
      const int pos = k0 + k;
      const int b = pos / (g.Ho * g.Wo);
      const int r = pos % (g.Ho * g.Wo);
      const int oh = r / g.Wo, ow = r % g.Wo;
      const int iw0 = ow * g.sw - g.pw;
      const bool rowsInside = iw0 >= 0 && iw0 + g.kw <= g.W;
      float* d = dst + k * MR;
      int i = 0;
      while (i < mr) {
        const int m = m0 + i;
        const int tap = m / g.Ci, ci = m % g.Ci;
        const int ih = oh * g.sh - g.ph + tap / g.kw;
        int run;
        const float* s;
        if (rowsInside) {
          // As in Im2colA: a filter row's kw x Ci values are contiguous in x.
          const int within = m % rowLen;
          run = std::min(rowLen - within, mr - i);
          s = (ih < 0 || ih >= g.H) ? nullptr : x + (((long)b * g.H + ih) * g.W + iw0) * g.Ci + within;
        } else {
          run = std::min(g.Ci - ci, mr - i);
          const int iw = iw0 + tap % g.kw;
          s = (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) ? nullptr : x + (((long)b * g.H + ih) * g.W + iw) * g.Ci + ci;
        }
        if (!s) std::memset(d + i, 0, sizeof(float) * run);
        else std::memcpy(d + i, s, sizeof(float) * run);
        i += run;
      }
    }
  }
};

// The filter with in/out swapped per tap as B: rows (tap, co), columns ci. Paired with a
// tap-reversed Im2colA of dy it gives the input gradient of a stride-1 convolution.
struct TransposedFilterB {
  const float* w;  // (taps, ci, co)
  int T, Ci, Co;
  void pack(float* dst, int k0, int kc, int n0, int nr) const {
    if (nr < NR) std::memset(dst, 0, sizeof(float) * NR * kc);
    for (int k = 0; k < kc; k++) {
      const int tap = (k0 + k) / Co, co = (k0 + k) % Co;
      const float* s = w + ((long)tap * Ci + n0) * Co + co;
      float* d = dst + k * NR;
      for (int j = 0; j < nr; j++) d[j] = s[(long)j * Co];
    }
  }
};

struct GemmScratch {
  Scratch packedB;
};

// C = A B (+ C when accumulate). C is M x N with leading dimension ldc.
template <class AA, class BB>
void gemm(Pool& pool, GemmScratch& scratch, int M, int N, int K, const AA& A, const BB& B, float* C, long ldc, bool accumulate) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; i++) std::memset(C + (long)i * ldc, 0, sizeof(float) * N);
    return;
  }
  const int nPanels = (N + NR - 1) / NR;
  const int mPanels = (M + MR - 1) / MR;
  const int nChunks = (K + KC - 1) / KC;
  const double flops = 2.0 * M * N * K;
  // Small products are not worth a fork-join; the result is the same either way.
  const int threads = flops < 1e6 ? 1 : pool.size();

  // Pack all of B: chunk c, panel p at offset (c * nPanels + p) * KC * NR.
  float* bp = scratch.packedB.get((size_t)nChunks * nPanels * KC * NR);
  auto packB = [&](int job) {
    const int c = job / nPanels, p = job % nPanels;
    const int k0 = c * KC, kc = std::min(KC, K - k0);
    const int n0 = p * NR, nr = std::min(NR, N - n0);
    B.pack(bp + ((size_t)c * nPanels + p) * KC * NR, k0, kc, n0, nr);
  };
  if (threads == 1) {
    for (int j = 0; j < nChunks * nPanels; j++) packB(j);
  } else {
    pool.run(nChunks * nPanels, packB);
  }

  // Jobs: blocks of up to 16 A panels x up to 8 B panels, enough of them to share out.
  const int nPerJob = std::min(nPanels, 8);
  const int nBlocks = (nPanels + nPerJob - 1) / nPerJob;
  const int wantM = std::max(1, (4 * threads + nBlocks - 1) / nBlocks);
  const int mPerJob = std::max(1, std::min(16, (mPanels + wantM - 1) / wantM));
  const int mBlocks = (mPanels + mPerJob - 1) / mPerJob;
  auto compute = [&](int job) {
    const int mb = job / nBlocks, nb = job % nBlocks;
    const int mp0 = mb * mPerJob, mp1 = std::min(mPanels, mp0 + mPerJob);
    const int np0 = nb * nPerJob, np1 = std::min(nPanels, np0 + nPerJob);
    // Each thread packs its own A blocks.
    static thread_local Scratch aScratch;
    float* ap = aScratch.get((size_t)mPerJob * MR * KC);
    for (int c = 0; c < nChunks; c++) {
      const int k0 = c * KC, kc = std::min(KC, K - k0);
      for (int mp = mp0; mp < mp1; mp++) {
        const int m0 = mp * MR;
        A.pack(ap + (size_t)(mp - mp0) * MR * kc, m0, std::min(MR, M - m0), k0, kc);
      }
      const bool first = c == 0 && !accumulate;
      for (int np = np0; np < np1; np++) {
        const int n0 = np * NR, nr = std::min(NR, N - n0);
        const float* b = bp + ((size_t)c * nPanels + np) * KC * NR;
        for (int mp = mp0; mp < mp1; mp++) {
          const int m0 = mp * MR;
          microKernel(kc, ap + (size_t)(mp - mp0) * MR * kc, b, C + (long)m0 * ldc + n0, ldc, std::min(MR, M - m0), nr, first);
        }
      }
    }
  };
  if (threads == 1) {
    for (int j = 0; j < mBlocks * nBlocks; j++) compute(j);
  } else {
    pool.run(mBlocks * nBlocks, compute);
  }
}

}  // namespace onedp

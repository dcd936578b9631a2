// bf16 attention forward with AVX512_BF16 (inference at bf16 precision):
// S = K·Qᵀ and O += Vᵀ·P as vdpbf16ps products (two channels or two keys per
// 32-bit lane, f32 accumulation), the online softmax in f32 as in the f32
// tile. Queries run along vector lanes: Q is kept as [D/2][query] words of
// bf16 channel pairs, P as [key/2][query] words of key pairs; keys come as
// bf16 rows and values as [key/2][D] words of key pairs (pack_keys,
// pack_values), so every broadcast operand is one 32-bit word.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "cpu/simd/attention_isa.h"
#include "cpu/simd/attention_prefetch.h"

namespace vl {
namespace {

#include "cpu/simd/attention_avx512_vec.h"

constexpr int kQV = 4;
constexpr int kBr = kQV * 16;
constexpr int kBc = 64;
constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kLn2 = 0.69314718055994530942f;
constexpr int64_t kMaxD = 256;

int64_t round_up16(int64_t n) { return (n + 15) / 16 * 16; }

int64_t scratch_floats(int64_t D) {
  // Qt words [D/2][kBr], Ot [D][kBr], St [kBc][kBr], Pt words [kBc/2][kBr], kTB query rows, m, l.
  return round_up16(D / 2 * kBr) + round_up16(D * kBr) + round_up16(int64_t{kBc} * kBr) +
         round_up16(int64_t{kBc} / 2 * kBr) + round_up16(kTB * D) + 2 * round_up16(kBr);
}

__mmask16 first(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u); }

// A row of D channels rotated (RoPE; c null: none), scaled and rounded to
// bf16 (nearest even), in order: channel pairs become words. 32 channels a
// step straight from registers: a detour through a float row costs a stalled
// store-to-load forward per vector (masked stores do not forward).
inline __m512 rotated(const float* x, const float* c, const float* s, __m512 sc, int64_t n) {
  const __mmask16 m = first(n);
  __m512 a = _mm512_maskz_loadu_ps(m, x);
  if (c) a = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, c), _mm512_mul_ps(_mm512_permute_ps(a, 0xb1), _mm512_maskz_loadu_ps(m, s)));
  return _mm512_mul_ps(a, sc);
}

void rotate_to_bf16(const float* x, const float* c, const float* s, float scale, uint16_t* out, int64_t D) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t d = 0; d < D; d += 32) {
    const int64_t n = D - d;
    const __m512 lo = rotated(x + d, c ? c + d : nullptr, s ? s + d : nullptr, sc, n);
    const __m512 hi = n > 16 ? rotated(x + d + 16, c ? c + d + 16 : nullptr, s ? s + d + 16 : nullptr, sc, n - 16)
                             : _mm512_setzero_ps();
    const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    if (n >= 32)
      _mm512_storeu_si512(out + d, w);
    else
      _mm512_mask_storeu_epi16(out + d, (__mmask32{1} << n) - 1u, w);
  }
}

// Words (bf16(lo[i]), bf16(hi[i])): two rows' values of 16 lanes as pairs.
inline __m512i pair_words(__m512 lo, __m512 hi) {
  const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
  const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
  return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

void pack_keys(const float* src, int64_t src_stride, const float* cos, const float* sin, uint16_t* dst, int64_t rows,
               int64_t D) {
  for (int64_t r = 0; r < rows; ++r) {
    if (r + kPrefetchRows < rows) prefetch_row(src + (r + kPrefetchRows) * src_stride, D);
    rotate_to_bf16(src + r * src_stride, cos ? cos + r * D : nullptr, sin ? sin + r * D : nullptr, 1.0f, dst + r * D, D);
  }
}

void pack_values(const float* src, int64_t src_stride, uint32_t* dst, int64_t rows, int64_t D) {
  for (int64_t r = 0; r < rows; r += 2) {
    const float* a = src + r * src_stride;
    const float* b = r + 1 < rows ? a + src_stride : nullptr;
    if (r + kPrefetchRows + 1 < rows) prefetch_row(a + kPrefetchRows * src_stride, D), prefetch_row(a + (kPrefetchRows + 1) * src_stride, D);
    for (int64_t d = 0; d < D; d += 16) {
      const __mmask16 m = first(D - d);
      const __m512 lo = _mm512_maskz_loadu_ps(m, a + d);
      const __m512 hi = b ? _mm512_maskz_loadu_ps(m, b + d) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + r / 2 * D + d, m, pair_words(lo, hi));
    }
  }
}

inline __m512bh word(const uint16_t* p) {
  int w;
  std::memcpy(&w, p, 4);
  return (__m512bh)_mm512_set1_epi32(w);
}

// St[r][.] = Σ_d K[r][d]·Qt[d][.] for RJ keys, two channels per product; mx tracks the block's column max.
template <int QV, int RJ>
inline void s_tile(const uint32_t* qt, const uint16_t* kr, int64_t D, float* st, __m512* mx) {
  __m512 acc[RJ][QV];
#pragma GCC unroll 32
  for (int r = 0; r < RJ; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t d2 = 0; d2 < D / 2; ++d2) {
    __m512bh q[QV];
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) q[v] = (__m512bh)_mm512_loadu_si512(qt + d2 * kBr + v * 16);
#pragma GCC unroll 32
    for (int r = 0; r < RJ; ++r) {
      const __m512bh kb = word(kr + r * D + 2 * d2);
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], kb, q[v]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < RJ; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) {
      _mm512_storeu_ps(st + r * kBr + v * 16, acc[r][v]);
      mx[v] = Vec::max(mx[v], acc[r][v]);
    }
}

// Ot[r][.] = alpha·Ot[r][.] + Σ_j V[j][r]·P[j][.] for RD channels, two keys per product.
template <int QV, int RD>
inline void pv_tile(const uint32_t* pt, int64_t pairs, const uint32_t* vp, int64_t D, float* ot, const __m512* alpha,
                    bool first_block) {
  __m512 acc[RD][QV];
#pragma GCC unroll 32
  for (int r = 0; r < RD; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t j2 = 0; j2 < pairs; ++j2) {
    __m512bh p[QV];
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) p[v] = (__m512bh)_mm512_loadu_si512(pt + j2 * kBr + v * 16);
    const uint32_t* row = vp + j2 * D;
#pragma GCC unroll 32
    for (int r = 0; r < RD; ++r) {
      const __m512bh vb = (__m512bh)_mm512_set1_epi32(static_cast<int>(row[r]));
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], vb, p[v]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < RD; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) {
      float* o = ot + r * kBr + v * 16;
      _mm512_storeu_ps(o, first_block ? acc[r][v] : _mm512_fmadd_ps(_mm512_loadu_ps(o), alpha[v], acc[r][v]));
    }
}

template <int QV>
void tile_impl(const AttnTile& t) {
  const int64_t D = t.D, D2 = D / 2, M = t.M, rows = t.rows;
  uint32_t* qt = reinterpret_cast<uint32_t*>(t.scratch);
  float* ot = t.scratch + round_up16(D2 * kBr);
  float* st = ot + round_up16(D * kBr);
  uint32_t* pt = reinterpret_cast<uint32_t*>(st + round_up16(int64_t{kBc} * kBr));
  float* rowbuf = reinterpret_cast<float*>(pt) + round_up16(int64_t{kBc} / 2 * kBr);
  float* stat_m = rowbuf + round_up16(kTB * D);
  float* stat_l = stat_m + round_up16(kBr);
  const uint16_t* kb = reinterpret_cast<const uint16_t*>(t.k);
  const uint32_t* vp = reinterpret_cast<const uint32_t*>(t.v);
  constexpr int64_t lanes = int64_t{QV} * 16;

  // Queries rotated and scaled by scale·log2(e) (the softmax uses exp2), rounded
  // to bf16 in place (a row of D/2 pair words), transposed kTB rows at a time.
  // Lanes past the last query get zeros (finite scores whose results are dropped).
  const float qscale = t.scale * kLog2e;
  for (int64_t r0 = 0; r0 < lanes; r0 += kTB) {
    const int64_t nr = rows - r0 < 0 ? 0 : rows - r0 < kTB ? rows - r0 : kTB;
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t n = r0 + r;
      if (n + kPrefetchRows < rows) prefetch_row(t.q + (n + kPrefetchRows) * t.q_stride, D);
      rotate_to_bf16(t.q + n * t.q_stride, t.q_cos ? t.q_cos + n * D : nullptr, t.q_sin ? t.q_sin + n * D : nullptr,
                     qscale, reinterpret_cast<uint16_t*>(rowbuf + r * D), D);
    }
    const int64_t nl = lanes - r0 < kTB ? lanes - r0 : kTB;
    for (int64_t d0 = 0; d0 < D2; d0 += kTB)
      transpose(rowbuf + d0, D, nr, D2 - d0 < kTB ? D2 - d0 : kTB, reinterpret_cast<float*>(qt) + d0 * kBr + r0, kBr,
                nl);
  }

  __m512 m[QV], l[QV];
#pragma GCC unroll 4
  for (int v = 0; v < QV; ++v) m[v] = _mm512_set1_ps(-__builtin_inff()), l[v] = _mm512_setzero_ps();

  constexpr int RJ = s_rows(QV), RD = pv_rows(QV);
  for (int64_t j0 = 0; j0 < M; j0 += kBc) {
    const int64_t nb = M - j0 < kBc ? M - j0 : kBc;
    const uint16_t* kr = kb + j0 * D;
    __m512 mx[QV];
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) mx[v] = _mm512_set1_ps(-__builtin_inff());
    int64_t j = 0;
    for (; j + RJ <= nb; j += RJ) s_tile<QV, RJ>(qt, kr + j * D, D, st + j * kBr, mx);
    for (; j + 4 <= nb; j += 4) s_tile<QV, 4>(qt, kr + j * D, D, st + j * kBr, mx);
    for (; j + 2 <= nb; j += 2) s_tile<QV, 2>(qt, kr + j * D, D, st + j * kBr, mx);
    for (; j < nb; ++j) s_tile<QV, 1>(qt, kr + j * D, D, st + j * kBr, mx);

    // Online softmax in f32; P goes to the PV product as bf16 key pairs (a zero
    // partner past an odd block's end), its row sums stay f32.
    __m512 alpha[QV], sum[QV];
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) {
      const __m512 mnew = Vec::max(m[v], mx[v]);
      alpha[v] = Vec::exp2(_mm512_sub_ps(m[v], mnew));
      m[v] = mnew;
      sum[v] = _mm512_setzero_ps();
    }
    const int64_t pairs = (nb + 1) / 2;
    for (int64_t j2 = 0; j2 < pairs; ++j2)
#pragma GCC unroll 4
      for (int v = 0; v < QV; ++v) {
        const float* s = st + 2 * j2 * kBr + v * 16;
        const __m512 p0 = Vec::exp2(_mm512_sub_ps(_mm512_loadu_ps(s), m[v]));
        const __m512 p1 = 2 * j2 + 1 < nb ? Vec::exp2(_mm512_sub_ps(_mm512_loadu_ps(s + kBr), m[v])) : _mm512_setzero_ps();
        sum[v] = _mm512_add_ps(sum[v], _mm512_add_ps(p0, p1));
        _mm512_storeu_si512(pt + j2 * kBr + v * 16, pair_words(p0, p1));
      }
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) l[v] = _mm512_fmadd_ps(l[v], alpha[v], sum[v]);

    const uint32_t* vb = vp + j0 / 2 * D;
    const bool first_block = j0 == 0;
    int64_t d = 0;
    for (; d + RD <= D; d += RD) pv_tile<QV, RD>(pt, pairs, vb + d, D, ot + d * kBr, alpha, first_block);
    for (; d + 4 <= D; d += 4) pv_tile<QV, 4>(pt, pairs, vb + d, D, ot + d * kBr, alpha, first_block);
    for (; d + 2 <= D; d += 2) pv_tile<QV, 2>(pt, pairs, vb + d, D, ot + d * kBr, alpha, first_block);
    for (; d < D; ++d) pv_tile<QV, 1>(pt, pairs, vb + d, D, ot + d * kBr, alpha, first_block);
  }

#pragma GCC unroll 4
  for (int v = 0; v < QV; ++v) _mm512_storeu_ps(stat_m + v * 16, m[v]), _mm512_storeu_ps(stat_l + v * 16, l[v]);
  if (t.lse)
    for (int64_t r = 0; r < rows; ++r) t.lse[r] = (stat_m[r] + __builtin_log2f(stat_l[r])) * kLn2;
  for (int64_t r = 0; r < lanes; ++r) stat_l[r] = 1.0f / stat_l[r];
  __m512 inv[QV];
#pragma GCC unroll 4
  for (int v = 0; v < QV; ++v) inv[v] = _mm512_loadu_ps(stat_l + v * 16);
  for (int64_t d = 0; d < D; ++d)
#pragma GCC unroll 4
    for (int v = 0; v < QV; ++v) {
      float* o = ot + d * kBr + v * 16;
      _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), inv[v]));
    }
  for (int64_t r0 = 0; r0 < rows; r0 += kTB) {
    const int64_t nc = rows - r0 < kTB ? rows - r0 : kTB;
    for (int64_t d0 = 0; d0 < D; d0 += kTB) {
      const int64_t nr = D - d0 < kTB ? D - d0 : kTB;
      transpose(ot + d0 * kBr + r0, kBr, nr, nc, t.out + r0 * t.out_stride + d0, t.out_stride, nr);
    }
  }
}

void tile(const AttnTile* t) {
  switch ((t->rows + 15) / 16) {
    case 4: return tile_impl<4>(*t);
    case 3: return tile_impl<3>(*t);
    case 2: return tile_impl<2>(*t);
    default: return tile_impl<1>(*t);
  }
}

}  // namespace

const AttentionBf16Isa kAvx512Bf16Attention = {kBr, kMaxD, scratch_floats, tile, pack_keys, pack_values};

}  // namespace vl

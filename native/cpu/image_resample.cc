// Pillow's two-pass resampling (ImagingResample for 8-bit images): per output
// position a bicubic (a = -0.5) kernel widened by the downscale factor
// (antialiasing), normalized, turned into 22-bit fixed point; horizontal pass
// first into 8-bit rows, then vertical, each rounded and clamped to 8 bits.
// Reproducing its integer arithmetic makes the pixels the ones torchvision's
// PIL pipeline gives the model, which is what released accuracies assume.
#include "cpu/image_resample.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace vl {
namespace cpu {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// Fixed-point taps of output positions [first, first + count) of an axis
// resized from in_size to out_size: tap t of position i weighs input
// start[i] + t, for t < taps[i].
struct Taps {
  int width = 0;  // coefficients stored per position
  std::vector<int> start, taps;
  std::vector<int32_t> k;
};

Taps axis_taps(int in_size, int out_size, int first, int count) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 2.0 * filterscale;
  Taps t;
  t.width = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(count);
  t.taps.resize(count);
  t.k.assign(static_cast<size_t>(count) * t.width, 0);
  std::vector<double> w(t.width);
  for (int i = 0; i < count; ++i) {
    const double center = (first + i + 0.5) * scale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);
    const int n = std::min(static_cast<int>(center + support + 0.5), in_size) - lo;
    double sum = 0.0;
    for (int x = 0; x < n; ++x) sum += w[x] = bicubic((x + lo - center + 0.5) / filterscale);
    for (int x = 0; x < n; ++x) {
      const double v = (sum != 0.0 ? w[x] / sum : w[x]) * (1 << kPrecisionBits);
      t.k[static_cast<size_t>(i) * t.width + x] = static_cast<int32_t>(v < 0 ? v - 0.5 : v + 0.5);
    }
    t.start[i] = lo;
    t.taps[i] = n;
  }
  return t;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift: floor, as Pillow's lookup
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// The two passes are integer multiply-adds: with AVX2 (one clone per
// instruction set, picked at load time) they run 8 lanes wide; the results
// are the same bytes either way.
#define VL_RESAMPLE_CLONES __attribute__((target_clones("avx2", "default")))

typedef int32_t v4i __attribute__((vector_size(16)));

// Rows of in (src_w pixels of C bytes) through the taps -> rows of out_w pixels.
// Three channels run as four lanes (the fourth reads the next pixel's first
// byte and is dropped), so a tap is one vector multiply-add; a position whose
// taps reach a row's last pixel keeps three, as that byte may lie past the image.
template <int C>
VL_RESAMPLE_CLONES void horizontal_pass(const uint8_t* in, int src_w, int rows, const Taps& ht, int out_w, uint8_t* out) {
  constexpr int L = C >= 3 ? 4 : C;
  for (int y = 0; y < rows; ++y) {
    const uint8_t* row = in + static_cast<size_t>(y) * src_w * C;
    uint8_t* dst = out + static_cast<size_t>(y) * out_w * C;
    for (int x = 0; x < out_w; ++x) {
      const int32_t* k = ht.k.data() + static_cast<size_t>(x) * ht.width;
      const uint8_t* p = row + static_cast<size_t>(ht.start[x]) * C;
      const int n = ht.taps[x];
      int32_t acc[L];
      if (L == 4 && ht.start[x] + n < src_w) {
        v4i a = {0, 0, 0, 0};
        for (int t = 0; t < n; ++t) a += v4i{p[t * C], p[t * C + 1], p[t * C + 2], p[t * C + 3]} * k[t];
        for (int c = 0; c < 4; ++c) acc[c] = a[c] + (1 << (kPrecisionBits - 1));
      } else {
        for (int c = 0; c < C; ++c) acc[c] = 1 << (kPrecisionBits - 1);
        for (int t = 0; t < n; ++t)
          for (int c = 0; c < C; ++c) acc[c] += p[t * C + c] * k[t];
      }
      for (int c = 0; c < C; ++c) dst[x * C + c] = clip8(acc[c]);
    }
  }
}

// acc[i] += in[i] * w over a row; then, after the last tap, the 8-bit results.
VL_RESAMPLE_CLONES void accumulate_row(const uint8_t* in, int32_t w, size_t n, int32_t* acc) {
  for (size_t i = 0; i < n; ++i) acc[i] += in[i] * w;
}

VL_RESAMPLE_CLONES void clip_row(const int32_t* acc, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = clip8(acc[i]);
}

}  // namespace

void check_resample_spec(const ResampleSpec& s) {
  VL_CHECK(s.channels >= 1 && s.channels <= 4, ErrorCode::Argument, "resampleImage: 1 to 4 interleaved channels, got ",
           s.channels);
  VL_CHECK(s.src_w > 0 && s.src_h > 0 && s.resize_w > 0 && s.resize_h > 0, ErrorCode::Argument,
           "resampleImage: image sizes must be positive, got ", s.src_w, "x", s.src_h, " resized to ", s.resize_w, "x",
           s.resize_h);
  VL_CHECK(s.left >= 0 && s.top >= 0 && s.out_w > 0 && s.out_h > 0 && s.left + s.out_w <= s.resize_w &&
               s.top + s.out_h <= s.resize_h,
           ErrorCode::Argument, "resampleImage: the crop ", s.out_w, "x", s.out_h, " at (", s.left, ", ", s.top,
           ") must lie inside the ", s.resize_w, "x", s.resize_h, " resized image");
  for (int c = 0; c < s.channels; ++c)
    VL_CHECK(s.std[c] > 0 && std::isfinite(s.std[c]) && std::isfinite(s.mean[c]), ErrorCode::Argument,
             "resampleImage: mean must be finite and std finite and > 0, got channel ", c, ": mean ", s.mean[c],
             ", std ", s.std[c]);
}

void resample_normalize(const uint8_t* src, const ResampleSpec& s, float* dst) {
  check_resample_spec(s);
  const int C = s.channels;
  const bool horizontal = s.resize_w != s.src_w, vertical = s.resize_h != s.src_h;

  // Source rows the vertical pass reads for the cropped output rows.
  Taps vt;
  int row0 = s.top, rows = s.out_h;
  if (vertical) {
    vt = axis_taps(s.src_h, s.resize_h, s.top, s.out_h);
    row0 = vt.start.front();
    rows = vt.start.back() + vt.taps.back() - row0;
  }

  // Horizontal pass: those rows, the cropped columns, 8-bit as Pillow keeps them.
  std::vector<uint8_t> mid;
  const uint8_t* h_rows = src + (static_cast<size_t>(row0) * s.src_w + (horizontal ? 0 : s.left)) * C;
  size_t h_stride = static_cast<size_t>(s.src_w) * C;
  if (horizontal) {
    const Taps ht = axis_taps(s.src_w, s.resize_w, s.left, s.out_w);
    mid.resize(static_cast<size_t>(rows) * s.out_w * C);
    const uint8_t* in = src + static_cast<size_t>(row0) * s.src_w * C;
    switch (C) {  // the channel count as a constant lets the tap loop unroll
      case 1: horizontal_pass<1>(in, s.src_w, rows, ht, s.out_w, mid.data()); break;
      case 3: horizontal_pass<3>(in, s.src_w, rows, ht, s.out_w, mid.data()); break;
      case 4: horizontal_pass<4>(in, s.src_w, rows, ht, s.out_w, mid.data()); break;
      default: horizontal_pass<2>(in, s.src_w, rows, ht, s.out_w, mid.data()); break;
    }
    h_rows = mid.data();
    h_stride = static_cast<size_t>(s.out_w) * C;
  }

  // Per-channel table of the normalized value of each byte, in f32 as
  // ToTensor() then Normalize() compute it.
  float lut[4][256];
  for (int c = 0; c < C; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) / 255.0f - s.mean[c]) / s.std[c];

  // Vertical pass (a row at a time, accumulated across the row so it vectorizes), then the table.
  const size_t plane = static_cast<size_t>(s.out_w) * s.out_h, row_len = static_cast<size_t>(s.out_w) * C;
  std::vector<int32_t> acc(row_len);
  std::vector<uint8_t> vrow(vertical ? row_len : 0);
  for (int y = 0; y < s.out_h; ++y) {
    const uint8_t* row;
    if (vertical) {
      std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
      const int32_t* k = vt.k.data() + static_cast<size_t>(y) * vt.width;
      for (int t = 0; t < vt.taps[y]; ++t) {
        const uint8_t* in = h_rows + static_cast<size_t>(vt.start[y] + t - row0) * h_stride;
        accumulate_row(in, k[t], row_len, acc.data());
      }
      clip_row(acc.data(), row_len, vrow.data());
      row = vrow.data();
    } else {
      row = h_rows + static_cast<size_t>(y) * h_stride;
    }
    for (int c = 0; c < C; ++c) {
      float* out = dst + c * plane + static_cast<size_t>(y) * s.out_w;
      for (int x = 0; x < s.out_w; ++x) out[x] = lut[c][row[x * C + c]];
    }
  }
}

}  // namespace cpu
}  // namespace vl

// CPU kernels of the linear-algebra ops; all of them are cpu/gemm calls.
// The launchers (ops/linalg.cc) have checked shapes and dtypes, made bias
// and residual contiguous, and describe optional inputs with attributes:
// "bias" / "residual" hold the input index, or -1 when absent.
#include <algorithm>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/gemm_isa.h"

namespace vl {
namespace cpu {
namespace {

gemm::WType wtype_of(const Attrs& attrs) { return static_cast<gemm::WType>(attrs.integer("wtype")); }

const float* optional_input(const KernelCall& c, const char* name) {
  const int64_t i = c.attrs.integer(name);
  return i < 0 ? nullptr : static_cast<const float*>(c.in[static_cast<size_t>(i)].data);
}

// Rows of x [..., K]: every leading dim, outermost first.
gemm::DimMap leading_rows(const TensorArg& x) {
  gemm::DimMap rows;
  for (int d = 0; d + 1 < x.ndim; ++d) rows.push(x.shape[d], x.strides[d]);
  return rows;
}

// linear / linear_packed / swiglu: in = {x, weight (f32 [N, K] view, or
// packed u8), [bias], [residual]}, out = {y [..., N]}.
void linear(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const TensorArg& w = c.in[1];
  const TensorArg& y = c.out[0];
  gemm::Problem p;
  p.k = x.shape[x.ndim - 1];
  p.n = y.shape[y.ndim - 1];
  p.m = p.n ? y.numel / p.n : 0;
  p.wtype = wtype_of(c.attrs);
  p.swiglu = c.attrs.integer("swiglu") != 0;
  // bf16 x or y: the launcher allowed them with bf16 panels only.
  if (x.dtype == DType::BF16)
    p.a16 = static_cast<const uint16_t*>(x.data);
  else
    p.a = static_cast<const float*>(x.data);
  p.a_rows = leading_rows(x);
  p.a_ks = x.strides[x.ndim - 1];
  if (c.attrs.integer("packed")) {
    // The launcher checked these against the packed weight's description.
    if (c.attrs.integer("layout") != gemm_kernels().layout || c.attrs.integer("n") != p.n ||
        c.attrs.integer("k") != p.k || c.attrs.integer("kblock") != gemm::k_block(p.k, p.wtype))
      fail(ErrorCode::Runtime, "linear: packed weight does not match these kernels");
    p.b_packed = w.data;
  } else {
    p.b = static_cast<const float*>(w.data);
    p.b_ns = w.strides[0];
    p.b_ks = w.strides[1];
  }
  if (y.dtype == DType::BF16)
    p.c16 = static_cast<uint16_t*>(y.data);
  else
    p.c = static_cast<float*>(y.data);
  p.ldc = p.n;
  p.bias = optional_input(c, "bias");
  p.r = optional_input(c, "residual");
  p.ldr = p.n;
  gemm::run(p);
}

// in = {a [batch..., M, K], b [batch..., N, K]} (batch dims already
// broadcast to the output's, stride 0 where repeated), out = {[batch..., M, N]}.
void matmul(const KernelCall& c) {
  const TensorArg& a = c.in[0];
  const TensorArg& b = c.in[1];
  const TensorArg& y = c.out[0];
  const int nd = y.ndim;
  gemm::Problem p;
  p.wtype = wtype_of(c.attrs);  // BF16: B packed as bf16 and A rounded to bf16 as it is packed; F16: both panels rounded to f16
  p.m = y.shape[nd - 2];
  p.n = y.shape[nd - 1];
  p.k = a.shape[nd - 1];
  p.a = static_cast<const float*>(a.data);
  p.a_ks = a.strides[nd - 1];
  p.b = static_cast<const float*>(b.data);
  p.b_ns = b.strides[nd - 2];
  p.b_ks = b.strides[nd - 1];
  p.c = static_cast<float*>(y.data);
  p.ldc = p.n;
  bool b_shared = true;
  for (int d = 0; d < nd - 2; ++d) b_shared = b_shared && (b.strides[d] == 0 || b.shape[d] == 1);
  if (b_shared) {
    // One GEMM: the batch dims of a become more rows (C is contiguous, so its rows follow).
    for (int d = 0; d < nd - 1; ++d) p.a_rows.push(a.shape[d], a.strides[d]);
    p.m = y.numel / std::max<int64_t>(p.n, 1);
    gemm::run(p);
    return;
  }
  int64_t batch = 1;
  for (int d = 0; d < nd - 2; ++d) batch *= y.shape[d];
  std::vector<int64_t> aoff(static_cast<size_t>(batch)), boff(aoff.size()), coff(aoff.size());
  for (int64_t i = 0; i < batch; ++i) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = nd - 3; d >= 0; --d) {
      const int64_t idx = rem % y.shape[d];
      rem /= y.shape[d];
      oa += idx * a.strides[d];
      ob += idx * b.strides[d];
    }
    aoff[i] = oa;
    boff[i] = ob;
    coff[i] = i * p.m * p.n;
  }
  p.batch = batch;
  p.a_rows.push(p.m, a.strides[nd - 2]);
  p.a_boff = aoff.data();
  p.b_boff = boff.data();
  p.c_boff = coff.data();
  gemm::run(p);
}

// in = {x [B, C, H, W], w [O, C*p*p] contiguous, [bias]}, out = {[B, (H/p)*(W/p), O]}.
// A[(b, gy, gx), k] = x[b, c, gy*p + ky, gx*p + kx] is read in place, k in
// (c, ky, kx) order. A channels-last x (the pyramid's token maps, seen as
// [B, C, H, W] views) is summed in (ky, kx, c) order instead, against a
// reordered copy of w: a patch row is then one run of p*C floats, which the
// A packing loads as vectors, where the (c, ky, kx) order gathers one float
// at a time.
void conv_patch(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const TensorArg& w = c.in[1];
  const TensorArg& y = c.out[0];
  const int64_t pz = c.attrs.integer("patch");
  const int64_t ch = x.shape[1], gh = x.shape[2] / pz, gw = x.shape[3] / pz;
  gemm::Problem p;
  p.wtype = wtype_of(c.attrs);
  p.m = x.shape[0] * gh * gw;
  p.n = w.shape[0];
  p.k = ch * pz * pz;
  p.a = static_cast<const float*>(x.data);
  p.a_rows.push(x.shape[0], x.strides[0]);
  p.a_rows.push(gh, pz * x.strides[2]);
  p.a_rows.push(gw, pz * x.strides[3]);
  const bool channels_last = ch > 1 && x.strides[1] == 1;
  std::vector<int64_t> koff(static_cast<size_t>(p.k));
  std::vector<float> w_hwc;
  const float* wd = static_cast<const float*>(w.data);
  if (channels_last) {
    for (int64_t ky = 0, i = 0; ky < pz; ++ky)
      for (int64_t kx = 0; kx < pz; ++kx)
        for (int64_t ci = 0; ci < ch; ++ci) koff[i++] = ci + ky * x.strides[2] + kx * x.strides[3];
    w_hwc.resize(static_cast<size_t>(p.n * p.k));
    const int64_t taps = pz * pz, K = p.k;
    parallel_for(p.n, std::max<int64_t>(1, 16384 / K), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t ci = 0; ci < ch; ++ci)
          for (int64_t t = 0; t < taps; ++t) w_hwc[o * K + t * ch + ci] = wd[o * K + ci * taps + t];
    });
    wd = w_hwc.data();
  } else {
    for (int64_t ci = 0, i = 0; ci < ch; ++ci)
      for (int64_t ky = 0; ky < pz; ++ky)
        for (int64_t kx = 0; kx < pz; ++kx) koff[i++] = ci * x.strides[1] + ky * x.strides[2] + kx * x.strides[3];
  }
  p.a_koff = koff.data();
  p.b = wd;
  p.b_ns = p.k;
  p.b_ks = 1;
  p.c = static_cast<float*>(y.data);
  p.ldc = p.n;
  p.bias = optional_input(c, "bias");
  gemm::run(p);
}

gemm::PackedInfo packed_info(const KernelCall& c, bool swiglu) {
  gemm::PackedInfo info;
  info.n = c.attrs.integer("n");
  info.k = c.attrs.integer("k");
  info.wtype = wtype_of(c.attrs);
  info.swiglu = swiglu;
  return info;
}

// in = {w [N, K] f32}, out = {u8 panels}.
void pack_linear(const KernelCall& c) {
  const TensorArg& w = c.in[0];
  gemm::pack_weight(static_cast<const float*>(w.data), w.strides[0], w.strides[1], packed_info(c, false), c.out[0].data);
}

// in = {w1, w2 [H, K] f32}, out = {u8 panels}.
void pack_swiglu(const KernelCall& c) {
  const TensorArg &w1 = c.in[0], &w2 = c.in[1];
  if (w1.strides[1] != w2.strides[1]) fail(ErrorCode::Runtime, "pack_swiglu: W1 and W2 need the same k stride");
  gemm::pack_swiglu(static_cast<const float*>(w1.data), w1.strides[0], w1.strides[1],
                    static_cast<const float*>(w2.data), w2.strides[0], w2.strides[1], packed_info(c, true),
                    c.out[0].data);
}

}  // namespace

VL_REGISTER_KERNEL(linear, CPU, linear);
VL_REGISTER_KERNEL(matmul, CPU, matmul);
VL_REGISTER_KERNEL(conv_patch, CPU, conv_patch);
VL_REGISTER_KERNEL(pack_linear, CPU, pack_linear);
VL_REGISTER_KERNEL(pack_swiglu, CPU, pack_swiglu);

}  // namespace cpu
}  // namespace vl

// In-place optimizer updates (AdamW, SGD, LAMB) and the small in-place
// helpers of a training loop (scale, add, lerp, sum of squares, the unscale
// pass of loss scaling). The host
// computes the step's scalar factors in double; kernels take them as float,
// as PyTorch does for float tensors. Reductions use fixed chunks combined in
// a fixed order, so no result depends on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

float attr_f(const KernelCall& c, const char* name) { return static_cast<float>(c.attrs.num(name)); }
float* out_f(const KernelCall& c, size_t i) { return static_cast<float*>(c.out[i].data); }
const float* in_f(const KernelCall& c, size_t i) { return static_cast<const float*>(c.in[i].data); }

// torch.lerp: a + w (b - a) for |w| < 0.5, else b - (b - a)(1 - w), so that
// w = 1 gives b exactly. The branch is a template argument: the loops that
// use it stay branch-free (and vectorize).
template <bool kSmallWeight>
inline float lerp(float a, float b, float w) {
  return kSmallWeight ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

// Calls f(std::true_type / std::false_type) for the lerp branch of w.
template <typename F>
void with_lerp_branch(float w, F&& f) {
  if (std::fabs(w) < 0.5f)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// The optional found-inf flag of a multi-tensor update (attr found_inf = 1):
// its last input. The kernels run in stream order after the pass that set
// it, so reading it here is the device-side skip of an overflowed step.
bool skip_step(const KernelCall& c) {
  return c.attrs.integer("found_inf") != 0 && *static_cast<const float*>(c.in.back().data) != 0.0f;
}
// The inputs that are tensors of the lists (all but the flag).
size_t list_inputs(const KernelCall& c) { return c.in.size() - (c.attrs.integer("found_inf") != 0 ? 1 : 0); }

// The tensors of a multi-tensor call laid end to end: start[t] is the first
// element of tensor t, start.back() the total. `per_tensor` inputs (and
// `outs` outputs) per tensor, in list order.
struct MultiLayout {
  size_t in_per_tensor, out_per_tensor;
  std::vector<int64_t> start;
};
MultiLayout multi_layout(const KernelCall& c, size_t in_per_tensor, size_t out_per_tensor) {
  MultiLayout l{in_per_tensor, out_per_tensor, {0}};
  for (size_t t = 0; t < list_inputs(c) / in_per_tensor; ++t) l.start.push_back(l.start.back() + c.in[t * in_per_tensor].numel);
  return l;
}
float* multi_out(const KernelCall& c, const MultiLayout& l, size_t t, size_t i) { return out_f(c, t * l.out_per_tensor + i); }
const float* multi_in(const KernelCall& c, const MultiLayout& l, size_t t, size_t i) { return in_f(c, t * l.in_per_tensor + i); }

// One factor per tensor, as the float the kernels compute with.
std::vector<float> factor_list(const KernelCall& c, const char* name) {
  const std::vector<double>& d = c.attrs.nums(name);
  return std::vector<float>(d.begin(), d.end());
}

// One parallel region over every element of every tensor: fn(t, begin, end)
// for the parts of tensor t in each chunk, so many small tensors still
// spread over all threads.
template <typename F>
void parallel_over_tensors(const std::vector<int64_t>& start, F&& fn) {
  parallel_for(start.back(), kElementGrain, [&](int64_t s, int64_t e) {
    size_t t = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), s) - start.begin()) - 1;
    for (; s < e; ++t) {
      const int64_t te = std::min(e, start[t + 1]);
      if (te > s) fn(t, s - start[t], te - start[t]);
      s = te;
    }
  });
}

struct AdamWFactors {
  float decay, w, b2, c2, neg_step, bc2_sqrt, eps;
};

// AdamW over the elements [s, e), in torch.optim.AdamW's order of operations:
//   p *= decay; m = lerp(m, g, 1 - beta1); v = v * beta2 + ((1 - beta2) * g) * g;
//   p += (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
template <bool kSmallWeight>
inline void adamw_range(float* p, const float* g, float* m, float* v, int64_t s, int64_t e, const AdamWFactors& f) {
  for (int64_t i = s; i < e; ++i) {
    const float mi = lerp<kSmallWeight>(m[i], g[i], f.w);
    const float vi = v[i] * f.b2 + f.c2 * g[i] * g[i];
    const float denom = std::sqrt(vi) / f.bc2_sqrt + f.eps;
    p[i] = p[i] * f.decay + f.neg_step * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq (the same tensors).
void adamw_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* m = out_f(c, 1);
  float* v = out_f(c, 2);
  const float* g = in_f(c, 1);
  const AdamWFactors f{attr_f(c, "decay"),         attr_f(c, "lerp_weight"),   attr_f(c, "beta2"),
                       attr_f(c, "one_minus_beta2"), attr_f(c, "neg_step_size"), attr_f(c, "bc2_sqrt"),
                       attr_f(c, "eps")};
  with_lerp_branch(f.w, [&](auto small) {
    parallel_for(c.out[0].numel, kElementGrain,
                 [&](int64_t s, int64_t e) { adamw_range<decltype(small)::value>(p, g, m, v, s, e, f); });
  });
}

// in: (param, grad, exp_avg, exp_avg_sq) per tensor; out: (param, exp_avg,
// exp_avg_sq) per tensor. The common factors are numbers, the per-tensor
// ones (decay, neg_step_size, bc2_sqrt) lists.
void adamw_update_multi(const KernelCall& c) {
  if (skip_step(c)) return;
  const MultiLayout l = multi_layout(c, 4, 3);
  const std::vector<float> decay = factor_list(c, "decay"), neg_step = factor_list(c, "neg_step_size"),
                           bc2_sqrt = factor_list(c, "bc2_sqrt");
  const float w = attr_f(c, "lerp_weight"), b2 = attr_f(c, "beta2"), c2 = attr_f(c, "one_minus_beta2"),
              eps = attr_f(c, "eps");
  with_lerp_branch(w, [&](auto small) {
    parallel_over_tensors(l.start, [&](size_t t, int64_t s, int64_t e) {
      const AdamWFactors f{decay[t], w, b2, c2, neg_step[t], bc2_sqrt[t], eps};
      adamw_range<decltype(small)::value>(multi_out(c, l, t, 0), multi_in(c, l, t, 1), multi_out(c, l, t, 1),
                                          multi_out(c, l, t, 2), s, e, f);
    });
  });
}

struct SgdFactors {
  float neg_lr, mom, damp, wd;
  bool nesterov, first;
};

// torch.optim.SGD over [s, e): g += wd p; buf = first ? g : momentum buf + (1 - dampening) g;
// g = nesterov ? g + momentum buf : buf; p -= lr g. buf may be null (no momentum).
inline void sgd_range(float* p, const float* g, float* buf, int64_t s, int64_t e, const SgdFactors& f) {
  for (int64_t i = s; i < e; ++i) {
    float gi = f.wd != 0.0f ? g[i] + f.wd * p[i] : g[i];  // PyTorch skips the add when wd is 0
    if (buf) {
      const float b = f.first ? gi : buf[i] * f.mom + f.damp * gi;
      buf[i] = b;
      gi = f.nesterov ? gi + f.mom * b : b;
    }
    p[i] = p[i] + f.neg_lr * gi;
  }
}

// in: param, grad, [momentum_buffer]; out: param, [momentum_buffer]
void sgd_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* buf = c.out.size() > 1 ? out_f(c, 1) : nullptr;
  const float* g = in_f(c, 1);
  const SgdFactors f{-attr_f(c, "lr"), attr_f(c, "momentum"), attr_f(c, "one_minus_dampening"),
                     attr_f(c, "weight_decay"), c.attrs.integer("nesterov") != 0,
                     c.attrs.integer("first_step") != 0};
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) { sgd_range(p, g, buf, s, e, f); });
}

// in: (param, grad, [momentum_buffer]) per tensor; out: (param, [momentum_buffer])
// per tensor; weight_decay and first_step are lists.
void sgd_update_multi(const KernelCall& c) {
  if (skip_step(c)) return;
  const bool with_buffer = c.out.size() * 3 == list_inputs(c) * 2;  // 3 in, 2 out per tensor; else 2 in, 1 out
  const MultiLayout l = multi_layout(c, with_buffer ? 3 : 2, with_buffer ? 2 : 1);
  const std::vector<float> wd = factor_list(c, "weight_decay"), first = factor_list(c, "first_step");
  const float neg_lr = -attr_f(c, "lr"), mom = attr_f(c, "momentum"), damp = attr_f(c, "one_minus_dampening");
  const bool nesterov = c.attrs.integer("nesterov") != 0;
  parallel_over_tensors(l.start, [&](size_t t, int64_t s, int64_t e) {
    const SgdFactors f{neg_lr, mom, damp, wd[t], nesterov, first[t] != 0.0f};
    sgd_range(multi_out(c, l, t, 0), multi_in(c, l, t, 1), with_buffer ? multi_out(c, l, t, 1) : nullptr, s, e, f);
  });
}

// Chunk of the two-pass kernels below; blocks inside a chunk are small enough
// for a stack buffer.
constexpr int64_t kChunk = 1 << 14;
constexpr int64_t kBlock = 256;
int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

struct LambFactors {
  float b1, c1, b2, c2, inv_bc1, inv_bc2, eps, wd;
};

// u = m_hat / (sqrt(v_hat) + eps) + wd p
inline float lamb_direction(const LambFactors& f, float m, float v, float p) {
  return (m * f.inv_bc1) / (std::sqrt(v * f.inv_bc2) + f.eps) + f.wd * p;
}

// LAMB pass 1 over chunk `ch` of a tensor of n elements: the moments, and the
// chunk's |p|^2 and |u|^2 into *sp, *su.
inline void lamb_chunk(const LambFactors& f, const float* p, const float* g, float* m, float* v, int64_t n,
                       int64_t ch, double* sp_out, double* su_out) {
  const IsaKernels& k = isa_kernels();
  float u[kBlock];
  double sp = 0, su = 0;
  for (int64_t b = ch * kChunk; b < std::min(n, (ch + 1) * kChunk); b += kBlock) {
    const int64_t len = std::min(kBlock, n - b);
    for (int64_t j = 0; j < len; ++j) {
      const int64_t i = b + j;
      m[i] = f.b1 * m[i] + f.c1 * g[i];
      v[i] = f.b2 * v[i] + f.c2 * g[i] * g[i];
      u[j] = lamb_direction(f, m[i], v[i], p[i]);
    }
    sp += k.dot_f32(p + b, p + b, len);
    su += k.dot_f32(u, u, len);
  }
  *sp_out = sp;
  *su_out = su;
}

// lr * |p| / |u| (ratio 1 when either is 0) from a tensor's chunk partials, summed in chunk order.
float lamb_scale(double lr, const double* pp, const double* uu, int64_t chunks) {
  double sp = 0, su = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    sp += pp[ch];
    su += uu[ch];
  }
  const double ratio = sp > 0 && su > 0 ? std::sqrt(sp) / std::sqrt(su) : 1.0;
  return static_cast<float>(lr * ratio);
}

// LAMB pass 2 over [s, e): p -= scale u, u recomputed from the stored moments
// (the same float operations on the same values as pass 1, so the same bits).
inline void lamb_apply_range(const LambFactors& f, float* p, const float* m, const float* v, int64_t s, int64_t e,
                             float scale) {
  for (int64_t i = s; i < e; ++i) p[i] = p[i] - scale * lamb_direction(f, m[i], v[i], p[i]);
}

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq
// Pass 1 updates the moments and reduces |p|^2 and |u|^2 per chunk; pass 2
// applies p -= lr r u with the trust ratio r = |p| / |u|.
void lamb_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* m = out_f(c, 1);
  float* v = out_f(c, 2);
  const float* g = in_f(c, 1);
  const LambFactors f{attr_f(c, "beta1"),   attr_f(c, "one_minus_beta1"), attr_f(c, "beta2"),
                      attr_f(c, "one_minus_beta2"), attr_f(c, "inv_bc1"), attr_f(c, "inv_bc2"),
                      attr_f(c, "eps"),     attr_f(c, "weight_decay")};
  const int64_t n = c.out[0].numel, chunks = chunks_of(n);
  std::vector<double> pp(static_cast<size_t>(chunks)), uu(static_cast<size_t>(chunks));
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t ch = cb; ch < ce; ++ch) lamb_chunk(f, p, g, m, v, n, ch, &pp[ch], &uu[ch]);
  });
  const float scale = lamb_scale(c.attrs.num("lr"), pp.data(), uu.data(), chunks);
  parallel_for(n, kElementGrain, [&](int64_t s, int64_t e) { lamb_apply_range(f, p, m, v, s, e, scale); });
}

// in: (param, grad, exp_avg, exp_avg_sq) per tensor; out: (param, exp_avg,
// exp_avg_sq) per tensor; inv_bc1, inv_bc2 and weight_decay are lists. Pass 1
// runs over every chunk of every tensor at once, the trust ratios are summed
// per tensor in chunk order (the per-tensor kernel's chunks and order), and
// pass 2 over every element at once.
void lamb_update_multi(const KernelCall& c) {
  if (skip_step(c)) return;
  const MultiLayout l = multi_layout(c, 4, 3);
  const size_t count = l.start.size() - 1;
  const std::vector<float> inv_bc1 = factor_list(c, "inv_bc1"), inv_bc2 = factor_list(c, "inv_bc2"),
                           wd = factor_list(c, "weight_decay");
  std::vector<LambFactors> f(count);
  std::vector<int64_t> chunk_start{0};
  for (size_t t = 0; t < count; ++t) {
    f[t] = LambFactors{attr_f(c, "beta1"), attr_f(c, "one_minus_beta1"), attr_f(c, "beta2"),
                       attr_f(c, "one_minus_beta2"), inv_bc1[t], inv_bc2[t], attr_f(c, "eps"), wd[t]};
    chunk_start.push_back(chunk_start.back() + chunks_of(l.start[t + 1] - l.start[t]));
  }
  std::vector<double> pp(static_cast<size_t>(chunk_start.back())), uu(pp.size());
  parallel_for(chunk_start.back(), 1, [&](int64_t cb, int64_t ce) {
    size_t t = static_cast<size_t>(std::upper_bound(chunk_start.begin(), chunk_start.end(), cb) - chunk_start.begin()) - 1;
    for (int64_t gc = cb; gc < ce; ++gc) {
      while (gc >= chunk_start[t + 1]) ++t;
      lamb_chunk(f[t], multi_out(c, l, t, 0), multi_in(c, l, t, 1), multi_out(c, l, t, 1), multi_out(c, l, t, 2),
                 l.start[t + 1] - l.start[t], gc - chunk_start[t], &pp[gc], &uu[gc]);
    }
  });
  std::vector<float> scale(count);
  for (size_t t = 0; t < count; ++t)
    scale[t] = lamb_scale(c.attrs.num("lr"), &pp[chunk_start[t]], &uu[chunk_start[t]], chunk_start[t + 1] - chunk_start[t]);
  parallel_over_tensors(l.start, [&](size_t t, int64_t s, int64_t e) {
    lamb_apply_range(f[t], multi_out(c, l, t, 0), multi_out(c, l, t, 1), multi_out(c, l, t, 2), s, e, scale[t]);
  });
}

// in: grads..., found_inf; out: the same tensors. Every gradient *= inv_scale,
// and found_inf = 1 if any held inf or NaN (it is never cleared here: the
// caller zeroes it per step).
void unscale_grads(const KernelCall& c) {
  const size_t count = c.in.size() - 1;
  std::vector<int64_t> start{0};
  for (size_t t = 0; t < count; ++t) start.push_back(start.back() + c.in[t].numel);
  const float inv_scale = attr_f(c, "inv_scale");
  std::atomic<bool> found{false};
  parallel_over_tensors(start, [&](size_t t, int64_t s, int64_t e) {
    float* g = out_f(c, t);
    bool bad = false;
    for (int64_t i = s; i < e; ++i) {
      bad |= !(std::fabs(g[i]) <= std::numeric_limits<float>::max());  // inf and NaN
      g[i] = g[i] * inv_scale;
    }
    if (bad) found.store(true, std::memory_order_relaxed);
  });
  if (found.load()) *out_f(c, count) = 1.0f;
}

// in: t (f32, contiguous); out: [] the sum of t^2
void sum_of_squares(const KernelCall& c) {
  const float* t = in_f(c, 0);
  const int64_t n = c.in[0].numel, chunks = chunks_of(n);
  std::vector<double> partial(static_cast<size_t>(chunks));
  const auto dot = isa_kernels().dot_f32;
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t ch = cb; ch < ce; ++ch) {
      const int64_t b = ch * kChunk;
      partial[ch] = dot(t + b, t + b, std::min(kChunk, n - b));
    }
  });
  double s = 0;
  for (double x : partial) s += x;  // fixed order
  *out_f(c, 0) = static_cast<float>(s);
}

// in: t; out: t *= scale
void scale_inplace(const KernelCall& c) {
  float* t = out_f(c, 0);
  const float a = attr_f(c, "scale");
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) t[i] = t[i] * a;
  });
}

// in: dst, src; out: dst += alpha src
void add_inplace(const KernelCall& c) {
  float* d = out_f(c, 0);
  const float* src = in_f(c, 1);
  const float a = attr_f(c, "alpha");
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) d[i] = d[i] + a * src[i];
  });
}

// in: dst, src; out: dst = lerp(dst, src, weight)
void lerp_inplace(const KernelCall& c) {
  float* d = out_f(c, 0);
  const float* src = in_f(c, 1);
  const float w = attr_f(c, "weight");
  with_lerp_branch(w, [&](auto small) {
    parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) d[i] = lerp<decltype(small)::value>(d[i], src[i], w);
    });
  });
}

}  // namespace

VL_REGISTER_KERNEL(adamw_update, CPU, adamw_update);
VL_REGISTER_KERNEL(sgd_update, CPU, sgd_update);
VL_REGISTER_KERNEL(lamb_update, CPU, lamb_update);
VL_REGISTER_KERNEL(adamw_update_multi, CPU, adamw_update_multi);
VL_REGISTER_KERNEL(sgd_update_multi, CPU, sgd_update_multi);
VL_REGISTER_KERNEL(lamb_update_multi, CPU, lamb_update_multi);
VL_REGISTER_KERNEL(unscale_grads, CPU, unscale_grads);
VL_REGISTER_KERNEL(sum_of_squares, CPU, sum_of_squares);
VL_REGISTER_KERNEL(scale_inplace, CPU, scale_inplace);
VL_REGISTER_KERNEL(add_inplace, CPU, add_inplace);
VL_REGISTER_KERNEL(lerp_inplace, CPU, lerp_inplace);

}  // namespace cpu
}  // namespace vl

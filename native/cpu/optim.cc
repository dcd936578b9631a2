// In-place optimizer updates (AdamW, SGD, LAMB) and the small in-place
// helpers of a training loop (scale, add, lerp, sum of squares). The host
// computes the step's scalar factors in double; kernels take them as float,
// as PyTorch does for float tensors. Reductions use fixed chunks combined in
// a fixed order, so no result depends on the thread count.
#include <algorithm>
#include <cmath>
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

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq (the same tensors).
// torch.optim.AdamW's order of operations:
//   p *= decay; m = lerp(m, g, 1 - beta1); v = v * beta2 + ((1 - beta2) * g) * g;
//   p += (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
void adamw_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* m = out_f(c, 1);
  float* v = out_f(c, 2);
  const float* g = in_f(c, 1);
  const float decay = attr_f(c, "decay"), w = attr_f(c, "lerp_weight"), b2 = attr_f(c, "beta2"),
              c2 = attr_f(c, "one_minus_beta2"), neg_step = attr_f(c, "neg_step_size"),
              bc2_sqrt = attr_f(c, "bc2_sqrt"), eps = attr_f(c, "eps");
  with_lerp_branch(w, [&](auto small) {
    parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        const float mi = lerp<decltype(small)::value>(m[i], g[i], w);
        const float vi = v[i] * b2 + c2 * g[i] * g[i];
        const float denom = std::sqrt(vi) / bc2_sqrt + eps;
        p[i] = p[i] * decay + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
      }
    });
  });
}

// in: param, grad, [momentum_buffer]; out: param, [momentum_buffer]
// torch.optim.SGD: g += wd p; buf = first ? g : momentum buf + (1 - dampening) g;
// g = nesterov ? g + momentum buf : buf; p -= lr g
void sgd_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* buf = c.out.size() > 1 ? out_f(c, 1) : nullptr;
  const float* g = in_f(c, 1);
  const float neg_lr = -attr_f(c, "lr"), mom = attr_f(c, "momentum"), damp = attr_f(c, "one_minus_dampening"),
              wd = attr_f(c, "weight_decay");
  const bool nesterov = c.attrs.integer("nesterov") != 0, first = c.attrs.integer("first_step") != 0;
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];  // PyTorch skips the add when wd is 0
      if (buf) {
        const float b = first ? gi : buf[i] * mom + damp * gi;
        buf[i] = b;
        gi = nesterov ? gi + mom * b : b;
      }
      p[i] = p[i] + neg_lr * gi;
    }
  });
}

// Chunk of the two-pass kernels below; blocks inside a chunk are small enough
// for a stack buffer.
constexpr int64_t kChunk = 1 << 14;
constexpr int64_t kBlock = 256;

struct LambFactors {
  float b1, c1, b2, c2, inv_bc1, inv_bc2, eps, wd;
};

// u = m_hat / (sqrt(v_hat) + eps) + wd p
inline float lamb_direction(const LambFactors& f, float m, float v, float p) {
  return (m * f.inv_bc1) / (std::sqrt(v * f.inv_bc2) + f.eps) + f.wd * p;
}

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq
// Pass 1 updates the moments and reduces |p|^2 and |u|^2 per chunk; pass 2
// recomputes u (the same float operations on the same values, so the same
// bits) and applies p -= lr r u with the trust ratio r = |p| / |u|.
void lamb_update(const KernelCall& c) {
  float* p = out_f(c, 0);
  float* m = out_f(c, 1);
  float* v = out_f(c, 2);
  const float* g = in_f(c, 1);
  const LambFactors f{attr_f(c, "beta1"),   attr_f(c, "one_minus_beta1"), attr_f(c, "beta2"),
                      attr_f(c, "one_minus_beta2"), attr_f(c, "inv_bc1"), attr_f(c, "inv_bc2"),
                      attr_f(c, "eps"),     attr_f(c, "weight_decay")};
  const int64_t n = c.out[0].numel, chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> pp(static_cast<size_t>(chunks)), uu(static_cast<size_t>(chunks));
  const IsaKernels& k = isa_kernels();
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    float u[kBlock];
    for (int64_t ch = cb; ch < ce; ++ch) {
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
      pp[ch] = sp;
      uu[ch] = su;
    }
  });
  double sp = 0, su = 0;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    sp += pp[ch];
    su += uu[ch];
  }
  const double ratio = sp > 0 && su > 0 ? std::sqrt(sp) / std::sqrt(su) : 1.0;
  const float scale = static_cast<float>(c.attrs.num("lr") * ratio);
  parallel_for(n, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) p[i] = p[i] - scale * lamb_direction(f, m[i], v[i], p[i]);
  });
}

// in: t (f32, contiguous); out: [] the sum of t^2
void sum_of_squares(const KernelCall& c) {
  const float* t = in_f(c, 0);
  const int64_t n = c.in[0].numel, chunks = (n + kChunk - 1) / kChunk;
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
VL_REGISTER_KERNEL(sum_of_squares, CPU, sum_of_squares);
VL_REGISTER_KERNEL(scale_inplace, CPU, scale_inplace);
VL_REGISTER_KERNEL(add_inplace, CPU, add_inplace);
VL_REGISTER_KERNEL(lerp_inplace, CPU, lerp_inplace);

}  // namespace cpu
}  // namespace vl

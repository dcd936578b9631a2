// Binary elementwise ops with broadcasting. The launcher gives both inputs
// the output's shape (stride 0 along broadcast dims).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

enum class BinaryOp { Add = kBinaryAdd, Sub = kBinarySub, Mul = kBinaryMul, Div = kBinaryDiv };

template <BinaryOp op, typename C>
inline C apply(C a, C b) {
  if constexpr (op == BinaryOp::Add) return a + b;
  if constexpr (op == BinaryOp::Sub) return a - b;
  if constexpr (op == BinaryOp::Mul) return a * b;
  if constexpr (op == BinaryOp::Div) {
    if constexpr (std::is_integral<C>::value) {
      // Integer division by zero is undefined in C++; report it instead.
      if (b == 0) fail(ErrorCode::Argument, "div: integer division by zero");
      // INT64_MIN / -1 traps on x86; it wraps (to INT64_MIN) as on the GPU.
      if (b == -1) return static_cast<C>(0 - static_cast<uint64_t>(a));
    }
    return a / b;
  }
}

// The common broadcast layouts as rows: the output (contiguous) is `rows`
// rows of `inner` elements, and over the inner dims each operand is either
// contiguous (step 1: a [C] vector against [..., C], a [1, N, C] embedding)
// or one value (step 0: a scalar, a [B, 1, 1] per-sample or [B, N, 1]
// per-token scale). Row offsets follow the outer dims' strides.
struct RowPlan {
  int split = 0;  // dims [split, ndim) are the inner ones
  int64_t inner = 1, rows = 1;
  int64_t step[2] = {1, 1};
  bool fixed[2] = {false, false};  // the operand's row offset is the same for every row
};

// 1: the dims [d0, ndim) of t are row-major contiguous; 0: they all have
// stride 0 (one value); -1: neither. Size-1 dims do not count.
int inner_kind(const TensorArg& t, int d0) {
  bool contig = true, one = true;
  int64_t expect = 1;
  for (int d = t.ndim - 1; d >= d0; --d) {
    if (t.shape[d] == 1) continue;
    contig = contig && t.strides[d] == expect;
    one = one && t.strides[d] == 0;
    expect *= t.shape[d];
  }
  return contig ? 1 : one ? 0 : -1;
}

bool plan_rows(const TensorArg& a, const TensorArg& b, RowPlan& p) {
  const int nd = a.ndim;
  int d0 = nd;
  while (d0 > 0 && inner_kind(a, d0 - 1) >= 0 && inner_kind(b, d0 - 1) >= 0) --d0;
  if (d0 == nd) return false;
  p.split = d0;
  for (int d = d0; d < nd; ++d) p.inner *= a.shape[d];
  if (p.inner < 2 && d0 > 0) return false;  // one element per row: no better than the generic walk
  p.rows = p.inner ? a.numel / p.inner : 0;
  const TensorArg* ops[2] = {&a, &b};
  for (int j = 0; j < 2; ++j) {
    p.step[j] = inner_kind(*ops[j], d0) == 1 ? 1 : 0;
    bool fixed = true;
    for (int d = 0; d < d0; ++d) fixed = fixed && (ops[j]->shape[d] == 1 || ops[j]->strides[d] == 0);
    p.fixed[j] = fixed;
  }
  return true;
}

// Offsets of both operands' rows, advanced one row at a time.
struct RowWalk {
  const TensorArg *a, *b;
  int split;
  int64_t idx[kMaxDims] = {};
  int64_t off[2] = {0, 0};
  RowWalk(const TensorArg& ta, const TensorArg& tb, int split_dim, int64_t row) : a(&ta), b(&tb), split(split_dim) {
    for (int d = split - 1; d >= 0; --d) {
      idx[d] = row % a->shape[d];
      row /= a->shape[d];
      off[0] += idx[d] * a->strides[d];
      off[1] += idx[d] * b->strides[d];
    }
  }
  void next() {
    for (int d = split - 1; d >= 0; --d) {
      off[0] += a->strides[d];
      off[1] += b->strides[d];
      if (++idx[d] < a->shape[d]) return;
      off[0] -= idx[d] * a->strides[d];
      off[1] -= idx[d] * b->strides[d];
      idx[d] = 0;
    }
  }
};

template <BinaryOp op, typename T, int sa, int sb>
void row_loop(const T* pa, const T* pb, T* po, int64_t n) {
  using E = Elem<T>;
  for (int64_t i = 0; i < n; ++i) po[i] = E::store(apply<op>(E::load(pa[i * sa]), E::load(pb[i * sb])));
}

template <BinaryOp op, typename T>
void row_any(const T* pa, int64_t sa, const T* pb, int64_t sb, T* po, int64_t n) {
  if (sa && sb) return row_loop<op, T, 1, 1>(pa, pb, po, n);
  if (sa) return row_loop<op, T, 1, 0>(pa, pb, po, n);
  if (sb) return row_loop<op, T, 0, 1>(pa, pb, po, n);
  row_loop<op, T, 0, 0>(pa, pb, po, n);
}

// Rows shorter than this are done several at a time (f32): the broadcast
// operand's values for a group of rows are laid out in a buffer of about
// kGroupElems, then one two-vector call covers the group.
constexpr int64_t kShortRow = 128;
constexpr int64_t kGroupElems = 2048;

template <BinaryOp op>
void binary_rows_f32(const TensorArg& a, const TensorArg& b, const TensorArg& out, const RowPlan& p) {
  const IsaKernels& k = isa_kernels();
  constexpr int opi = static_cast<int>(op);
  auto vv = op == BinaryOp::Add   ? k.add_f32
            : op == BinaryOp::Sub ? k.sub_f32
            : op == BinaryOp::Mul ? k.mul_f32
                                  : k.div_f32;
  const float *pa = static_cast<const float*>(a.data), *pb = static_cast<const float*>(b.data);
  float* po = static_cast<float*>(out.data);
  const int64_t inner = p.inner;
  // Short rows with one operand contiguous throughout: groups of rows.
  const int whole = a.contiguous ? 0 : b.contiguous ? 1 : -1;
  if (inner < kShortRow && whole >= 0 && p.rows > 1) {
    const int other = 1 - whole;
    const int64_t group = std::max<int64_t>(1, kGroupElems / inner);
    const float* pw = whole == 0 ? pa : pb;
    const float* px = whole == 0 ? pb : pa;
    parallel_for(p.rows, std::max<int64_t>(group, kElementGrain / inner), [&](int64_t r0, int64_t r1) {
      std::vector<float> buf(static_cast<size_t>(group * inner));
      RowWalk w(a, b, p.split, r0);
      bool filled = false;  // a fixed operand's group buffer is built once
      for (int64_t r = r0; r < r1; r += group) {
        const int64_t g = std::min(group, r1 - r);
        if (!(p.fixed[other] && filled)) {
          for (int64_t i = 0; i < g; ++i, w.next()) {
            const float* src = px + w.off[other];
            float* dst = buf.data() + i * inner;
            if (p.step[other]) std::memcpy(dst, src, static_cast<size_t>(inner) * sizeof(float));
            else std::fill(dst, dst + inner, *src);
          }
          filled = p.fixed[other] && g == group;
        }
        const float* xa = whole == 0 ? pw + r * inner : buf.data();
        const float* xb = whole == 0 ? buf.data() : pw + r * inner;
        vv(xa, xb, po + r * inner, g * inner);
      }
    });
    return;
  }
  parallel_for(p.rows, std::max<int64_t>(1, kElementGrain / inner), [&](int64_t r0, int64_t r1) {
    RowWalk w(a, b, p.split, r0);
    for (int64_t r = r0; r < r1; ++r, w.next()) {
      const float *ra = pa + w.off[0], *rb = pb + w.off[1];
      float* ro = po + r * inner;
      if (p.step[0] && p.step[1]) vv(ra, rb, ro, inner);
      else if (p.step[0]) k.binary_scalar_f32(opi, ra, *rb, ro, inner, 0);
      else if (p.step[1]) k.binary_scalar_f32(opi, rb, *ra, ro, inner, 1);
      else std::fill(ro, ro + inner, apply<op>(*ra, *rb));
    }
  });
}

template <BinaryOp op>
void binary(const KernelCall& c) {
  const TensorArg &a = c.in[0], &b = c.in[1], &out = c.out[0];
  if (out.dtype == DType::F32 && a.contiguous && b.contiguous) {
    const IsaKernels& k = isa_kernels();
    auto fn = op == BinaryOp::Add ? k.add_f32 : op == BinaryOp::Sub ? k.sub_f32 : op == BinaryOp::Mul ? k.mul_f32 : k.div_f32;
    const float *pa = static_cast<const float*>(a.data), *pb = static_cast<const float*>(b.data);
    float* po = static_cast<float*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t s, int64_t e) { fn(pa + s, pb + s, po + s, e - s); });
    return;
  }
  RowPlan plan;
  if (plan_rows(a, b, plan)) {
    if (out.dtype == DType::F32) return binary_rows_f32<op>(a, b, out, plan);
    dispatch_dtype(out.dtype, [&](auto tag) {
      using T = decltype(tag);
      const T* pa = static_cast<const T*>(a.data);
      const T* pb = static_cast<const T*>(b.data);
      T* po = static_cast<T*>(out.data);
      const int64_t inner = plan.inner;
      const int64_t grain = std::max<int64_t>(1, kElementGrain / inner);
      parallel_for(plan.rows, grain, [&](int64_t r0, int64_t r1) {
        RowWalk w(a, b, plan.split, r0);
        for (int64_t r = r0; r < r1; ++r, w.next())
          row_any<op, T>(pa + w.off[0], plan.step[0], pb + w.off[1], plan.step[1], po + r * inner, inner);
      });
    });
    return;
  }
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using E = Elem<T>;
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    T* po = static_cast<T*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t s, int64_t e) {
      // Offsets of a and b advance independently; collect b's first.
      std::vector<int64_t> boff(static_cast<size_t>(e - s));
      for_each_offset(b, s, e, [&](int64_t i, int64_t off) { boff[i - s] = off; });
      for_each_offset(a, s, e, [&](int64_t i, int64_t off) {
        po[i] = E::store(apply<op>(E::load(pa[off]), E::load(pb[boff[i - s]])));
      });
    });
  });
}

}  // namespace

VL_REGISTER_KERNEL(add, CPU, binary<BinaryOp::Add>);
VL_REGISTER_KERNEL(sub, CPU, binary<BinaryOp::Sub>);
VL_REGISTER_KERNEL(mul, CPU, binary<BinaryOp::Mul>);
VL_REGISTER_KERNEL(div, CPU, binary<BinaryOp::Div>);

}  // namespace cpu
}  // namespace vl

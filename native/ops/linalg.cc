#include "ops/linalg.h"

#include <algorithm>

#include "core/cpu_features.h"
#include "core/error.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/gemm_isa.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

void check_f32(const TensorPtr& t, const char* op, const char* what) {
  VL_CHECK(t->dtype() == DType::F32, ErrorCode::DType, op, ": ", what, " must be f32, got ", t->describe(),
           "; convert it with .to('f32')");
}

void check_same_device(const char* op, const TensorPtr& ref, std::initializer_list<const TensorPtr*> others) {
  for (const TensorPtr* t : others)
    if (*t)
      VL_CHECK((*t)->device() == ref->device(), ErrorCode::Device, op, ": expected every tensor on ",
               ref->device().str(), ", got ", (*t)->describe(), "; move it explicitly with .to('",
               ref->device().str(), "')");
}

bool on_cuda(const TensorPtr& t) { return t->device().type == DeviceType::CUDA; }

// Packed layouts exist for the CPU kernels and the CUDA kernels.
void check_packable(const char* op, const TensorPtr& t) {
  VL_CHECK(t->device().type == DeviceType::CPU || on_cuda(t), ErrorCode::NotImplemented, op, ": ", t->describe(),
           ": weights are packed for the CPU or CUDA GEMM kernels only; move it with .to('cpu') or .to('cuda')");
}

size_t cuda_packed_size(int64_t n, int64_t k, DType dtype, bool swiglu) {
  return static_cast<size_t>(cuda_packed_bytes(n, k, swiglu, dtype != DType::F32));
}

gemm::WType wtype_for(DType dtype, const char* op) {
  VL_CHECK(dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16, ErrorCode::DType, op,
           ": packed weights are f32, bf16 or f16, got ", dtype_name(dtype));
  return dtype == DType::F32 ? gemm::WType::F32 : dtype == DType::BF16 ? gemm::WType::BF16 : gemm::WType::F16;
}

TensorPtr as_f32(const TensorPtr& w, const char* op, const char* what) {
  VL_CHECK(w->dtype() == DType::F32 || w->dtype() == DType::BF16, ErrorCode::DType, op, ": ", what,
           " must be f32 or bf16, got ", w->describe());
  return w->dtype() == DType::F32 ? w : copy(w, DType::F32);
}

// Bias [N] and residual [out shape] as contiguous f32; -1 attrs when absent.
void epilogue_inputs(const char* op, const TensorPtr& bias, const TensorPtr& residual, int64_t n, const Shape& out,
                     std::vector<TensorPtr>& in, Attrs& attrs) {
  if (bias) {
    check_f32(bias, op, "bias");
    VL_CHECK(bias->ndim() == 1 && bias->shape()[0] == n, ErrorCode::Shape, op, ": bias must have shape [", n,
             "] (one value per output feature), got ", shape_str(bias->shape()));
    in.push_back(contiguous(bias));
  }
  attrs.set("bias", bias ? static_cast<double>(in.size() - 1) : -1.0);
  if (residual) {
    check_f32(residual, op, "residual");
    VL_CHECK(residual->shape() == out, ErrorCode::Shape, op, ": residual must have the output's shape ",
             shape_str(out), ", got ", shape_str(residual->shape()));
    in.push_back(contiguous(residual));
  }
  attrs.set("residual", residual ? static_cast<double>(in.size() - 1) : -1.0);
}

Shape with_last(const Shape& s, int64_t last) {
  Shape out = s;
  out.back() = last;
  return out;
}

void check_x(const char* op, const TensorPtr& x, int64_t k, const char* weight_desc) {
  check_f32(x, op, "x");
  VL_CHECK(x->ndim() >= 1, ErrorCode::Shape, op, ": x must have at least one dimension (features last), got a scalar");
  VL_CHECK(x->shape().back() == k, ErrorCode::Shape, op, ": x has ", x->shape().back(),
           " features in its last dimension (", x->describe(), ") but the weight expects ", k, " (", weight_desc, ")");
}

void check_packed(const char* op, const PackedWeight& w) {
  VL_CHECK(w.data, ErrorCode::Argument, op, ": the packed weight has no data");
  const TensorPtr& d = w.data;
  check_packable(op, d);
  VL_CHECK(d->dtype() == DType::U8 && d->ndim() == 1 && d->is_contiguous(), ErrorCode::DType, op,
           ": a packed weight is a contiguous 1-D u8 tensor of panels, got ", d->describe());
  if (on_cuda(d)) {
    VL_CHECK(w.layout == kCudaPackedLayout, ErrorCode::Argument, op, ": the weight was packed for the '", w.layout,
             "' kernels, but its data is on ", d->device().str(), ", whose kernels take '", kCudaPackedLayout,
             "' weights; packed weights do not move between devices: pack the weight again on ", d->device().str());
    wtype_for(w.dtype, op);
    VL_CHECK(w.n >= 0 && w.k >= 0, ErrorCode::Shape, op, ": packed weight sizes must be non-negative");
    VL_CHECK(w.kblock == cuda_packed_kpad(w.k), ErrorCode::Argument, op, ": a CUDA packed weight of K = ", w.k,
             " has rows of ", cuda_packed_kpad(w.k), " values, but this one records ", w.kblock, "; pack it again");
    const size_t bytes = cuda_packed_size(w.n, w.k, w.dtype, w.swiglu);
    VL_CHECK(static_cast<size_t>(d->numel()) == bytes, ErrorCode::Shape, op, ": a CUDA packed ", dtype_name(w.dtype),
             w.swiglu ? " SwiGLU" : "", " weight of [", w.n, ",", w.k, "] takes ", bytes, " bytes, got ", d->describe());
    VL_CHECK(reinterpret_cast<uintptr_t>(d->data()) % 16 == 0, ErrorCode::Argument, op,
             ": packed weight data must be 16-byte aligned (use the tensor packLinear made, not a view into it)");
    return;
  }
  const std::string here = packed_layout();
  VL_CHECK(w.layout != kCudaPackedLayout, ErrorCode::Argument, op, ": the weight was packed for the '",
           kCudaPackedLayout, "' kernels, but its data is on ", d->device().str(), ", whose kernels take '", here,
           "' weights; packed weights do not move between devices: pack the weight again on ", d->device().str());
  VL_CHECK(w.layout == here, ErrorCode::Argument, op, ": the weight was packed for the '", w.layout,
           "' kernels, but this process runs '", here,
           "' (see VLLAMA_CPU_ISA); packed panels are not portable between instruction sets: pack the weight again");
  gemm::PackedInfo info;
  info.n = w.n;
  info.k = w.k;
  info.wtype = wtype_for(w.dtype, op);
  info.swiglu = w.swiglu;
  VL_CHECK(w.n >= 0 && w.k >= 0, ErrorCode::Shape, op, ": packed weight sizes must be non-negative");
  VL_CHECK(w.kblock == gemm::k_block(w.k, info.wtype), ErrorCode::Argument, op,
           ": the weight was packed with K blocks of ", w.kblock, " but these kernels use ",
           gemm::k_block(w.k, info.wtype), "; pack it again");
  const size_t bytes = gemm::packed_bytes(info);
  VL_CHECK(static_cast<size_t>(d->numel()) == bytes, ErrorCode::Shape, op, ": a packed ", dtype_name(w.dtype),
           w.swiglu ? " SwiGLU" : "", " weight of [", w.n, ",", w.k, "] takes ", bytes, " bytes, got ", d->describe());
  VL_CHECK(reinterpret_cast<uintptr_t>(d->data()) % 64 == 0, ErrorCode::Argument, op,
           ": packed weight data must be 64-byte aligned (use the tensor packLinear made, not a view into it)");
}

PackedWeight make_packed(const char* op, const std::vector<TensorPtr>& in, int64_t n, int64_t k, DType dtype,
                         bool swiglu) {
  PackedWeight pw;
  pw.n = n;
  pw.k = k;
  pw.dtype = dtype;
  pw.swiglu = swiglu;
  gemm::PackedInfo info;
  info.n = n;
  info.k = k;
  info.wtype = wtype_for(dtype, op);
  info.swiglu = swiglu;
  const bool cuda = on_cuda(in[0]);
  pw.layout = cuda ? kCudaPackedLayout : packed_layout();
  pw.kblock = cuda ? cuda_packed_kpad(k) : gemm::k_block(k, info.wtype);
  const size_t bytes = cuda ? cuda_packed_size(n, k, dtype, swiglu) : gemm::packed_bytes(info);
  pw.data = empty_tensor({static_cast<int64_t>(bytes)}, DType::U8, in[0]->device());
  Attrs attrs;
  attrs.set("n", static_cast<double>(n)).set("k", static_cast<double>(k)).set("wtype", static_cast<double>(info.wtype));
  launch(swiglu ? "pack_swiglu" : "pack_linear", in, {pw.data}, attrs);
  return pw;
}

}  // namespace

// The panels depend on the ISA's tile sizes only (AVX-512 with and without
// AVX512_BF16 share them), so the ISA name identifies the layout. CUDA
// weights record kCudaPackedLayout.
std::string packed_layout() { return isa_name(active_isa()); }

PackedWeight pack_linear(const TensorPtr& w, DType dtype) {
  const char* op = "packLinear";
  wtype_for(dtype, op);
  check_packable(op, w);
  VL_CHECK(w->ndim() == 2, ErrorCode::Shape, op, ": weight must be 2-D [out_features, in_features], got ",
           shape_str(w->shape()));
  return make_packed(op, {as_f32(w, op, "weight")}, w->shape()[0], w->shape()[1], dtype, false);
}

PackedWeight pack_swiglu(const TensorPtr& w1, const TensorPtr& w2, DType dtype) {
  const char* op = "packSwiGLU";
  wtype_for(dtype, op);
  check_packable(op, w1);
  check_same_device(op, w1, {&w2});
  VL_CHECK(w1->ndim() == 2 && w2->ndim() == 2 && w1->shape() == w2->shape(), ErrorCode::Shape, op,
           ": w1 and w2 must both be [hidden, in_features] with the same shape, got ", shape_str(w1->shape()),
           " and ", shape_str(w2->shape()));
  TensorPtr a = as_f32(w1, op, "w1"), b = as_f32(w2, op, "w2");
  // The kernel walks both with one k stride.
  if (a->strides()[1] != b->strides()[1]) a = contiguous(a), b = contiguous(b);
  return make_packed(op, {a, b}, w1->shape()[0], w1->shape()[1], dtype, true);
}

MathPrecision parse_precision(const std::string& name, const char* op) {
  if (name == "f32") return MathPrecision::F32;
  if (name == "bf16") return MathPrecision::BF16;
  if (name == "f16") return MathPrecision::F16;
  fail(ErrorCode::Argument, op, ": precision must be 'f32', 'bf16' or 'f16', got '", name, "'");
}

TensorPtr linear(const TensorPtr& x, const TensorPtr& w, const TensorPtr& bias, const TensorPtr& residual,
                 MathPrecision precision) {
  const char* op = "linear";
  check_same_device(op, x, {&w, &bias, &residual});
  check_f32(w, op, "weight");
  VL_CHECK(w->ndim() == 2, ErrorCode::Shape, op, ": weight must be 2-D [out_features, in_features], got ",
           shape_str(w->shape()));
  check_x(op, x, w->shape()[1], ("weight " + w->describe()).c_str());
  const Shape out_shape = with_last(x->shape(), w->shape()[0]);
  std::vector<TensorPtr> in{x, w};
  Attrs attrs;
  epilogue_inputs(op, bias, residual, w->shape()[0], out_shape, in, attrs);
  // "wtype" is the arithmetic of B: for an unpacked weight, the precision asked for.
  attrs.set("packed", 0.0).set("swiglu", 0.0).set("wtype", static_cast<double>(precision));
  TensorPtr out = empty_tensor(out_shape, DType::F32, x->device());
  if (out->numel() > 0) launch("linear", in, {out}, attrs);
  return out;
}

namespace {
// bf16 activations in or out of a packed GEMM: the CPU kernels with bf16
// panels only (elsewhere the GEMM takes and gives f32).
void check_bf16_io(const char* op, const char* what, const TensorPtr& x, const PackedWeight& w) {
  VL_CHECK(w.dtype == DType::BF16, ErrorCode::DType, op, ": a bf16 ", what, " needs bf16 packed weights, got ",
           dtype_name(w.dtype), " ones; use f32");
  VL_CHECK(x->device().type == DeviceType::CPU, ErrorCode::NotImplemented, op, ": a bf16 ", what,
           " is a CPU GEMM path; on ", x->device().str(), " use f32");
}

TensorPtr run_packed(const char* op, const TensorPtr& x, const PackedWeight& w, const TensorPtr& bias,
                     const TensorPtr& residual, DType out_dtype) {
  check_packed(op, w);
  check_same_device(op, x, {&w.data, &bias, &residual});
  const std::string desc = std::string(w.swiglu ? "SwiGLU" : "packed") + " weight [" + std::to_string(w.n) + "," +
                           std::to_string(w.k) + "] " + dtype_name(w.dtype);
  if (x->dtype() == DType::BF16) {
    check_bf16_io(op, "x", x, w);
    VL_CHECK(x->ndim() >= 1 && x->shape().back() == w.k && x->strides().back() == 1, ErrorCode::Shape, op,
             ": a bf16 x needs ", w.k, " features in a contiguous last dimension (", desc, "), got ", x->describe());
  } else {
    check_x(op, x, w.k, desc.c_str());
  }
  VL_CHECK(out_dtype == DType::F32 || out_dtype == DType::BF16, ErrorCode::DType, op,
           ": the output dtype must be f32 or bf16, got ", dtype_name(out_dtype));
  if (out_dtype == DType::BF16) {
    check_bf16_io(op, "output", x, w);
    VL_CHECK(!residual && !bias, ErrorCode::Argument, op, ": a bf16 output takes no bias or residual");
  }
  const Shape out_shape = with_last(x->shape(), w.n);
  std::vector<TensorPtr> in{x, w.data};
  Attrs attrs;
  epilogue_inputs(op, bias, residual, w.n, out_shape, in, attrs);
  attrs.set("packed", 1.0).set("swiglu", w.swiglu ? 1.0 : 0.0).set("wtype", static_cast<double>(wtype_for(w.dtype, op)));
  // What the panels are, for the kernel to check once more where it reads them.
  attrs.set("n", static_cast<double>(w.n)).set("k", static_cast<double>(w.k)).set("layout", gemm_kernels().layout);
  attrs.set("kblock", static_cast<double>(w.kblock));
  TensorPtr out = empty_tensor(out_shape, out_dtype, x->device());
  if (out->numel() > 0) launch("linear", in, {out}, attrs);
  return out;
}
}  // namespace

TensorPtr linear_packed(const TensorPtr& x, const PackedWeight& w, const TensorPtr& bias, const TensorPtr& residual) {
  VL_CHECK(!w.swiglu, ErrorCode::Argument, "linear: this weight was packed with packSwiGLU; use swiglu(x, packed)");
  return run_packed("linear", x, w, bias, residual, DType::F32);
}

TensorPtr swiglu(const TensorPtr& x, const PackedWeight& w, const TensorPtr& residual, DType out_dtype) {
  VL_CHECK(w.swiglu, ErrorCode::Argument, "swiglu: expected a weight from packSwiGLU(w1, w2), got a packLinear weight");
  return run_packed("swiglu", x, w, nullptr, residual, out_dtype);
}

TensorPtr matmul(const TensorPtr& a, const TensorPtr& b, bool transpose_b, MathPrecision precision) {
  const char* op = "matmul";
  check_f32(a, op, "a");
  check_f32(b, op, "b");
  check_same_device(op, a, {&b});
  VL_CHECK(a->ndim() >= 2 && b->ndim() >= 2, ErrorCode::Shape, op,
           ": both operands need at least 2 dimensions ([..., M, K] and [..., K, N]), got ", shape_str(a->shape()),
           " and ", shape_str(b->shape()));
  // b as [..., N, K] (a view either way).
  std::vector<int64_t> order(static_cast<size_t>(b->ndim()));
  for (int i = 0; i < b->ndim(); ++i) order[i] = i;
  if (!transpose_b) std::swap(order[b->ndim() - 2], order[b->ndim() - 1]);
  TensorPtr bt = view_permute(b, order);
  const int64_t m = a->shape()[a->ndim() - 2], k = a->shape()[a->ndim() - 1];
  const int64_t n = bt->shape()[bt->ndim() - 2], kb = bt->shape()[bt->ndim() - 1];
  VL_CHECK(k == kb, ErrorCode::Shape, op, ": inner dimensions differ: a ", shape_str(a->shape()), " has K = ", k,
           " but b ", shape_str(b->shape()), transpose_b ? " (transposeB: [..., N, K])" : " ([..., K, N])",
           " has K = ", kb);
  const Shape ab(a->shape().begin(), a->shape().end() - 2), bb(bt->shape().begin(), bt->shape().end() - 2);
  Shape batch = broadcast_shapes(ab, bb, op);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  TensorPtr out = empty_tensor(out_shape, DType::F32, a->device());
  if (out->numel() == 0) return out;
  // Broadcast views: repeated batch dims get stride 0.
  auto expand = [&](const TensorPtr& t, int64_t rows, int64_t cols) {
    Shape shape = batch, strides(batch.size(), 0);
    const size_t lead = batch.size() - (t->shape().size() - 2);
    for (size_t i = 0; i + 2 < t->shape().size(); ++i)
      strides[lead + i] = t->shape()[i] == 1 ? 0 : t->strides()[i];
    shape.push_back(rows);
    shape.push_back(cols);
    strides.push_back(t->strides()[t->ndim() - 2]);
    strides.push_back(t->strides()[t->ndim() - 1]);
    return std::make_shared<TensorImpl>(t->storage(), t->dtype(), shape, strides, t->offset());
  };
  launch("matmul", {expand(a, m, k), expand(bt, n, k)}, {out}, Attrs().set("wtype", static_cast<double>(precision)));
  return out;
}

TensorPtr conv_patch(const TensorPtr& x, const TensorPtr& w, const TensorPtr& bias, int64_t patch,
                     MathPrecision precision) {
  const char* op = "convPatch";
  check_f32(x, op, "x");
  check_f32(w, op, "weight");
  check_same_device(op, x, {&w, &bias});
  VL_CHECK(patch >= 1, ErrorCode::Argument, op, ": patch must be a positive integer, got ", patch);
  VL_CHECK(x->ndim() == 4, ErrorCode::Shape, op, ": x must be [B, C, H, W], got ", shape_str(x->shape()));
  VL_CHECK(w->ndim() == 4 && w->shape()[2] == patch && w->shape()[3] == patch, ErrorCode::Shape, op,
           ": weight must be [O, C, ", patch, ", ", patch, "] for patch ", patch, ", got ", shape_str(w->shape()));
  VL_CHECK(w->shape()[1] == x->shape()[1], ErrorCode::Shape, op, ": x has ", x->shape()[1],
           " channels but the weight expects ", w->shape()[1], " (weight ", shape_str(w->shape()), ")");
  const int64_t h = x->shape()[2], wd = x->shape()[3];
  VL_CHECK(h % patch == 0 && wd % patch == 0, ErrorCode::Shape, op, ": H and W must be multiples of the patch size ",
           patch, " (stride = kernel = patch, no padding), got H = ", h, ", W = ", wd);
  const int64_t o = w->shape()[0];
  const Shape out_shape{x->shape()[0], (h / patch) * (wd / patch), o};
  std::vector<TensorPtr> in{x, view_reshape(contiguous(w), {o, w->shape()[1] * patch * patch})};
  Attrs attrs;
  epilogue_inputs(op, bias, nullptr, o, out_shape, in, attrs);
  attrs.set("patch", static_cast<double>(patch)).set("wtype", static_cast<double>(precision));
  TensorPtr out = empty_tensor(out_shape, DType::F32, x->device());
  if (out->numel() > 0) launch("conv_patch", in, {out}, attrs);
  return out;
}

}  // namespace ops
}  // namespace vl

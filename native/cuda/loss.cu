// Cross-entropy with label smoothing, soft-target cross-entropy and binary
// cross-entropy on logits, and their gradients, on CUDA, with the
// contracts of cpu/loss.cc. Kernels: cuda/kernels/cross_entropy.cuh, which the
// test suite runs through the SIMT runner against a reference. A label out of
// range is found on the device and reported after the kernel, the one time
// these ops wait for the device (as integer division does), so the error
// names the op instead of surfacing as garbage later.
#include <algorithm>
#include <climits>
#include <type_traits>

#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/cross_entropy.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kRowThreads = 128;
constexpr int kThreads = 256;

unsigned elementwise_blocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192)); }

// Runs launch(flag, stream), then fails if the kernel flagged a label.
template <typename Launch>
void with_label_check(const KernelCall& c, int64_t K, const char* op, Launch launch) {
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  int* flag = error_flag(dev);
  VL_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream), dev);
  launch(flag, stream);
  check_launch(op, dev);
  int host_flag = 0;
  VL_CUDA_CHECK(cudaMemcpyAsync(&host_flag, flag, sizeof(int), cudaMemcpyDeviceToHost, stream), dev);
  VL_CUDA_CHECK(cudaStreamSynchronize(stream), dev);
  if (host_flag) fail(ErrorCode::Argument, op, ": a label is out of range for ", K, " classes (expected 0 <= label < ", K, ")");
}

template <typename F>
void by_label_type(const TensorArg& labels, F f) {
  if (labels.dtype == DType::I32)
    f(static_cast<const int32_t*>(labels.data));
  else
    f(static_cast<const int64_t*>(labels.data));
}

// in: logits [B, K], labels [B] (i32/i64); out: loss [B], lse [B]; attrs: smoothing
void cross_entropy(const KernelCall& c) {
  const TensorArg& logits = c.in[0];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  VL_CHECK(K <= INT_MAX && B <= INT_MAX, ErrorCode::Shape, "cross_entropy: at most ", INT_MAX, " rows and classes on CUDA");
  const float eps = static_cast<float>(c.attrs.num("smoothing"));
  with_label_check(c, K, "cross_entropy", [&](int* flag, cudaStream_t stream) {
    by_label_type(c.in[1], [&](auto labels) {
      using L = std::remove_const_t<std::remove_pointer_t<decltype(labels)>>;
      kernels::cross_entropy_rows<kRowThreads, L><<<static_cast<unsigned>(B), kRowThreads, 0, stream>>>(
          static_cast<const float*>(logits.data), labels, static_cast<float*>(c.out[0].data),
          static_cast<float*>(c.out[1].data), static_cast<int>(K), eps, flag);
    });
  });
}

// in: dloss [B], logits [B, K], lse [B], labels [B]; out: dlogits [B, K]
void cross_entropy_backward(const KernelCall& c) {
  const TensorArg& logits = c.in[1];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  VL_CHECK(K <= INT_MAX, ErrorCode::Shape, "cross_entropy_backward: at most ", INT_MAX, " classes on CUDA");
  const float eps = static_cast<float>(c.attrs.num("smoothing"));
  const unsigned blocks = elementwise_blocks(B * K);
  with_label_check(c, K, "cross_entropy_backward", [&](int* flag, cudaStream_t stream) {
    by_label_type(c.in[3], [&](auto labels) {
      using L = std::remove_const_t<std::remove_pointer_t<decltype(labels)>>;
      kernels::cross_entropy_backward_elems<L><<<blocks, kThreads, 0, stream>>>(
          static_cast<const float*>(c.in[0].data), static_cast<const float*>(logits.data),
          static_cast<const float*>(c.in[2].data), labels, static_cast<float*>(c.out[0].data), B, static_cast<int>(K),
          eps, flag);
    });
  });
}

// in: logits [B, K], targets [B, K]; out: loss [B], lse [B]
void soft_cross_entropy(const KernelCall& c) {
  const TensorArg& logits = c.in[0];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  VL_CHECK(K <= INT_MAX && B <= INT_MAX, ErrorCode::Shape, "soft_cross_entropy: at most ", INT_MAX,
           " rows and classes on CUDA");
  const int dev = c.device.index;
  kernels::soft_cross_entropy_rows<kRowThreads><<<static_cast<unsigned>(B), kRowThreads, 0, current_stream(dev)>>>(
      static_cast<const float*>(logits.data), static_cast<const float*>(c.in[1].data),
      static_cast<float*>(c.out[0].data), static_cast<float*>(c.out[1].data), static_cast<int>(K));
  check_launch("soft_cross_entropy", dev);
}

// in: dloss [B], logits [B, K], lse [B], targets [B, K]; out: dlogits [B, K]
void soft_cross_entropy_backward(const KernelCall& c) {
  const TensorArg& logits = c.in[1];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  VL_CHECK(K <= INT_MAX && B <= INT_MAX, ErrorCode::Shape, "soft_cross_entropy_backward: at most ", INT_MAX,
           " rows and classes on CUDA");
  const int dev = c.device.index;
  kernels::soft_cross_entropy_backward_rows<kRowThreads>
      <<<static_cast<unsigned>(B), kRowThreads, 0, current_stream(dev)>>>(
          static_cast<const float*>(c.in[0].data), static_cast<const float*>(logits.data),
          static_cast<const float*>(c.in[2].data), static_cast<const float*>(c.in[3].data),
          static_cast<float*>(c.out[0].data), static_cast<int>(K));
  check_launch("soft_cross_entropy_backward", dev);
}

// in: logits, targets (same shape); out: loss
void bce_with_logits(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::bce_with_logits<<<elementwise_blocks(n), kThreads, 0, current_stream(dev)>>>(
      static_cast<const float*>(c.in[0].data), static_cast<const float*>(c.in[1].data),
      static_cast<float*>(c.out[0].data), n);
  check_launch("bce_with_logits", dev);
}

// in: dloss, logits, targets; out: dlogits
void bce_with_logits_backward(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::bce_with_logits_backward<<<elementwise_blocks(n), kThreads, 0, current_stream(dev)>>>(
      static_cast<const float*>(c.in[0].data), static_cast<const float*>(c.in[1].data),
      static_cast<const float*>(c.in[2].data), static_cast<float*>(c.out[0].data), n);
  check_launch("bce_with_logits_backward", dev);
}

}  // namespace

VL_REGISTER_KERNEL(cross_entropy, CUDA, cross_entropy);
VL_REGISTER_KERNEL(cross_entropy_backward, CUDA, cross_entropy_backward);
VL_REGISTER_KERNEL(soft_cross_entropy, CUDA, soft_cross_entropy);
VL_REGISTER_KERNEL(soft_cross_entropy_backward, CUDA, soft_cross_entropy_backward);
VL_REGISTER_KERNEL(bce_with_logits, CUDA, bce_with_logits);
VL_REGISTER_KERNEL(bce_with_logits_backward, CUDA, bce_with_logits_backward);

}  // namespace cuda
}  // namespace vl

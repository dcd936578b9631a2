// The SIMT runner: executes kernels written against native/cuda/simt.cuh on
// the CPU. Blocks run one after another; the threads of a block are fibers
// (ucontext) that run until they reach a barrier or a warp collective, which
// completes once every thread of the block (or lane of the warp) is there.
// Divergent barriers and deadlocks are errors, as they are bugs on a GPU.
#pragma once
#include <functional>

namespace vl {
namespace simt {

struct Dim {
  int x = 1, y = 1;
};

// Runs `body` (the kernel call) once per thread of every block. Throws
// std::runtime_error naming the block and threads when a barrier or warp
// collective cannot complete, or with the message of an exception a thread threw.
void launch(Dim grid, Dim block, const std::function<void()>& body);

}  // namespace simt
}  // namespace vl

// Runtime queries and settings: backends, memory counters, threads, ISA,
// and timing marks on device streams.
#include <memory>

#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "core/backend.h"
#include "core/cpu_features.h"
#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace vl {
namespace binding {
namespace {

struct TimingMarkHandle {
  Device device;
  TimingMarkPtr mark;
};

// recordEvent(device) -> an opaque mark queued on the device's stream.
Napi::Value record_event(const Napi::CallbackInfo& info) {
  Args a{info, "recordEvent"};
  const Device device = a.device(0);
  auto* h = new TimingMarkHandle{device, backend_for(device).record_timing(device)};
  return Napi::External<TimingMarkHandle>::New(info.Env(), h, [](Napi::Env, TimingMarkHandle* p) { delete p; });
}

const TimingMarkHandle& mark_arg(const Args& a, size_t i, const char* name) {
  VL_CHECK(a.at(i).IsExternal(), ErrorCode::Argument, a.fn, ": ", name, " must be an event from recordEvent()");
  return *a.at(i).As<Napi::External<TimingMarkHandle>>().Data();
}

// eventElapsed(start, end) -> Promise<number>: milliseconds of device time
// between two marks of one device, once the device has reached `end`.
Napi::Value event_elapsed(const Napi::CallbackInfo& info) {
  Args a{info, "elapsedTime"};
  const TimingMarkHandle& start = mark_arg(a, 0, "start");
  const TimingMarkHandle& end = mark_arg(a, 1, "end");
  VL_CHECK(start.device == end.device, ErrorCode::Device, "elapsedTime: both events must be on one device, got ",
           start.device.str(), " and ", end.device.str());
  Napi::Env env = info.Env();
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  CompletionTsfn tsfn = begin_completion(env);
  // Queued after both marks, so both were recorded when it runs.
  TimingMarkPtr s = start.mark, e = end.mark;
  backend_for(end.device).stream(end.device).submit([tsfn, deferred, s, e] {
    auto ms = std::make_shared<double>(0.0);
    std::string error;
    try {
      *ms = e->elapsed_ms_since(*s);
    } catch (const std::exception& ex) {
      error = ex.what();
    }
    post_completion(tsfn, new Completion{error, [deferred, ms](Napi::Env env2, const std::string& err) {
                                           if (err.empty())
                                             deferred->Resolve(Napi::Number::New(env2, *ms));
                                           else
                                             deferred->Reject(make_error(env2, ErrorCode::Runtime, err).Value());
                                         }});
  });
  return deferred->Promise();
}

Napi::Object stats_object(Napi::Env env, MemoryStats& s) {
  Napi::Object o = Napi::Object::New(env);
  auto set = [&](const char* k, const std::atomic<int64_t>& v) { o.Set(k, Napi::Number::New(env, static_cast<double>(v.load()))); };
  set("tensors", s.live_tensors);
  set("bytes", s.live_bytes);
  set("allocatedBytes", s.allocated_bytes);
  set("peakAllocatedBytes", s.peak_allocated_bytes);
  set("reservedBytes", s.reserved_bytes);
  set("cachedBytes", s.cached_bytes);
  set("allocations", s.allocations);
  set("gcReleased", s.gc_released);
  return o;
}

// memory() -> { cpu: {...}, 'cuda:0': {...}, ... }
Napi::Value memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (int t = 0; t < kNumDeviceTypes; ++t) {
    Backend* b = find_backend(static_cast<DeviceType>(t));
    if (!b) continue;
    const int n = b->device_count();
    for (int i = 0; i < n; ++i) {
      const Device d{static_cast<DeviceType>(t), i};
      out.Set(d.str(), stats_object(env, b->stats(d)));
    }
  }
  return out;
}

Napi::Value backend_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  for (int t = 0; t < kNumDeviceTypes; ++t) {
    const DeviceType type = static_cast<DeviceType>(t);
    Backend* b = find_backend(type);
    Napi::Object o = Napi::Object::New(env);
    o.Set("built", Napi::Boolean::New(env, b != nullptr));
    const int count = b ? b->device_count() : 0;
    o.Set("available", Napi::Boolean::New(env, count > 0));
    o.Set("deviceCount", Napi::Number::New(env, count));
    o.Set("reason", Napi::String::New(env, !b ? "not built (build with `npm run build:cuda`)" : b->unavailable_reason()));
    Napi::Array names = Napi::Array::New(env);
    for (int i = 0; i < count; ++i) names.Set(static_cast<uint32_t>(i), Napi::String::New(env, b->device_name(i)));
    o.Set("devices", names);
    Napi::Array ops = Napi::Array::New(env);
    uint32_t k = 0;
    for (const auto& name : registered_ops(type)) ops.Set(k++, Napi::String::New(env, name));
    o.Set("kernels", ops);
    out.Set(device_type_name(type), o);
  }
  return out;
}

Napi::Value cpu_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", Napi::String::New(env, isa_name(active_isa())));
  Napi::Array supported = Napi::Array::New(env);
  uint32_t k = 0;
  for (CpuIsa isa : supported_isas()) supported.Set(k++, Napi::String::New(env, isa_name(isa)));
  o.Set("supportedIsas", supported);
  o.Set("avx512bf16", Napi::Boolean::New(env, cpu_features().avx512bf16));
  o.Set("threads", Napi::Number::New(env, num_threads()));
  return o;
}

Napi::Value set_threads(const Napi::CallbackInfo& info) {
  Args a{info, "setNumThreads"};
  const int64_t n = a.integer(0, "threads");
  VL_CHECK(n >= 1 && n <= 1024, ErrorCode::Argument, "setNumThreads: expected an integer from 1 to 1024, got ", n);
  // Let queued CPU work finish before the pool changes size.
  const Device cpu{DeviceType::CPU, 0};
  backend_for(cpu).stream(cpu).synchronize();
  set_num_threads(static_cast<int>(n));
  return info.Env().Undefined();
}

Napi::Value empty_cache(const Napi::CallbackInfo& info) {
  Args a{info, "emptyCache"};
  const Device d = a.device(0);
  Backend& b = backend_for(d);
  b.stream(d).synchronize();
  b.release_cache(d);
  return info.Env().Undefined();
}

}  // namespace

void init_runtime(Napi::Object exports) {
  VL_EXPORT(exports, "recordEvent", record_event);
  VL_EXPORT(exports, "eventElapsed", event_elapsed);
  VL_EXPORT(exports, "memory", memory);
  VL_EXPORT(exports, "backendInfo", backend_info);
  VL_EXPORT(exports, "cpuInfo", cpu_info);
  VL_EXPORT(exports, "setNumThreads", set_threads);
  VL_EXPORT(exports, "emptyCache", empty_cache);
}

VL_BINDING_MODULE(init_runtime);

}  // namespace binding
}  // namespace vl

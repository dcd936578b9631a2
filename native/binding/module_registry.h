// Binding files register their exports at load time, so adding a family of
// ops never touches addon.cc: VL_BINDING_MODULE(init_linalg);
#pragma once
#include <napi.h>

namespace vl {
namespace binding {

using ModuleInit = void (*)(Napi::Object exports);
void register_module(ModuleInit init);
void init_modules(Napi::Object exports);

#define VL_BINDING_MODULE(fn) \
  static const bool vl_binding_module_##fn = (::vl::binding::register_module(fn), true)

}  // namespace binding
}  // namespace vl

# CPU build of native/ (node-gyp; used by `npm install` when no prebuild
# matches). The CUDA build is CMakeLists.txt. SIMD kernels are compiled once
# per instruction set in their own static libraries and chosen at run time,
# so the addon loads on any x86-64 CPU.
{
  "variables": {
    "vl_common_cflags": ["-O3", "-std=c++17", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
  },
  "target_defaults": {
    "include_dirs": ["native"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["<@(vl_common_cflags)"],
    "defines": ["NAPI_VERSION=8"],
  },
  "targets": [
    {
      "target_name": "vl_simd_avx2",
      "type": "static_library",
      "sources": ["native/cpu/simd/kernels_avx2.cc"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
    },
    {
      "target_name": "vl_simd_avx512",
      "type": "static_library",
      "sources": ["native/cpu/simd/kernels_avx512.cc"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    },
    {
      "target_name": "visionllama",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/core').filter(f=>f.endsWith('.cc')).map(f=>'native/core/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/ops').filter(f=>f.endsWith('.cc')).map(f=>'native/ops/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/cpu').filter(f=>f.endsWith('.cc')).map(f=>'native/cpu/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/binding').filter(f=>f.endsWith('.cc')).map(f=>'native/binding/'+f).join(' ')\")",
        "native/cpu/simd/kernels_scalar.cc",
        "native/cpu/simd/select.cc",
      ],
      "dependencies": [
        "vl_simd_avx2",
        "vl_simd_avx512",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
      ],
      "cflags_cc": ["-pthread"],
      "ldflags": ["-pthread"],
    },
  ],
}

# CPU build of native/ (node-gyp; used by `npm install` when no prebuild
# matches). The CUDA build is CMakeLists.txt. SIMD kernels are compiled once
# per instruction set in their own static libraries and chosen at run time,
# so the addon loads on any x86-64 CPU: native/cpu/simd/*_avx2.cc,
# *_avx512.cc and *_avx512bf16.cc get their flags; the rest build plainly.
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
      "sources": ["<!@(node -p \"require('fs').readdirSync('native/cpu/simd').filter(f=>f.endsWith('_avx2.cc')).map(f=>'native/cpu/simd/'+f).join(' ')\")"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
    },
    {
      "target_name": "vl_simd_avx512",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('fs').readdirSync('native/cpu/simd').filter(f=>f.endsWith('_avx512.cc')).map(f=>'native/cpu/simd/'+f).join(' ')\")"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"],
    },
    {
      "target_name": "vl_simd_avx512bf16",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('fs').readdirSync('native/cpu/simd').filter(f=>f.endsWith('_avx512bf16.cc')).map(f=>'native/cpu/simd/'+f).join(' ')\")"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma", "-mf16c"],
    },
    {
      "target_name": "visionllama",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/core').filter(f=>f.endsWith('.cc')).map(f=>'native/core/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/ops').filter(f=>f.endsWith('.cc')).map(f=>'native/ops/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/cpu').filter(f=>f.endsWith('.cc')).map(f=>'native/cpu/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/cpu/gemm').filter(f=>f.endsWith('.cc')).map(f=>'native/cpu/gemm/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/binding').filter(f=>f.endsWith('.cc')).map(f=>'native/binding/'+f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/cpu/simd').filter(f=>f.endsWith('.cc')&&!/_(avx2|avx512|avx512bf16)\\.cc$/.test(f)).map(f=>'native/cpu/simd/'+f).join(' ')\")",
      ],
      "dependencies": [
        "vl_simd_avx2",
        "vl_simd_avx512",
        "vl_simd_avx512bf16",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except",
      ],
      "cflags_cc": ["-pthread"],
      "ldflags": ["-pthread"],
    },
  ],
}

// Pass/fail bookkeeping shared by the SIMT kernel test programs
// (native/tests/simt_*_test.cc): each prints one line per check and ends with
// "N passed, M failed", which test/simt.test.ts compares with the count it expects.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace vl {
namespace simt_test {

inline int& passed() {
  static int n = 0;
  return n;
}
inline int& failed() {
  static int n = 0;
  return n;
}

inline void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? passed() : failed())++;
}

// The larger of a running worst error and a new one, where a NaN (an
// element never written, or a NaN result) is infinitely wrong: std::max
// would keep the running value and let it pass.
inline double worse(double worst, double err) { return std::isnan(err) ? INFINITY : std::max(worst, err); }
template <typename... Errs>
double worse(double worst, double err, Errs... more) {
  return worse(worse(worst, err), more...);
}

// The summary line and the exit status of a test program.
inline int finish() {
  std::printf("%d passed, %d failed\n", passed(), failed());
  return failed() == 0 ? 0 : 1;
}

}  // namespace simt_test
}  // namespace vl

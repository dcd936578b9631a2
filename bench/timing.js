// Timing for the JavaScript-level benches: the best of repeated runs (the
// machine may be shared; the fastest run is the one least disturbed).
'use strict';

async function best(fn, seconds, minRuns = 3) {
  await fn(); // warm-up: packing, caches, allocator
  let b = Infinity, total = 0, n = 0;
  while (total < seconds * 1000 || n < minRuns) {
    const t0 = performance.now();
    await fn();
    const dt = performance.now() - t0;
    b = Math.min(b, dt);
    total += dt;
    n += 1;
  }
  return b;
}

module.exports = { best };

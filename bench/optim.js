// `npm run bench -- optim [--json] [--seconds S]`: ms per optimizer step
// over all parameters of plain-S and pyramid-S (fake gradients), fused (one
// multi-tensor kernel call per device) against the per-tensor step as the
// peer, interleaved in one process, on every backend of the machine.
'use strict';
require('../test/register-ts.js');
const vl = require('../lib/index.ts');
const { best } = require('./timing.js');

async function optimBench(args) {
  const json = args.includes('--json');
  const seconds = Number(args[args.indexOf('--seconds') + 1]) || 2;
  const kinds = {
    AdamW: (params, fused) => new vl.optim.AdamW(params, { lr: 1e-6, fused }),
    LAMB: (params, fused) => new vl.optim.Lamb(params, { lr: 1e-6, fused }),
    SGD: (params, fused) => new vl.optim.SGD(params, { lr: 1e-6, momentum: 0.9, fused }),
  };
  for (const backend of vl.backends()) {
    const device = backend === 'cpu' ? 'cpu' : `${backend}:0`;
    for (const preset of ['plain-s', 'pyramid-s']) {
      const model = vl.models.create(preset, { device });
      const params = [...model.namedParameters()];
      let numel = 0;
      params.forEach(([, p], i) => {
        p.grad = vl.keep(vl.randn([...p.shape], { seed: i, device }));
        numel += p.shape.reduce((a, b) => a * b, 1);
      });
      for (const [kind, make] of Object.entries(kinds)) {
        // Both optimizers update the same parameters (lr is tiny; only the time matters).
        const opts = { fused: make(params, true), unfused: make(params, false) };
        const step = (opt) => async () => {
          opt.step();
          await vl.synchronize(device);
        };
        const ms = { fused: Infinity, unfused: Infinity };
        for (let round = 0; round < 2; ++round) {
          ms.fused = Math.min(ms.fused, await best(step(opts.fused), seconds / 2, 3));
          ms.unfused = Math.min(ms.unfused, await best(step(opts.unfused), seconds / 2, 3));
        }
        const row = {
          bench: 'optim', case: `${kind} step ${preset} (${params.length} tensors, ${(numel / 1e6).toFixed(1)}M values) on ${device}`,
          ours_ms: +ms.fused.toFixed(3), peer: 'per-tensor step (one kernel call per parameter)', peer_ms: +ms.unfused.toFixed(3),
          ratio: +(ms.unfused / ms.fused).toFixed(3), gflops: null, tensors: params.length, values: numel,
          threads: vl.cpuInfo().threads,
        };
        console.log(json ? JSON.stringify(row) : `${row.case.padEnd(60)} fused ${row.ours_ms} ms  per-tensor ${row.peer_ms} ms  x${row.ratio}`);
        opts.fused.dispose();
        opts.unfused.dispose();
      }
      for (const [, p] of params) p.grad?.dispose();
      model.dispose();
    }
  }
}

module.exports = { optimBench };

// `npm run bench -- train [--json] [--seconds S] [--preset plain-s] [--batch 8]`:
// training images/s (forward + backward + AdamW step) at 224x224, ours
// against PyTorch on the CPU (Debian python3-torch, bench/train_torch.py with
// the same model from ../shared/tools/reference.py), measured in turns in the
// same run. Peak RSS is reported for both processes.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');
require('../test/register-ts.js');
const vl = require('../lib/index.ts');

const root = path.join(__dirname, '..');

function torchRun(preset, batch, steps, threads) {
  const arch = preset.startsWith('pyramid') ? 'pyramid' : 'plain';
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'train_torch.py'), '--arch', arch, '--batch', String(batch),
    '--steps', String(steps), '--threads', String(threads)], {
    encoding: 'utf8', env: { ...process.env, OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? 'SkylakeX' },
  });
  if (r.status !== 0) throw new Error(`bench train: the PyTorch peer failed (apt-get install python3-torch):\n${r.stderr}`);
  const line = r.stdout.trim().split('\n').pop();
  return JSON.parse(line);
}

// The best milliseconds per step (forward, backward, optimizer) of `steps`, after a
// warm-up step; the batch is made on the default device.
async function trainStepMs(model, opt, batch, steps) {
  const x = vl.randn([batch, 3, 224, 224], { seed: 1 });
  const labels = Int32Array.from({ length: batch }, (_, i) => (i * 7) % 1000);
  const step = async () => {
    const loss = vl.tidy(() => {
      const l = vl.nn.crossEntropy(model.forward(x), labels);
      l.backward();
      return l.detach();
    });
    opt.step();
    opt.zeroGrad();
    await loss.data();
    loss.dispose();
  };
  await step();  // warm-up: allocator caches
  let best = Infinity;
  for (let i = 0; i < steps; ++i) {
    const t0 = performance.now();
    await step();
    best = Math.min(best, performance.now() - t0);
  }
  x.dispose();
  return best;
}

async function trainBench(args) {
  const json = args.includes('--json');
  const opt = (name, d) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : d);
  const preset = opt('preset', 'plain-s');
  const batch = Number(opt('batch', 8));
  const steps = Number(opt('steps', 4));
  const threads = vl.cpuInfo().threads;
  const model = vl.models.create(preset).train();
  const adamw = new vl.optim.AdamW(model.namedParameters(), { lr: 1e-4, weightDecay: 0.05 });
  let ours = Infinity, torch = null;
  for (let round = 0; round < 2; ++round) {
    ours = Math.min(ours, await trainStepMs(model, adamw, batch, steps));
    // PyTorch at its best thread count (on a loaded 2-core machine 1 thread can win).
    for (const n of new Set([1, threads])) {
      const t = torchRun(preset, batch, steps, n);
      if (!torch || t.ms_per_step_best < torch.ms_per_step_best) torch = t;
    }
  }
  const row = {
    bench: 'train', case: `${preset} batch ${batch} 224x224 fwd+bwd+AdamW`, ours_ms: +ours.toFixed(1),
    peer: `pytorch ${torch.torch} (${torch.threads} threads)`, peer_ms: +torch.ms_per_step_best.toFixed(1),
    ratio: +(torch.ms_per_step_best / ours).toFixed(3), gflops: null,
    ours_img_s: +(1000 * batch / ours).toFixed(2), peer_img_s: +(1000 * batch / torch.ms_per_step_best).toFixed(2),
    ours_peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024), peer_peak_rss_mb: torch.peak_rss_mb,
  };
  console.log(json ? JSON.stringify(row) : `${row.case}: ours ${row.ours_img_s} img/s (${row.ours_peak_rss_mb} MB peak RSS), PyTorch ${row.peer_img_s} img/s (${row.peer_peak_rss_mb} MB), x${row.ratio}`);
  adamw.dispose();
  model.dispose();
}

module.exports = { trainBench, trainStepMs };

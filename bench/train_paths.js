#!/usr/bin/env node
// Timings of the CPU paths a training step leans on besides the forward
// GEMMs: broadcasting elementwise ops, sums over leading dims (bias
// gradients), weight-gradient GEMMs with a transposed A, transposing copies.
//
//   node bench/train_paths.js [ADDON.node ...] [--rounds R] [--threads N]
//
// With addon paths (e.g. a build of another commit), each is loaded through
// VLLAMA_ADDON in its own child process; the children run in turns, R rounds,
// and each case reports its best time per addon (the machine may be shared:
// the fastest run is the one least disturbed). Without, the local build.
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.join(__dirname, '..');

async function child(threads) {
  require(path.join(root, 'test', 'register-ts.js'));
  const vl = require(path.join(root, 'lib', 'index.ts'));
  if (threads) vl.setNumThreads(threads);
  const x = vl.randn([128, 50, 96], { seed: 1 });
  const gam = vl.randn([96], { seed: 2 });
  const s = vl.randn([128, 1, 1], { seed: 3 });
  const g = vl.randn([6400, 288], { seed: 4 });
  const b288 = vl.randn([288], { seed: 5 });
  const xx = vl.randn([6400, 96], { seed: 6 });
  const w = vl.randn([288, 96], { seed: 7 });
  const gt = g.transpose().contiguous();
  const w2 = vl.randn([96, 6400], { seed: 8 });
  const p32 = vl.ops.packLinear(w2);
  const p16 = vl.ops.packLinear(w2, { dtype: 'bf16' });
  const cases = [
    ['x.mul(x)  [128,50,96]', () => x.mul(x)],
    ['x.mul(gam)  gam [96]', () => x.mul(gam)],
    ['gam.sub(x)', () => gam.sub(x)],
    ['x.mul(s)  s [128,1,1]', () => x.mul(s)],
    ['x.mul(2)  scalar', () => x.mul(2)],
    ['g.add(b)  [6400,288] + [288]', () => g.add(b288)],
    ['x.sum([0,1])', () => x.sum([0, 1])],
    ['x.sum([0,1], keepdim)', () => x.sum([0, 1], { keepdim: true })],
    ['g.sum(0)  [6400,288]', () => g.sum(0)],
    ['g.sum(1)  (row sums, reference)', () => g.sum(1)],
    ['matmul(g^T, xx)  dW 288x96x6400', () => vl.ops.matmul(g.transpose(), xx)],
    ['matmul(contig g^T, xx)', () => vl.ops.matmul(gt, xx)],
    ['linear(xx, w)  6400x288x96', () => vl.ops.linear(xx, w)],
    ['linear(g^T, packed f32)', () => vl.ops.linear(g.transpose(), p32)],
    ['linear(g^T, packed bf16)', () => vl.ops.linear(g.transpose(), p16)],
    ['linear(contig g^T, packed bf16)', () => vl.ops.linear(gt, p16)],
    ['g.transpose().contiguous()', () => g.transpose().contiguous()],
    ['xx.transpose().contiguous()', () => xx.transpose().contiguous()],
  ];
  const out = {};
  for (const [name, fn] of cases) {
    for (let i = 0; i < 3; ++i) { const t = fn(); await vl.synchronize(); t.dispose(); }
    let best = Infinity;
    for (let i = 0; i < 15; ++i) {
      const t0 = performance.now();
      const t = fn();
      await vl.synchronize();
      best = Math.min(best, performance.now() - t0);
      t.dispose();
    }
    out[name] = best;
  }
  process.stdout.write(JSON.stringify(out));
}

function main() {
  const args = process.argv.slice(2);
  let rounds = 3, threads = 0;
  const addons = [];
  for (let i = 0; i < args.length; ++i) {
    if (args[i] === '--rounds') rounds = Number(args[++i]);
    else if (args[i] === '--threads') threads = Number(args[++i]);
    else addons.push(path.resolve(args[i]));
  }
  const labels = addons.length ? addons : ['local build'];
  const best = labels.map(() => ({}));
  for (let r = 0; r < rounds; ++r) {
    labels.forEach((label, j) => {
      const env = { ...process.env, VL_TRAIN_PATHS_CHILD: String(threads) };
      if (addons.length) env.VLLAMA_ADDON = label;
      const res = spawnSync(process.execPath, [__filename], { env, encoding: 'utf8' });
      if (res.status !== 0) throw new Error(`${label}: ${res.stderr}`);
      for (const [k, v] of Object.entries(JSON.parse(res.stdout))) best[j][k] = Math.min(best[j][k] ?? Infinity, v);
    });
  }
  labels.forEach((l, j) => console.log(`[${j}] ${l}`));
  console.log('case'.padEnd(36) + labels.map((_, j) => `[${j}] ms`.padStart(10)).join(''));
  for (const k of Object.keys(best[0])) console.log(k.padEnd(36) + best.map((b) => b[k].toFixed(3).padStart(10)).join(''));
}

if (process.env.VL_TRAIN_PATHS_CHILD !== undefined) child(Number(process.env.VL_TRAIN_PATHS_CHILD)).catch((e) => { console.error(e); process.exit(1); });
else main();

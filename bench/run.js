#!/usr/bin/env node
// Benchmarks (never part of `npm test`).
//
//   npm run bench -- kernels [--json] [--threads N] [--seconds S] [--filter TEXT] [--no-peer] [--blocking MC,NC,KC]
//
// `kernels` builds bench/native/gemm_bench.cc with g++ against the GEMM
// sources of the addon (each per-ISA file with the flags binding.gyp gives
// it) and OpenBLAS, then runs our GEMM and OpenBLAS sgemm at the model
// shapes in one process, with the same thread count, interleaved. Output:
// one JSON object per line with --json, else a table.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const outDir = path.join(root, 'build', 'bench');

function usage(code) {
  console.error('usage: npm run bench -- kernels [--json] [--threads N] [--seconds S] [--filter TEXT] [--no-peer] [--blocking MC,NC,KC]\n       npm run bench -- attention [--json] [--seconds S]\n       npm run bench -- model [--json] [--seconds S]\n       npm run bench -- cuda [--json] [--seconds S] [--peak-tflops T] [--no-cpu-peer]\n       npm run bench -- train [--json] [--preset plain-s] [--batch 8] [--steps 4]\n       npm run bench -- serve [--json] [--preset pyramid-s] [--seconds 10] [--warmup 4] [--max-wait-ms 5]\n       npm run bench -- optim [--json] [--seconds S]');
  process.exit(code);
}

// ISA flags per source suffix, read from binding.gyp so the bench compiles
// the kernels exactly as the addon does.
function isaFlags() {
  const gyp = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
  const flags = {};
  for (const isa of ['avx2', 'avx512', 'avx512bf16']) {
    const m = new RegExp(`"target_name":\\s*"vl_simd_${isa}"[\\s\\S]*?"cflags_cc":\\s*\\[([^\\]]*)\\]`).exec(gyp);
    if (!m) throw new Error(`bench: could not find the flags of vl_simd_${isa} in binding.gyp`);
    flags[isa] = [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
  }
  return flags;
}

function sources() {
  const simd = path.join(root, 'native', 'cpu', 'simd');
  const list = [
    ['native/cpu/gemm/gemm.cc', []],
    ['native/core/thread_pool.cc', []],
    ['native/core/cpu_features.cc', []],
    ['native/core/error.cc', []],
    ['bench/native/fma_peak.cc', []],
    ['bench/native/gemm_bench.cc', []],
  ];
  const flags = isaFlags();
  // gemm.cc reaches the per-ISA elementwise table too (select.cc, kernels_*.cc).
  for (const f of fs.readdirSync(simd).filter((f) => /^(gemm_|kernels_|select\.cc$)/.test(f) && f.endsWith('.cc')).sort()) {
    const m = /_(avx2|avx512|avx512bf16)\.cc$/.exec(f);
    list.push([`native/cpu/simd/${f}`, m ? flags[m[1]] : []]);
  }
  return list;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw r.error;
  return r;
}

function haveOpenBlas() {
  const probe = path.join(outDir, 'openblas_probe.cc');
  fs.writeFileSync(probe, '#include <cblas.h>\nint main() { openblas_get_config(); return 0; }\n');
  const r = run('g++', [probe, '-o', path.join(outDir, 'openblas_probe'), '-lopenblas']);
  return r.status === 0;
}

const OPENBLAS_HELP = [
  'bench: OpenBLAS (the peer) was not found: <cblas.h> and libopenblas are needed to build the benchmark.',
  'Install it with:',
  '  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y libopenblas-dev',
  '  Fedora/RHEL:    sudo dnf install openblas-devel',
  'or run without the peer: npm run bench -- kernels --no-peer',
].join('\n');

function build(peer) {
  fs.mkdirSync(path.join(outDir, 'obj'), { recursive: true });
  if (peer && !haveOpenBlas()) {
    console.error(OPENBLAS_HELP);
    process.exit(1);
  }
  const exe = path.join(outDir, peer ? 'gemm_bench' : 'gemm_bench_nopeer');
  const common = ['-O3', '-std=c++17', '-pthread', `-I${path.join(root, 'native')}`, `-I${path.join(root, 'bench', 'native')}`];
  if (!peer) common.push('-DVL_BENCH_NO_PEER');
  const headers = [];
  for (const dir of ['native/core', 'native/cpu/gemm', 'native/cpu/simd', 'bench/native']) {
    for (const f of fs.readdirSync(path.join(root, dir))) if (f.endsWith('.h')) headers.push(path.join(root, dir, f));
  }
  const newestHeader = Math.max(...headers.map((h) => fs.statSync(h).mtimeMs));
  const objs = [];
  const jobs = [];
  for (const [src, flags] of sources()) {
    const obj = path.join(outDir, 'obj', `${src.replace(/[\\/]/g, '_')}${peer ? '' : '.nopeer'}.o`);
    objs.push(obj);
    const srcTime = Math.max(fs.statSync(path.join(root, src)).mtimeMs, newestHeader);
    if (fs.existsSync(obj) && fs.statSync(obj).mtimeMs > srcTime) continue;
    jobs.push([...common, ...flags, '-c', path.join(root, src), '-o', obj]);
  }
  // Compile in parallel, one g++ per CPU.
  const width = Math.max(1, os.availableParallelism ? os.availableParallelism() : os.cpus().length);
  const { spawn } = require('child_process');
  return new Promise((resolve, reject) => {
    let next = 0, running = 0, failed = false;
    const pump = () => {
      if (failed) return;
      if (next >= jobs.length && running === 0) {
        const link = run('g++', [...objs, '-o', exe, '-pthread', ...(peer ? ['-lopenblas'] : [])]);
        if (link.status !== 0) return reject(new Error(`bench: link failed\n${link.stderr}`));
        return resolve(exe);
      }
      while (running < width && next < jobs.length) {
        const args = jobs[next++];
        running++;
        const p = spawn('g++', args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        p.stderr.on('data', (d) => { err += d; });
        p.on('close', (code) => {
          running--;
          if (code !== 0) {
            failed = true;
            return reject(new Error(`bench: g++ ${args.join(' ')} failed\n${err}`));
          }
          pump();
        });
      }
    };
    pump();
  });
}

function table(rows) {
  const peak = rows.find((r) => r.bench === 'fma_peak');
  if (peak) {
    console.log(`FMA peak: ${peak.gflops} GFLOP/s (${peak.case}); kernels ${peak.kernels}, tile ${peak.tile}, bf16 tile ${peak.bf16_tile}, ${peak.blocking}`);
    if (peak.openblas) console.log(`peer: ${peak.openblas}`);
  }
  const fmt = (v, d = 2) => (v === null || v === undefined ? '-' : Number(v).toFixed(d));
  const lines = [['bench', 'case', 'ours ms', 'peer', 'peer ms', 'ratio', 'GFLOP/s', '% peak']];
  for (const r of rows.filter((x) => x.bench !== 'fma_peak')) {
    lines.push([r.bench, r.case, fmt(r.ours_ms, 3), r.peer ?? '-', fmt(r.peer_ms, 3), fmt(r.ratio), fmt(r.gflops, 1),
      fmt(r.pct_peak ?? r.pct_f32_peak, 1)]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((l) => String(l[i]).length)));
  for (const l of lines) console.log(l.map((c, i) => (i === 1 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '));
  console.log('ratio = peer_ms / ours_ms (> 1: ours is faster); gemm_bf16 rows compare bf16 weights with our f32.');
}

async function kernels(args) {
  const json = args.includes('--json');
  const peer = !args.includes('--no-peer');
  const pass = args.filter((a) => a !== '--json');
  const threadsAt = pass.indexOf('--threads');
  const threads = threadsAt >= 0 ? pass[threadsAt + 1] : String(os.availableParallelism ? os.availableParallelism() : os.cpus().length);
  if (threadsAt < 0) pass.push('--threads', threads);
  const exe = await build(peer);
  // OpenBLAS's AVX-512 kernels (its dynamic detection may pick older ones on
  // new CPUs) and the same thread count as ours. OPENBLAS_THREAD_TIMEOUT=4:
  // idle OpenBLAS workers go to sleep at once instead of spinning for ~2^28
  // cycles, which would take a core from every run of ours interleaved with
  // theirs (measured: ~1.8x slower); OpenBLAS's own times do not change.
  const env = {
    ...process.env, OPENBLAS_CORETYPE: 'SkylakeX', OPENBLAS_THREAD_TIMEOUT: '4',
    OPENBLAS_NUM_THREADS: threads, VLLAMA_NUM_THREADS: threads,
  };
  const { spawn } = require('child_process');
  const child = spawn(exe, pass, { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const rows = [];
  let buffered = '';
  child.stdout.on('data', (d) => {
    buffered += d;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.trim()) continue;
      if (json) console.log(line);
      else {
        const r = JSON.parse(line);
        rows.push(r);
        process.stderr.write(`  ${r.bench} ${r.case}\n`);
      }
    }
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  if (!json) table(rows);
  process.exit(code ?? 1);
}

async function main() {
  const [what, ...rest] = process.argv.slice(2);
  if (what === 'kernels') return kernels(rest);
  if (what === 'attention') return require('./attention.js').attentionBench(rest);
  if (what === 'model') return require('./model.js').modelBench(rest);
  if (what === 'cuda') return require('./cuda.js').cudaBench(rest);
  if (what === 'train') return require('./train.js').trainBench(rest);
  if (what === 'serve') return require('./serve.js').serveBench(rest);
  if (what === 'optim') return require('./optim.js').optimBench(rest);
  usage(what === undefined || what === '--help' ? 0 : 2);
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});

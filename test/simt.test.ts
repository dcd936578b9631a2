// The CUDA kernels written against native/cuda/simt.cuh, run on the CPU
// through the SIMT runner (every thread a fiber), against plain references.
// Each program in native/tests/simt_*_test.cc prints a line per check and a
// summary; the expected count catches checks that silently stopped running.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repoRoot } from './helpers';

const programs: [string, string, number][] = [
  ['simt_attention_test.cc', 'runner ldmatrix_x4_trans; fused AS2DRoPE flash attention forward and backward (3xbf16, bf16, f16; cp.async and plain loads) and its Hopper wgmma forward (warp-specialized: bulk copies on mbarriers, ping-pong warpgroups; 3xbf16, bf16, f16) and wgmma backward kernels (dq; dk/dv up to D 96)', 101],
  ['simt_ops_test.cc', 'runner mechanics (barriers, shuffles, votes, ldmatrix, divergence errors); softmax, LayerNorm, activations, cross-entropy (hard, soft targets, BCE), AdamW, SGD, LAMB, multi-tensor AdamW/SGD/LAMB against the per-tensor kernels, loss-scaling unscale and skipped updates, sum of squares, in-place helpers, binary ops, sum, copy, copy_into, windows', 124],
  ['simt_gemm_test.cc', 'tensor-core GEMMs: baseline mma tile; cp.async, f16 pack and f16 mma mechanics; pipelined GEMM in 3-pass f32, 1-pass bf16 and f16, packed bf16 and f16, SwiGLU, batched and patch variants; wgmma mechanics (N 32, 96, 256) and misuse errors; TMA boxes (128B swizzle, edges, late landing) and bulk copies, mbarrier phases, named barriers and misuse errors; the Hopper GEMM (TMA-fed, warp-specialized wgmma) on packed bf16 and f16, SwiGLU, and on f32 operands (per-call B pack; the 3-pass split on hi and lo planes, 1-pass bf16 and f16), the split pack layout', 84],
];

test.each(programs)('SIMT runner: %s (%s)', (file, _what, expected) => {
  const native = path.join(repoRoot, 'native');
  const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vl-simt-')), path.basename(file, '.cc'));
  const sources = [`tests/${file}`, 'tests/simt_runner.cc'].map((s) => path.join(native, s));
  const build = spawnSync('g++', ['-std=c++17', '-O1', '-Wall', '-Werror', `-I${native}`, ...sources, '-o', exe], { encoding: 'utf8' });
  expect(build.stderr).toBe('');
  expect(build.status).toBe(0);
  const run = spawnSync(exe, { encoding: 'utf8' });
  expect(run.stdout).not.toMatch(/^FAIL/m);
  expect(run.stdout).toMatch(new RegExp(`^${expected} passed, 0 failed$`, 'm'));
  expect(run.status).toBe(0);
});

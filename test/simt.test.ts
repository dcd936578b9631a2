// The CUDA kernels written against native/cuda/simt.cuh, run on the CPU
// through the SIMT runner (every thread a fiber), against plain references.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repoRoot } from './helpers';

test('SIMT runner: barriers, shuffles, votes, ldmatrix, divergence errors; softmax, LayerNorm, activation, SwiGLU-gate and cross-entropy kernels (forward and backward), AdamW, binary elementwise ops, sum and copy, tensor-core GEMM', () => {
  const native = path.join(repoRoot, 'native');
  const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vl-simt-')), 'simt_test');
  const sources = ['tests/simt_test.cc', 'tests/simt_runner.cc'].map((s) => path.join(native, s));
  const build = spawnSync('g++', ['-std=c++17', '-O1', '-Wall', '-Werror', `-I${native}`, ...sources, '-o', exe], { encoding: 'utf8' });
  expect(build.stderr).toBe('');
  expect(build.status).toBe(0);
  const run = spawnSync(exe, { encoding: 'utf8' });
  expect(run.stdout).not.toMatch(/^FAIL/m);
  expect(run.stdout).toMatch(/^93 passed, 0 failed$/m);
  expect(run.status).toBe(0);
});

// Unit tests of native/core pieces that need no addon (the caching allocator
// behind CUDA memory, driven by a fake device allocator): compiled and run here.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repoRoot } from './helpers';

test('caching allocator: buckets, reuse, OOM retry, counters', () => {
  const exe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vl-core-')), 'caching_allocator_test');
  const sources = ['tests/caching_allocator_test.cc', 'core/caching_allocator.cc', 'core/error.cc', 'core/device.cc']
    .map((f) => path.join(repoRoot, 'native', f));
  const build = spawnSync('g++', ['-std=c++17', '-O1', '-Wall', '-Werror', `-I${path.join(repoRoot, 'native')}`, ...sources, '-lpthread', '-o', exe], { encoding: 'utf8' });
  expect(build.stderr).toBe('');
  expect(build.status).toBe(0);
  const run = spawnSync(exe, { encoding: 'utf8' });
  expect(run.stdout).toMatch(/^(\d+) passed, 0 failed$/m);
  expect(run.status).toBe(0);
});

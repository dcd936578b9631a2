/** Shared test utilities: child processes with their own environment, value checks. */
import { spawnSync } from 'child_process';
import * as path from 'path';

export const repoRoot = path.join(__dirname, '..');

/**
 * Runs a JavaScript snippet in a fresh Node process with extra environment
 * variables (for settings read once at load: thread count, ISA, devices).
 */
export function runNode(script: string, env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['-e', script], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A snippet prelude that makes `vl` the package, loaded from the TypeScript sources. */
export const requireLib = `
require(${JSON.stringify(path.join(__dirname, 'register-ts.js'))});
const vl = require(${JSON.stringify(path.join(repoRoot, 'lib', 'index.ts'))});
`;

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

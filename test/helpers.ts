/** Shared test utilities: child processes with their own environment, value checks, per-backend suites. */
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as vl from '../lib';

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
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A snippet prelude that makes `vl` the package, loaded from the TypeScript sources. */
export const requireLib = `
require(${JSON.stringify(path.join(__dirname, 'register-ts.js'))});
const vl = require(${JSON.stringify(path.join(repoRoot, 'lib', 'index.ts'))});
`;

/** Central differences of f at `at` (float64), one coordinate at a time. */
export function finiteDiff(f: (v: Float64Array) => number, at: ArrayLike<number>, h = 1e-6): Float64Array {
  const v = Float64Array.from(at);
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; ++i) {
    const keep = v[i];
    v[i] = keep + h;
    const up = f(v);
    v[i] = keep - h;
    const down = f(v);
    v[i] = keep;
    out[i] = (up - down) / (2 * h);
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; ++i) s += a[i] * b[i];
  return s;
}

// erf to ~1e-13 by its Taylor series (|x| < 3) and the continued fraction beyond.
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    let term = ax, sum = ax;
    for (let n = 1; n < 80; ++n) {
      term *= -ax * ax / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * 2 / Math.sqrt(Math.PI) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; --n) f = n / 2 / (ax + f);
  return Math.sign(x) * (1 - Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Native memory counters are per process, and jest runs many test files in
 * one process: tensors that earlier files left to the GC may be finalized at
 * any time. Before taking a memory baseline, collect until no finalizer is
 * left to run. Needs node --expose-gc (the test script passes it).
 */
export async function settleGc(released: () => number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('memory tests need node --expose-gc (run them with `npm test`)');
  let last = -1;
  for (let i = 0; i < 50; ++i) {
    gc();
    await new Promise((r) => setTimeout(r, 2));
    const now = released();
    if (now === last) return;
    last = now;
  }
}

/** The backends this machine can run: ['cpu'], plus 'cuda' where a GPU is usable. */
export const BACKENDS: string[] = vl.backends();

/** The device tensors on `backend` report: 'cpu', or the backend's first device ('cuda:0'). */
export function deviceOf(backend: string): string {
  return backend === 'cpu' ? 'cpu' : `${backend}:0`;
}

/**
 * Per-backend suites: `fn` declares the tests of one backend with its
 * device as the default of every factory (tensors created without a device
 * land there; tensors created while the suite is being declared do not).
 */
export function describeBackends(name: string, fn: (backend: string, device: string) => void): void {
  describe.each(BACKENDS)(`${name} (%s)`, (backend) => {
    const device = deviceOf(backend);
    beforeAll(() => vl.setDefaultDevice(device));
    afterAll(() => vl.setDefaultDevice('cpu'));
    fn(backend, device);
  });
}

/**
 * Relative error allowed for f32 GEMMs and attention, per term of the sum:
 * the CPU computes in f32; CUDA splits each f32 operand into 2 bf16 and runs
 * 3 tensor-core passes, which keeps about 17 bits (about 1e-5 per product).
 */
export function gemmTolerance(backend: string): number {
  return backend === 'cpu' ? 1e-5 : 3e-5;
}

/** max |got - want| over max(max |want|, floor); Infinity when the lengths differ. */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-30): number {
  if (got.length !== want.length) return Infinity;
  let scale = floor;
  for (let i = 0; i < want.length; ++i) scale = Math.max(scale, Math.abs(want[i]));
  return maxAbsDiff(got, want) / scale;
}

/** Within tol of want's scale (see relErr). */
export function closeTo(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): boolean {
  return relErr(got, want) <= tol;
}

/**
 * Another device this process has, to mix with `device` in device-mismatch
 * checks: the CPU for an accelerator, none for the CPU (a second CPU device
 * needs VLLAMA_CPU_DEVICES at load: the suites check that in child processes).
 */
export function peerDevice(device: string): string | null {
  return device === 'cpu' ? null : 'cpu';
}

/** fn throws a DeviceError naming both devices (tensors never move silently). */
export function expectDeviceError(fn: () => unknown, a: string, b: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(vl.DeviceError);
  const message = (caught as Error).message;
  expect(message).toMatch(new RegExp(`on ${a}\\b`));
  expect(message).toMatch(new RegExp(`on ${b}\\b`));
}

/**
 * A small learnable 28×28 grayscale set of 5 classes (a bright band whose row
 * depends on the class, plus fixed noise) for training runs in tests.
 */
export function bandDataset(n: number) {
  const images = new Uint8Array(n * 28 * 28);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; ++i) {
    labels[i] = i % 5;
    for (let p = 0; p < 784; ++p) images[i * 784 + p] = ((Math.floor(p / 28) >> 2) === labels[i] ? 200 : 20) + ((i * 7919 + p * 104729) % 37);
  }
  return { kind: 'arrays' as const, images, labels, height: 28, width: 28, numClasses: 5 };
}

/** f() with the environment variable `name` set to `value`, or unset when undefined; unset again afterwards. */
export async function withEnv<T>(name: string, value: string | undefined, f: () => Promise<T>): Promise<T> {
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await f();
  } finally {
    delete process.env[name];
  }
}

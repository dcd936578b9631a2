// The seeded RNG: reference outputs, determinism, independent streams, checkpointable state, distributions.
import * as vl from '../lib';
import { Rng } from '../lib/data/rng';

const draws = (r: Rng, n: number, f: (r: Rng) => number = (x) => x.nextUint32()) => Array.from({ length: n }, () => f(r));

function meanStd(xs: number[]): [number, number] {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return [m, Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length)];
}

describe('Rng', () => {
  test('xoshiro128** reference output from state [1, 2, 3, 4]', () => {
    const r = Rng.fromState({ algorithm: 'xoshiro128**', state: [1, 2, 3, 4] });
    expect(draws(r, 10)).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849, 3729100597, 4258142804]);
  });

  test('same seed and stream key, same numbers; any other key, other numbers', () => {
    expect(draws(new Rng(42, 3, 7), 20)).toEqual(draws(new Rng(42, 3, 7), 20));
    const keys = [[42], [42, 0], [42, 3], [42, 3, 8], [43, 3, 7], [42, 7, 3], [42 + 2 ** 32, 3, 7], [0]];
    const firsts = new Set([[42, 3, 7], ...keys].map((k) => draws(new Rng(...(k as [number, ...number[]])), 2).join()));
    expect(firsts.size).toBe(keys.length + 1);
    expect(() => new Rng(1.5)).toThrow(vl.ArgumentError);
  });

  test('streams of neighbouring sample indices are independent', () => {
    // First uniform of 20000 (seed, epoch, index) streams: mean 1/2, and no correlation between neighbours.
    const u = Array.from({ length: 20000 }, (_, i) => new Rng(5, 1, i).next());
    const [m, s] = meanStd(u);
    expect(Math.abs(m - 0.5)).toBeLessThan(0.01);
    expect(Math.abs(s - Math.sqrt(1 / 12))).toBeLessThan(0.01);
    let corr = 0;
    for (let i = 1; i < u.length; ++i) corr += (u[i] - 0.5) * (u[i - 1] - 0.5);
    expect(Math.abs(corr / (u.length - 1) / (1 / 12))).toBeLessThan(0.03);
  });

  test('getState/setState: a JSON round trip resumes the same sequence', () => {
    const r = new Rng(7);
    draws(r, 13);
    r.normal(); // odd number of 32-bit draws before the checkpoint
    const saved = JSON.parse(JSON.stringify(r.getState()));
    expect(saved.algorithm).toBe('xoshiro128**');
    const ahead = [r.next(), r.int(1000), r.normal(), r.uniform(-2, 3), r.beta(0.4, 0.4)];
    const back = [Rng.fromState(saved)].map((q) => [q.next(), q.int(1000), q.normal(), q.uniform(-2, 3), q.beta(0.4, 0.4)])[0];
    expect(back).toEqual(ahead);
    const other = new Rng(99);
    other.setState(saved);
    expect(other.next()).toBe(ahead[0]);
    for (const bad of [{}, { algorithm: 'pcg32', state: [1, 2, 3, 4] }, { algorithm: 'xoshiro128**', state: [0, 0, 0, 0] },
      { algorithm: 'xoshiro128**', state: [1, 2, 3] }, { algorithm: 'xoshiro128**', state: [1, 2, 3, 2 ** 32] }]) {
      expect(() => other.setState(bad as never)).toThrow(/not an xoshiro128\*\* state/);
    }
  });

  test('uniform, int, normal, gamma and beta have the right ranges and moments', () => {
    const r = new Rng(2024);
    const u = draws(r, 20000, (q) => q.uniform(-3, 5));
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-3);
    expect(Math.max(...u)).toBeLessThan(5);
    const counts = new Array(7).fill(0);
    for (const k of draws(r, 70000, (q) => q.int(7))) counts[k] += 1;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(400);
    expect(draws(r, 1000, (q) => q.int(1)).every((k) => k === 0)).toBe(true);
    expect(() => r.int(0)).toThrow(vl.ArgumentError);
    const big = draws(r, 1000, (q) => q.int(2 ** 40));
    expect(big.every((k) => Number.isInteger(k) && k >= 0 && k < 2 ** 40)).toBe(true);
    const [nm, ns] = meanStd(draws(r, 20000, (q) => q.normal(1, 2)));
    expect(Math.abs(nm - 1)).toBeLessThan(0.06);
    expect(Math.abs(ns - 2)).toBeLessThan(0.06);
    const [gm] = meanStd(draws(r, 20000, (q) => q.gamma(0.5)));
    expect(Math.abs(gm - 0.5)).toBeLessThan(0.03);
    for (const [a, b] of [[0.2, 0.2], [1, 1], [2, 5]]) {
      const xs = draws(r, 20000, (q) => q.beta(a, b));
      expect(xs.every((x) => x >= 0 && x <= 1)).toBe(true);
      expect(Math.abs(meanStd(xs)[0] - a / (a + b))).toBeLessThan(0.015);
    }
  });

  test('shuffle permutes in place, reproducibly, with every position equally likely', () => {
    const a = new Rng(3).shuffle(Int32Array.from({ length: 100 }, (_, i) => i));
    expect(Array.from(a).sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(a).toEqual(new Rng(3).shuffle(Int32Array.from({ length: 100 }, (_, i) => i)));
    expect(a).not.toEqual(new Rng(4).shuffle(Int32Array.from({ length: 100 }, (_, i) => i)));
    const firstAt = [0, 0, 0, 0];
    const r = new Rng(11);
    for (let t = 0; t < 8000; ++t) firstAt[r.shuffle(['a', 'b', 'c', 'd']).indexOf('a')] += 1;
    for (const c of firstAt) expect(Math.abs(c - 2000)).toBeLessThan(200);
  });
});

// In-place optimizer updates and helpers against step-by-step JavaScript
// references (float64, and fp32 in PyTorch's order of operations), a
// torch.optim.AdamW fixture, thread counts and the argument checks.
import * as path from 'path';
import * as vl from '../lib';
import * as optim from '../lib/ops/optim';
import { maxAbsDiff, repoRoot } from './helpers';

/** max |got − want| over max(max |want|, floor). */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>, floor = 1e-30): number {
  expect(got.length).toBe(want.length);
  let scale = floor;
  for (let i = 0; i < want.length; ++i) scale = Math.max(scale, Math.abs(want[i]));
  return maxAbsDiff(got, want) / scale;
}

const diff = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from(a, (v, i) => v - b[i]);
const f = Math.fround;

interface State { p: Float64Array; m: Float64Array; v: Float64Array }

/** AdamW in float64. */
function adamwRef(s: State, g: ArrayLike<number>, o: optim.AdamOptions): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  for (let i = 0; i < g.length; ++i) {
    s.p[i] *= 1 - o.lr * o.weightDecay;
    s.m[i] = o.beta1 * s.m[i] + (1 - o.beta1) * g[i];
    s.v[i] = o.beta2 * s.v[i] + (1 - o.beta2) * g[i] * g[i];
    s.p[i] -= (o.lr / bc1) * s.m[i] / (Math.sqrt(s.v[i]) / Math.sqrt(bc2) + o.eps);
  }
}

/** AdamW in fp32, in torch.optim.AdamW's order of operations (lerp for exp_avg). */
function adamwTorchF32(p: Float32Array, m: Float32Array, v: Float32Array, g: ArrayLike<number>, o: optim.AdamOptions): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  const decay = f(1 - o.lr * o.weightDecay), w = f(1 - o.beta1), b2 = f(o.beta2), c2 = f(1 - o.beta2);
  const negStep = f(-(o.lr / bc1)), bc2Sqrt = f(Math.sqrt(bc2)), eps = f(o.eps);
  for (let i = 0; i < g.length; ++i) {
    p[i] = f(p[i] * decay);
    m[i] = Math.abs(w) < 0.5 ? f(m[i] + f(w * f(g[i] - m[i]))) : f(g[i] - f(f(g[i] - m[i]) * f(1 - w)));
    v[i] = f(f(v[i] * b2) + f(f(c2 * g[i]) * g[i]));
    const denom = f(f(f(Math.sqrt(v[i])) / bc2Sqrt) + eps);
    p[i] = f(p[i] + f(f(negStep * m[i]) / denom));
  }
}

/** SGD in float64 (torch.optim.SGD). */
function sgdRef(p: Float64Array, buf: Float64Array, g: ArrayLike<number>, o: optim.SgdOptions): void {
  for (let i = 0; i < g.length; ++i) {
    let gi = g[i];
    if (o.weightDecay !== 0) gi += o.weightDecay * p[i];
    if (o.momentum !== 0) {
      buf[i] = o.firstStep ? gi : o.momentum * buf[i] + (1 - o.dampening) * gi;
      gi = o.nesterov ? gi + o.momentum * buf[i] : buf[i];
    }
    p[i] -= o.lr * gi;
  }
}

/** LAMB in float64. */
function lambRef(s: State, g: ArrayLike<number>, o: optim.AdamOptions): void {
  const bc1 = 1 - o.beta1 ** o.step, bc2 = 1 - o.beta2 ** o.step;
  const u = new Float64Array(g.length);
  let pp = 0, uu = 0;
  for (let i = 0; i < g.length; ++i) {
    s.m[i] = o.beta1 * s.m[i] + (1 - o.beta1) * g[i];
    s.v[i] = o.beta2 * s.v[i] + (1 - o.beta2) * g[i] * g[i];
    u[i] = (s.m[i] / bc1) / (Math.sqrt(s.v[i] / bc2) + o.eps) + o.weightDecay * s.p[i];
    pp += s.p[i] * s.p[i];
    uu += u[i] * u[i];
  }
  const r = pp > 0 && uu > 0 ? Math.sqrt(pp) / Math.sqrt(uu) : 1;
  for (let i = 0; i < g.length; ++i) s.p[i] -= o.lr * r * u[i];
}

const sizes = [[1], [7], [33, 7], [384], [100003]];

describe('adamwUpdate', () => {
  const configs: [string, Omit<optim.AdamOptions, 'step'>][] = [
    ['defaults with weight decay', { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05 }],
    ['beta1 0.3 (the other lerp branch), no weight decay', { lr: 3e-2, beta1: 0.3, beta2: 0.99, eps: 1e-6, weightDecay: 0 }],
  ];
  test.each(sizes.flatMap((shape) => configs.map(([name, o]) => [shape, name, o] as const)))(
    '%j, %s: 3 steps against float64 and PyTorch-order fp32', async (shape, _name, o) => {
      using p = vl.randn(shape, { seed: 1 });
      using m = vl.zeros(shape);
      using v = vl.zeros(shape);
      const p0 = await p.data();
      const ref: State = { p: Float64Array.from(p0), m: new Float64Array(p0.length), v: new Float64Array(p0.length) };
      const t32 = { p: Float32Array.from(p0), m: new Float32Array(p0.length), v: new Float32Array(p0.length) };
      for (let step = 1; step <= 3; ++step) {
        using g = vl.randn(shape, { seed: 10 + step, std: 0.1 * step });
        const gv = await g.data();
        expect(optim.adamwUpdate(p, g, m, v, { ...o, step })).toBeUndefined();
        adamwRef(ref, gv, { ...o, step });
        adamwTorchF32(t32.p, t32.m, t32.v, gv, { ...o, step });
      }
      const [pv, mv, vv] = [await p.data(), await m.data(), await v.data()];
      // The updates (p − p0) are what rounding could hide in p itself.
      expect(relErr(diff(pv, p0), diff(ref.p, p0))).toBeLessThan(1e-4);
      expect(relErr(mv, ref.m)).toBeLessThan(1e-5);
      expect(relErr(vv, ref.v)).toBeLessThan(1e-5);
      expect(relErr(pv, t32.p)).toBeLessThan(1e-6);
      expect(relErr(diff(pv, p0), diff(t32.p, p0))).toBeLessThan(1e-5);
      expect(relErr(mv, t32.m)).toBeLessThan(1e-6);
      expect(relErr(vv, t32.v)).toBeLessThan(1e-6);
    });

  test('matches torch.optim.AdamW (test/fixtures/make_optim_fixtures.py) to 1e-6', async () => {
    const t = await vl.io.loadSafetensors(path.join(repoRoot, 'test/fixtures/ops/adamw.safetensors'));
    for (const [c, step] of [['first', 1], ['later', 3]] as const) {
      const get = (n: string) => t.get(`${c}|${n}`)!;
      const [p, m, v] = [get('param').contiguous(), get('exp_avg').contiguous(), get('exp_avg_sq').contiguous()];
      optim.adamwUpdate(p, get('grad'), m, v, { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, step });
      expect(relErr(await p.data(), await get('param_out').data())).toBeLessThan(1e-6);
      expect(relErr(await m.data(), await get('exp_avg_out').data())).toBeLessThan(1e-6);
      expect(relErr(await v.data(), await get('exp_avg_sq_out').data())).toBeLessThan(1e-6);
      for (const x of [p, m, v]) x.dispose();
    }
    for (const x of t.values()) x.dispose();
  });
});

describe('sgdUpdate', () => {
  const configs: [string, Omit<optim.SgdOptions, 'firstStep'>][] = [
    ['plain', { lr: 0.1, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false }],
    ['momentum and weight decay', { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-2, nesterov: false }],
    ['momentum with dampening', { lr: 0.05, momentum: 0.9, dampening: 0.1, weightDecay: 0, nesterov: false }],
    ['nesterov', { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: true }],
  ];
  test.each(sizes.flatMap((shape) => configs.map(([name, o]) => [shape, name, o] as const)))(
    '%j, %s: 3 steps against float64', async (shape, _name, o) => {
      using p = vl.randn(shape, { seed: 2 });
      using buf = o.momentum ? vl.full(shape, 123) : null; // garbage: the first step must overwrite it
      const p0 = await p.data();
      const ref = Float64Array.from(p0), refBuf = new Float64Array(p0.length);
      for (let step = 1; step <= 3; ++step) {
        using g = vl.randn(shape, { seed: 20 + step });
        const gBefore = Buffer.from(await g.bytes());
        const opts = { ...o, firstStep: step === 1 };
        expect(optim.sgdUpdate(p, g, buf, opts)).toBeUndefined();
        sgdRef(ref, refBuf, await g.data(), opts);
        expect(Buffer.from(await g.bytes()).equals(gBefore)).toBe(true); // grad is left alone
      }
      expect(relErr(await p.data(), ref)).toBeLessThan(1e-6);
      expect(relErr(diff(await p.data(), p0), diff(ref, p0))).toBeLessThan(1e-5);
      if (buf) expect(relErr(await buf.data(), refBuf)).toBeLessThan(1e-6);
    });

  test('with momentum 0 a given buffer is not touched', async () => {
    using p = vl.ones([5]);
    using g = vl.ones([5]);
    using buf = vl.full([5], 7);
    optim.sgdUpdate(p, g, buf, { lr: 0.5, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true });
    expect(Array.from(await p.data())).toEqual([0.5, 0.5, 0.5, 0.5, 0.5]);
    expect(Array.from(await buf.data())).toEqual([7, 7, 7, 7, 7]);
  });
});

describe('lambUpdate', () => {
  const o = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01 };
  test.each(sizes)('%j: 3 steps against float64', async (...shape) => {
    using p = vl.randn(shape, { seed: 3 });
    using m = vl.zeros(shape);
    using v = vl.zeros(shape);
    const p0 = await p.data();
    const ref: State = { p: Float64Array.from(p0), m: new Float64Array(p0.length), v: new Float64Array(p0.length) };
    for (let step = 1; step <= 3; ++step) {
      using g = vl.randn(shape, { seed: 30 + step, std: 0.01 });
      expect(optim.lambUpdate(p, g, m, v, { ...o, step })).toBeUndefined();
      lambRef(ref, await g.data(), { ...o, step });
    }
    const pv = await p.data();
    expect(relErr(diff(pv, p0), diff(ref.p, p0))).toBeLessThan(1e-4);
    expect(relErr(await m.data(), ref.m)).toBeLessThan(1e-5);
    expect(relErr(await v.data(), ref.v)).toBeLessThan(1e-5);
  });

  test('a zero norm gives trust ratio 1', async () => {
    // |p| = 0: p = −lr·u with u = m̂/(sqrt(v̂) + eps) = g/(|g| + eps) at step 1.
    using p = vl.zeros([33]);
    using m = vl.zeros([33]);
    using v = vl.zeros([33]);
    using g = vl.randn([33], { seed: 4 });
    const gv = await g.data();
    optim.lambUpdate(p, g, m, v, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.5, step: 1 });
    expect(relErr(await p.data(), Array.from(gv, (x) => -0.1 * x / (Math.abs(x) + 1e-6)))).toBeLessThan(1e-5);
    // |u| = 0 (zero gradient, no weight decay): p stays.
    using q = vl.randn([33], { seed: 5 });
    const q0 = Buffer.from(await q.bytes());
    using z = vl.zeros([33]);
    using m2 = vl.zeros([33]);
    using v2 = vl.zeros([33]);
    optim.lambUpdate(q, z, m2, v2, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0, step: 1 });
    expect(Buffer.from(await q.bytes()).equals(q0)).toBe(true);
  });
});

describe('sumOfSquares, scaleInPlace, addInPlace, lerpInPlace', () => {
  test.each([[[0]], [[1]], [[7]], [[33, 7]], [[384]], [[100003]], [[(1 << 20) + 3]]])('sumOfSquares %j', async (shape) => {
    using t = vl.randn(shape, { seed: 6 });
    const tv = await t.data();
    using s = optim.sumOfSquares(t);
    expect(s.shape).toEqual([]);
    expect(s.dtype).toBe('f32');
    const want = tv.reduce((a, x) => a + x * x, 0);
    expect(Math.abs((await s.data())[0] - want)).toBeLessThanOrEqual(1e-6 * want);
  });

  test('sumOfSquares reads a strided view as its values', async () => {
    using t = vl.randn([33, 7], { seed: 7 });
    using tt = t.transpose();
    using a = optim.sumOfSquares(t);
    using b = optim.sumOfSquares(tt);
    expect(Math.abs((await a.data())[0] - (await b.data())[0])).toBeLessThan(1e-4);
  });

  test.each(sizes)('%j: scale, add (alpha 1 and 0.5), lerp (weights 0.1, 0.7, 1) against fp32 references', async (...shape) => {
    using t = vl.randn(shape, { seed: 8 });
    using src = vl.randn(shape, { seed: 9 });
    const [tv, sv] = [await t.data(), await src.data()];
    const ref = Float32Array.from(tv);
    optim.scaleInPlace(t, 0.37);
    ref.forEach((x, i) => { ref[i] = f(x * f(0.37)); });
    expect(relErr(await t.data(), ref)).toBeLessThan(1e-7);
    optim.addInPlace(t, src);
    ref.forEach((x, i) => { ref[i] = f(x + sv[i]); });
    expect(relErr(await t.data(), ref)).toBeLessThan(1e-7);
    expect(optim.addInPlace(t, src, 0.5)).toBeUndefined();
    ref.forEach((x, i) => { ref[i] = f(x + f(0.5 * sv[i])); });
    expect(relErr(await t.data(), ref)).toBeLessThan(1e-7);
    optim.lerpInPlace(t, src, 0.1);
    ref.forEach((x, i) => { ref[i] = f(x + f(f(0.1) * f(sv[i] - x))); });
    expect(relErr(await t.data(), ref)).toBeLessThan(1e-7);
    optim.lerpInPlace(t, src, 0.7);
    ref.forEach((x, i) => { ref[i] = f(sv[i] - f(f(sv[i] - x) * f(1 - f(0.7)))); });
    expect(relErr(await t.data(), ref)).toBeLessThan(1e-7);
    // and against float64: dst += w·(src − dst)
    const before = await t.data();
    optim.lerpInPlace(t, src, 0.25);
    expect(relErr(await t.data(), Array.from(before, (x, i) => x + 0.25 * (sv[i] - x)))).toBeLessThan(1e-6);
    optim.lerpInPlace(t, src, 1);
    expect(Buffer.from(await t.bytes()).equals(Buffer.from(await src.bytes()))).toBe(true);
  });

  test('in-place updates of a contiguous slice change only its elements; dst may be src', async () => {
    using big = vl.arange(0, 35).reshape(5, 7);
    using rows = big.narrow(0, 2, 2);
    expect(rows.isContiguous).toBe(true);
    using ones = vl.ones([2, 7]);
    optim.addInPlace(rows, ones, 100);
    const v = await big.data();
    expect(Array.from(v, (x, i) => x - i)).toEqual(Array.from({ length: 35 }, (_, i) => (i >= 14 && i < 28 ? 100 : 0)));
    optim.addInPlace(rows, rows); // doubles the slice
    optim.lerpInPlace(rows, rows, 0.3);
    expect((await big.data())[14]).toBe(2 * (14 + 100));
  });

  test('ops queued before an in-place update see the old values', async () => {
    using p = vl.ones([4]);
    using before = p.add(0);
    optim.scaleInPlace(p, 3);
    using after = p.add(0);
    expect(Array.from(await before.data())).toEqual([1, 1, 1, 1]);
    expect(Array.from(await after.data())).toEqual([3, 3, 3, 3]);
  });
});

describe('determinism', () => {
  afterAll(() => vl.setNumThreads(2));

  test('1 and 2 threads give bit-identical results', async () => {
    const run = async (threads: number) => {
      vl.setNumThreads(threads);
      const n = 100003;
      const outs = vl.tidy(() => {
        const p = vl.randn([n], { seed: 1 }), g = vl.randn([n], { seed: 2 });
        const m = vl.zeros([n]), v = vl.zeros([n]), q = vl.randn([n], { seed: 3 }), m2 = vl.zeros([n]), v2 = vl.zeros([n]);
        const r = vl.randn([n], { seed: 4 }), buf = vl.zeros([n]);
        for (let step = 1; step <= 2; ++step) {
          optim.adamwUpdate(p, g, m, v, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, step });
          optim.lambUpdate(q, g, m2, v2, { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01, step });
          optim.sgdUpdate(r, g, buf, { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 1e-4, nesterov: true, firstStep: step === 1 });
        }
        optim.addInPlace(m, g, 0.3);
        optim.lerpInPlace(v, g, 0.2);
        optim.scaleInPlace(q, 0.9);
        return [p, m, v, q, m2, v2, r, buf, optim.sumOfSquares(vl.randn([(1 << 20) + 3], { seed: 5 }))];
      });
      const bytes = await Promise.all(outs.map(async (x) => Buffer.from(await x.bytes())));
      outs.forEach((x) => x.dispose());
      return bytes;
    };
    const one = await run(1);
    const two = await run(2);
    one.forEach((b, i) => expect(b.equals(two[i])).toBe(true));
  });
});

describe('bad arguments', () => {
  const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
  const sgd = { lr: 0.1, momentum: 0.9, dampening: 0, weightDecay: 0, nesterov: false, firstStep: true };

  test('in-place operands: dtype, contiguity, shape, aliasing', () => {
    using p = vl.zeros([2, 3]);
    using g = vl.zeros([2, 3]);
    using m = vl.zeros([2, 3]);
    using v = vl.zeros([2, 3]);
    using base = vl.zeros([3, 2]);
    using strided = base.transpose();
    expect(() => optim.adamwUpdate(strided, g, m, v, adam)).toThrow(/adamwUpdate: param must be contiguous \(it is used in place and is never copied\), got a strided view f32\[2,3\] on cpu/);
    expect(() => optim.adamwUpdate(strided, g, m, v, adam)).toThrow(vl.ArgumentError);
    expect(() => optim.adamwUpdate(p, strided, m, v, adam)).toThrow(/grad must be contiguous/);
    expect(() => optim.adamwUpdate(p, g, m, vl.zeros([3, 2]), adam)).toThrow(/adamwUpdate: expAvgSq f32\[3,2\] on cpu must have the shape of param f32\[2,3\] on cpu/);
    expect(() => optim.adamwUpdate(p, g, m, vl.zeros([3, 2]), adam)).toThrow(vl.ShapeError);
    expect(() => optim.adamwUpdate(p, g, vl.zeros([2, 3], { dtype: 'bf16' }), v, adam)).toThrow(/expAvg must be f32, got bf16\[2,3\] on cpu/);
    expect(() => optim.adamwUpdate(p, g, vl.zeros([2, 3], { dtype: 'bf16' }), v, adam)).toThrow(vl.DTypeError);
    expect(() => optim.adamwUpdate(p, g, p, v, adam)).toThrow(/param and expAvg share memory; expected separate tensors/);
    using flat = p.reshape(6);
    using half = flat.narrow(0, 3, 3).reshape(1, 3);
    expect(() => optim.addInPlace(half, p.narrow(0, 0, 1))).not.toThrow();
    using view = flat.narrow(0, 1, 3).reshape(1, 3);
    expect(() => optim.addInPlace(view, p.narrow(0, 0, 1))).toThrow(/addInPlace: dst and src share memory/);
    expect(() => optim.lambUpdate(p, g, m, m, adam)).toThrow(/expAvg and expAvgSq share memory/);
    expect(() => optim.sgdUpdate(p, g, g, sgd)).toThrow(/grad and momentumBuffer share memory/);
    expect(() => optim.scaleInPlace(strided, 2)).toThrow(/scaleInPlace: t must be contiguous/);
    expect(() => optim.addInPlace(p, vl.zeros([6]))).toThrow(vl.ShapeError);
    expect(() => optim.lerpInPlace(p, vl.zeros([2, 3], { dtype: 'f16' }), 0.5)).toThrow(/lerpInPlace: src must be f32/);
    expect(() => optim.addInPlace(vl.zeros([2], { dtype: 'i32' }), vl.zeros([2], { dtype: 'i32' }))).toThrow(vl.DTypeError);
    expect(() => optim.sumOfSquares(vl.zeros([2], { dtype: 'i32' }))).toThrow(/sumOfSquares: expected an f32 tensor, got i32\[2\] on cpu/);
    expect(() => optim.adamwUpdate(p, [1] as unknown as vl.Tensor, m, v, adam)).toThrow(/adamwUpdate: grad must be a Tensor, got an array/);
    expect(() => optim.sumOfSquares(undefined as unknown as vl.Tensor)).toThrow(vl.ArgumentError);
  });

  test('hyperparameters', () => {
    using p = vl.zeros([4]);
    using g = vl.zeros([4]);
    using m = vl.zeros([4]);
    using v = vl.zeros([4]);
    expect(() => optim.adamwUpdate(p, g, m, v, { ...adam, beta1: 1 })).toThrow(/adamwUpdate: beta1 must be in \[0, 1\), got 1/);
    expect(() => optim.adamwUpdate(p, g, m, v, { ...adam, step: 0 })).toThrow(/step must be >= 1/);
    expect(() => optim.adamwUpdate(p, g, m, v, { ...adam, step: 1.5 })).toThrow(/step must be an integer, got 1.5/);
    expect(() => optim.adamwUpdate(p, g, m, v, { ...adam, lr: NaN })).toThrow(/lr must be a finite number, got NaN/);
    expect(() => optim.adamwUpdate(p, g, m, v, { ...adam, lr: -1 })).toThrow(/lr must be >= 0/);
    expect(() => optim.lambUpdate(p, g, m, v, { ...adam, eps: -1 })).toThrow(/lambUpdate: eps must be >= 0/);
    expect(() => optim.lambUpdate(p, g, m, v, { ...adam, weightDecay: -0.1 })).toThrow(vl.ArgumentError);
    const { lr: _lr, ...noLr } = adam;
    expect(() => optim.adamwUpdate(p, g, m, v, noLr as optim.AdamOptions)).toThrow(/adamwUpdate: lr must be a finite number, got nothing/);
    expect(() => optim.adamwUpdate(p, g, m, v, undefined as unknown as optim.AdamOptions)).toThrow(/options must be an object/);
    expect(() => optim.sgdUpdate(p, g, null, sgd)).toThrow(/sgdUpdate: momentum 0.9 needs a momentumBuffer tensor \(the shape of param\), got null/);
    expect(() => optim.sgdUpdate(p, g, m, { ...sgd, nesterov: true, dampening: 0.1 })).toThrow(/nesterov needs momentum > 0 and dampening 0/);
    expect(() => optim.sgdUpdate(p, g, null, { ...sgd, momentum: 0, nesterov: true })).toThrow(vl.ArgumentError);
    expect(() => optim.sgdUpdate(p, g, m, { ...sgd, nesterov: 'yes' as unknown as boolean })).toThrow(/nesterov must be a boolean/);
    expect(() => optim.scaleInPlace(p, Infinity)).toThrow(/scaleInPlace: scale must be a finite number/);
    expect(() => optim.addInPlace(p, g, NaN)).toThrow(/alpha must be a finite number/);
    expect(() => optim.lerpInPlace(p, g, '0.5' as unknown as number)).toThrow(/lerpInPlace: weight must be a number/);
  });

  test('nothing ran: a rejected update leaves its tensors as they were', async () => {
    using p = vl.ones([4]);
    using g = vl.ones([4]);
    using m = vl.zeros([4]);
    expect(() => optim.adamwUpdate(p, g, m, vl.zeros([5]), adam)).toThrow(vl.ShapeError);
    expect(Array.from(await p.data())).toEqual([1, 1, 1, 1]);
    expect(Array.from(await m.data())).toEqual([0, 0, 0, 0]);
  });
});

describe.each(vl.backends())('multi-tensor updates on %s: bad lists name the list and index', (backend) => {
  const device = backend === 'cpu' ? 'cpu' : `${backend}:0`;
  test('lengths, shapes, dtypes, layouts, shared memory and per-tensor hyper-parameters', () => {
    const t = (shape: number[], o: { dtype?: 'f32' | 'bf16' } = {}) => vl.zeros(shape, { ...o, device });
    const p = [t([2, 3]), t([4])], g = [t([2, 3]), t([4])], m = [t([2, 3]), t([4])], v = [t([2, 3]), t([4])];
    const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecays: [0.01, 0], steps: [1, 2] };
    expect(() => optim.adamwUpdateMulti(p, g, m, v, adam)).not.toThrow();
    expect(() => optim.adamwUpdateMulti(p, [g[0]], m, v, adam)).toThrow(/adamwUpdateMulti: grads has 1 tensors but params has 2; expected one per parameter/);
    expect(() => optim.lambUpdateMulti(p, g, m, [v[0], t([3])], adam)).toThrow(/lambUpdateMulti: expAvgSqs\[1\] f32\[3\] on \S+ must have the shape of params\[1\] f32\[4\]/);
    expect(() => optim.lambUpdateMulti(p, g, m, [v[0], t([3])], adam)).toThrow(vl.ShapeError);
    expect(() => optim.adamwUpdateMulti(p, g, [m[0], t([4], { dtype: 'bf16' })], v, adam)).toThrow(/expAvgs\[1\] must be f32, got bf16\[4\]/);
    expect(() => optim.adamwUpdateMulti(p, g, [m[0], t([4], { dtype: 'bf16' })], v, adam)).toThrow(vl.DTypeError);
    const strided = t([3, 2]).transpose();
    expect(() => optim.adamwUpdateMulti([strided, p[1]], g, m, v, adam)).toThrow(/params\[0\] must be contiguous \(it is used in place and is never copied\)/);
    // Memory shared across indices: a state buffer that is another parameter.
    const q = [t([4]), t([4])];
    const shared = () => optim.adamwUpdateMulti(q, [g[1], g[1]], [q[1], m[1]], [v[1], t([4])], adam);
    expect(shared).toThrow(/expAvgs\[0\].*params\[1\]|params\[1\].*expAvgs\[0\]/);
    expect(shared).toThrow(/share memory; expected separate tensors/);
    // Gradients may share memory with each other (they are only read).
    expect(() => optim.adamwUpdateMulti([p[1], t([4])], [g[1], g[1]], [m[1], t([4])], [v[1], t([4])], adam)).not.toThrow();
    expect(() => optim.adamwUpdateMulti(p, g, m, v, { ...adam, steps: [1] })).toThrow(/expected 2 weight decays and steps \(one per parameter\), got 2 and 1/);
    expect(() => optim.adamwUpdateMulti(p, g, m, v, { ...adam, steps: [1, 0] })).toThrow(/steps\[1\] must be >= 1/);
    expect(() => optim.adamwUpdateMulti(p, g, m, v, { ...adam, weightDecays: [0, -1] })).toThrow(/weightDecays\[1\] must be >= 0/);
    expect(() => optim.adamwUpdateMulti(p, [g[0], 3] as unknown as vl.Tensor[], m, v, adam)).toThrow(/adamwUpdateMulti: grads\[1\] must be a Tensor, got number/);
    expect(() => optim.adamwUpdateMulti(p[0] as unknown as vl.Tensor[], g, m, v, adam)).toThrow(/adamwUpdateMulti: params must be an array/);
    const sgd = { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, weightDecays: [0, 0], firstSteps: [true, false] };
    expect(() => optim.sgdUpdateMulti(p, g, m, sgd)).not.toThrow();
    expect(() => optim.sgdUpdateMulti(p, g, [], sgd)).toThrow(/sgdUpdateMulti: momentum 0.9 needs momentumBuffers \(one per parameter, shaped like it\), got an empty list/);
    expect(() => optim.sgdUpdateMulti(p, g, [], { ...sgd, momentum: 0 })).not.toThrow();
    expect(() => optim.sgdUpdateMulti(p, g, [m[0]], sgd)).toThrow(/momentumBuffers has 1 tensors but params has 2/);
    expect(() => optim.sgdUpdateMulti(p, g, m, { ...sgd, firstSteps: [true] })).toThrow(/expected 2 weight decays and first-step flags/);
    // Empty lists and empty tensors are no-ops.
    expect(() => optim.adamwUpdateMulti([], [], [], [], { ...adam, weightDecays: [], steps: [] })).not.toThrow();
    expect(() => optim.lambUpdateMulti([t([0])], [t([0])], [t([0])], [t([0])], { ...adam, weightDecays: [0], steps: [1] })).not.toThrow();
    for (const x of [...p, ...g, ...m, ...v, ...q, strided]) x.dispose();
  });

  (vl.backends().length > 1 ? test : test.skip)('tensors on different devices are an error, never a copy', () => {
    const other = device === 'cpu' ? 'cuda:0' : 'cpu';
    const p = [vl.zeros([4], { device }), vl.zeros([4], { device: other })];
    const g = [vl.zeros([4], { device }), vl.zeros([4], { device })];
    const adam = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecays: [0, 0], steps: [1, 1] };
    expect(() => optim.adamwUpdateMulti([p[0], g[1]], [g[0], p[1]], [vl.zeros([4], { device }), vl.zeros([4], { device })],
      [vl.zeros([4], { device }), vl.zeros([4], { device })], adam)).toThrow(/grads\[1\] is on \S+ but params\[1\] is on/);
    expect(() => optim.adamwUpdateMulti(p, g, [vl.zeros([4], { device }), vl.zeros([4], { device: other })],
      [vl.zeros([4], { device }), vl.zeros([4], { device: other })], adam)).toThrow(/params\[1\] is on \S+ but params\[0\] is on \S+; a multi-tensor update runs on one device/);
    expect(() => optim.adamwUpdateMulti(p, g, [vl.zeros([4], { device }), vl.zeros([4], { device: other })],
      [vl.zeros([4], { device }), vl.zeros([4], { device: other })], adam)).toThrow(vl.DeviceError);
  });
});

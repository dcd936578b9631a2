// Gradients of LayerNorm, silu, gelu and the SwiGLU gate against float64
// references and finite differences written here, on every backend; CPU
// thread counts and ISAs.
import * as vl from '../lib';
import * as ops from '../lib/ops/nn';
import {
  describeBackends, dot, erf, expectDeviceError, finiteDiff, peerDevice, relErr, requireLib, runNode,
} from './helpers';

const silu = (v: number) => v / (1 + Math.exp(-v));
const gelu = (v: number) => 0.5 * v * (1 + erf(v / Math.SQRT2));
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** y = LN(x) (float64), optionally with weight and bias. */
function refLayerNorm(x: ArrayLike<number>, C: number, eps: number, w?: ArrayLike<number>, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; ++r) {
    let m = 0;
    for (let i = 0; i < C; ++i) m += x[r * C + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; ++i) v += (x[r * C + i] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let i = 0; i < C; ++i) y[r * C + i] = (x[r * C + i] - m) * rs * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return y;
}

/** The analytic LayerNorm gradients in float64. */
function refLayerNormBackward(dy: ArrayLike<number>, x: ArrayLike<number>, C: number, eps: number, w?: ArrayLike<number>) {
  const dx = new Float64Array(x.length), dw = new Float64Array(C), db = new Float64Array(C);
  for (let r = 0; r < x.length / C; ++r) {
    let m = 0;
    for (let i = 0; i < C; ++i) m += x[r * C + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; ++i) v += (x[r * C + i] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    let a = 0, b = 0;
    for (let i = 0; i < C; ++i) {
      const xh = (x[r * C + i] - m) * rs, g = dy[r * C + i] * (w ? w[i] : 1);
      a += g;
      b += g * xh;
    }
    a /= C;
    b /= C;
    for (let i = 0; i < C; ++i) {
      const xh = (x[r * C + i] - m) * rs, g = dy[r * C + i] * (w ? w[i] : 1);
      dx[r * C + i] = rs * (g - a - xh * b);
      dw[i] += dy[r * C + i] * xh;
      db[i] += dy[r * C + i];
    }
  }
  return { dx, dw, db };
}

describeBackends('nn backward', (_backend, device) => {
  describe('layerNormBackward', () => {
    // Odd widths; row counts that are not a multiple of the kernel's row chunks
    // (33 x 1001 and 384 x 131 span several chunks).
    test.each([[[5, 1]], [[37, 7]], [[1001, 33]], [[131, 384]], [[2, 45, 33]]])('x %j, with and without weight', async (shape) => {
      const C = shape[shape.length - 1], eps = 1e-5;
      using x = vl.randn(shape, { seed: C, mean: 3, std: 2 });
      using dy = vl.randn(shape, { seed: C + 1 });
      using w = vl.randn([C], { seed: C + 2 });
      using b = vl.randn([C], { seed: C + 3 });
      const [xv, dyv, wv] = [await x.data(), await dy.data(), await w.data()];

      const s = ops.layerNormWithStats(x, { weight: w, bias: b, eps });
      expect(s.mean.shape).toEqual(shape.slice(0, -1));
      const g = ops.layerNormBackward(dy, x, s.mean, s.rstd, w);
      expect(Object.keys(g).sort()).toEqual(['dbias', 'dweight', 'dx']);
      expect(g.dx.shape).toEqual(shape);
      expect(g.dweight!.shape).toEqual([C]);
      expect(g.dbias!.shape).toEqual([C]);
      const ref = refLayerNormBackward(dyv, xv, C, eps, wv);
      // With C = 1, dx is 0 up to the rounding of dy·w (times rstd = 1/sqrt(eps)).
      const floor = C === 1 ? Math.max(...Array.from(dyv, Math.abs)) / Math.sqrt(eps) : 1e-30;
      expect(relErr(await g.dx.data(), ref.dx, floor)).toBeLessThan(1e-4);
      expect(relErr(await g.dweight!.data(), ref.dw)).toBeLessThan(1e-5);
      expect(relErr(await g.dbias!.data(), ref.db)).toBeLessThan(1e-5);

      const s0 = ops.layerNormWithStats(x, { eps });
      const g0 = ops.layerNormBackward(dy, x, s0.mean, s0.rstd, null);
      expect(Object.keys(g0)).toEqual(['dx']);
      expect(relErr(await g0.dx.data(), refLayerNormBackward(dyv, xv, C, eps).dx, floor)).toBeLessThan(1e-4);
      for (const t of [...Object.values(s), ...Object.values(g), ...Object.values(s0), ...Object.values(g0)]) t!.dispose();
    });

    test('C = 1: dx vanishes, dweight is 0 and dbias sums dy', async () => {
      using x = vl.randn([9, 1], { seed: 1 });
      using dy = vl.randn([9, 1], { seed: 2 });
      using w = vl.tensor([1.5]);
      const s = ops.layerNormWithStats(x, { weight: w });
      const g = ops.layerNormBackward(dy, x, s.mean, s.rstd, w);
      const dyv = await dy.data(), dx = await g.dx.data();
      // x − mean is exactly 0; what is left is the rounding of dy·w, times rstd = 1000.
      dx.forEach((v, i) => expect(Math.abs(v)).toBeLessThanOrEqual(1e-6 * 1000 * Math.abs(dyv[i] * 1.5)));
      expect(Array.from(await g.dweight!.data())).toEqual([0]);
      expect(Math.abs((await g.dbias!.data())[0] - dyv.reduce((a, v) => a + v, 0))).toBeLessThan(1e-5);
    });

    test('the stats of addLayerNorm serve as well', async () => {
      using x = vl.randn([7, 33], { seed: 3 });
      using r = vl.randn([7, 33], { seed: 4 });
      using w = vl.randn([33], { seed: 5 });
      using dy = vl.randn([7, 33], { seed: 6 });
      const { sum, y, mean, rstd } = ops.addLayerNormWithStats(x, r, { weight: w, eps: 1e-6 });
      const g = ops.layerNormBackward(dy, sum, mean, rstd, w);
      const ref = refLayerNormBackward(await dy.data(), await sum.data(), 33, 1e-6, await w.data());
      expect(relErr(await g.dx.data(), ref.dx)).toBeLessThan(1e-4);
      expect(relErr(await g.dweight!.data(), ref.dw)).toBeLessThan(1e-5);
      for (const t of [sum, y, mean, rstd, ...Object.values(g)]) t!.dispose();
    });

    test('finite differences of the float64 forward', async () => {
      const rows = 3, C = 7, eps = 1e-5;
      using x = vl.randn([rows, C], { seed: 11, mean: 1, std: 2 });
      using dy = vl.randn([rows, C], { seed: 12 });
      using w = vl.randn([C], { seed: 13 });
      using b = vl.randn([C], { seed: 14 });
      const [xv, dyv, wv, bv] = [await x.data(), await dy.data(), await w.data(), await b.data()];
      const s = ops.layerNormWithStats(x, { weight: w, bias: b, eps });
      const g = ops.layerNormBackward(dy, x, s.mean, s.rstd, w);
      // L = Σ dy ⊙ LN(x; w, b)
      const h = 1e-6;
      const fdx = finiteDiff((v) => dot(dyv, refLayerNorm(v, C, eps, wv, bv)), xv, h);
      const fdw = finiteDiff((v) => dot(dyv, refLayerNorm(xv, C, eps, v, bv)), wv, h);
      const fdb = finiteDiff((v) => dot(dyv, refLayerNorm(xv, C, eps, wv, v)), bv, h);
      expect(relErr(await g.dx.data(), fdx)).toBeLessThan(1e-4);
      expect(relErr(await g.dweight!.data(), fdw)).toBeLessThan(1e-4);
      expect(relErr(await g.dbias!.data(), fdb)).toBeLessThan(1e-4);
      for (const t of [...Object.values(s), ...Object.values(g)]) t!.dispose();
    });

    test('strided inputs are read as their values', async () => {
      using xt = vl.randn([33, 5], { seed: 21 });
      using x = xt.transpose();
      using dyt = vl.randn([33, 5], { seed: 22 });
      using dy = dyt.transpose();
      const s = ops.layerNormWithStats(x);
      const g = ops.layerNormBackward(dy, x, s.mean, s.rstd, null);
      using xc = x.contiguous();
      using dyc = dy.contiguous();
      expect(relErr(await g.dx.data(), refLayerNormBackward(await dyc.data(), await xc.data(), 33, 1e-6).dx)).toBeLessThan(1e-4);
      for (const t of [...Object.values(s), ...Object.values(g)]) t!.dispose();
    });

    test('no rows: dx is empty and the parameter gradients are zeros', async () => {
      using x = vl.zeros([0, 7]);
      using st = vl.zeros([0]);
      using w = vl.ones([7]);
      const g = ops.layerNormBackward(x, x, st, st, w);
      expect(g.dx.shape).toEqual([0, 7]);
      expect(Array.from(await g.dweight!.data())).toEqual(new Array(7).fill(0));
      expect(Array.from(await g.dbias!.data())).toEqual(new Array(7).fill(0));
      for (const t of Object.values(g)) t!.dispose();
    });

    test('bad inputs', () => {
      using x = vl.zeros([4, 8]);
      using st = vl.zeros([4]);
      using w = vl.zeros([8]);
      expect(() => ops.layerNormBackward(vl.zeros([4, 7]), x, st, st, w)).toThrow(new RegExp(String.raw`layerNormBackward: dy must have shape \[4,8\] to match f32\[4,8\] on ${device}, got f32\[4,7\] on ${device}`));
      expect(() => ops.layerNormBackward(x, x, vl.zeros([4, 1]), st, w)).toThrow(vl.ShapeError);
      expect(() => ops.layerNormBackward(x, x, st, vl.zeros([3]), w)).toThrow(/rstd must have shape \[4\]/);
      expect(() => ops.layerNormBackward(x, x, st, st, vl.zeros([9]))).toThrow(/weight must have shape \[8\]/);
      expect(() => ops.layerNormBackward(x, vl.zeros([4, 8], { dtype: 'bf16' }), st, st, w)).toThrow(vl.DTypeError);
      expect(() => ops.layerNormBackward(vl.zeros([4, 8], { dtype: 'i32' }), x, st, st, w)).toThrow(/dy must be f32/);
      expect(() => ops.layerNormBackward(x, x, vl.zeros([4], { dtype: 'f16' }), st, w)).toThrow(vl.DTypeError);
      expect(() => ops.layerNormBackward(x, x, st, st, [1, 2] as unknown as vl.Tensor)).toThrow(/weight must be a Tensor, got an array/);
      expect(() => ops.layerNormBackward(x, x, st, st, [1, 2] as unknown as vl.Tensor)).toThrow(vl.ArgumentError);
      const peer = peerDevice(device);
      if (peer) {
        using dy = x.to(peer);
        using wp = w.to(peer);
        expectDeviceError(() => ops.layerNormBackward(dy, x, st, st, w), peer, device);
        expectDeviceError(() => ops.layerNormBackward(x, x, st, st, wp), device, peer);
        expectDeviceError(() => ops.siluBackward(dy, x), peer, device);
        expectDeviceError(() => ops.swigluGateBackward(dy.narrow(1, 0, 4), x), peer, device);
      }
    });
  });

  describe('silu and gelu backward', () => {
    const grid = Float32Array.from({ length: 1001 }, (_, i) => (i - 500) / 40); // -12.5..12.5, odd length

    test.each([['silu', silu, (v: number) => sigmoid(v) * (1 + v * (1 - sigmoid(v)))],
      ['gelu', gelu, (v: number) => 0.5 * (1 + erf(v / Math.SQRT2)) + v * Math.exp(-v * v / 2) / Math.sqrt(2 * Math.PI)]] as const)(
      '%s: analytic float64 reference and finite differences', async (name, f, df) => {
        const back = name === 'silu' ? ops.siluBackward : ops.geluBackward;
        using x = vl.tensor(grid);
        using dy = vl.randn([grid.length], { seed: 3 });
        const dyv = await dy.data();
        using dx = back(dy, x);
        const got = await dx.data();
        expect(relErr(got, Array.from(grid, (v, i) => dyv[i] * df(v)))).toBeLessThan(2e-6);
        const h = 1e-4;
        expect(relErr(got, Array.from(grid, (v, i) => dyv[i] * (f(v + h) - f(v - h)) / (2 * h)))).toBeLessThan(1e-5);
        // Shapes with batch dims and widths 1, 7, 33, 384.
        for (const shape of [[3, 1], [5, 7], [2, 3, 33], [3, 384]]) {
          using xs = vl.randn(shape, { seed: shape.length, std: 3 });
          using ds = vl.randn(shape, { seed: 9 });
          using out = back(ds, xs);
          expect(out.shape).toEqual(shape);
          const [xv, dv] = [await xs.data(), await ds.data()];
          expect(relErr(await out.data(), Array.from(xv, (v, i) => dv[i] * df(v)))).toBeLessThan(2e-6);
        }
      });

    test('extremes stay finite; NaN propagates', async () => {
      using x = vl.tensor([-1000, -100, 100, 1000, NaN]);
      using dy = vl.ones([5]);
      using ds = ops.siluBackward(dy, x);
      using dg = ops.geluBackward(dy, x);
      const s = await ds.data(), g = await dg.data();
      expect(Array.from(s.slice(0, 4), (v) => Math.abs(v))).toEqual([0, 0, 1, 1]);
      expect(Array.from(g.slice(0, 4), (v) => Math.abs(v))).toEqual([0, 0, 1, 1]);
      expect(Number.isNaN(s[4]) && Number.isNaN(g[4])).toBe(true);
    });

    test('bad inputs', () => {
      using x = vl.zeros([3, 4]);
      expect(() => ops.siluBackward(vl.zeros([4, 3]), x)).toThrow(/siluBackward: dy must have shape \[3,4\]/);
      expect(() => ops.geluBackward(x, vl.zeros([3, 4], { dtype: 'bf16' }))).toThrow(vl.DTypeError);
      expect(() => ops.geluBackward(vl.zeros([3, 4], { dtype: 'i64' }), x)).toThrow(/geluBackward: dy must be f32/);
      expect(() => ops.siluBackward(x, null as unknown as vl.Tensor)).toThrow(/siluBackward: x must be a Tensor, got null/);
    });
  });

  describe('swigluGate', () => {
    function refGate(a: ArrayLike<number>, H: number) {
      const rows = a.length / (2 * H);
      const h = new Float64Array(rows * H), ds = (dh: ArrayLike<number>) => {
        const da = new Float64Array(a.length);
        for (let r = 0; r < rows; ++r) for (let i = 0; i < H; ++i) {
          const a1 = a[r * 2 * H + i], a2 = a[r * 2 * H + H + i], s = sigmoid(a1), d = dh[r * H + i];
          da[r * 2 * H + i] = d * a2 * s * (1 + a1 * (1 - s));
          da[r * 2 * H + H + i] = d * a1 * s;
        }
        return da;
      };
      for (let r = 0; r < rows; ++r) for (let i = 0; i < H; ++i) h[r * H + i] = silu(a[r * 2 * H + i]) * a[r * 2 * H + H + i];
      return { h, backward: ds };
    }

    test.each([[[3, 2]], [[5, 14]], [[2, 9, 66]], [[131, 768]]])('a %j: forward and backward against float64', async (shape) => {
      const H = shape[shape.length - 1] / 2;
      using a = vl.randn(shape, { seed: H, std: 2 });
      const hShape = [...shape.slice(0, -1), H];
      using dh = vl.randn(hShape, { seed: H + 1 });
      const av = await a.data();
      const ref = refGate(av, H);
      using h = ops.swigluGate(a);
      expect(h.shape).toEqual(hShape);
      expect(relErr(await h.data(), ref.h)).toBeLessThan(2e-6);
      using da = ops.swigluGateBackward(dh, a);
      expect(da.shape).toEqual(shape);
      expect(relErr(await da.data(), ref.backward(await dh.data()))).toBeLessThan(2e-6);
    });

    test('the forward matches silu(a1) * a2 of the split halves; finite differences of the backward', async () => {
      using a = vl.randn([4, 14], { seed: 31, std: 2 });
      using a1 = a.narrow(1, 0, 7);
      using a2 = a.narrow(1, 7, 7);
      using s1 = ops.silu(a1);
      using want = s1.mul(a2);
      using h = ops.swigluGate(a);
      expect(relErr(await h.data(), await want.data())).toBeLessThan(1e-6);
      using dh = vl.randn([4, 7], { seed: 32 });
      const dhv = await dh.data();
      using da = ops.swigluGateBackward(dh, a);
      const fd = finiteDiff((v) => dot(dhv, refGate(v, 7).h), await a.data(), 1e-6);
      expect(relErr(await da.data(), fd)).toBeLessThan(1e-5);
    });

    test('bad inputs', () => {
      using a = vl.zeros([3, 8]);
      expect(() => ops.swigluGate(vl.zeros([3, 7]))).toThrow(/swigluGate: expected the pre-activations \[\.\.\., 2H\].*even last dimension, got f32\[3,7\]/);
      expect(() => ops.swigluGate(vl.zeros([3, 8], { dtype: 'bf16' }))).toThrow(vl.DTypeError);
      expect(() => ops.swigluGateBackward(vl.zeros([3, 8]), a)).toThrow(new RegExp(String.raw`swigluGateBackward: dh must have shape \[3,4\] to match f32\[3,8\] on ${device}, got f32\[3,8\]`));
      expect(() => ops.swigluGateBackward(vl.zeros([3, 4]), vl.zeros([3, 9]))).toThrow(vl.ShapeError);
      expect(() => ops.swigluGate(vl.zeros([]))).toThrow(vl.ShapeError);
    });
  });
});

// Thread counts and instruction sets are CPU settings.
describe('determinism', () => {
  afterAll(() => vl.setNumThreads(2));

  // Big enough for several chunks in every kernel (elementwise grain 32768,
  // row chunks). Also run in child processes: uses nothing but its arguments.
  function work(v: typeof vl, o: typeof ops): vl.Tensor[] {
    const x = v.randn([131, 384], { seed: 1, mean: 2, std: 3 });
    const dy = v.randn([131, 384], { seed: 2 });
    const w = v.randn([384], { seed: 3 });
    const s = o.layerNormWithStats(x, { weight: w });
    const g = o.layerNormBackward(dy, x, s.mean, s.rstd, w);
    const g0 = o.layerNormBackward(dy, x, s.mean, s.rstd, null);
    const big = v.randn([100003], { seed: 4, std: 4 });
    const dbig = v.randn([100003], { seed: 5 });
    const a = v.randn([131, 2 * 383], { seed: 6, std: 2 });
    const dh = v.randn([131, 383], { seed: 7 });
    return [g.dx, g.dweight!, g.dbias!, g0.dx, o.siluBackward(dbig, big), o.geluBackward(dbig, big),
      o.swigluGate(a), o.swigluGateBackward(dh, a)];
  }

  test('1 and 2 threads give bit-identical results', async () => {
    const run = async (threads: number) => {
      vl.setNumThreads(threads);
      const outs = work(vl, ops);
      const bytes = await Promise.all(outs.map(async (t) => Buffer.from(await t.bytes())));
      outs.forEach((t) => t.dispose());
      return bytes;
    };
    const one = await run(1);
    const two = await run(2);
    expect(one.length).toBe(8);
    one.forEach((b, i) => expect(b.equals(two[i])).toBe(true));
  });

  test('every ISA agrees', () => {
    const child = `${requireLib}
      const ops = require(${JSON.stringify(require.resolve('../lib/ops/nn.ts'))});
      (async () => {
        const outs = (${work.toString()})(vl, ops);
        console.log(JSON.stringify(await Promise.all(outs.map(async (t) => Buffer.from(await t.bytes()).toString('base64')))));
      })();`;
    const runs = vl.cpuInfo().supportedIsas.map((isa) => {
      const r = runNode(child, { VLLAMA_CPU_ISA: isa });
      expect(r.stderr).toBe('');
      return (JSON.parse(r.stdout) as string[]).map((b) => { const u = Buffer.from(b, 'base64'); return new Float32Array(u.buffer, u.byteOffset, u.length / 4); });
    });
    expect(runs.length).toBeGreaterThan(0);
    for (const r of runs) r.forEach((v, k) => expect(relErr(v, runs[0][k])).toBeLessThan(2e-5));
  });
});

// Normalization, softmax, activations and window layouts against float64
// references written here, on every backend; every CPU ISA agrees.
import * as vl from '../lib';
import * as ops from '../lib/ops/nn';
import {
  describeBackends, erf, expectDeviceError, maxAbsDiff, peerDevice, relErr, requireLib, runNode,
} from './helpers';

function refLayerNorm(x: Float32Array, C: number, w?: Float32Array, b?: Float32Array, eps = 1e-6): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r < x.length / C; ++r) {
    let m = 0;
    for (let i = 0; i < C; ++i) m += x[r * C + i];
    m /= C;
    let v = 0;
    for (let i = 0; i < C; ++i) v += (x[r * C + i] - m) ** 2;
    const rs = 1 / Math.sqrt(v / C + eps);
    for (let i = 0; i < C; ++i) out[r * C + i] = (x[r * C + i] - m) * rs * (w ? w[i] : 1) + (b ? b[i] : 0);
  }
  return out;
}

function refSoftmax(x: Float32Array, n: number): { y: Float64Array; lse: Float64Array } {
  const y = new Float64Array(x.length);
  const lse = new Float64Array(x.length / n);
  for (let r = 0; r < x.length / n; ++r) {
    let m = -Infinity;
    for (let i = 0; i < n; ++i) m = Math.max(m, x[r * n + i]);
    let s = 0;
    for (let i = 0; i < n; ++i) s += Math.exp(x[r * n + i] - m);
    for (let i = 0; i < n; ++i) y[r * n + i] = Math.exp(x[r * n + i] - m) / s;
    lse[r] = m + Math.log(s);
  }
  return { y, lse };
}

describeBackends('nn', (backend, device) => {
  describe('layerNorm', () => {
    test.each([[1, 1], [3, 7], [5, 64], [17, 385], [2, 1024]])('rows %i x C %i, with and without affine', async (rows, C) => {
      using x = vl.randn([rows, C], { seed: C, mean: 3, std: 2 });
      using w = vl.randn([C], { seed: 1 });
      using b = vl.randn([C], { seed: 2 });
      const xv = await x.data();
      using y = ops.layerNorm(x, { weight: w, bias: b, eps: 1e-5 });
      expect(relErr(await y.data(), refLayerNorm(xv, C, await w.data(), await b.data(), 1e-5))).toBeLessThan(1e-5);
      using y0 = ops.layerNorm(x);
      expect(relErr(await y0.data(), refLayerNorm(xv, C))).toBeLessThan(1e-5);
      const s = ops.layerNormWithStats(x, { weight: w });
      const mean = await s.mean.data();
      expect(s.mean.shape).toEqual([rows]);
      for (let r = 0; r < rows; ++r) {
        let m = 0;
        for (let i = 0; i < C; ++i) m += xv[r * C + i];
        expect(Math.abs(mean[r] - m / C)).toBeLessThan(1e-4);
      }
      for (const t of Object.values(s)) t.dispose();
    });

    test('strided input (a transposed view) is normalized over its last dimension', async () => {
      using x = vl.randn([6, 5], { seed: 4 });
      using t = x.transpose();
      using y = ops.layerNorm(t);
      using c = t.contiguous();
      expect(relErr(await y.data(), refLayerNorm(await c.data(), 6))).toBeLessThan(1e-5);
    });

    test('addLayerNorm = (x + r, LN(x + r)) in one pass', async () => {
      using x = vl.randn([4, 197, 64], { seed: 5 });
      using r = vl.randn([4, 197, 64], { seed: 6 });
      using w = vl.randn([64], { seed: 7 });
      const { sum, y } = ops.addLayerNorm(x, r, { weight: w, eps: 1e-6 });
      using s2 = x.add(r);
      expect(Buffer.from(await sum.bytes()).equals(Buffer.from(await s2.bytes()))).toBe(true);
      expect(relErr(await y.data(), refLayerNorm(await s2.data(), 64, await w.data()))).toBeLessThan(1e-5);
      sum.dispose();
      y.dispose();
    });

    test('bad inputs', () => {
      using x = vl.zeros([2, 8]);
      expect(() => ops.layerNorm(x, { weight: vl.zeros([7]) })).toThrow(new RegExp(String.raw`weight must have shape \[8\] to match f32\[2,8\] on ${device}, got f32\[7\] on ${device}`));
      expect(() => ops.layerNorm(x, { eps: 0 })).toThrow(vl.ArgumentError);
      expect(() => ops.layerNorm(vl.zeros([2, 8], { dtype: 'bf16' }))).toThrow(vl.DTypeError);
      expect(() => ops.addLayerNorm(x, vl.zeros([2, 9]))).toThrow(vl.ShapeError);
      const peer = peerDevice(device);
      if (peer) {
        using w = vl.ones([8], { device: peer });
        using r = vl.zeros([2, 8], { device: peer });
        expectDeviceError(() => ops.layerNorm(x, { weight: w }), device, peer);
        expectDeviceError(() => ops.addLayerNorm(x, r), device, peer);
        expectDeviceError(() => x.add(r), device, peer);
      }
    });
  });

  describe('softmax and activations', () => {
    test.each([[1, 1], [3, 5], [7, 197], [2, 3137]])('softmax rows %i x %i, with log-sum-exp', async (rows, n) => {
      using x = vl.randn([rows, n], { seed: n, std: 4 });
      const xv = await x.data();
      const ref = refSoftmax(xv, n);
      const { y, lse } = ops.softmaxWithLse(x);
      expect(maxAbsDiff(await y.data(), ref.y)).toBeLessThan(2e-6);
      expect(maxAbsDiff(await lse.data(), ref.lse)).toBeLessThan(1e-4);
      y.dispose();
      lse.dispose();
    });

    test('softmax is stable for large inputs and handles -Infinity', async () => {
      using x = vl.tensor([[1000, 1001, 1002], [-Infinity, 0, -Infinity]]);
      using y = ops.softmax(x);
      const v = await y.data();
      expect(maxAbsDiff(v.slice(0, 3), refSoftmax(Float32Array.from([0, 1, 2]), 3).y)).toBeLessThan(1e-6);
      expect(Array.from(v.slice(3))).toEqual([0, 1, 0]);
    });

    test('silu and gelu', async () => {
      using x = vl.tensor(Float32Array.from({ length: 2001 }, (_, i) => (i - 1000) / 50)); // -20..20
      const xv = await x.data();
      using s = ops.silu(x);
      using g = ops.gelu(x);
      expect(relErr(await s.data(), Array.from(xv, (v) => v / (1 + Math.exp(-v))))).toBeLessThan(1e-6);
      expect(relErr(await g.data(), Array.from(xv, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))))).toBeLessThan(1e-6);
      using extremes = ops.silu(vl.tensor([-1000, 1000, NaN, -Infinity, Infinity]));
      const e = await extremes.data();
      expect(Array.from(e.slice(0, 2))).toEqual([-0, 1000]);
      expect(Number.isNaN(e[2])).toBe(true);
    });
  });

  describe('window partition and merge', () => {
    test.each([[7, 7, 7], [9, 10, 7], [14, 21, 7], [5, 3, 4]])('H %i W %i window %i: padded windows, exact round trip', async (H, W, ws) => {
      const B = 2, C = 3;
      using x = vl.arange(1, 1 + B * H * W * C).reshape(B, H * W, C);
      using w = ops.windowPartition(x, H, W, ws);
      const nh = Math.ceil(H / ws), nw = Math.ceil(W / ws);
      expect(w.shape).toEqual([B * nh * nw, ws * ws, C]);
      const wv = await w.data();
      const xv = await x.data();
      for (let b = 0; b < B; ++b) for (let by = 0; by < nh; ++by) for (let bx = 0; bx < nw; ++bx) {
        for (let t = 0; t < ws * ws; ++t) {
          const y = by * ws + Math.floor(t / ws), xx = bx * ws + (t % ws);
          for (let c = 0; c < C; ++c) {
            const got = wv[(((b * nh + by) * nw + bx) * ws * ws + t) * C + c];
            const want = y < H && xx < W ? xv[((b * H + y) * W + xx) * C + c] : 0;
            if (got !== want) throw new Error(`window mismatch at b${b} ${by},${bx} t${t} c${c}: ${got} vs ${want}`);
          }
        }
      }
      using back = ops.windowMerge(w, B, H, W, ws);
      expect(Buffer.from(await back.bytes()).equals(Buffer.from(await x.bytes()))).toBe(true);
    });

    test('bad geometry', () => {
      using x = vl.zeros([1, 12, 4]);
      expect(() => ops.windowPartition(x, 3, 5, 2)).toThrow(/has 12 tokens but a 3x5 map has 15/);
      expect(() => ops.windowMerge(x, 1, 3, 4, 2)).toThrow(vl.ShapeError);
      expect(() => ops.windowPartition(x, 3, 4, 0)).toThrow(vl.ArgumentError);
    });
  });
});

// Instruction sets and thread counts are CPU settings.
describe('determinism and ISAs', () => {
  test('every ISA and both thread counts agree', () => {
    const script = `${requireLib}
      const ops = require(${JSON.stringify(require.resolve('../lib/ops/nn.ts'))});
      (async () => {
        const x = vl.randn([37, 385], { seed: 1, std: 3 });
        const w = vl.randn([385], { seed: 2 });
        const outs = [ops.layerNorm(x, { weight: w }), ops.softmax(x), ops.silu(x), ops.addLayerNorm(x, w.reshape(1, 385).add(x), { weight: w }).y];
        console.log(JSON.stringify(await Promise.all(outs.map(async (t) => Buffer.from(await t.bytes()).toString('base64')))));
      })();`;
    const runs = vl.cpuInfo().supportedIsas.flatMap((isa) => ['1', '2'].map((threads) => {
      const r = runNode(script, { VLLAMA_CPU_ISA: isa, VLLAMA_NUM_THREADS: threads });
      expect(r.stderr).toBe('');
      const out = (JSON.parse(r.stdout) as string[]).map((b) => { const u = Buffer.from(b, 'base64'); return new Float32Array(u.buffer, u.byteOffset, u.length / 4); });
      return { isa, threads, out };
    }));
    for (const r of runs) {
      r.out.forEach((v, k) => expect(maxAbsDiff(v, runs[0].out[k])).toBeLessThan(1e-5));
      const sameIsa = runs.find((o) => o.isa === r.isa)!;
      expect(JSON.stringify(r.out)).toBe(JSON.stringify(sameIsa.out)); // threads never change the bits
    }
  });
});

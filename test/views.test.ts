// Views share storage; copies do not. Strided reads come back in row-major
// order. On every backend.
import * as vl from '../lib';
import { describeBackends, expectDeviceError, peerDevice } from './helpers';

describeBackends('tensors', (backend, device) => {
  describe('views and copies', () => {
    test('reshape of a contiguous tensor is a view', async () => {
      using a = vl.arange(12);
      using b = a.reshape(3, -1);
      expect(b.shape).toEqual([3, 4]);
      expect(b.sharesStorage(a)).toBe(true);
      using c = a.view([2, 2, 3]);
      expect(c.sharesStorage(a)).toBe(true);
      expect(await c.array()).toEqual([[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]);
    });

    test('permute and transpose are views with permuted strides', async () => {
      using a = vl.arange(24).reshape(2, 3, 4);
      using p = a.permute(2, 0, 1);
      expect(p.shape).toEqual([4, 2, 3]);
      expect(p.strides).toEqual([1, 12, 4]);
      expect(p.isContiguous).toBe(false);
      expect(p.sharesStorage(a)).toBe(true);
      const v = await p.data();
      expect(v[1]).toBe(4); // p[0,0,1] = a[0,1,0]
      expect(v[6]).toBe(1); // p[1,0,0] = a[0,0,1]
      using t = a.transpose();
      expect(t.shape).toEqual([2, 4, 3]);
      expect(await t.array()).toEqual([
        [[0, 4, 8], [1, 5, 9], [2, 6, 10], [3, 7, 11]],
        [[12, 16, 20], [13, 17, 21], [14, 18, 22], [15, 19, 23]],
      ]);
    });

    test('contiguous() copies a strided view and keeps a contiguous one', async () => {
      using a = vl.arange(6).reshape(2, 3);
      using t = a.transpose();
      using c = t.contiguous();
      expect(c.isContiguous).toBe(true);
      expect(c.sharesStorage(a)).toBe(false);
      expect(Array.from(await c.data())).toEqual([0, 3, 1, 4, 2, 5]);
      using same = a.contiguous();
      expect(same.sharesStorage(a)).toBe(true);
    });

    test('view() refuses a layout that needs a copy; reshape() copies', async () => {
      using a = vl.arange(6).reshape(2, 3);
      using t = a.transpose();
      expect(() => t.view(6)).toThrow(vl.ShapeError);
      using r = t.reshape(6);
      expect(r.sharesStorage(a)).toBe(false);
      expect(Array.from(await r.data())).toEqual([0, 3, 1, 4, 2, 5]);
    });

    test('reshape merges dims that stay contiguous inside a permuted view', async () => {
      using a = vl.arange(24).reshape(2, 3, 4);
      using p = a.permute(1, 0, 2); // [3,2,4], last dim still contiguous
      using r = p.view(3, 2, 2, 2); // splitting the contiguous last dim is a view
      expect(r.sharesStorage(a)).toBe(true);
      const direct = await (p.contiguous()).data();
      expect(Array.from(await r.data())).toEqual(Array.from(direct));
    });

    test('writes through one tensor are not visible in copies; disposing a view keeps the storage alive', async () => {
      const a = vl.arange(4);
      const v = a.reshape(2, 2);
      a.dispose();
      expect(Array.from(await v.data())).toEqual([0, 1, 2, 3]);
      v.dispose();
    });

    test('to() with nothing to change gives a new handle on the same storage', async () => {
      using a = vl.arange(4);
      using b = a.to('f32');
      expect(b).not.toBe(a);
      expect(b.sharesStorage(a)).toBe(true);
      using c = a.to(device);
      expect(c.sharesStorage(a)).toBe(true);
    });

    test('elementwise ops broadcast and sum reduces', async () => {
      using a = vl.arange(6).reshape(2, 3);
      using b = vl.tensor([10, 20, 30]);
      using c = a.add(b);
      expect(await c.array()).toEqual([[10, 21, 32], [13, 24, 35]]);
      using d = a.transpose().mul(2);
      expect(await d.array()).toEqual([[0, 6], [2, 8], [4, 10]]);
      using s0 = a.sum(0);
      expect(Array.from(await s0.data())).toEqual([3, 5, 7]);
      using s1 = a.sum(-1, { keepdim: true });
      expect(s1.shape).toEqual([2, 1]);
      expect(Array.from(await s1.data())).toEqual([3, 12]);
      using i = vl.tensor([1, 2, 3], [3], { dtype: 'i32' });
      using si = i.sum();
      expect(si.dtype).toBe('i64');
      expect((await si.data())[0]).toBe(6n);
    });

    test('narrow() is a view; concat() joins along any dimension, from strided inputs too', async () => {
      using a = vl.arange(12).reshape(3, 4);
      using n = a.narrow(1, 1, 2);
      expect(n.sharesStorage(a)).toBe(true);
      expect(await n.array()).toEqual([[1, 2], [5, 6], [9, 10]]);
      using c0 = vl.concat([a, vl.full([1, 4], -1)], 0);
      expect(await c0.array()).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [-1, -1, -1, -1]]);
      using t = a.transpose();
      using c1 = vl.concat([n, t.narrow(0, 0, 3).transpose().narrow(1, 0, 1)], 1);
      expect(await c1.array()).toEqual([[1, 2, 0], [5, 6, 4], [9, 10, 8]]);
      expect(() => vl.concat([a, vl.zeros([3, 4], { dtype: 'bf16' })])).toThrow(vl.DTypeError);
      expect(() => vl.concat([a, vl.zeros([2, 5])])).toThrow(new RegExp(String.raw`does not match f32\[3,4\] on ${device} outside dimension 0`));
      expect(() => a.narrow(0, 2, 2)).toThrow(vl.ShapeError);
      const peer = peerDevice(device);
      if (peer) {
        using b = a.to(peer);
        expectDeviceError(() => vl.concat([a, b]), device, peer);
        expectDeviceError(() => a.add(b), device, peer);
        expectDeviceError(() => b.mul(a.sum(0)), peer, device);
      }
    });

    test('expand() repeats size-1 dims without copying', async () => {
      using a = vl.tensor([[1], [2]]);
      using e = a.expand(3, 2, 4);
      expect(e.strides).toEqual([0, 1, 0]);
      expect(e.sharesStorage(a)).toBe(true);
      expect(await e.array()).toEqual([[[1, 1, 1, 1], [2, 2, 2, 2]], [[1, 1, 1, 1], [2, 2, 2, 2]], [[1, 1, 1, 1], [2, 2, 2, 2]]]);
      expect(() => a.expand(3, 4)).toThrow(/has size 2, not 1/);
    });

    test('mean() over dims, as the pyramid head pools tokens', async () => {
      using a = vl.arange(24).reshape(2, 3, 4);
      using m = a.mean(1);
      expect(await m.array()).toEqual([[4, 5, 6, 7], [16, 17, 18, 19]]);
      using all = a.mean();
      expect((await all.data())[0]).toBeCloseTo(11.5, 6);
      expect(() => vl.tensor([1, 2], [2], { dtype: 'i32' }).mean()).toThrow(vl.DTypeError);
    });

    test('reshape of views with size-1 dims keeps the real strides', async () => {
      using t = vl.arange(2 * 17 * 4).reshape(2, 17, 4);
      using first = t.narrow(1, 0, 1); // [2,1,4], strides [68,4,1]
      using flat = first.reshape(2, 4);
      expect(flat.sharesStorage(t)).toBe(true);
      expect(flat.strides).toEqual([68, 1]);
      expect(await flat.array()).toEqual([[0, 1, 2, 3], [68, 69, 70, 71]]);
      using mid = t.narrow(2, 1, 1); // [2,17,1], strides [68,4,1]
      using m2 = mid.reshape(2, 17);
      expect(m2.strides).toEqual([68, 4]);
      expect((await m2.array() as number[][])[1][2]).toBe(68 + 8 + 1);
      using p = t.permute(1, 0, 2).narrow(0, 3, 1); // [1,2,4], strides [4,68,1]
      using p2 = p.reshape(8);
      expect(Array.from(await p2.data())).toEqual([12, 13, 14, 15, 80, 81, 82, 83]);
    });
  });

  // The common broadcast layouts, leading-dim sums and transposing copies have
  // their own kernels; these check them against references computed here.
  describe('broadcast, reduction and copy fast paths', () => {
    const f32 = Math.fround;
    type Op = 'add' | 'sub' | 'mul' | 'div';
    const ops: Op[] = ['add', 'sub', 'mul', 'div'];
    const apply = (op: Op, a: number, b: number): number =>
      op === 'add' ? a + b : op === 'sub' ? a - b : op === 'mul' ? a * b : a / b;

    /** Row-major index of `out` element i in a broadcast operand of shape s (right-aligned). */
    function bcastIndex(i: number, out: readonly number[], s: readonly number[]): number {
      let idx = 0, stride = 1;
      for (let d = out.length - 1, e = s.length - 1; d >= 0; --d, --e) {
        const c = i % out[d];
        i = Math.floor(i / out[d]);
        if (e >= 0) {
          if (s[e] !== 1) idx += c * stride;
          stride *= s[e];
        }
      }
      return idx;
    }

    /** a op b in f32 for every broadcast element (f32 ops are exact roundings of the double ones). */
    function refBinary(op: Op, a: Float32Array, as: number[], b: Float32Array, bs: number[], out: number[]): Float32Array {
      const n = out.reduce((p, q) => p * q, 1);
      const r = new Float32Array(n);
      for (let i = 0; i < n; ++i) r[i] = f32(apply(op, a[bcastIndex(i, out, as)], b[bcastIndex(i, out, bs)]));
      return r;
    }

    const bits = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

    test.each([1, 7, 33, 384])('f32 broadcasts of [C], [1,C], [B,1,1], [B,N,1], [1,N,C], [B,1,C] and scalars are exact (C = %i)', async (C) => {
      const [B, N] = [3, 5];
      const layouts: number[][] = [[C], [1, C], [B, 1, 1], [B, N, 1], [1, N, C], [B, 1, C], [], [1], [1, 1, 1]];
      {
        const x = vl.randn([B, N, C], { seed: C });
        const xd = await x.data();
        for (const ls of layouts) {
          const y = vl.rand(ls, { seed: C + ls.length, low: 0.5, high: 2 });
          const yd = await y.data();
          for (const op of ops) {
            const xy = x[op](y), yx = y[op](x);
            expect(xy.shape).toEqual([B, N, C]);
            expect(bits(await xy.data()).equals(bits(refBinary(op, xd, [B, N, C], yd, ls, [B, N, C])))).toBe(true);
            expect(bits(await yx.data()).equals(bits(refBinary(op, yd, ls, xd, [B, N, C], [B, N, C])))).toBe(true);
          }
        }
        // A number operand, a strided operand (the generic path), an [N,1] x [1,C] outer product.
        for (const op of ops) {
          const r = await x[op](1.5).data();
          expect(bits(r).equals(bits(refBinary(op, xd, [B, N, C], Float32Array.of(1.5), [], [B, N, C])))).toBe(true);
          const t = x.transpose(0, 1);  // [N, B, C]
          const g = vl.randn([C], { seed: 9 });
          expect(bits(await t[op](g).data()).equals(bits(refBinary(op, await t.data(), [N, B, C], await g.data(), [C], [N, B, C])))).toBe(true);
          const col = vl.rand([N, 1], { seed: 3, low: 1, high: 2 }), row = vl.rand([1, C], { seed: 4, low: 1, high: 2 });
          expect(bits(await col[op](row).data()).equals(bits(refBinary(op, await col.data(), [N, 1], await row.data(), [1, C], [N, C])))).toBe(true);
        }
      }
    });

    test('long rows and short rows of a [R, C] against [C] and [R, 1]', async () => {
      {
        for (const [R, C] of [[3000, 5], [700, 129], [2, 40000]]) {
          const x = vl.randn([R, C], { seed: R }), v = vl.rand([C], { seed: 1, low: 0.5, high: 2 });
          const s = vl.rand([R, 1], { seed: 2, low: 0.5, high: 2 });
          const xd = await x.data(), vd = await v.data(), sd = await s.data();
          for (const op of ops) {
            expect(bits(await x[op](v).data()).equals(bits(refBinary(op, xd, [R, C], vd, [C], [R, C])))).toBe(true);
            expect(bits(await v[op](x).data()).equals(bits(refBinary(op, vd, [C], xd, [R, C], [R, C])))).toBe(true);
            expect(bits(await s[op](x).data()).equals(bits(refBinary(op, sd, [R, 1], xd, [R, C], [R, C])))).toBe(true);
          }
        }
      }
    });

    test('bf16 and integer broadcasts compute like their element-by-element definition', async () => {
      {
        const x = vl.randn([4, 6, 33], { seed: 5 }), g = vl.rand([33], { seed: 6, low: 0.5, high: 2 });
        const s = vl.rand([4, 1, 1], { seed: 7, low: 0.5, high: 2 });
        for (const op of ops) {
          for (const y of [g, s]) {
            // bf16: computed in f32, rounded once.
            const xb = x.to('bf16'), yb = y.to('bf16');
            const want = await xb.to('f32')[op](yb.to('f32')).to('bf16').data();
            expect(Array.from(await xb[op](yb).data())).toEqual(Array.from(want));
            const wantR = await yb.to('f32')[op](xb.to('f32')).to('bf16').data();
            expect(Array.from(await yb[op](xb).data())).toEqual(Array.from(wantR));
          }
        }
        const xi = vl.tensor(Array.from({ length: 2 * 3 * 7 }, (_, i) => i * 37 - 400), [2, 3, 7], { dtype: 'i32' });
        const gi = vl.tensor([3, -5, 7, 2, -1, 9, 4], [7], { dtype: 'i32' });
        const xa = Array.from(await xi.data()), ga = Array.from(await gi.data());
        const idiv = (a: number, b: number): number => Math.trunc(a / b) | 0;
        for (const op of ops) {
          const f = op === 'div' ? idiv : (a: number, b: number) => apply(op, a, b);
          expect(Array.from(await xi[op](gi).data())).toEqual(xa.map((v, i) => f(v, ga[i % 7])));
          expect(Array.from(await gi[op](xi.add(1000)).data())).toEqual(xa.map((v, i) => f(ga[i % 7], v + 1000)));
        }
      }
    });

    /** Sum over `dims` in float64 (keepdim false). */
    function refSum(d: ArrayLike<number>, shape: number[], dims: number[]): Float64Array {
      const keep = shape.map((_, i) => !dims.includes(i));
      const outShape = shape.filter((_, i) => keep[i]);
      const out = new Float64Array(outShape.reduce((p, q) => p * q, 1));
      const idx = new Array(shape.length).fill(0);
      for (let i = 0; i < d.length; ++i) {
        let o = 0;
        for (let k = 0; k < shape.length; ++k) if (keep[k]) o = o * shape[k] + idx[k];
        out[o] += d[i];
        for (let k = shape.length - 1; k >= 0; --k) { if (++idx[k] < shape[k]) break; idx[k] = 0; }
      }
      return out;
    }

    test.each([
      [[5, 9, 33], [0, 1]], [[5, 9, 384], [0, 1]], [[6400, 7], [0]], [[2, 3], [0]], [[1, 1, 4], [0, 1]],
      [[3, 1, 5, 1, 7], [0, 2]], [[4, 300, 5], [1]], [[3, 50, 2051], [0, 1]], [[7, 9, 1, 33], [1]],
    ] as [number[], number[]][])('sum of %j over leading dims %j, with and without keepdim', async (shape, dims) => {
      {
        const x = vl.randn(shape, { seed: shape.length + shape[0] });
        const ref = refSum(await x.data(), shape, dims);
        const s = x.sum(dims);
        const k = x.sum(dims, { keepdim: true });
        expect(k.shape).toEqual(shape.map((n, i) => (dims.includes(i) ? 1 : n)));
        const got = await s.data();
        expect(got.length).toBe(ref.length);
        const rows = dims.reduce((p, d) => p * shape[d], 1);
        for (let i = 0; i < ref.length; ++i) expect(Math.abs(got[i] - ref[i])).toBeLessThan(1e-6 * rows + 1e-6);
        expect(bits(await k.data()).equals(bits(got))).toBe(true);
        // Integers are exact; bf16 sums in f32 and rounds once.
        const xi = x.mul(100).to('i32');
        const refI = refSum(await xi.data(), shape, dims);
        expect(Array.from(await xi.sum(dims).data()).map(Number)).toEqual(Array.from(refI));
        const xb = x.to('bf16');
        const refB = refSum(await xb.data(), shape, dims);
        const gotB = await xb.sum(dims).data();
        for (let i = 0; i < refB.length; ++i) expect(Math.abs(gotB[i] - refB[i])).toBeLessThanOrEqual(Math.abs(refB[i]) / 128 + 1e-6 * rows);
      }
    });

    test('very long columns are summed accurately', async () => {
      {
        for (const C of [1, 7, 100]) {
          using x = vl.rand([100000, C], { seed: C, low: 0, high: 1 });
          const ref = refSum(await x.data(), [100000, C], [0]);
          using s = x.sum(0);
          const got = await s.data();
          // About 50000 per column: within a few f32 ulps (the CPU's float runs are short, chunk
          // totals in double; CUDA adds in a fixed f32 tree, a few more roundings).
          const rel = backend === 'cpu' ? 2e-7 : 1e-6;
          for (let i = 0; i < C; ++i) expect(Math.abs(got[i] - ref[i])).toBeLessThan(ref[i] * rel + 1e-3);
        }
      }
    });

    test('transposing and permuting copies of every element size', async () => {
      {
        const shapes: [number[], number[]][] = [
          [[288, 70], [1, 0]], [[33, 17], [1, 0]], [[3, 5, 33, 7], [3, 2, 1, 0]], [[3, 5, 33, 7], [0, 2, 1, 3]],
          [[3, 5, 33, 7], [1, 3, 0, 2]], [[2, 40, 3, 70], [0, 3, 2, 1]], [[65, 1, 130], [2, 1, 0]],
        ];
        for (const [shape, perm] of shapes) {
          const n = shape.reduce((p, q) => p * q, 1);
          const base = vl.arange(n).reshape(shape).mul(1 / 64);
          const values = Array.from(await base.data());
          const pshape = perm.map((d) => shape[d]);
          const strides: number[] = [];
          for (let d = shape.length - 1, s = 1; d >= 0; --d) { strides[d] = s; s *= shape[d]; }
          const want: number[] = [];
          const idx = new Array(shape.length).fill(0);
          for (let i = 0; i < n; ++i) {
            want.push(values[perm.reduce((o, d, k) => o + idx[k] * strides[d], 0)]);
            for (let k = shape.length - 1; k >= 0; --k) { if (++idx[k] < pshape[k]) break; idx[k] = 0; }
          }
          for (const dtype of ['f32', 'bf16', 'i64', 'u8', 'i32'] as const) {
            const t = base.to(dtype).permute(perm);
            const c = t.contiguous();
            expect(c.isContiguous).toBe(true);
            const expected = dtype === 'f32' ? want : Array.from(await vl.tensor(want, [n]).to(dtype).data());
            expect(Array.from(await c.data(), Number)).toEqual(expected.map(Number));
          }
        }
      }
    });
  });
});

// Views share storage; copies do not. Strided reads come back in row-major order.
import * as vl from '../lib';

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
    using c = a.to('cpu');
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
    expect(() => vl.concat([a, vl.zeros([2, 5])])).toThrow(/does not match f32\[3,4\] on cpu outside dimension 0/);
    expect(() => a.narrow(0, 2, 2)).toThrow(vl.ShapeError);
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

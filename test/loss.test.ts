// Cross-entropy (hard labels with label smoothing, soft targets) and BCE on
// logits against float64 references and finite differences written here, on
// every backend; CPU thread counts.
import * as vl from '../lib';
import * as loss from '../lib/ops/loss';
import { describeBackends, dot, expectDeviceError, finiteDiff, maxAbsDiff, peerDevice, relErr } from './helpers';

/** Deterministic pseudo-random integers in [0, n). */
function randomInts(count: number, n: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: count }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  });
}

function rowLse(z: ArrayLike<number>, r: number, K: number): number {
  let m = -Infinity;
  for (let k = 0; k < K; ++k) m = Math.max(m, z[r * K + k]);
  let s = 0;
  for (let k = 0; k < K; ++k) s += Math.exp(z[r * K + k] - m);
  return m + Math.log(s);
}

function refCrossEntropy(z: ArrayLike<number>, y: number[], K: number, eps: number) {
  const B = y.length, lossV = new Float64Array(B), lse = new Float64Array(B);
  for (let r = 0; r < B; ++r) {
    lse[r] = rowLse(z, r, K);
    let sz = 0;
    for (let k = 0; k < K; ++k) sz += z[r * K + k];
    lossV[r] = lse[r] - (1 - eps) * z[r * K + y[r]] - (eps / K) * sz;
  }
  return { loss: lossV, lse };
}

function refCrossEntropyGrad(d: ArrayLike<number>, z: ArrayLike<number>, y: number[], K: number, eps: number): Float64Array {
  const g = new Float64Array(z.length);
  for (let r = 0; r < y.length; ++r) {
    const l = rowLse(z, r, K);
    for (let k = 0; k < K; ++k) g[r * K + k] = d[r] * (Math.exp(z[r * K + k] - l) - (k === y[r] ? 1 - eps : 0) - eps / K);
  }
  return g;
}

function refSoftCrossEntropy(z: ArrayLike<number>, t: ArrayLike<number>, K: number): Float64Array {
  const B = z.length / K, out = new Float64Array(B);
  for (let r = 0; r < B; ++r) {
    const l = rowLse(z, r, K);
    for (let k = 0; k < K; ++k) out[r] += t[r * K + k] * (l - z[r * K + k]);
  }
  return out;
}

const bce = (z: number, t: number) => Math.max(z, 0) - z * t + Math.log1p(Math.exp(-Math.abs(z)));
const sigmoid = (z: number) => 1 / (1 + Math.exp(-z));

function labelsTensor(y: number[], dtype: 'i32' | 'i64'): vl.Tensor {
  return dtype === 'i32' ? vl.tensor(Int32Array.from(y), [y.length], { dtype }) : vl.tensor(y, [y.length], { dtype });
}

describeBackends('loss', (backend, device) => {
  describe('crossEntropy', () => {
    const cases: [number, number, number, 'i32' | 'i64'][] = [];
    for (const [B, K] of [[1, 1], [5, 7], [37, 33], [3, 384], [1001, 33]]) {
      for (const eps of [0, 0.1]) cases.push([B, K, eps, eps ? 'i64' : 'i32']);
    }
    cases.push([6, 7, 0.1, 'i32'], [4, 33, 0, 'i64']);

    test.each(cases)('B %i, K %i, labelSmoothing %f, %s labels: loss, lse and gradient', async (B, K, eps, dtype) => {
      using z = vl.randn([B, K], { seed: B * 100 + K, std: 3 });
      using d = vl.rand([B], { seed: K, low: -1, high: 1 });
      const y = randomInts(B, K, B + K);
      using labels = labelsTensor(y, dtype);
      const [zv, dv] = [await z.data(), await d.data()];
      const ref = refCrossEntropy(zv, y, K, eps);
      const out = loss.crossEntropyForward(z, labels, { labelSmoothing: eps });
      expect(out.loss.shape).toEqual([B]);
      expect(out.lse.shape).toEqual([B]);
      expect(relErr(await out.loss.data(), ref.loss, 1)).toBeLessThan(2e-6);
      expect(relErr(await out.lse.data(), ref.lse, 1)).toBeLessThan(2e-6);
      using dz = loss.crossEntropyBackward(d, z, out.lse, labels, { labelSmoothing: eps });
      expect(dz.shape).toEqual([B, K]);
      const got = await dz.data();
      expect(relErr(got, refCrossEntropyGrad(dv, zv, y, K, eps), 1e-2)).toBeLessThan(2e-6);
      if (B * K <= 300) {
        // L = Σ_i dloss_i · loss_i(z)
        const fd = finiteDiff((v) => dot(dv, refCrossEntropy(v, y, K, eps).loss), zv);
        expect(relErr(got, fd, 1e-3)).toBeLessThan(1e-5);
      }
      out.loss.dispose();
      out.lse.dispose();
    });

    test('the default is no smoothing; large logits are stable; strided logits are read as values', async () => {
      using z = vl.tensor([[1000, 1001, 1002], [-1000, 0, 1000]]);
      using y = vl.tensor([2, 0], [2], { dtype: 'i32' });
      const out = loss.crossEntropyForward(z, y);
      const l = await out.loss.data();
      expect(Math.abs(l[0] - (Math.log(1 + Math.exp(-1) + Math.exp(-2))))).toBeLessThan(1e-4);
      expect(l[1]).toBe(2000);
      using zt = vl.randn([7, 5], { seed: 3 });
      using t = zt.transpose();
      using tc = t.contiguous();
      using y5 = vl.tensor([0, 1, 2, 3, 4], [5], { dtype: 'i64' });
      const a = loss.crossEntropyForward(t, y5, { labelSmoothing: 0.2 });
      const b = loss.crossEntropyForward(tc, y5, { labelSmoothing: 0.2 });
      expect(Buffer.from(await a.loss.bytes()).equals(Buffer.from(await b.loss.bytes()))).toBe(true);
      for (const x of [out.loss, out.lse, a.loss, a.lse, b.loss, b.lse]) x.dispose();
    });

    test('a label out of [0, K) is never read: reading the loss throws an error naming it', async () => {
      using z = vl.randn([4, 7], { seed: 1 });
      for (const [y, bad, row] of [[[0, 6, 7, 1], 7, 2], [[0, 1, 2, -1], -1, 3]] as const) {
        for (const dtype of ['i32', 'i64'] as const) {
          using labels = labelsTensor([...y], dtype);
          const out = loss.crossEntropyForward(z, labels, { labelSmoothing: 0.1 });
          // The CPU names the label and its row; CUDA's kernels only flag that one was bad.
          const which = backend === 'cpu' ? `label ${bad} at row ${row}` : '.*label';
          const message = new RegExp(`cross_entropy failed on ${device}: ${which} is out of range for 7 classes \\(expected 0 <= label < 7\\)`);
          await expect(out.loss.data()).rejects.toThrow(message);
          await expect(out.loss.data()).rejects.toBeInstanceOf(vl.ExecutionError);
          await expect(out.lse.data()).rejects.toThrow(message);
          using dloss = vl.ones([4]);
          // The backward checks the labels itself (with a healthy lse as well).
          using good = vl.zeros([4]);
          using dz = loss.crossEntropyBackward(dloss, z, good, labels);
          await expect(dz.data()).rejects.toThrow(/label.* is out of range for 7 classes/);
          using dz2 = loss.crossEntropyBackward(dloss, z, out.lse, labels);
          await expect(dz2.data()).rejects.toThrow(vl.ExecutionError);
          out.loss.dispose();
          out.lse.dispose();
        }
      }
      // The stream keeps working.
      using ok = loss.crossEntropyForward(z, vl.tensor([0, 1, 2, 3], [4], { dtype: 'i32' })).loss;
      expect((await ok.data()).every((v) => Number.isFinite(v))).toBe(true);
    });

    test('bad inputs', () => {
      using z = vl.zeros([3, 5]);
      using y = vl.zeros([3], { dtype: 'i32' });
      using d = vl.zeros([3]);
      expect(() => loss.crossEntropyForward(vl.zeros([5]), y)).toThrow(new RegExp(String.raw`crossEntropyForward: expected logits \[B, K\] with B >= 1 rows and K >= 1 classes, got f32\[5\] on ${device}`));
      expect(() => loss.crossEntropyForward(vl.zeros([0, 5]), vl.zeros([0], { dtype: 'i32' }))).toThrow(vl.ShapeError);
      expect(() => loss.crossEntropyForward(vl.zeros([3, 0]), y)).toThrow(vl.ShapeError);
      expect(() => loss.crossEntropyForward(vl.zeros([3, 5], { dtype: 'bf16' }), y)).toThrow(vl.DTypeError);
      expect(() => loss.crossEntropyForward(z, vl.zeros([3]))).toThrow(new RegExp(String.raw`labels must be i32 or i64 class indices, got f32\[3\] on ${device}`));
      expect(() => loss.crossEntropyForward(z, vl.zeros([3], { dtype: 'u8' }))).toThrow(vl.DTypeError);
      expect(() => loss.crossEntropyForward(z, vl.zeros([4], { dtype: 'i64' }))).toThrow(new RegExp(String.raw`labels must have shape \[3\] to match the logits f32\[3,5\] on ${device}, got i64\[4\] on ${device}`));
      expect(() => loss.crossEntropyForward(z, vl.zeros([3, 1], { dtype: 'i32' }))).toThrow(vl.ShapeError);
      expect(() => loss.crossEntropyForward(z, y, { labelSmoothing: 1.5 })).toThrow(/labelSmoothing must be a number in \[0, 1\], got 1.5/);
      expect(() => loss.crossEntropyForward(z, y, { labelSmoothing: NaN })).toThrow(vl.ArgumentError);
      expect(() => loss.crossEntropyForward(z, y, { smoothing: 0.1 } as unknown as loss.CrossEntropyOptions)).toThrow(/unknown option 'smoothing'/);
      expect(() => loss.crossEntropyForward(z, [0, 1, 2] as unknown as vl.Tensor)).toThrow(/labels must be a Tensor, got an array/);
      expect(() => loss.crossEntropyBackward(vl.zeros([3, 1]), z, d, y)).toThrow(/dloss must have shape \[3\]/);
      expect(() => loss.crossEntropyBackward(d, z, vl.zeros([2]), y)).toThrow(/lse must have shape \[3\]/);
      expect(() => loss.crossEntropyBackward(vl.zeros([3], { dtype: 'f16' }), z, d, y)).toThrow(vl.DTypeError);
      expect(() => loss.crossEntropyBackward(d, z, d, y, { labelSmoothing: -0.1 })).toThrow(vl.ArgumentError);
      const peer = peerDevice(device);
      if (peer) {
        using yp = y.to(peer);
        using zp = z.to(peer);
        expectDeviceError(() => loss.crossEntropyForward(z, yp), device, peer);
        expectDeviceError(() => loss.crossEntropyBackward(d, zp, d, y), device, peer);
        expectDeviceError(() => loss.softCrossEntropyForward(z, zp), device, peer);
        expectDeviceError(() => loss.bceWithLogitsForward(zp, z), peer, device);
      }
    });
  });

  describe('softCrossEntropy', () => {
    function targets(B: number, K: number, seed: number): Float32Array {
      const raw = randomInts(B * K, 1000, seed).map((v) => v / 1000);
      const t = new Float32Array(B * K);
      for (let r = 0; r < B; ++r) {
        let s = 0;
        for (let k = 0; k < K; ++k) s += raw[r * K + k];
        // Rows sum to 1, except the last, which sums to 0.5 (exercises the Σt factor).
        const scale = r === B - 1 && B > 1 ? 0.5 : 1;
        for (let k = 0; k < K; ++k) t[r * K + k] = s > 0 ? raw[r * K + k] / s * scale : 1 / K;
      }
      return t;
    }

    test.each([[1, 1], [5, 7], [37, 33], [3, 384], [1001, 33]])('B %i, K %i: loss and gradient', async (B, K) => {
      using z = vl.randn([B, K], { seed: B + K, std: 3 });
      using t = vl.tensor(targets(B, K, K), [B, K]);
      using d = vl.rand([B], { seed: 7, low: -1, high: 1 });
      const [zv, tv, dv] = [await z.data(), await t.data(), await d.data()];
      const out = loss.softCrossEntropyForward(z, t);
      expect(relErr(await out.loss.data(), refSoftCrossEntropy(zv, tv, K), 1)).toBeLessThan(2e-6);
      const lseRef = Array.from({ length: B }, (_, r) => rowLse(zv, r, K));
      expect(relErr(await out.lse.data(), lseRef, 1)).toBeLessThan(2e-6);
      using dz = loss.softCrossEntropyBackward(d, z, out.lse, t);
      const got = await dz.data();
      const want = new Float64Array(B * K);
      for (let r = 0; r < B; ++r) {
        let T = 0;
        for (let k = 0; k < K; ++k) T += tv[r * K + k];
        for (let k = 0; k < K; ++k) want[r * K + k] = dv[r] * (Math.exp(zv[r * K + k] - lseRef[r]) * T - tv[r * K + k]);
      }
      expect(relErr(got, want, 1e-3)).toBeLessThan(2e-6);
      if (B * K <= 300) {
        const fd = finiteDiff((v) => dot(dv, refSoftCrossEntropy(v, tv, K)), zv);
        expect(relErr(got, fd, 1e-3)).toBeLessThan(1e-5);
      }
      out.loss.dispose();
      out.lse.dispose();
    });

    test('one-hot targets give the hard-label cross-entropy', async () => {
      using z = vl.randn([6, 9], { seed: 4 });
      const y = randomInts(6, 9, 5);
      const onehot = new Float32Array(54);
      y.forEach((c, r) => { onehot[r * 9 + c] = 1; });
      using t = vl.tensor(onehot, [6, 9]);
      using labels = labelsTensor(y, 'i32');
      const soft = loss.softCrossEntropyForward(z, t);
      const hard = loss.crossEntropyForward(z, labels);
      expect(maxAbsDiff(await soft.loss.data(), await hard.loss.data())).toBeLessThan(1e-5);
      for (const x of [soft.loss, soft.lse, hard.loss, hard.lse]) x.dispose();
    });

    test('bad inputs', () => {
      using z = vl.zeros([3, 5]);
      using d = vl.zeros([3]);
      expect(() => loss.softCrossEntropyForward(z, vl.zeros([3, 4]))).toThrow(new RegExp(String.raw`softCrossEntropyForward: targets must have shape \[3,5\] to match the logits f32\[3,5\] on ${device}, got f32\[3,4\] on ${device}`));
      expect(() => loss.softCrossEntropyForward(z, vl.zeros([3, 5], { dtype: 'bf16' }))).toThrow(vl.DTypeError);
      expect(() => loss.softCrossEntropyForward(vl.zeros([2, 3, 5]), vl.zeros([2, 3, 5]))).toThrow(vl.ShapeError);
      expect(() => loss.softCrossEntropyBackward(d, z, vl.zeros([3, 5]), z)).toThrow(/lse must have shape \[3\]/);
      expect(() => loss.softCrossEntropyBackward(d, z, d, vl.zeros([5, 3]))).toThrow(vl.ShapeError);
    });
  });

  describe('bceWithLogits', () => {
    test.each([[[7]], [[5, 33]], [[3, 1, 384]], [[70001]]])('shape %j: stable loss and gradient', async (shape) => {
      const n = shape.reduce((a, b) => a * b, 1);
      using zr = vl.randn(shape, { seed: n, std: 4 });
      const zv = Float32Array.from(await zr.data());
      // Extremes where the naive formula overflows or cancels.
      [-100, -30, -5, 0, 5, 30, 100].forEach((v, i) => { if (i < n) zv[i] = v; });
      using z = vl.tensor(zv, shape);
      const tv = Float32Array.from(randomInts(n, 1001, n), (v) => v / 1000);
      tv[0] = 0;
      if (n > 6) tv[6] = 1;
      using t = vl.tensor(tv, shape);
      using d = vl.rand(shape, { seed: 3, low: -1, high: 1 });
      const dv = await d.data();
      using l = loss.bceWithLogitsForward(z, t);
      expect(l.shape).toEqual(shape);
      const lv = await l.data();
      expect(lv.every((v) => Number.isFinite(v))).toBe(true);
      expect(relErr(lv, Array.from(zv, (v, i) => bce(v, tv[i])), 1)).toBeLessThan(2e-6);
      using dz = loss.bceWithLogitsBackward(d, z, t);
      const got = await dz.data();
      expect(relErr(got, Array.from(zv, (v, i) => dv[i] * (sigmoid(v) - tv[i])))).toBeLessThan(2e-6);
      if (n <= 200) {
        // Elementwise: the derivative of each element's loss alone.
        const fd = Array.from(zv, (v, i) => dv[i] * (bce(v + 1e-6, tv[i]) - bce(v - 1e-6, tv[i])) / 2e-6);
        expect(relErr(got, fd)).toBeLessThan(1e-5);
      }
    });

    test('bad inputs', () => {
      using z = vl.zeros([2, 3]);
      expect(() => loss.bceWithLogitsForward(z, vl.zeros([3, 2]))).toThrow(/bceWithLogitsForward: targets must have shape \[2,3\]/);
      expect(() => loss.bceWithLogitsForward(vl.zeros([2, 3], { dtype: 'i32' }), z)).toThrow(/logits must be f32/);
      expect(() => loss.bceWithLogitsBackward(vl.zeros([6]), z, z)).toThrow(/dloss must have shape \[2,3\]/);
      expect(() => loss.bceWithLogitsBackward(z, z, undefined as unknown as vl.Tensor)).toThrow(vl.ArgumentError);
    });
  });
});

// Thread counts are a CPU setting.
describe('determinism', () => {
  afterAll(() => vl.setNumThreads(2));

  test('1 and 2 threads give bit-identical results', async () => {
    const run = async (threads: number) => {
      vl.setNumThreads(threads);
      const outs = vl.tidy(() => {
        const z = vl.randn([1001, 33], { seed: 1, std: 3 });
        const labels = vl.tensor(Int32Array.from(randomInts(1001, 33, 2)), [1001], { dtype: 'i32' });
        const d = vl.rand([1001], { seed: 3 });
        const t = vl.rand([1001, 33], { seed: 4 });
        const ce = loss.crossEntropyForward(z, labels, { labelSmoothing: 0.1 });
        const soft = loss.softCrossEntropyForward(z, t);
        const big = vl.randn([70001], { seed: 5, std: 5 });
        const bt = vl.rand([70001], { seed: 6 });
        return [ce.loss, ce.lse, loss.crossEntropyBackward(d, z, ce.lse, labels, { labelSmoothing: 0.1 }), soft.loss,
          loss.softCrossEntropyBackward(d, z, soft.lse, t), loss.bceWithLogitsForward(big, bt),
          loss.bceWithLogitsBackward(big, big, bt)];
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

// The autograd engine on the tensor methods and the GEMM-based layers:
// gradients against finite differences, accumulation, graph release, memory;
// on every backend (the finite differences run there too).
import * as vl from '../lib';
import { describeBackends, expectDeviceError, peerDevice, settleGc } from './helpers';

const F = vl.nn.functional;

/** Central finite differences of a scalar function of one tensor's values (float64 in JS). */
function numericGrad(values: Float32Array, f: (v: Float32Array) => number, h = 1e-2): Float64Array {
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; ++i) {
    const v = Float32Array.from(values);
    v[i] = values[i] + h;
    const up = f(v);
    v[i] = values[i] - h;
    out[i] = (up - f(v)) / (2 * h);
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rel = 2e-3): void {
  let scale = 1e-6;
  for (let i = 0; i < want.length; ++i) scale = Math.max(scale, Math.abs(want[i]));
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; ++i) {
    if (Math.abs(got[i] - want[i]) > rel * scale) throw new Error(`index ${i}: got ${got[i]}, want ${want[i]} (scale ${scale})`);
  }
}

/** Checks d(sum(f(inputs)·w))/d(input k) against finite differences for every input. */
function checkGrads(shapes: number[][], f: (xs: vl.Tensor[]) => vl.Tensor, seed = 1): void {
  const values = shapes.map((s, i) => vl.randn(s, { seed: seed + i }).dataSync() as Float32Array);
  const outShape = vl.noGrad(() => vl.tidy(() => [...f(values.map((v, i) => vl.tensor(v, shapes[i])) ).shape]));
  const w = vl.randn(outShape, { seed: 99 });
  const objective = (xs: vl.Tensor[]) => f(xs).mul(w).sum();
  const inputs = values.map((v, i) => {
    const t = vl.tensor(v, shapes[i]);
    t.requiresGrad = true;
    return t;
  });
  vl.tidy(() => objective(inputs).backward());
  inputs.forEach((x, k) => {
    const num = numericGrad(values[k], (v) => vl.noGrad(() => vl.tidy(() => {
      const xs = values.map((u, i) => vl.tensor(i === k ? v : u, shapes[i]));
      return objective(xs).dataSync()[0];
    })));
    expectClose(x.grad!.dataSync() as Float32Array, num);
  });
  for (const t of [...inputs, w]) t.dispose();
}

describeBackends('autograd engine', (_backend, device) => {
  test('broadcasting arithmetic, reductions and views', () => {
    checkGrads([[3, 4], [4]], ([a, b]) => a.mul(b).add(a.div(b.mul(b).add(2))).sub(b));
    checkGrads([[2, 3, 5]], ([a]) => a.sum(1, { keepdim: true }).mul(a).mean([0, 2]));
    checkGrads([[2, 3, 4]], ([a]) => a.permute(2, 0, 1).reshape(4, 6).narrow(1, 1, 3).transpose().contiguous());
    checkGrads([[1, 3], [2, 3]], ([a, b]) => vl.concat([a.expand(2, 3), b, a], 0).mul(vl.concat([b, b, a.mul(3)], 0)));
  });

  test('linear and the patch convolution', () => {
    checkGrads([[2, 5, 7], [3, 7], [3]], ([x, w, b]) => F.linear(x, w, b));
    checkGrads([[2, 3, 8, 12], [5, 3, 4, 4], [5]], ([x, w, b]) => F.convPatch(x, w, b, 4));
    // A strided (cropped, permuted) input as in the GSA reduction.
    checkGrads([[1, 9, 10, 3], [4, 3, 2, 2], [4]], ([x, w, b]) => F.convPatch(x.permute(0, 3, 1, 2).narrow(2, 0, 8), w, b, 2));
  });

  test('normalization, activations and the SwiGLU feed-forward', () => {
    const p = (w: vl.Tensor, b: vl.Tensor) => ({ weight: w, bias: b, eps: 1e-5 });
    checkGrads([[3, 5, 8], [8], [8]], ([x, w, b]) => F.layerNorm(x, p(w, b)));
    checkGrads([[2, 4, 8], [2, 4, 8], [8], [8]], ([x, r, w, b]) => {
      const { sum, y } = F.addLayerNorm(x, r, p(w, b));
      return sum.mul(0.5).add(y);
    });
    checkGrads([[2, 3, 9]], ([x]) => F.silu(x).add(F.gelu(x)));
    checkGrads([[3, 7]], ([x]) => F.softmax(x.mul(2)));
    checkGrads([[2, 3, 8], [16, 8], [16, 8], [8, 16]], ([x, w1, w2, w3]) => F.swiglu(x, w1, w2, w3));
  });

  test('attention from packed projections, windows and stochastic depth', () => {
    // Plain self-attention with a class token on a 2x3 grid (7 tokens), 2 heads of 16.
    const grid = { grid: { cols: 3, step: 0.5, indexOffset: -1 } };
    checkGrads([[2, 7, 96]], ([qkv]) => F.attentionQKV(qkv.mul(0.5), 2, { qPos: grid, kPos: grid }));
    // GSA: 6 queries on a 2x3 map, 2 keys from a sub-sampled one (full-width key layout).
    checkGrads([[1, 6, 32], [1, 2, 64]], ([q, kv]) => F.attentionKV(q, kv, 2, {
      qPos: { grid: { cols: 3 } }, kPos: { grid: { cols: 3, step: 2, bias: 0.5 } },
    }));
    // LSA windows with padding: a 3x5 map in 2x2 windows.
    checkGrads([[2, 15, 4]], ([x]) => F.windowMerge(F.windowPartition(x, 3, 5, 2).mul(2), 2, 3, 5, 2));
    checkGrads([[3, 2, 4]], ([x]) => F.dropPath(x, Float32Array.from([1, 0, 1]), 0.25));
  });

  test('losses', () => {
    const labels = Int32Array.from([2, 0, 4]);
    checkGrads([[3, 5]], ([z]) => vl.nn.crossEntropy(z, labels, { labelSmoothing: 0.1 }).reshape([1]));
    checkGrads([[3, 5]], ([z]) => vl.nn.crossEntropy(z, labels, { reduction: 'none' }));
    const t = vl.tensor([0.7, 0.3, 0, 0, 0, 0, 0, 0.5, 0.5, 0, 0.1, 0.1, 0.1, 0.1, 0.6], [3, 5]);
    checkGrads([[3, 5]], ([z]) => vl.nn.softTargetCrossEntropy(z, t).reshape([1]));
    checkGrads([[3, 5]], ([z]) => vl.nn.binaryCrossEntropyWithLogits(z, t, { reduction: 'sum' }).reshape([1]));
    t.dispose();
  });

  test('gradients accumulate until cleared; a used graph cannot run twice', () => {
    const a = vl.tensor([1, 2, 3], [3]);
    a.requiresGrad = true;
    const y = a.mul(a).sum();
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expect(Array.from(a.grad!.dataSync())).toEqual([4, 8, 12]);
    expect(() => y.backward()).toThrow(/already used and freed.*retainGraph/);
    a.grad!.dispose();
    a.grad = null;
    vl.tidy(() => a.mul(3).sum().backward());
    expect(Array.from(a.grad!.dataSync())).toEqual([3, 3, 3]);
    for (const t of [a, y]) t.dispose();
  });

  test('noGrad records nothing; non-scalars need an explicit gradient; leaves only', () => {
    const a = vl.ones([2, 2]);
    a.requiresGrad = true;
    const n = vl.noGrad(() => a.mul(2));
    expect(n.requiresGrad).toBe(false);
    const y = a.mul(2);
    expect(y.requiresGrad).toBe(true);
    expect(y.isLeaf).toBe(false);
    expect(() => y.backward()).toThrow(/not a scalar/);
    expect(() => { y.requiresGrad = false; }).toThrow(/only leaves/);
    expect(() => n.backward()).toThrow(/does not require grad/);
    const i = vl.tensor([1, 2], [2], { dtype: 'i32' });
    expect(() => { i.requiresGrad = true; }).toThrow(/only float tensors/);
    const g = vl.ones([2, 2]).mul(0.5);
    y.backward(g);
    expect(Array.from(a.grad!.dataSync())).toEqual([1, 1, 1, 1]);
    for (const t of [a, n, y, i, g]) t.dispose();
  });

  test('saved tensors are released by backward: memory returns to its baseline', async () => {
    const w = vl.randn([16, 32], { seed: 3 });
    w.requiresGrad = true;
    const x = vl.randn([4, 10, 32], { seed: 4 });
    const step = () => vl.tidy(() => F.linear(x, w).mul(F.linear(x, w)).mean().backward());
    step();
    w.grad!.dispose();
    w.grad = null;
    await vl.synchronize();
    await settleGc(() => vl.memory()[device].gcReleased);
    const before = vl.memory()[device];
    for (let i = 0; i < 3; ++i) {
      step();
      w.grad!.dispose();
      w.grad = null;
    }
    await vl.synchronize();  // queued kernels hold their tensors until they ran
    const after = vl.memory()[device];
    expect(after.tensors).toBe(before.tensors);
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    for (const t of [w, x]) t.dispose();
  });

  // Needs a second device in this process.
  const peer = peerDevice(device);
  if (peer) {
    test('an op mixing devices is a DeviceError naming both, before anything is recorded', () => {
      using a = vl.ones([2, 2]);
      a.requiresGrad = true;
      using b = vl.ones([2, 2], { device: peer });
      expectDeviceError(() => a.mul(b), device, peer);
      expectDeviceError(() => F.linear(a, b), device, peer);
      expect(a.grad ?? null).toBeNull();
    });
  }
});

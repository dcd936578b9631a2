// Mixed precision: autocast('bf16') and autocast('f16') run the unpacked GEMM
// ops on bf16 / fp16 operands with f32 accumulation (forward and the backward
// GEMMs), on every backend, and the trainer's precision option.
import * as vl from '../lib';
import { convPatch, linear, matmul } from '../lib/ops/linalg';
import { functional as F } from '../lib/nn';

/** Largest |a - b| relative to the largest |b|. */
function relErr(a: Float32Array, b: Float32Array): number {
  let e = 0, m = 0;
  for (let i = 0; i < a.length; ++i) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return e / m;
}

const bf16 = (t: vl.Tensor): vl.Tensor => vl.tidy(() => t.to('bf16').to('f32'));
const f16 = (t: vl.Tensor): vl.Tensor => vl.tidy(() => t.to('f16').to('f32'));

describe.each(vl.backends())('on %s', (device) => {
  const rand = (shape: number[], seed: number) => vl.randn(shape, { seed, device });

  test('linear, matmul and convPatch: bf16 arithmetic is the f32 GEMM of bf16-rounded operands, and differs from f32', async () => {
    using x = rand([37, 96], 1);
    using w = rand([50, 96], 2);
    using b = rand([50], 3);
    using xr = bf16(x);
    using wr = bf16(w);
    using exact = linear(x, w, { bias: b });
    using mixed = vl.autocast('bf16', () => linear(x, w, { bias: b }));
    using rounded = linear(xr, wr, { bias: b });
    const [e, m, r] = await Promise.all([exact.data(), mixed.data(), rounded.data()]);
    expect(relErr(m, r)).toBeLessThan(1e-5);
    expect(relErr(m, e)).toBeGreaterThan(1e-4);  // the rounding shows: bf16 keeps 8 bits
    expect(relErr(m, e)).toBeLessThan(2e-2);
    // An explicit precision wins over the scope.
    using explicit = vl.autocast('bf16', () => linear(x, w, { bias: b, precision: 'f32' }));
    expect(relErr(await explicit.data(), e)).toBe(0);

    using a = rand([3, 20, 33], 4);
    using c = rand([3, 33, 17], 5);
    using mm = matmul(a, c, { precision: 'bf16' });
    using mmRef = matmul(bf16(a), bf16(c));
    expect(relErr(await mm.data(), await mmRef.data())).toBeLessThan(1e-5);

    using img = rand([2, 3, 8, 12], 6);
    using kw = rand([10, 3, 4, 4], 7);
    using conv = vl.autocast('bf16', () => convPatch(img, kw, null, { patch: 4 }));
    using convRef = convPatch(bf16(img), bf16(kw), null, { patch: 4 });
    expect(relErr(await conv.data(), await convRef.data())).toBeLessThan(1e-5);
  });

  test('f16 arithmetic: linear, matmul and convPatch are the f32 GEMM of f16-rounded operands, closer to f32 than bf16', async () => {
    using x = rand([37, 96], 21);
    using w = rand([50, 96], 22);
    using b = rand([50], 23);
    using exact = linear(x, w, { bias: b });
    using half = vl.autocast('f16', () => linear(x, w, { bias: b }));
    using brain = linear(x, w, { bias: b, precision: 'bf16' });
    using rounded = linear(f16(x), f16(w), { bias: b });
    const [e, h, br, r] = await Promise.all([exact.data(), half.data(), brain.data(), rounded.data()]);
    expect(relErr(h, r)).toBeLessThan(1e-5);
    // The CPU runs the same f32 kernels on the same (rounded) panels.
    if (device === 'cpu') expect(h).toEqual(r);
    expect(relErr(h, e)).toBeGreaterThan(1e-5);  // fp16 keeps 11 bits
    expect(relErr(h, e)).toBeLessThan(0.25 * relErr(br, e));

    using a = rand([3, 20, 33], 24);
    using c = rand([3, 33, 17], 25);
    using mm = matmul(a, c, { precision: 'f16' });
    using mmRef = matmul(f16(a), f16(c));
    expect(relErr(await mm.data(), await mmRef.data())).toBeLessThan(1e-5);

    using img = rand([2, 3, 8, 12], 26);
    using kw = rand([10, 3, 4, 4], 27);
    using conv = vl.autocast('f16', () => convPatch(img, kw, null, { patch: 4 }));
    using convRef = convPatch(f16(img), f16(kw), null, { patch: 4 });
    expect(relErr(await conv.data(), await convRef.data())).toBeLessThan(1e-5);
  });

  test('f16 arithmetic: an operand beyond 65504 overflows to Inf (what loss scaling guards against); 65504 itself is finite', async () => {
    const values = new Float32Array(4 * 8).map((_, i) => Math.cos(i));
    values[8] = 7e4;  // row 1
    values[16] = 65504;  // row 2: the largest fp16
    using x = vl.tensor(values, [4, 8], { device });
    using w = rand([5, 8], 28);
    using y32 = linear(x, w);
    using y16 = linear(x, w, { precision: 'f16' });
    const [a, h] = [await y32.data(), await y16.data()];
    expect(a.every(Number.isFinite)).toBe(true);
    for (let j = 0; j < 5; ++j) {
      expect(Math.abs(h[5 + j])).toBe(Infinity);
      expect(Number.isFinite(h[10 + j])).toBe(true);
      expect(Number.isFinite(h[j]) && Number.isFinite(h[15 + j])).toBe(true);
    }
    using bt = vl.tensor(values, [4, 8], { device });
    using mm = matmul(w, bt, { transposeB: true, precision: 'f16' });
    const m = await mm.data();  // [5, 4]: column 1 multiplies the 7e4
    for (let i = 0; i < 5; ++i) expect(Math.abs(m[i * 4 + 1])).toBe(Infinity);
  });

  test('attention: bf16 arithmetic on CUDA (near the f32 result), unchanged f32 on the CPU; backward follows the forward', async () => {
    using q = rand([2, 40, 2, 32], 11);
    using k = rand([2, 40, 2, 32], 12);
    using v = rand([2, 40, 2, 32], 13);
    const qPos = { grid: { cols: 8 } };
    const f32 = vl.ops.attention(q, k, v, { qPos, returnLse: true });
    const bf = vl.autocast('bf16', () => vl.ops.attention(q, k, v, { qPos, returnLse: true }));
    const [a, b] = [await f32.out.data(), await bf.out.data()];
    if (device === 'cpu') {
      expect(b).toEqual(a);
    } else {
      expect(relErr(b, a)).toBeGreaterThan(1e-5);
      expect(relErr(b, a)).toBeLessThan(3e-2);
    }
    using g = rand([2, 40, 64], 14);
    const d32 = vl.ops.attentionBackward(g, q, k, v, f32.out, f32.lse, { qPos });
    const d16 = vl.ops.attentionBackward(g, q, k, v, bf.out, bf.lse, { qPos, precision: 'bf16' });
    const [x32, x16] = [await d32.dq.data(), await d16.dq.data()];
    if (device === 'cpu') expect(x16).toEqual(x32);
    else expect(relErr(x16, x32)).toBeLessThan(5e-2);
    for (const t of [f32.out, f32.lse, bf.out, bf.lse, d32.dq, d32.dk, d32.dv, d16.dq, d16.dk, d16.dv]) t.dispose();
    expect(() => vl.ops.attention(q, k, v, { qPos, precision: 'tf32' as vl.MathPrecision })).toThrow(/attention: precision must be 'f32', 'bf16' or 'f16'/);
  });

  test('backward GEMMs run in the precision of their forward, also when backward() is called outside the scope', async () => {
    using x0 = rand([24, 40], 8);
    using w0 = rand([30, 40], 9);
    using g = rand([24, 30], 10);
    const grads = (precision: vl.MathPrecision, checkpointed: boolean) => {
      const x = x0.detach();
      const w = w0.detach();
      x.requiresGrad = true;
      w.requiresGrad = true;
      const y = vl.autocast(precision, () => (checkpointed ? vl.checkpoint((a) => [F.linear(a, w)], [x])[0] : F.linear(x, w)));
      y.backward(g);  // outside autocast
      const out = [x.grad!, w.grad!];
      x.grad = null;
      w.grad = null;
      for (const t of [x, w, y]) t.dispose();
      return out;
    };
    const [dxF, dwF] = grads('f32', false);
    const [dxB, dwB] = grads('bf16', false);
    const [dxC, dwC] = grads('bf16', true);
    // dx = g·W and dW = gᵀ·x, both on bf16-rounded operands.
    using dxRef = matmul(bf16(g), bf16(w0));
    using dwRef = matmul(bf16(g).transpose(), bf16(x0));
    expect(relErr(await dxB.data(), await dxRef.data())).toBeLessThan(1e-5);
    expect(relErr(await dwB.data(), await dwRef.data())).toBeLessThan(1e-5);
    expect(relErr(await dxB.data(), await dxF.data())).toBeGreaterThan(1e-4);
    const [dxH, dwH] = grads('f16', false);
    using dxRefH = matmul(f16(g), f16(w0));
    using dwRefH = matmul(f16(g).transpose(), f16(x0));
    expect(relErr(await dxH.data(), await dxRefH.data())).toBeLessThan(1e-5);
    expect(relErr(await dwH.data(), await dwRefH.data())).toBeLessThan(1e-5);
    dxH.dispose();
    dwH.dispose();
    // Checkpointing recomputes the segment in the forward's precision: the same gradients.
    expect(await dxC.data()).toEqual(await dxB.data());
    expect(await dwC.data()).toEqual(await dwB.data());
    for (const t of [dxF, dwF, dxB, dwB, dxC, dwC]) t.dispose();
  });
});

describe('autocast scope', () => {
  test('nests, restores the precision after errors, and rejects bad arguments', () => {
    expect(vl.mathPrecision()).toBe('f32');
    vl.autocast('bf16', () => {
      expect(vl.mathPrecision()).toBe('bf16');
      vl.autocast('f32', () => expect(vl.mathPrecision()).toBe('f32'));
      expect(vl.mathPrecision()).toBe('bf16');
    });
    expect(() => vl.autocast('bf16', () => { throw new Error('boom'); })).toThrow('boom');
    expect(vl.mathPrecision()).toBe('f32');
    expect(() => vl.autocast('fp8' as vl.MathPrecision, () => 1)).toThrow(/autocast: precision must be 'f32', 'bf16' or 'f16', got fp8/);
    expect(() => vl.autocast('bf16', (async () => 1) as unknown as () => number)).toThrow(/returned a Promise/);
    expect(vl.mathPrecision()).toBe('f32');
    using x = vl.randn([2, 3]);
    expect(() => linear(x, x, { precision: 'fp16' as vl.MathPrecision })).toThrow(/linear: precision must be 'f32', 'bf16' or 'f16', got fp16/);
  });
});

describe('training in mixed precision', () => {
  test("Trainer { precision: 'bf16' }: f32 master weights, a loss close to the f32 run's and not identical to it", async () => {
    const run = async (precision: vl.MathPrecision) => {
      vl.manualSeed(3);
      const model = vl.models.create({ arch: 'plain', dim: 32, depth: 2, heads: 2, patchSize: 4, numClasses: 5, baseSize: 16 }).train();
      const trainer = new vl.train.Trainer(model as never, { epochs: 1, lr: 1e-3, precision });
      const images = new Float32Array(4 * 3 * 16 * 16).map((_, i) => Math.sin(i * 0.37));
      const losses: number[] = [];
      for (let s = 0; s < 3; ++s) {
        const l = trainer.trainStep({ images, shape: [4, 3, 16, 16], labels: new Int32Array([0, 1, 2, 3]) } as never, 1e-3);
        losses.push((await l.data())[0]);
        l.dispose();
      }
      const dtypes = [...model.namedParameters()].map(([, p]) => p.dtype);
      model.dispose();
      return { losses, dtypes };
    };
    const f32 = await run('f32');
    const mixed = await run('bf16');
    expect(new Set(mixed.dtypes)).toEqual(new Set(['f32']));
    for (let i = 0; i < 3; ++i) {
      expect(Number.isFinite(mixed.losses[i])).toBe(true);
      expect(Math.abs(mixed.losses[i] - f32.losses[i])).toBeLessThan(0.05 * Math.abs(f32.losses[i]));
    }
    expect(mixed.losses).not.toEqual(f32.losses);
    expect(() => new vl.train.Trainer({ namedParameters: () => [] } as never, { epochs: 1, precision: 'fp16' as vl.MathPrecision }))
      .toThrow(/train: precision must be 'f32', 'bf16' or 'f16'/);
  });
});

// Backward of the fused AS2DRoPE attention against an independent float64
// reference (RoPE + softmax forward, analytic backward, gradients rotated
// back to the unrotated q and k): grids with a class token and auto-scaling,
// explicit positions, LSA windows, GSA keys on the full-resolution width,
// no RoPE, custom scales, head widths and counts, partial tiles, strided
// views of packed projections, packed gradient layouts; finite differences
// of the whole pipeline; determinism across thread counts, agreement across
// instruction sets, memory, typed errors. Everything but the thread counts
// and instruction sets runs on every backend.
import * as vl from '../lib';
import {
  AttentionBackwardOptions, GridPositions, attention, attentionBackward, splitKV, splitQKV,
} from '../lib/ops/attention';
import {
  describeBackends, expectDeviceError, gemmTolerance, maxAbsDiff, peerDevice, requireLib, runNode,
} from './helpers';
import { RefOptions, decode, gridPositions, maxAbs, rope } from './attention-reference';

const attentionModule = JSON.stringify(require.resolve('../lib/ops/attention.ts'));

// ---- float64 reference (fp32 only where SPEC fixes it: positions, frequencies, angles) ----

interface Shape5 { B: number; N: number; M: number; H: number; D: number }

/**
 * out = softmax(rope(q)·rope(k)ᵀ·scale)·v per (batch, head) and, for the
 * incoming gradient dOut [B, N, H·D], dq, dk (w.r.t. the unrotated inputs) and dv.
 */
function reference(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dOut: ArrayLike<number>,
  shape: Shape5, o: RefOptions): { out: Float64Array; dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const { B, N, M, H, D } = shape;
  const doRope = o.rope ?? true;
  const qr = doRope ? rope(q, B, N, H, D, o.qx!, o.qy!) : Float64Array.from(q);
  const kr = doRope ? rope(k, B, M, H, D, o.kx ?? o.qx!, o.ky ?? o.qy!) : Float64Array.from(k);
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * N * H * D);
  const dqr = new Float64Array(B * N * H * D), dkr = new Float64Array(B * M * H * D), dv = new Float64Array(B * M * H * D);
  const p = new Float64Array(M), dp = new Float64Array(M);
  for (let b = 0; b < B; ++b)
    for (let h = 0; h < H; ++h)
      for (let n = 0; n < N; ++n) {
        const qo = ((b * N + n) * H + h) * D, oo = (b * N + n) * H * D + h * D;
        let mx = -Infinity;
        for (let m = 0; m < M; ++m) {
          const ko = ((b * M + m) * H + h) * D;
          let dot = 0;
          for (let d = 0; d < D; ++d) dot += qr[qo + d] * kr[ko + d];
          p[m] = dot * scale;
          mx = Math.max(mx, p[m]);
        }
        let sum = 0;
        for (let m = 0; m < M; ++m) sum += (p[m] = Math.exp(p[m] - mx));
        let delta = 0;
        for (let m = 0; m < M; ++m) {
          p[m] /= sum;
          const vo = ((b * M + m) * H + h) * D;
          let g = 0;
          for (let d = 0; d < D; ++d) {
            out[oo + d] += p[m] * v[vo + d];
            g += dOut[oo + d] * v[vo + d];
          }
          dp[m] = g;
          delta += p[m] * g;
        }
        for (let m = 0; m < M; ++m) {
          const ds = p[m] * (dp[m] - delta) * scale, ko = ((b * M + m) * H + h) * D;
          for (let d = 0; d < D; ++d) {
            dqr[qo + d] += ds * kr[ko + d];
            dkr[ko + d] += ds * qr[qo + d];
            dv[ko + d] += p[m] * dOut[oo + d];
          }
        }
      }
  const dq = doRope ? rope(dqr, B, N, H, D, o.qx!, o.qy!, true) : dqr;
  const dk = doRope ? rope(dkr, B, M, H, D, o.kx ?? o.qx!, o.ky ?? o.qy!, true) : dkr;
  return { out, dq, dk, dv };
}

/** Within `rel` of the expected values' scale. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number, what: string): void {
  expect(actual.length).toBe(expected.length);
  const err = maxAbsDiff(actual, expected) / Math.max(maxAbs(expected), 1e-30);
  expect({ what, ok: err < rel, err }).toEqual({ what, ok: true, err });
}

async function values(t: vl.Tensor): Promise<Float32Array> {
  return await t.data() as Float32Array;
}

let seed = 500;
function randn(shape: number[], std = 1.5): vl.Tensor {
  return vl.randn(shape, { seed: seed++, std });
}

type Grads = { dq: vl.Tensor; dk: vl.Tensor; dv: vl.Tensor; packed?: vl.Tensor };

function disposeGrads(g: Grads): void {
  for (const t of [g.dq, g.dk, g.dv, g.packed]) t?.dispose();
}

/**
 * Runs the forward (for out and lse) and the backward on the same tensors,
 * and compares dq, dk, dv with the reference. Returns the gradients' values.
 */
async function check(q: vl.Tensor, k: vl.Tensor, v: vl.Tensor, options: AttentionBackwardOptions, ref: RefOptions,
  rel: number): Promise<{ dq: Float32Array; dk: Float32Array; dv: Float32Array }> {
  const [B, N, H, D] = q.shape;
  const M = k.shape[1];
  using dOut = randn([B, N, H * D], 1);
  const { packed: _, ...forward } = options;
  const { out, lse } = attention(q, k, v, { ...forward, returnLse: true });
  const g = attentionBackward(dOut, q, k, v, out, lse, options);
  try {
    expect(g.dq.shape).toEqual([B, N, H, D]);
    expect(g.dk.shape).toEqual([B, M, H, D]);
    expect(g.dv.shape).toEqual([B, M, H, D]);
    const want = reference(await values(q), await values(k), await values(v), await values(dOut), { B, N, M, H, D }, ref);
    expectClose(await values(out), want.out, rel, 'out');
    const got = { dq: await values(g.dq), dk: await values(g.dk), dv: await values(g.dv) };
    expectClose(got.dq, want.dq, rel, 'dq');
    expectClose(got.dk, want.dk, rel, 'dk');
    expectClose(got.dv, want.dv, rel, 'dv');
    return got;
  } finally {
    out.dispose();
    lse.dispose();
    disposeGrads(g);
  }
}

describeBackends('attentionBackward', (backend, device) => {
  // The CPU's tolerances scaled by how much less exact this backend's products are.
  const rel = (cpu: number): number => cpu * gemmTolerance(backend) / gemmTolerance('cpu');
  const tol = rel(1e-4);

  describe('attentionBackward: against a float64 reference', () => {
    test('plain ViT: class token + auto-scaled grid, q/k/v as strided views of a packed qkv', async () => {
      // 6×11 patches of a 96×176 image, base size 224: step = 224/96.
      const gh = 6, gw = 11, N = 1 + gh * gw, H = 3, D = 64, B = 2;
      using qkv = randn([B, N, 3 * H * D]);
      const { q, k, v } = splitQKV(qkv, H);
      try {
        expect(q.isContiguous).toBe(false);
        const grid = { cols: gw, step: 224 / 96, indexOffset: -1 };
        const pos = gridPositions(N, grid);
        expect([pos.x[0], pos.y[0]]).toEqual([Math.fround(10 * Math.fround(224 / 96)), -Math.fround(224 / 96)]);
        await check(q, k, v, { qPos: { grid } }, { qx: pos.x, qy: pos.y }, tol);
      } finally {
        q.dispose(); k.dispose(); v.dispose();
      }
    });

    test('class token on a 14-wide grid with step 32/48 (a 336 px model run at 224 px geometry)', async () => {
      const N = 1 + 14 * 14, H = 2, D = 32, B = 1;
      using q = randn([B, N, H, D]);
      using k = randn([B, N, H, D]);
      using v = randn([B, N, H, D], 1);
      const grid = { cols: 14, step: 32 / 48, indexOffset: -1 };
      const pos = gridPositions(N, grid);
      await check(q, k, v, { qPos: { grid } }, { qx: pos.x, qy: pos.y }, tol);
    });

    test('explicit positions (arrays, Float32Array, tensors), M ≠ N', async () => {
      const N = 37, M = 23, H = 2, D = 48, B = 2;
      using q = randn([B, N, H, D]);
      using k = randn([B, M, H, D]);
      using v = randn([B, M, H, D]);
      const r = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 1.7 + s) * 9));
      const qx = r(N, 1), qy = r(N, 2), kx = r(M, 3), ky = r(M, 4);
      using kxt = vl.tensor(kx);
      using kyt = vl.tensor(ky);
      await check(q, k, v, { qPos: { x: qx, y: Float32Array.from(qy) }, kPos: { x: kxt, y: kyt } }, { qx, qy, kx, ky }, tol);
    });

    test('LSA: a batch of 7×7 windows with window-local positions, views of a packed qkv', async () => {
      const windows = 2 * 6, ws = 7, heads = 2, D = 32;
      using qkv = randn([windows, ws * ws, 3 * heads * D]);
      const { q, k, v } = splitQKV(qkv, heads);
      try {
        const pos = gridPositions(ws * ws, { cols: ws });
        await check(q, k, v, { qPos: { grid: { cols: ws } } }, { qx: pos.x, qy: pos.y }, tol);
      } finally {
        q.dispose(); k.dispose(); v.dispose();
      }
    });

    test('GSA: keys of a sub-sampled grid (M ≠ N) on the full-resolution width, k/v views of a kv projection', async () => {
      // Stage 14×12, sr = 2: N = 168 queries, M = 7·6 = 42 keys.
      const Hs = 14, Ws = 12, sr = 2, heads = 4, D = 32, B = 2, C = heads * D;
      const N = Hs * Ws, M = (Hs / sr) * (Ws / sr);
      using q = randn([B, N, heads, D]);
      using kv = randn([B, M, 2 * C]);
      const { k, v } = splitKV(kv, heads);
      try {
        const kGrid = { cols: Ws, step: sr, bias: 1 - 1 / sr };
        const qp = gridPositions(N, { cols: Ws }), kp = gridPositions(M, kGrid);
        expect([kp.x[6], kp.y[6]]).toEqual([12.5, 0.5]);
        await check(q, k, v, { qPos: { grid: { cols: Ws } }, kPos: { grid: kGrid } }, { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y }, tol);
      } finally {
        k.dispose(); v.dispose();
      }
    });

    test('GSA with sr = 4 on one long sequence: a single (batch, head) pair split over query ranges', async () => {
      // 28×28 stage, sr = 4: N = 784 queries (13 tiles of 64), M = 49 keys, B = H = 1.
      const Hs = 28, Ws = 28, sr = 4, D = 64;
      const N = Hs * Ws, M = (Hs / sr) * (Ws / sr);
      using q = randn([1, N, 1, D], 1);
      using k = randn([1, M, 1, D], 1);
      using v = randn([1, M, 1, D], 1);
      const kGrid = { cols: Ws, step: sr, bias: 1 - 1 / sr };
      const qp = gridPositions(N, { cols: Ws }), kp = gridPositions(M, kGrid);
      await check(q, k, v, { qPos: { grid: { cols: Ws } }, kPos: { grid: kGrid } }, { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y }, tol);
    });

    test('rope: false with a custom scale; one query, one key', async () => {
      using q = randn([2, 19, 3, 16]);
      using k = randn([2, 29, 3, 16]);
      using v = randn([2, 29, 3, 16]);
      await check(q, k, v, { rope: false, scale: 0.3 }, { rope: false, scale: 0.3 }, tol);
      // One key: the softmax is constant, so dq = dk = 0 (up to rounding of
      // P = exp(s − lse) ≈ 1) and dv = dOut.
      using q1 = randn([1, 1, 1, 16]);
      using k1 = randn([1, 1, 1, 16]);
      using v1 = randn([1, 1, 1, 16]);
      const { out, lse } = attention(q1, k1, v1, { rope: false, returnLse: true });
      using dOut = randn([1, 1, 16]);
      const g = attentionBackward(dOut, q1, k1, v1, out, lse, { rope: false });
      const gradScale = maxAbs(await values(dOut)) * maxAbs(await values(v1)) * Math.max(maxAbs(await values(q1)), maxAbs(await values(k1)));
      expect(maxAbs(await values(g.dq))).toBeLessThan(rel(1e-5) * gradScale);
      expect(maxAbs(await values(g.dk))).toBeLessThan(rel(1e-5) * gradScale);
      // dv = P^T dOut with P = 1, through the backend's GEMM (CUDA: dOut as a sum of 2 bf16, 2^-18).
      expectClose(await values(g.dv), await values(dOut), backend === 'cpu' ? 1e-6 : gemmTolerance(backend), 'dv');
      disposeGrads(g);
      out.dispose();
      lse.dispose();
    });

    test('custom scale with RoPE', async () => {
      const N = 70, H = 2, D = 32;
      using q = randn([1, N, H, D]);
      using k = randn([1, N, H, D]);
      using v = randn([1, N, H, D]);
      const pos = gridPositions(N, { cols: 9, indexOffset: -1 });
      await check(q, k, v, { qPos: { grid: { cols: 9, indexOffset: -1 } }, scale: 0.07 }, { qx: pos.x, qy: pos.y, scale: 0.07 }, tol);
    });

    test.each([
      [16, 4, 67, 1],
      [32, 3, 131, 2],
      [64, 2, 97, 1],
      [80, 4, 65, 2],
      [128, 1, 150, 1],
      [36, 1, 41, 2],
      [100, 2, 18, 1],
    ])('D = %i, %i heads, N = %i, B = %i (odd sizes, partial tiles)', async (D, H, N, B) => {
      const cols = 7;
      using q = randn([B, N, H, D]);
      using k = randn([B, N, H, D]);
      using v = randn([B, N, H, D], 1);
      const pos = gridPositions(N, { cols, indexOffset: -1 });
      await check(q, k, v, { qPos: { grid: { cols, indexOffset: -1 } } }, { qx: pos.x, qy: pos.y }, tol);
    });

    test('large scores (a peaked softmax) keep their accuracy', async () => {
      const N = 50, H = 1, D = 64;
      using q = randn([1, N, H, D], 3);
      using k = randn([1, N, H, D], 3);
      using v = randn([1, N, H, D], 1);
      const pos = gridPositions(N, { cols: 7 });
      await check(q, k, v, { qPos: { grid: { cols: 7 } } }, { qx: pos.x, qy: pos.y }, tol);
    });
  });

  describe('attentionBackward: packed gradient layouts', () => {
    test("packed 'qkv': dq|dk|dv are views of one [B, N, 3·h·D] tensor ordered [q|k|v][head][d]", async () => {
      const B = 2, N = 45, H = 3, D = 16, C = H * D;
      using qkv = randn([B, N, 3 * C]);
      const { q, k, v } = splitQKV(qkv, H);
      const opts = { qPos: { grid: { cols: 11, step: 0.5, indexOffset: -1 } } };
      const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
      using dOut = randn([B, N, C]);
      const sep = attentionBackward(dOut, q, k, v, out, lse, opts);
      const pk = attentionBackward(dOut, q, k, v, out, lse, { ...opts, packed: 'qkv' });
      try {
        expect(sep.packed).toBeUndefined();
        for (const t of [sep.dq, sep.dk, sep.dv]) expect(t.isContiguous).toBe(true);
        const packed = pk.packed!;
        expect(packed.shape).toEqual([B, N, 3 * C]);
        expect(packed.isContiguous).toBe(true);
        [pk.dq, pk.dk, pk.dv].forEach((t, i) => {
          expect(t.shape).toEqual([B, N, H, D]);
          expect(t.strides).toEqual([N * 3 * C, 3 * C, D, 1]);
          expect(t.offset).toBe(packed.offset + i * C);
          expect(t.sharesStorage(packed)).toBe(true);
        });
        // The same values as the separate tensors, laid out like the projection.
        const all = await values(packed);
        const parts = [await values(sep.dq), await values(sep.dk), await values(sep.dv)];
        const want = new Float32Array(B * N * 3 * C);
        for (let r = 0; r < B * N; ++r)
          for (let i = 0; i < 3; ++i) want.set(parts[i].subarray(r * C, (r + 1) * C), r * 3 * C + i * C);
        expect(Buffer.from(all.buffer, all.byteOffset, all.byteLength).equals(Buffer.from(want.buffer))).toBe(true);
        expect(Array.from(await values(pk.dk))).toEqual(Array.from(parts[1]));
      } finally {
        disposeGrads(sep);
        disposeGrads(pk);
        out.dispose(); lse.dispose(); q.dispose(); k.dispose(); v.dispose();
      }
    });

    test("packed 'kv': dk|dv are views of one [B, M, 2·h·D] tensor ordered [k|v][head][d], dq is separate", async () => {
      const B = 2, N = 80, M = 20, H = 2, D = 32, C = H * D;
      using q = randn([B, N, H, D]);
      using kv = randn([B, M, 2 * C]);
      const { k, v } = splitKV(kv, H);
      const kGrid = { cols: 10, step: 2, bias: 0.5 };
      const opts = { qPos: { grid: { cols: 10 } }, kPos: { grid: kGrid } };
      const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
      using dOut = randn([B, N, C]);
      const sep = attentionBackward(dOut, q, k, v, out, lse, opts);
      const pk = attentionBackward(dOut, q, k, v, out, lse, { ...opts, packed: 'kv' });
      try {
        const packed = pk.packed!;
        expect(packed.shape).toEqual([B, M, 2 * C]);
        expect(pk.dq.isContiguous).toBe(true);
        expect(pk.dq.sharesStorage(packed)).toBe(false);
        [pk.dk, pk.dv].forEach((t, i) => {
          expect(t.shape).toEqual([B, M, H, D]);
          expect(t.strides).toEqual([M * 2 * C, 2 * C, D, 1]);
          expect(t.offset).toBe(packed.offset + i * C);
          expect(t.sharesStorage(packed)).toBe(true);
        });
        expect(Array.from(await values(pk.dq))).toEqual(Array.from(await values(sep.dq)));
        const all = await values(packed);
        const dk = await values(sep.dk), dv = await values(sep.dv);
        for (let r = 0; r < B * M; ++r) {
          expect(Array.from(all.subarray(r * 2 * C, r * 2 * C + C))).toEqual(Array.from(dk.subarray(r * C, (r + 1) * C)));
          expect(Array.from(all.subarray(r * 2 * C + C, (r + 1) * 2 * C))).toEqual(Array.from(dv.subarray(r * C, (r + 1) * C)));
        }
        // And the values are right.
        const qp = gridPositions(N, { cols: 10 }), kp = gridPositions(M, kGrid);
        const want = reference(await values(q), await values(k), await values(v), await values(dOut), { B, N, M, H, D },
          { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y });
        expectClose(await values(pk.dk), want.dk, tol, 'dk');
        expectClose(await values(pk.dv), want.dv, tol, 'dv');
      } finally {
        disposeGrads(sep);
        disposeGrads(pk);
        out.dispose(); lse.dispose(); k.dispose(); v.dispose();
      }
    });

    test('strided dOut and out (views) are read correctly', async () => {
      const B = 1, N = 30, H = 2, D = 16, C = H * D;
      using q = randn([B, N, H, D]);
      using k = randn([B, N, H, D]);
      using v = randn([B, N, H, D]);
      const opts = { qPos: { grid: { cols: 6 } } };
      const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
      using wide = randn([B, N, 2 * C]);
      using dOut = wide.narrow(2, C, C);
      expect(dOut.isContiguous).toBe(false);
      using dOutCopy = dOut.contiguous();
      const a = attentionBackward(dOut, q, k, v, out, lse, opts);
      const b = attentionBackward(dOutCopy, q, k, v, out, lse, opts);
      for (const key of ['dq', 'dk', 'dv'] as const) expect(Array.from(await values(a[key]))).toEqual(Array.from(await values(b[key])));
      disposeGrads(a);
      disposeGrads(b);
      out.dispose();
      lse.dispose();
    });
  });

  describe('attentionBackward: finite differences of the whole pipeline', () => {
    test('d/d(q, k, v) of sum(out · w) in float32', async () => {
      const B = 1, N = 6, M = 5, H = 2, D = 16;
      using q = randn([B, N, H, D], 1);
      using k = randn([B, M, H, D], 1);
      using v = randn([B, M, H, D], 1);
      using w = randn([B, N, H * D], 1);
      const opts = { qPos: { grid: { cols: 3, indexOffset: -1 } }, kPos: { grid: { cols: 3, step: 2, bias: 0.5 } } };
      const wv = await values(w);
      const loss = async (qq: vl.Tensor, kk: vl.Tensor, vv: vl.Tensor): Promise<number> => {
        using o = attention(qq, kk, vv, opts);
        const ov = await values(o);
        let s = 0;
        for (let i = 0; i < ov.length; ++i) s += ov[i] * wv[i];
        return s;
      };
      const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
      const g = attentionBackward(w, q, k, v, out, lse, opts);
      out.dispose();
      lse.dispose();
      try {
        const eps = 1e-2;
        for (const [name, t, grad] of [['q', q, g.dq], ['k', k, g.dk], ['v', v, g.dv]] as const) {
          const base = await values(t), analytic = await values(grad);
          const numeric = new Float64Array(base.length);
          for (let i = 0; i < base.length; ++i) {
            const f = async (delta: number): Promise<number> => {
              const x = Float32Array.from(base);
              x[i] += delta;
              using moved = vl.tensor(x, t.shape);
              return loss(name === 'q' ? moved : q, name === 'k' ? moved : k, name === 'v' ? moved : v);
            };
            numeric[i] = ((await f(eps)) - (await f(-eps))) / (2 * eps);
          }
          expectClose(analytic, numeric, rel(5e-3), `d${name}`);
        }
      } finally {
        disposeGrads(g);
      }
    });
  });

  describe('attentionBackward: memory and empty inputs', () => {
    test('N = 3137 runs without materialising an N×N matrix', () => {
      const r = runNode(`${requireLib}
        const { attention, attentionBackward } = require(${attentionModule});
        (async () => {
          const N = 3137, device = ${JSON.stringify(device)};
          const q = vl.randn([1, N, 1, 64], { seed: 1, device });
          const k = vl.randn([1, N, 1, 64], { seed: 2, device });
          const v = vl.randn([1, N, 1, 64], { seed: 3, device });
          const opts = { qPos: { grid: { cols: 56, step: 0.5, indexOffset: -1 } } };
          const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
          const dOut = vl.randn([1, N, 64], { seed: 4, device });
          await vl.synchronize();
          const before = vl.memory()[device];
          const g = attentionBackward(dOut, q, k, v, out, lse, opts);
          await g.dq.data();
          const after = vl.memory()[device];
          console.log(JSON.stringify({ base: before.allocatedBytes, peakBefore: before.peakAllocatedBytes, peak: after.peakAllocatedBytes }));
        })();`);
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const m = JSON.parse(r.stdout) as { base: number; peakBefore: number; peak: number };
      const N = 3137;
      const growth = m.peak - Math.max(m.base, m.peakBefore);
      expect(m.peak).toBeGreaterThanOrEqual(m.base + 3 * N * 64 * 4); // the three gradients at least
      expect(growth).toBeLessThan((N * N * 4) / 2);
    });

    test('no queries: dk and dv are zeros; empty batch: empty gradients', async () => {
      using q = vl.zeros([2, 0, 2, 16]);
      using k = randn([2, 3, 2, 16]);
      using v = randn([2, 3, 2, 16]);
      using out = vl.zeros([2, 0, 32]);
      using lse = vl.zeros([2, 2, 0]);
      const opts = { qPos: { grid: { cols: 3 } }, kPos: { grid: { cols: 3 } } };
      for (const packed of [undefined, 'kv'] as const) {
        const g = attentionBackward(out, q, k, v, out, lse, { ...opts, packed });
        expect(g.dq.shape).toEqual([2, 0, 2, 16]);
        expect(g.dk.shape).toEqual([2, 3, 2, 16]);
        expect(maxAbs(await values(g.dk))).toBe(0);
        expect(maxAbs(await values(g.dv))).toBe(0);
        if (packed) {
          expect(g.packed!.shape).toEqual([2, 3, 64]);
          expect(g.dv.sharesStorage(g.packed!)).toBe(true);
          expect(g.dv.offset).toBe(g.packed!.offset + 32);
        }
        disposeGrads(g);
      }
      using e = vl.zeros([0, 5, 2, 16]);
      using eo = vl.zeros([0, 5, 32]);
      using el = vl.zeros([0, 2, 5]);
      const g = attentionBackward(eo, e, e, e, eo, el, { rope: false, packed: 'qkv' });
      expect(g.dq.shape).toEqual([0, 5, 2, 16]);
      expect(g.packed!.shape).toEqual([0, 5, 96]);
      disposeGrads(g);
    });
  });

  describe('attentionBackward: typed errors', () => {
    const B = 2, N = 5, H = 3, D = 16;
    const grid = { qPos: { grid: { cols: 5 } } };
    const t = (shape: number[], dtype: 'f32' | 'bf16' | 'i32' = 'f32') => vl.zeros(shape, { dtype });
    const args = () => ({
      dOut: t([B, N, H * D]), q: t([B, N, H, D]), k: t([B, N, H, D]), v: t([B, N, H, D]), out: t([B, N, H * D]), lse: t([B, H, N]),
    });
    type Args = ReturnType<typeof args>;
    const call = (over: Partial<Args>, options: AttentionBackwardOptions = grid) => () => {
      const a = { ...args(), ...over };
      return attentionBackward(a.dOut, a.q, a.k, a.v, a.out, a.lse, options);
    };

    test('shapes', () => {
      vl.tidy(() => {
        expect(call({ lse: t([B, N, H]) })).toThrow(vl.ShapeError);
        expect(call({ lse: t([B, N, H]) })).toThrow(new RegExp(String.raw`attentionBackward: lse must be \[2,3,5\] \[B, heads, N\], the forward's log-sum-exp .*got f32\[2,5,3\] on ${device}`));
        expect(call({ lse: t([B, H]) })).toThrow(/lse must be \[2,3,5\]/);
        expect(call({ dOut: t([B, N, H, D]) })).toThrow(new RegExp(String.raw`attentionBackward: dOut must be \[2,5,48\] \[B, N, heads·D\].*got f32\[2,5,3,16\] on ${device}`));
        expect(call({ out: t([B, N + 1, H * D]) })).toThrow(vl.ShapeError);
        expect(call({ out: t([B, N + 1, H * D]) })).toThrow(/attentionBackward: out must be \[2,5,48\] \[B, N, heads·D\], the forward's output/);
        expect(call({ q: t([B, N, H * D]) })).toThrow(new RegExp(String.raw`attentionBackward: q must be 4-D \[B, N, heads, D\], got f32\[2,5,48\] on ${device}`));
        expect(call({ k: t([1, N, H, D]), v: t([1, N, H, D]) })).toThrow(/attentionBackward: q and k\/v disagree on the batch size/);
        expect(call({ k: t([B, N, 2, D]), v: t([B, N, 2, D]) })).toThrow(/disagree on the head count/);
        expect(call({ k: t([B, N, H, 32]), v: t([B, N, H, 32]) })).toThrow(/disagree on the head width/);
        expect(call({ v: t([B, N + 1, H, D]) })).toThrow(/k and v must have the same shape/);
        const k6 = t([B, 6, H, D]);
        const withK = { ...grid, kPos: { grid: { cols: 3 } } };
        expect(call({ k: k6, v: k6 }, { ...withK, packed: 'qkv' })).toThrow(vl.ShapeError);
        expect(call({ k: k6, v: k6 }, { ...withK, packed: 'qkv' })).toThrow(/packed 'qkv' gradients need as many keys as queries, got 5 queries .* and 6 keys/);
        expect(call({ k: k6, v: k6 }, { ...withK, packed: 'kv' })).not.toThrow();
        const q18 = t([1, 5, 1, 18]);
        expect(call({ q: q18, k: q18, v: q18, dOut: t([1, 5, 18]), out: t([1, 5, 18]), lse: t([1, 1, 5]) })).toThrow(/multiple of 4 from 16 to 256/);
      });
    });

    test('dtypes', () => {
      vl.tidy(() => {
        expect(call({ dOut: t([B, N, H * D], 'bf16') })).toThrow(vl.DTypeError);
        expect(call({ dOut: t([B, N, H * D], 'bf16') })).toThrow(new RegExp(String.raw`attentionBackward: dOut must be f32, got bf16\[2,5,48\] on ${device}`));
        expect(call({ lse: t([B, H, N], 'i32') })).toThrow(new RegExp(String.raw`attentionBackward: lse must be f32, got i32\[2,3,5\] on ${device}`));
        expect(call({ out: t([B, N, H * D], 'bf16') })).toThrow(vl.DTypeError);
        expect(call({ k: t([B, N, H, D], 'bf16') })).toThrow(/attentionBackward: k must be f32/);
      });
    });

    test('options, positions and arguments', () => {
      vl.tidy(() => {
        expect(call({}, {})).toThrow(vl.ArgumentError);
        expect(call({}, {})).toThrow(/attentionBackward: RoPE needs the query positions/);
        expect(call({}, { ...grid, packed: 'q' as 'qkv' })).toThrow(vl.ArgumentError);
        expect(call({}, { ...grid, packed: 'q' as 'qkv' })).toThrow(/attentionBackward: packed must be 'qkv' or 'kv' \(or left out\), got string q/);
        expect(call({}, { ...grid, scale: NaN })).toThrow(/attentionBackward: scale must be a finite number/);
        expect(call({}, { ...grid, rope: 1 as unknown as boolean })).toThrow(/attentionBackward: rope must be a boolean/);
        expect(call({}, null as unknown as AttentionBackwardOptions)).toThrow(/attentionBackward: options must be an object/);
        expect(call({}, { qPos: { grid: { cols: 0 } } })).toThrow(/attentionBackward: qPos.grid.cols must be a positive integer/);
        expect(call({}, { qPos: { x: [1, 2], y: [1, 2] } })).toThrow(vl.ShapeError);
        expect(call({}, { qPos: { x: [1, 2], y: [1, 2] } })).toThrow(/attentionBackward: query position x must be \[5\] \(one per query\)/);
        const k6 = t([B, 6, H, D]);
        expect(call({ k: k6, v: k6 })).toThrow(/attentionBackward: there are 6 keys but 5 queries, so the key positions \(kPos\) must be given/);
        expect(call({ lse: null as unknown as vl.Tensor })).toThrow(/attentionBackward: lse must be a Tensor, got null/);
        expect(call({ dOut: [1, 2] as unknown as vl.Tensor })).toThrow(vl.ArgumentError);
        const d = t([B, H, N]);
        d.dispose();
        expect(call({ lse: d })).toThrow(vl.DisposedError);
        const dq = t([B, N, H, D]);
        dq.dispose();
        expect(call({ q: dq })).toThrow(vl.DisposedError);
      });
    });

    test('devices', () => {
      const r = runNode(`${requireLib}
        const { attentionBackward } = require(${attentionModule});
        const z = (shape, device) => vl.zeros(shape, { device });
        const a = () => ({ dOut: z([1, 4, 16]), q: z([1, 4, 1, 16]), k: z([1, 4, 1, 16]), v: z([1, 4, 1, 16]), out: z([1, 4, 16]), lse: z([1, 1, 4]) });
        const out = [];
        for (const over of [{ lse: z([1, 1, 4], 'cpu:1') }, { dOut: z([1, 4, 16], 'cpu:1') }, { v: z([1, 4, 1, 16], 'cpu:1') }]) {
          const x = { ...a(), ...over };
          try { attentionBackward(x.dOut, x.q, x.k, x.v, x.out, x.lse, { rope: false }); out.push('no error'); } catch (e) { out.push(e.name + ': ' + e.message); }
        }
        console.log(JSON.stringify(out));`, { VLLAMA_CPU_DEVICES: '2' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const [a, b, c] = JSON.parse(r.stdout) as string[];
      expect(a).toMatch(/^DeviceError: attentionBackward: lse must be on cpu with q, got f32\[1,1,4\] on cpu:1/);
      expect(b).toMatch(/^DeviceError: attentionBackward: dOut must be on cpu with q/);
      expect(c).toMatch(/^DeviceError: attentionBackward: q, k and v must be on one device/);
      const peer = peerDevice(device);
      if (peer) {
        vl.tidy(() => {
          for (const name of ['lse', 'dOut', 'v', 'out'] as const) {
            const a = args();
            expectDeviceError(call({ [name]: a[name].to(peer) }), device, peer);
          }
        });
      }
    });
  });
});

// Thread counts and instruction sets are CPU settings.
// A workload for the determinism and ISA checks (in this process and in
// children, whose output must stay under spawnSync's buffer): many pairs,
// few pairs split over query ranges, LSA windows, GSA with packed 'kv'.
const workload = `
  async (vl, { attention, attentionBackward, splitQKV, splitKV }) => {
    const res = [];
    const run = async (q, k, v, opts, packed) => {
      const { out, lse } = attention(q, k, v, { ...opts, returnLse: true });
      const dOut = vl.randn(out.shape, { seed: 99 });
      const g = attentionBackward(dOut, q, k, v, out, lse, { ...opts, packed });
      for (const t of [g.dq, g.dk, g.dv]) res.push(Buffer.from(await t.contiguous().bytes()).toString('base64'));
      for (const t of [out, lse, dOut, g.dq, g.dk, g.dv, g.packed]) if (t) t.dispose();
    };
    const qkv = vl.randn([2, 197, 3 * 3 * 64], { seed: 7 });
    const a = splitQKV(qkv, 3);
    await run(a.q, a.k, a.v, { qPos: { grid: { cols: 14, step: 0.5, indexOffset: -1 } } }, 'qkv');
    const q2 = vl.randn([1, 600, 1, 32], { seed: 10 });
    await run(q2, q2, q2, { qPos: { grid: { cols: 25, indexOffset: -1 } } });
    const w = vl.randn([24, 49, 3 * 2 * 32], { seed: 11 });
    const b = splitQKV(w, 2);
    await run(b.q, b.k, b.v, { qPos: { grid: { cols: 7 } } });
    const q3 = vl.randn([1, 150, 4, 80], { seed: 8 });
    const kv = vl.randn([1, 30, 2 * 4 * 80], { seed: 9 });
    const s = splitKV(kv, 4);
    await run(q3, s.k, s.v, { qPos: { grid: { cols: 15 } }, kPos: { grid: { cols: 15, step: 3, bias: 2 / 3 } } }, 'kv');
    for (const t of [qkv, a.q, a.k, a.v, q2, w, b.q, b.k, b.v, q3, kv, s.k, s.v]) t.dispose();
    return res;
  }`;

describe('attentionBackward: determinism and instruction sets', () => {
  afterAll(() => vl.setNumThreads(2));

  test('1 and 2 threads give bit-identical results', async () => {
    // eslint-disable-next-line no-eval
    const run = eval(workload) as (lib: unknown, ops: unknown) => Promise<string[]>;
    const ops = { attention, attentionBackward, splitQKV, splitKV };
    vl.setNumThreads(1);
    const one = await run(vl, ops);
    vl.setNumThreads(2);
    const two = await run(vl, ops);
    expect(one.length).toBe(12);
    expect(two).toEqual(one);
  });

  test('every supported ISA agrees with the others', () => {
    const supported = vl.cpuInfo().supportedIsas;
    const runs = supported.map((isa) => {
      const r = runNode(`${requireLib}
        const ops = require(${attentionModule});
        (${workload})(vl, ops).then((res) => console.log(JSON.stringify({ isa: vl.cpuInfo().isa, res })));`,
      { VLLAMA_CPU_ISA: isa });
      expect({ isa, status: r.status, stderr: r.stderr }).toEqual({ isa, status: 0, stderr: '' });
      return JSON.parse(r.stdout) as { isa: string; res: string[] };
    });
    runs.forEach((r, i) => expect(r.isa).toBe(supported[i]));
    for (const r of runs.slice(1)) {
      r.res.forEach((b64, i) => {
        const a = decode(b64), ref = decode(runs[0].res[i]);
        expect({ isa: r.isa, i, err: maxAbsDiff(a, ref) / maxAbs(ref) < 1e-5 }).toEqual({ isa: r.isa, i, err: true });
      });
    }
  });
});

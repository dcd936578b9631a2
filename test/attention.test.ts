// Fused AS2DRoPE attention against the reference fixtures and a naive f64
// implementation of SPEC §1-§3: grids with a class token and auto-scaling,
// LSA windows, GSA keys on the full-resolution width, explicit positions,
// strided q/k/v views of packed projections, log-sum-exp; determinism across
// thread counts, agreement across instruction sets, memory, typed errors.
// Everything but the thread counts and instruction sets runs on every backend.
import * as path from 'path';
import * as vl from '../lib';
import { AttentionOptions, GridPositions, attention, splitKV, splitQKV } from '../lib/ops/attention';
import {
  describeBackends, expectDeviceError, gemmTolerance, maxAbsDiff, peerDevice, relErr, requireLib, runNode, withEnv,
} from './helpers';
import { RefOptions, decode, gridPositions, maxAbs, rope } from './attention-reference';

const fixtures = path.join(__dirname, 'fixtures', 'ops');
const attentionModule = JSON.stringify(path.join(__dirname, '..', 'lib', 'ops', 'attention.ts'));

// ---- naive reference (f64 except where SPEC fixes fp32: positions, frequencies, angles) ----

/** softmax(q·kᵀ·scale)·v per (batch, head), heads concatenated; lse [B, H, N]. Only `rows` when given. */
function reference(q: Float32Array, k: Float32Array, v: Float32Array, shape: { B: number; N: number; M: number; H: number; D: number },
  o: RefOptions, rows?: number[]): { out: Float64Array; lse: Float64Array } {
  const { B, N, M, H, D } = shape;
  const doRope = o.rope ?? true;
  const qr = doRope ? rope(q, B, N, H, D, o.qx!, o.qy!) : Float64Array.from(q);
  const kr = doRope ? rope(k, B, M, H, D, o.kx ?? o.qx!, o.ky ?? o.qy!) : Float64Array.from(k);
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * N * H * D), lse = new Float64Array(B * H * N);
  const s = new Float64Array(M);
  const queries = rows ?? Array.from({ length: N }, (_, n) => n);
  for (let b = 0; b < B; ++b)
    for (let h = 0; h < H; ++h)
      for (const n of queries) {
        const qo = ((b * N + n) * H + h) * D;
        let mx = -Infinity;
        for (let m = 0; m < M; ++m) {
          const ko = ((b * M + m) * H + h) * D;
          let dot = 0;
          for (let d = 0; d < D; ++d) dot += qr[qo + d] * kr[ko + d];
          s[m] = dot * scale;
          mx = Math.max(mx, s[m]);
        }
        let sum = 0;
        for (let m = 0; m < M; ++m) sum += (s[m] = Math.exp(s[m] - mx));
        lse[(b * H + h) * N + n] = mx + Math.log(sum);
        const oo = (b * N + n) * H * D + h * D;
        for (let m = 0; m < M; ++m) {
          const w = s[m] / sum, vo = ((b * M + m) * H + h) * D;
          for (let d = 0; d < D; ++d) out[oo + d] += w * v[vo + d];
        }
      }
  return { out, lse };
}

/** Within `rel` of the expected values' scale. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number): void {
  expect(actual.length).toBe(expected.length);
  const err = maxAbsDiff(actual, expected) / Math.max(maxAbs(expected), 1e-30);
  expect(err).toBeLessThan(rel);
}

async function values(t: vl.Tensor): Promise<Float32Array> {
  return await t.data() as Float32Array;
}

/** Runs the op and the reference on the same tensors and compares out and lse. */
async function check(q: vl.Tensor, k: vl.Tensor, v: vl.Tensor, options: AttentionOptions, ref: RefOptions, rel: number): Promise<void> {
  const [B, N, H, D] = q.shape;
  const M = k.shape[1];
  const { out, lse } = attention(q, k, v, { ...options, returnLse: true });
  try {
    expect(out.shape).toEqual([B, N, H * D]);
    expect(lse.shape).toEqual([B, H, N]);
    const expected = reference(await values(q), await values(k), await values(v), { B, N, M, H, D }, ref);
    expectClose(await values(out), expected.out, rel);
    const l = await values(lse);
    expect(maxAbsDiff(l, expected.lse)).toBeLessThan(rel * Math.max(1, maxAbs(expected.lse)));
  } finally {
    out.dispose();
    lse.dispose();
  }
}

let seed = 100;
function randn(shape: number[], std = 1.5): vl.Tensor {
  return vl.randn(shape, { seed: seed++, std });
}

describeBackends('attention', (backend, device) => {
  // The CPU's tolerances scaled by how much less exact this backend's products are.
  const rel = (cpu: number): number => cpu * gemmTolerance(backend) / gemmTolerance('cpu');
  const tol = rel(1e-4);

  describe('attention: reference fixtures', () => {
    test('rope_attention: class token on a 4×5 grid, grid spec and explicit positions', async () => {
      const f = await vl.io.loadSafetensors(path.join(fixtures, 'rope_attention.safetensors'));
      try {
        const [q, k, v, expected] = ['q', 'k', 'v', 'out'].map((n) => f.get(n)!);
        const want = await values(expected);
        const px = Array.from(await values(f.get('pos_x')!)), py = Array.from(await values(f.get('pos_y')!));
        // The grid rule reproduces the fixture's positions (class token at x = 4, y = -1).
        expect(gridPositions(21, { cols: 5, indexOffset: -1 })).toEqual({ x: px, y: py });
        // The reference rotation used below matches the fixture's rotated q and k.
        const [B, N, H, D] = q.shape;
        expectClose(rope(await values(q), B, N, H, D, px, py), await values(f.get('q_rope')!), 1e-5);
        expectClose(rope(await values(k), B, N, H, D, px, py), await values(f.get('k_rope')!), 1e-5);

        for (const qPos of [{ grid: { cols: 5, indexOffset: -1 } }, { x: f.get('pos_x')!, y: f.get('pos_y')! }, { x: px, y: Float32Array.from(py) }]) {
          using out = attention(q, k, v, { qPos });
          expect(out.shape).toEqual([2, 21, 64]);
          expectClose(await values(out), want, tol);
        }
        // Already rotated inputs without RoPE give the same result.
        using plain = attention(f.get('q_rope')!, f.get('k_rope')!, v, { rope: false });
        expectClose(await values(plain), want, tol);
      } finally {
        for (const t of f.values()) t.dispose();
      }
    });

    test("the kernel's own rotation of q matches q_rope (probed through one-hot keys and values)", async () => {
      // Keys e_c at position (0, 0) are not rotated, so with scale 1 the scores
      // of query n are its rotated channels, and log(out) + lse recovers them.
      const f = await vl.io.loadSafetensors(path.join(fixtures, 'rope_attention.safetensors'), { names: ['q', 'q_rope', 'pos_x', 'pos_y'] });
      try {
        const q = f.get('q')!;
        const [B, N, H, D] = q.shape;
        const eye = new Float32Array(B * D * H * D);
        for (let b = 0; b < B; ++b) for (let m = 0; m < D; ++m) for (let h = 0; h < H; ++h) eye[((b * D + m) * H + h) * D + m] = 1;
        using onehot = vl.tensor(eye, [B, D, H, D]);
        const zeros = new Array(D).fill(0);
        const { out, lse } = attention(q, onehot, onehot, {
          qPos: { x: f.get('pos_x')!, y: f.get('pos_y')! }, kPos: { x: zeros, y: zeros }, scale: 1, returnLse: true,
        });
        const o = await values(out), l = await values(lse);
        out.dispose();
        lse.dispose();
        const recovered = new Float64Array(B * N * H * D);
        for (let b = 0; b < B; ++b)
          for (let n = 0; n < N; ++n)
            for (let h = 0; h < H; ++h)
              for (let c = 0; c < D; ++c) {
                const i = ((b * N + n) * H + h) * D + c;
                recovered[i] = Math.log(o[(b * N + n) * H * D + h * D + c]) + l[(b * H + h) * N + n];
              }
        expectClose(recovered, await values(f.get('q_rope')!), rel(2e-5));
      } finally {
        for (const t of f.values()) t.dispose();
      }
    });

    test('rope_cross_attention: 4 keys on a stride-2 grid laid out with the full width', async () => {
      const f = await vl.io.loadSafetensors(path.join(fixtures, 'rope_cross_attention.safetensors'));
      try {
        const [q, k, v] = ['q', 'k', 'v'].map((n) => f.get(n)!);
        const want = await values(f.get('out')!);
        // GSA on a 4×4 stage with sr = 2: M = 2·2 keys, x = 0.5 + (m mod 4)·2, y = 0.5 + floor(m/4)·2.
        const kGrid = { cols: 4, step: 2, bias: 0.5 };
        expect(gridPositions(4, kGrid)).toEqual({
          x: Array.from(await values(f.get('k_pos_x')!)), y: Array.from(await values(f.get('k_pos_y')!)),
        });
        using a = attention(q, k, v, { qPos: { grid: { cols: 4 } }, kPos: { grid: kGrid } });
        expectClose(await values(a), want, tol);
        using b = attention(q, k, v, {
          qPos: { x: f.get('q_pos_x')!, y: f.get('q_pos_y')! }, kPos: { x: f.get('k_pos_x')!, y: f.get('k_pos_y')! },
        });
        expectClose(await values(b), want, tol);
      } finally {
        for (const t of f.values()) t.dispose();
      }
    });
  });

  describe('attention: against a naive f64 reference', () => {
    test('plain ViT: class token + auto-scaled grid, q/k/v as strided views of a packed qkv', async () => {
      // 6×11 patches of a 96×176 image, base size 224: step = 224/96.
      const gh = 6, gw = 11, N = 1 + gh * gw, H = 3, D = 64, B = 2;
      using qkv = randn([B, N, 3 * H * D]);
      const { q, k, v } = splitQKV(qkv, H);
      try {
        expect(q.shape).toEqual([B, N, H, D]);
        expect(q.sharesStorage(qkv) && k.sharesStorage(qkv) && v.sharesStorage(qkv)).toBe(true);
        expect(q.isContiguous).toBe(false);
        const grid = { cols: gw, step: 224 / 96, indexOffset: -1 };
        const pos = gridPositions(N, grid);
        expect([pos.x[0], pos.y[0]]).toEqual([Math.fround(10 * Math.fround(224 / 96)), -Math.fround(224 / 96)]);
        await check(q, k, v, { qPos: { grid } }, { qx: pos.x, qy: pos.y }, tol);
      } finally {
        q.dispose(); k.dispose(); v.dispose();
      }
    });

    test.each([
      [16, 16, 67, 1],
      [32, 5, 131, 2],
      [64, 2, 97, 1],
      [80, 4, 65, 2],
      [128, 1, 150, 1],
      [36, 3, 41, 1],
      [100, 2, 18, 1],
    ])('D = %i, %i heads, N = %i, B = %i (odd sizes, partial tiles)', async (D, H, N, B) => {
      const cols = 7;
      using q = randn([B, N, H, D]);
      using k = randn([B, N, H, D]);
      using v = randn([B, N, H, D], 1);
      const pos = gridPositions(N, { cols });
      await check(q, k, v, { qPos: { grid: { cols } } }, { qx: pos.x, qy: pos.y }, tol);
    });

    test('GSA: keys of a sub-sampled grid (M ≠ N) on the full-resolution width, k/v views of a kv projection', async () => {
      // Stage 14×12, sr = 2: N = 168 queries, M = 7·6 = 42 keys.
      const Hs = 14, Ws = 12, sr = 2, heads = 4, D = 32, B = 2, C = heads * D;
      const N = Hs * Ws, M = (Hs / sr) * (Ws / sr);
      using q = randn([B, N, heads, D]);
      using kv = randn([B, M, 2 * C]);
      const { k, v } = splitKV(kv, heads);
      try {
        expect(k.shape).toEqual([B, M, heads, D]);
        const kGrid = { cols: Ws, step: sr, bias: 1 - 1 / sr };
        const qp = gridPositions(N, { cols: Ws }), kp = gridPositions(M, kGrid);
        // The quirk: key 6 (first of the second reduced row) sits at x = 0.5 + 6·2, y = 0.5.
        expect([kp.x[6], kp.y[6]]).toEqual([12.5, 0.5]);
        await check(q, k, v, { qPos: { grid: { cols: Ws } }, kPos: { grid: kGrid } }, { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y }, tol);
      } finally {
        k.dispose(); v.dispose();
      }
    });

    test('LSA: a batch of 7×7 windows with window-local positions', async () => {
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

    test('explicit positions (arrays, Float32Array, tensors), M ≠ N', async () => {
      const N = 37, M = 23, H = 2, D = 48, B = 1;
      using q = randn([B, N, H, D]);
      using k = randn([B, M, H, D]);
      using v = randn([B, M, H, D]);
      const r = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 1.7 + s) * 9));
      const qx = r(N, 1), qy = r(N, 2), kx = r(M, 3), ky = r(M, 4);
      using kxt = vl.tensor(kx);
      using kyt = vl.tensor(ky);
      await check(q, k, v, { qPos: { x: qx, y: Float32Array.from(qy) }, kPos: { x: kxt, y: kyt } }, { qx, qy, kx, ky }, tol);
    });

    test('rope: false with a custom scale; one query, one key', async () => {
      using q = randn([2, 19, 3, 16]);
      using k = randn([2, 29, 3, 16]);
      using v = randn([2, 29, 3, 16]);
      await check(q, k, v, { rope: false, scale: 0.3 }, { rope: false, scale: 0.3 }, tol);
      using q1 = randn([1, 1, 1, 16]);
      using k1 = randn([1, 1, 1, 16]);
      using v1 = randn([1, 1, 1, 16]);
      const { out, lse } = attention(q1, k1, v1, { rope: false, returnLse: true });
      // One key: out is v itself, read through the backend's GEMM (CUDA: v as a sum of 2 bf16, 2^-18).
      expectClose(await values(out), await values(v1), backend === 'cpu' ? 1e-6 : gemmTolerance(backend));
      const qv = await values(q1), kvals = await values(k1);
      let dot = 0;
      for (let d = 0; d < 16; ++d) dot += qv[d] * kvals[d];
      expect((await values(lse))[0]).toBeCloseTo(dot / 4, 4);
      out.dispose();
      lse.dispose();
    });

    test('long queries and keys: packed in several groups (sampled rows)', async () => {
      // 2 heads of 8200 keys × 128 channels exceed the packing budget of one
      // group; 530 queries make 9 tiles per head. The reference checks a sample
      // of rows from every tile.
      const N = 530, M = 8200, H = 2, D = 128;
      using q = randn([1, N, H, D], 0.5);
      using k = randn([1, M, H, D], 0.5);
      using v = randn([1, M, H, D]);
      const kGrid = { cols: 100, step: 0.25, bias: 0.5 };
      const { out, lse } = attention(q, k, v, { qPos: { grid: { cols: 23 } }, kPos: { grid: kGrid }, returnLse: true });
      const rows = Array.from({ length: 20 }, (_, i) => Math.min(N - 1, i * 28 + (i % 3)));
      const qp = gridPositions(N, { cols: 23 }), kp = gridPositions(M, kGrid);
      const ref = reference(await values(q), await values(k), await values(v), { B: 1, N, M, H, D },
        { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y }, rows);
      const o = await values(out), l = await values(lse);
      out.dispose();
      lse.dispose();
      const pick = (a: ArrayLike<number>) => rows.flatMap((n) => Array.from({ length: H * D }, (_, i) => a[n * H * D + i]));
      expectClose(pick(o), pick(ref.out), tol);
      const lsePick = (a: ArrayLike<number>) => rows.flatMap((n) => [a[n], a[N + n]]);
      expect(maxAbsDiff(lsePick(l), lsePick(ref.lse))).toBeLessThan(tol * Math.max(1, maxAbs(lsePick(ref.lse))));
    });

    test('long keys, D = 256, one query tile', async () => {
      // 2 heads of 4100 keys × 256 channels exceed the packing budget for one group.
      const N = 17, M = 4100, H = 2, D = 256;
      using q = randn([1, N, H, D], 0.5);
      using k = randn([1, M, H, D], 0.5);
      using v = randn([1, M, H, D]);
      const kGrid = { cols: 64, step: 0.5 };
      const qp = gridPositions(N, { cols: 5 }), kp = gridPositions(M, kGrid);
      await check(q, k, v, { qPos: { grid: { cols: 5 } }, kPos: { grid: kGrid } }, { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y }, tol);
    });

    test('empty batch or no queries give empty outputs', () => {
      using q = vl.zeros([0, 5, 2, 16]);
      using k = vl.zeros([0, 5, 2, 16]);
      using out = attention(q, k, k, { rope: false });
      expect(out.shape).toEqual([0, 5, 32]);
      using q0 = vl.zeros([1, 0, 2, 16]);
      using k1 = vl.zeros([1, 3, 2, 16]);
      const r = attention(q0, k1, k1, { qPos: { grid: { cols: 3 } }, kPos: { grid: { cols: 3 } }, returnLse: true });
      expect(r.out.shape).toEqual([1, 0, 32]);
      expect(r.lse.shape).toEqual([1, 2, 0]);
      r.out.dispose();
      r.lse.dispose();
    });
  });

  describe('attention: bf16 precision (inference)', () => {
    // bf16 operands (8 significant bits) with f32 accumulation and softmax.
    const bf16Tol = 3e-2;
    // The CPU takes its vdpbf16ps kernel where the CPU has AVX512_BF16, else keeps f32.
    const rounds = backend !== 'cpu' || (vl.cpuInfo().avx512bf16 && vl.cpuInfo().isa === 'avx512');

    async function checkBf16(q: vl.Tensor, k: vl.Tensor, v: vl.Tensor, options: AttentionOptions, ref: RefOptions): Promise<void> {
      const [B, N, H, D] = q.shape;
      const M = k.shape[1];
      using out = attention(q, k, v, { ...options, precision: 'bf16' }) as vl.Tensor;
      using full = attention(q, k, v, { ...options, precision: 'f32' }) as vl.Tensor;
      const expected = reference(await values(q), await values(k), await values(v), { B, N, M, H, D }, ref).out;
      const got = await values(out);
      expectClose(got, expected, bf16Tol);
      const diff = maxAbsDiff(got, await values(full)) / maxAbs(expected);
      if (rounds) expect(diff).toBeGreaterThan(1e-5);  // it did round
      else expect(diff).toBe(0);
    }

    test.each([
      [16, 2, 67, 67, 1],
      [32, 3, 131, 131, 2],
      [64, 2, 197, 197, 1],
      [80, 2, 65, 33, 1],
      [128, 1, 150, 149, 1],
    ])('D = %i, %i heads, N = %i, M = %i, B = %i', async (D, H, N, M, B) => {
      using q = randn([B, N, H, D]);
      using k = randn([B, M, H, D]);
      using v = randn([B, M, H, D], 1);
      const qp = gridPositions(N, { cols: 9, indexOffset: -1 }), kp = gridPositions(M, { cols: 9, step: 2, bias: 0.5 });
      await checkBf16(q, k, v, { qPos: { grid: { cols: 9, indexOffset: -1 } }, kPos: { grid: { cols: 9, step: 2, bias: 0.5 } } },
        { qx: qp.x, qy: qp.y, kx: kp.x, ky: kp.y });
    });

    test('LSA windows and a long sequence (packed in groups)', async () => {
      using qkv = randn([12, 49, 3 * 2 * 32]);
      const w = splitQKV(qkv, 2);
      const pos = gridPositions(49, { cols: 7 });
      try {
        await checkBf16(w.q, w.k, w.v, { qPos: { grid: { cols: 7 } } }, { qx: pos.x, qy: pos.y });
      } finally {
        w.q.dispose(); w.k.dispose(); w.v.dispose();
      }
      using q = randn([1, 1025, 1, 64]);
      using k = randn([1, 1025, 1, 64]);
      using v = randn([1, 1025, 1, 64], 1);
      const lp = gridPositions(1025, { cols: 32, indexOffset: -1 });
      await checkBf16(q, k, v, { qPos: { grid: { cols: 32, indexOffset: -1 } } }, { qx: lp.x, qy: lp.y });
    });

    if (backend === 'cuda') {
      // Compute capability 9.0 runs attention forwards on wgmma, other
      // devices on mma.sync; VLLAMA_CUDA_ATTENTION=mma forces mma.sync. The
      // operands round alike; the order of f32 sums differs, so at 16 bits P
      // may round to the neighbouring value here and there (the f32 split
      // keeps it to about 1e-5).
      test('VLLAMA_CUDA_ATTENTION: "mma" and the default kernel agree; another value is an error naming the choices', async () => {
        const run = (choice: string | undefined) => withEnv('VLLAMA_CUDA_ATTENTION', choice, async () => {
          const out: Float32Array[] = [];
          for (const [D, N, M] of [[64, 300, 300], [128, 77, 140], [32, 129, 129]]) {
            using q = randn([2, N, 2, D]);
            using k = randn([2, M, 2, D]);
            using v = randn([2, M, 2, D], 1);
            const opts = { qPos: { grid: { cols: 11, indexOffset: -1 } }, kPos: { grid: { cols: 12, step: 2 } } };
            for (const precision of ['f32', 'bf16', 'f16'] as const) {
              using o = attention(q, k, v, { ...opts, precision }) as vl.Tensor;
              out.push(await values(o));
            }
          }
          return out;
        });
        const [auto, mma] = [await run(undefined), await run('mma')];
        // Per shape: f32, bf16, f16.
        for (let i = 0; i < auto.length; ++i) expect(relErr(auto[i], mma[i])).toBeLessThan(i % 3 === 0 ? 1e-5 : 1e-2);
        await expect(run('fast')).rejects.toThrow(/VLLAMA_CUDA_ATTENTION must be "auto" .* or "mma" .*got "fast"/);
      });
    }

    test('a forward that returns lse (recorded for backward) keeps the precision its backward recomputes', async () => {
      using q = randn([1, 70, 2, 32]);
      const opts = { qPos: { grid: { cols: 7, indexOffset: -1 } }, returnLse: true as const };
      const a = attention(q, q, q, { ...opts, precision: 'bf16' });
      const b = attention(q, q, q, { ...opts, precision: 'f32' });
      try {
        const same = Buffer.from(await a.out.bytes()).equals(Buffer.from(await b.out.bytes()));
        expect(same).toBe(backend === 'cpu');
      } finally {
        for (const t of [a.out, a.lse, b.out, b.lse]) t.dispose();
      }
    });
  });

  describe('attention: memory', () => {
    test('N = 3137 runs without materialising the N×N scores', () => {
      const r = runNode(`${requireLib}
        const { attention } = require(${attentionModule});
        (async () => {
          const N = 3137, device = ${JSON.stringify(device)};
          const q = vl.randn([1, N, 1, 64], { seed: 1, device });
          const k = vl.randn([1, N, 1, 64], { seed: 2, device });
          const v = vl.randn([1, N, 1, 64], { seed: 3, device });
          await vl.synchronize();
          const before = vl.memory()[device];
          const out = attention(q, k, v, { qPos: { grid: { cols: 56, step: 0.5, indexOffset: -1 } }, returnLse: true });
          await out.out.data();
          const after = vl.memory()[device];
          console.log(JSON.stringify({ base: before.allocatedBytes, peakBefore: before.peakAllocatedBytes, peak: after.peakAllocatedBytes }));
        })();`);
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const m = JSON.parse(r.stdout) as { base: number; peakBefore: number; peak: number };
      const N = 3137;
      expect(m.peakBefore).toBe(m.base); // nothing but the inputs so far
      const growth = m.peak - m.base;
      expect(growth).toBeGreaterThan(N * 64 * 4); // the output at least
      expect(growth).toBeLessThan((N * N * 4) / 4);
    });
  });

  describe('attention: typed errors', () => {
    const q = () => vl.zeros([2, 5, 3, 16]);
    const grid = { qPos: { grid: { cols: 5 } } };

    test('ranks, shapes and head widths', () => {
      vl.tidy(() => {
        expect(() => attention(vl.zeros([5, 3, 16]), q(), q(), grid)).toThrow(vl.ShapeError);
        expect(() => attention(vl.zeros([5, 3, 16]), q(), q(), grid)).toThrow(new RegExp(String.raw`q must be 4-D \[B, N, heads, D\], got f32\[5,3,16\] on ${device}`));
        expect(() => attention(q(), vl.zeros([2, 5, 3, 16, 1]), q(), grid)).toThrow(/k must be 4-D/);
        expect(() => attention(q(), q(), vl.zeros([2, 4, 3, 16]), grid)).toThrow(new RegExp(String.raw`k and v must have the same shape .* got k f32\[2,5,3,16\] on ${device} and v f32\[2,4,3,16\] on ${device}`));
        expect(() => attention(q(), vl.zeros([1, 5, 3, 16]), vl.zeros([1, 5, 3, 16]), grid)).toThrow(/disagree on the batch size/);
        expect(() => attention(q(), vl.zeros([2, 5, 4, 16]), vl.zeros([2, 5, 4, 16]), grid)).toThrow(/disagree on the head count/);
        expect(() => attention(q(), vl.zeros([2, 5, 3, 20]), vl.zeros([2, 5, 3, 20]), grid)).toThrow(/disagree on the head width/);
        for (const D of [18, 12, 260]) {
          const t = vl.zeros([1, 5, 1, D]);
          expect(() => attention(t, t, t, grid)).toThrow(vl.ShapeError);
          expect(() => attention(t, t, t, grid)).toThrow(new RegExp(`multiple of 4 from 16 to 256 .*got D = ${D}`));
        }
        const none = vl.zeros([2, 0, 3, 16]);
        expect(() => attention(q(), none, none, { ...grid, kPos: { grid: { cols: 5 } } })).toThrow(/at least one key/);
      });
    });

    test('dtypes and devices', () => {
      vl.tidy(() => {
        const bf = vl.zeros([2, 5, 3, 16], { dtype: 'bf16' });
        expect(() => attention(bf, q(), q(), grid)).toThrow(vl.DTypeError);
        expect(() => attention(q(), q(), bf, grid)).toThrow(new RegExp(String.raw`v must be f32 .*got bf16\[2,5,3,16\] on ${device}`));
        const ix = vl.zeros([5], { dtype: 'i32' });
        expect(() => attention(q(), q(), q(), { qPos: { x: ix, y: ix } })).toThrow(vl.DTypeError);
        expect(() => attention(q(), q(), q(), { qPos: { x: ix, y: ix } })).toThrow(new RegExp(String.raw`query position x must be f32, got i32\[5\] on ${device}`));
      });
      const r = runNode(`${requireLib}
        const { attention } = require(${attentionModule});
        const q = vl.zeros([1, 4, 1, 16]);
        const k = vl.zeros([1, 4, 1, 16], { device: 'cpu:1' });
        const x1 = vl.zeros([4], { device: 'cpu:1' });
        const out = [];
        for (const f of [() => attention(q, k, q, { rope: false }),
                         () => attention(q, q, q, { qPos: { x: x1, y: x1 } })]) {
          try { f(); out.push('no error'); } catch (e) { out.push(e.name + ': ' + e.message); }
        }
        console.log(JSON.stringify(out));`, { VLLAMA_CPU_DEVICES: '2' });
      expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
      const [a, b] = JSON.parse(r.stdout) as string[];
      expect(a).toMatch(/^DeviceError: attention: q, k and v must be on one device, got q f32\[1,4,1,16\] on cpu and k f32\[1,4,1,16\] on cpu:1/);
      expect(b).toMatch(/^DeviceError: attention: query position x must be on cpu with q, got f32\[4\] on cpu:1/);
      const peer = peerDevice(device);
      if (peer) {
        vl.tidy(() => {
          const p = vl.zeros([2, 5, 3, 16], { device: peer });
          expectDeviceError(() => attention(q(), p, p, grid), device, peer);
          expectDeviceError(() => attention(q(), q(), p, grid), device, peer);
          const x = vl.zeros([5], { device: peer });
          expectDeviceError(() => attention(q(), q(), q(), { qPos: { x, y: x } }), device, peer);
        });
      }
    });

    test('positions and options', () => {
      vl.tidy(() => {
        expect(() => attention(q(), q(), q())).toThrow(vl.ArgumentError);
        expect(() => attention(q(), q(), q())).toThrow(/RoPE needs the query positions/);
        expect(() => attention(q(), q(), q(), { qPos: { x: [1, 2, 3], y: [1, 2, 3] } })).toThrow(vl.ShapeError);
        expect(() => attention(q(), q(), q(), { qPos: { x: [1, 2, 3], y: [1, 2, 3] } })).toThrow(new RegExp(String.raw`query position x must be \[5\] \(one per query\), got f32\[3\] on ${device}`));
        const k6 = vl.zeros([2, 6, 3, 16]);
        expect(() => attention(q(), k6, k6, grid)).toThrow(/there are 6 keys but 5 queries, so the key positions \(kPos\) must be given/);
        expect(() => attention(q(), k6, k6, { ...grid, kPos: { x: new Float32Array(5), y: new Float32Array(5) } })).toThrow(/key position x must be \[6\] \(one per key\)/);
        expect(() => attention(q(), q(), q(), { qPos: { grid: { cols: 0 } } })).toThrow(/qPos.grid.cols must be a positive integer, got number 0/);
        expect(() => attention(q(), q(), q(), { qPos: { grid: { cols: 2.5 } } })).toThrow(vl.ArgumentError);
        expect(() => attention(q(), q(), q(), { qPos: { grid: { cols: 5, step: NaN } } })).toThrow(/qPos.grid.step must be a finite number/);
        expect(() => attention(q(), q(), q(), { qPos: { grid: { cols: 5, indexOffset: 0.5 } } })).toThrow(/indexOffset must be an integer/);
        expect(() => attention(q(), q(), q(), { ...grid, scale: Infinity })).toThrow(/scale must be a finite number/);
        expect(() => attention(q(), q(), q(), { qPos: { x: 'abc' as unknown as number[], y: [] } })).toThrow(/qPos.x must be a Float32Array, an array of numbers or a Tensor, got string abc/);
        expect(() => attention(q(), q(), q(), { qPos: {} as unknown as { grid: GridPositions } })).toThrow(/qPos must have both x and y, or grid/);
        expect(() => attention(q(), null as unknown as vl.Tensor, q(), grid)).toThrow(/k must be a Tensor, got null/);
        const d = q();
        d.dispose();
        expect(() => attention(d, q(), q(), grid)).toThrow(vl.DisposedError);
      });
    });

    test('splitQKV / splitKV', () => {
      vl.tidy(() => {
        expect(() => splitQKV(vl.zeros([2, 5, 3 * 40]), 3)).toThrow(vl.ShapeError);
        expect(() => splitQKV(vl.zeros([2, 5, 3 * 40]), 3)).toThrow(new RegExp(String.raw`last dim 120 of f32\[2,5,120\] on ${device} is not 3·heads·D for heads = 3`));
        expect(() => splitKV(vl.zeros([5, 64]), 2)).toThrow(new RegExp(String.raw`expected a 3-D projection \[B, T, 2·C\] \(k\|v\), got f32\[5,64\] on ${device}`));
        expect(() => splitQKV(vl.zeros([1, 5, 96]), 0)).toThrow(vl.ArgumentError);
        // A transposed projection is copied once; the views still read the right channels.
        const packed = vl.arange(2 * 3 * 96).reshape(2, 96, 3).transpose(1, 2);
        const { k } = splitQKV(packed, 2);
        expect(k.shape).toEqual([2, 3, 2, 16]);
        expect(k.sharesStorage(packed)).toBe(false);
      });
    });
  });
});

// Thread counts and instruction sets are CPU settings.
// A workload for the determinism and ISA checks (in this process and in
// children, whose output must stay under spawnSync's 1 MiB buffer).
const workload = `
  async (vl, { attention, splitQKV, splitKV }) => {
    const outs = [];
    const qkv = vl.randn([1, 197, 3 * 3 * 64], { seed: 7 });
    const { q, k, v } = splitQKV(qkv, 3);
    outs.push(...Object.values(attention(q, k, v, { qPos: { grid: { cols: 14, step: 0.5, indexOffset: -1 } }, returnLse: true })));
    const q2 = vl.randn([1, 150, 4, 80], { seed: 8 });
    const kv = vl.randn([1, 30, 2 * 4 * 80], { seed: 9 });
    const s = splitKV(kv, 4);
    outs.push(attention(q2, s.k, s.v, { qPos: { grid: { cols: 15 } }, kPos: { grid: { cols: 15, step: 3, bias: 2 / 3 } } }));
    const q3 = vl.randn([1, 600, 2, 32], { seed: 10 });
    outs.push(attention(q3, q3, q3, { qPos: { grid: { cols: 25, indexOffset: -1 } } }));
    const res = [];
    for (const t of outs) res.push(Buffer.from(await t.bytes()).toString('base64'));
    for (const t of [...outs, qkv, q, k, v, q2, kv, s.k, s.v, q3]) t.dispose();
    return res;
  }`;

describe('attention: determinism and instruction sets', () => {
  afterAll(() => vl.setNumThreads(2));

  test('1 and 2 threads give bit-identical results', async () => {
    // eslint-disable-next-line no-eval
    const run = eval(workload) as (lib: unknown, ops: unknown) => Promise<string[]>;
    const ops = { attention, splitQKV, splitKV };
    vl.setNumThreads(1);
    const one = await run(vl, ops);
    vl.setNumThreads(2);
    const two = await run(vl, ops);
    expect(one.length).toBe(4);
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
        expect(maxAbsDiff(a, ref) / maxAbs(ref)).toBeLessThan(1e-5);
      });
    }
  });
});

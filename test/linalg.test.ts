// GEMM-backed ops against float64 references written here: linear (plain,
// packed, bf16, epilogues), fused SwiGLU (and the PyTorch fixture), batched
// matmul, the patch convolution; determinism across thread counts, agreement
// across instruction sets, and the typed errors. The op checks run on every
// backend here; thread counts and instruction sets are CPU matters.
import * as path from 'path';
import * as vl from '../lib';
import {
  PackedLinear, PackedSwiGLU, convPatch, gemmInfo, linear, matmul, packLinear, packSwiGLU, swiglu,
} from '../lib/ops/linalg';
import {
  describeBackends, expectDeviceError, gemmTolerance, peerDevice, relErr, repoRoot, requireLib, runNode, settleGc, withEnv,
} from './helpers';

type Arr = Float32Array;

/** A row-major view described by shape/strides into a flat array. */
interface View { data: Arr; shape: readonly number[]; strides: readonly number[]; offset: number }

async function view(t: vl.Tensor): Promise<View> {
  // data() is contiguous in t's logical order.
  const data = await t.data();
  const strides: number[] = [];
  let s = 1;
  for (let i = t.shape.length - 1; i >= 0; --i) { strides[i] = s; s *= t.shape[i]; }
  return { data, shape: t.shape, strides, offset: 0 };
}

// Math.abs from jest's outer realm is not inlined (a call per element); this is.
const abs = (v: number): number => (v < 0 ? -v : v);

/** C[m,n] = sum_k A[m,k] B[n,k] (+ bias[n]) (+ res[m,n]) in float64, and sum_k |A B| for tolerances. */
function refGemm(a: Arr, b: Arr, m: number, n: number, k: number, bias?: Arr, res?: Arr): { c: Float64Array; mag: Float64Array } {
  const c = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; ++i) {
    for (let j = 0; j < n; ++j) {
      let s = 0, g = 0;
      const ai = i * k, bj = j * k;
      for (let q = 0; q < k; ++q) { const p = a[ai + q] * b[bj + q]; s += p; g += abs(p); }
      if (bias) { s += bias[j]; g += abs(bias[j]); }
      if (res) { s += res[i * n + j]; g += abs(res[i * n + j]); }
      c[i * n + j] = s;
      mag[i * n + j] = g;
    }
  }
  return { c, mag };
}

/** Every element within rel * (sum of |terms|) + abs of the reference. */
function expectClose(got: ArrayLike<number>, ref: { c: Float64Array; mag: Float64Array }, rel: number, abs = 1e-6): void {
  expect(got.length).toBe(ref.c.length);
  let worst = 0, at = -1;
  for (let i = 0; i < got.length; ++i) {
    const excess = Math.abs(got[i] - ref.c[i]) - (rel * ref.mag[i] + abs);
    if (excess > worst) { worst = excess; at = i; }
  }
  if (at >= 0) throw new Error(`element ${at}: got ${got[at]}, expected ${ref.c[at]} (±${rel * ref.mag[at] + abs})`);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; ++i) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

let seed = 100;
const randn = (shape: number[]): vl.Tensor => vl.randn(shape, { seed: seed++ });

describeBackends('linalg', (backend, device) => {
  // f32 GEMMs: within this of the float64 result, relative to the sum of |terms|.
  const tol = gemmTolerance(backend);
  // The packed layout of this backend's kernels: the CPU ISA, or the backend's name.
  const layout = backend === 'cpu' ? gemmInfo().layout : backend;

  describe('linear', () => {
    // Each size in every position, none a multiple of the 14x32 tile except 64.
    const sizes: [number, number, number][] = [
      [1, 1, 1], [1, 3, 17], [3, 17, 1], [17, 1, 3], [64, 65, 129], [65, 129, 64], [129, 64, 65],
      [383, 17, 65], [17, 383, 3], [3, 65, 383], [1, 129, 383], [129, 1, 64], [65, 64, 1], [200, 100, 777],
    ];

    test.each(sizes)('M=%i N=%i K=%i against float64, with and without bias and residual', async (m, n, k) => {
      const [x, w, b, r] = [randn([m, k]), randn([n, k]), randn([n]), randn([m, n])];
      const [xd, wd, bd, rd] = await Promise.all([x.data(), w.data(), b.data(), r.data()]);
      const plain = linear(x, w);
      const full = linear(x, w, { bias: b, residual: r });
      expect(plain.shape).toEqual([m, n]);
      expectClose(await plain.data(), refGemm(xd, wd, m, n, k), tol);
      expectClose(await full.data(), refGemm(xd, wd, m, n, k, bd, rd), tol);
      for (const t of [x, w, b, r, plain, full]) t.dispose();
    });

    test('leading dims, strided and transposed inputs are read in place', async () => {
      const [m1, m2, k, n] = [5, 7, 67, 33];
      const base = randn([m2, m1, k]);            // x = base.permute(1,0,2): rows not foldable into one stride
      const x = base.permute(1, 0, 2);
      const wt = randn([k, n]);                   // weight = wt^T: [n, k] with strides [1, n]
      const w = wt.transpose();
      const rbase = randn([n, m1 * m2]);          // residual as a transposed view
      const res = rbase.transpose().reshape(m1, m2, n);
      const bias = randn([n]);
      const y = linear(x, w, { bias, residual: res });
      expect(y.shape).toEqual([m1, m2, n]);
      expect(y.isContiguous).toBe(true);
      const xc = await x.contiguous().data(), wc = await w.contiguous().data(), rc = await res.contiguous().data();
      expectClose(await y.data(), refGemm(xc, wc, m1 * m2, n, k, await bias.data(), rc), tol);
      // 1-D x is a single row.
      const v = randn([k]);
      const yv = linear(v, w);
      expect(yv.shape).toEqual([n]);
      expectClose(await yv.data(), refGemm(await v.data(), wc, 1, n, k), tol);
      for (const t of [base, x, wt, w, rbase, res, bias, y, v, yv]) t.dispose();
    });

    test('packed f32 weights give bit-identical results to unpacked ones', async () => {
      for (const [m, n, k] of [[17, 65, 129], [200, 100, 777], [1, 3, 1]]) {
        const x = randn([m, k]), w = randn([n, k]), b = randn([n]);
        const packed = packLinear(w);
        expect(packed).toBeInstanceOf(PackedLinear);
        expect(packed.shape).toEqual([n, k]);
        expect(packed.dtype).toBe('f32');
        expect(packed.layout).toBe(layout);
        expect(packed.tensor.dtype).toBe('u8');
        const a = await linear(x, w, { bias: b }).data();
        const p = await linear(x, packed, { bias: b }).data();
        expect(bitsEqual(a, p)).toBe(true);
        for (const t of [x, w, b, packed]) t.dispose();
      }
    });

    test('bf16 packed weights: exact for bf16-rounded inputs, within bf16 tolerance of f32', async () => {
      for (const [m, n, k] of [[65, 129, 383], [3, 17, 1], [30, 40, 777], [16, 33, 65]]) {
        const x = randn([m, k]), w = randn([n, k]), b = randn([n]), r = randn([m, n]);
        const packed = packLinear(w, { dtype: 'bf16' });
        expect(packed.dtype).toBe('bf16');
        const y = await linear(x, packed, { bias: b, residual: r }).data();
        const [xd, wd, bd, rd] = await Promise.all([x.data(), w.data(), b.data(), r.data()]);
        const full = refGemm(xd, wd, m, n, k, bd, rd);
        // bf16 keeps 8 bits of mantissa: about 1% of the output scale.
        let worst = 0;
        for (let i = 0; i < y.length; ++i) worst = Math.max(worst, Math.abs(y[i] - full.c[i]));
        expect(worst).toBeLessThan(1e-2 * maxAbs(full.c) + 1e-3);
        // Products of bf16-rounded values accumulated in f32.
        const xr = await x.to('bf16').to('f32').data(), wr = await w.to('bf16').to('f32').data();
        expectClose(y, refGemm(xr, wr, m, n, k, bd, rd), tol);
        for (const t of [x, w, b, r, packed]) t.dispose();
      }
    });

    if (backend === 'cuda') {
      // Compute capability 9.0 runs the linears (packed 16-bit, packed f32,
      // f32 weights) and single-batch matmuls on wgmma, other devices on
      // mma.sync; VLLAMA_CUDA_GEMM=mma forces mma.sync. Either way the
      // products are the same, only the order of f32 sums differs.
      test('VLLAMA_CUDA_GEMM: "mma" and the default kernel agree; another value is an error naming the choices', async () => {
        const run = (choice: string | undefined) => withEnv('VLLAMA_CUDA_GEMM', choice, async () => {
          const out: Float32Array[] = [];
          using x = vl.randn([300, 200], { seed: 5 });
          using w = vl.randn([260, 200], { seed: 6 });
          using w2 = vl.randn([260, 200], { seed: 7 });
          for (const dtype of ['bf16', 'f16', 'f32'] as const) {
            using packed = packLinear(w, { dtype });
            using gate = packSwiGLU(w, w2, { dtype });
            out.push(await linear(x, packed).data(), await swiglu(x, gate).data());
          }
          // f32 weights at each arithmetic, and a matmul's B (transposed: a copy first).
          for (const precision of ['f32', 'bf16', 'f16'] as const) {
            out.push(await linear(x, w, { precision }).data());
            using wt = w.transpose(0, 1);
            out.push(await matmul(x, wt, { precision }).data());
          }
          await vl.synchronize(device);
          return out;
        });
        const [auto, mma] = [await run(undefined), await run('mma')];
        for (let i = 0; i < auto.length; ++i) expect(relErr(auto[i], mma[i])).toBeLessThan(1e-5);
        await expect(run('fast')).rejects.toThrow(/VLLAMA_CUDA_GEMM must be "auto" .* or "mma" .*got "fast"/);
      });
    }

    test('f16 packed weights: the same numbers as f16 arithmetic on unpacked weights, fp16-rounded operands', async () => {
      for (const [m, n, k] of [[65, 129, 383], [3, 17, 1], [30, 40, 777]]) {
        const x = randn([m, k]), w = randn([n, k]), b = randn([n]), r = randn([m, n]);
        const packed = packLinear(w, { dtype: 'f16' });
        expect(packed.dtype).toBe('f16');
        expect(packed.info.dtype).toBe('f16');
        const y = await linear(x, packed, { bias: b, residual: r }).data();
        // The same numbers as an f16 pass over the unpacked weight (on the CPU the same panels, bit for bit).
        const unpacked = await linear(x, w, { bias: b, residual: r, precision: 'f16' }).data();
        if (backend === 'cpu') expect(bitsEqual(y, unpacked)).toBe(true);
        else expect(relErr(y, unpacked)).toBeLessThan(1e-5);
        // Products of fp16-rounded values accumulated in f32, which is not the f32 result.
        const [bd, rd] = await Promise.all([b.data(), r.data()]);
        const xr = await x.to('f16').to('f32').data(), wr = await w.to('f16').to('f32').data();
        expectClose(y, refGemm(xr, wr, m, n, k, bd, rd), tol);
        if (k > 1) expect(bitsEqual(y, await linear(x, w, { bias: b, residual: r }).data())).toBe(false);
        for (const t of [x, w, b, r, packed]) t.dispose();
      }
      // A weight beyond fp16's range becomes Inf (what f16 inference on a GPU computes).
      using big = vl.tensor([7e4, 1], [1, 2]);
      using pb = packLinear(big, { dtype: 'f16' });
      using one = vl.tensor([1, 1], [1, 2]);
      expect((await linear(one, pb).data())[0]).toBe(Infinity);
      expect(() => packLinear(big, { dtype: 'f64' as never })).toThrow(/dtype must be 'f32', 'bf16' or 'f16'/);
    });

    test('bf16 packing rounds the largest subnormals up to the smallest normal, as the scalar conversion does', async () => {
      // f32 subnormals from 0x007f8000 up round to bf16's smallest normal 2^-126
      // (the dot-product instruction flushes subnormal bf16, not normal ones).
      // Times weights of 2^100 their products are about 1e-8, far above the f32
      // accumulation error. 16 rows: whole 14-row panels take the vector path;
      // some rows mix in normal values, so only part of their vectors is subnormal.
      const m = 16, n = 3, k = 64;
      const kind = (i: number) => i % 4;
      const bits = new Uint32Array(m * k);
      const normal = new Float32Array(bits.buffer);
      for (let i = 0; i < m; ++i)
        for (let j = 0; j < k; ++j) {
          const at = i * k + j;
          if (kind(i) === 3 || (kind(i) === 2 && j % 3 === 0)) normal[at] = (1 + j / k) * 2 ** -120;
          else bits[at] = (0x007f8000 + ((i * 131 + j * 977) & 0x7fff)) | (j % 2 ? 0x80000000 : 0);
        }
      using x = vl.tensor(new Float32Array(bits.buffer), [m, k]);
      const wv = new Float32Array(n * k).map((_, i) => 2 ** 100 * (1 + (i % 7) / 8) * (i % 5 ? 1 : -1));
      using w = vl.tensor(wv, [n, k]);
      using packed = packLinear(w, { dtype: 'bf16' });
      using yt = linear(x, packed);
      const y = await yt.data();
      using xb = x.to('bf16');
      using xr = xb.to('f32');
      const xrv = await xr.data();
      expect(xrv[0]).toBe(2 ** -126);
      const want = refGemm(xrv, wv, m, n, k);
      for (let i = 0; i < m * n; ++i) expect(Math.abs(y[i])).toBeGreaterThan(1e-9);
      expectClose(y, want, tol, 0);
    });

    test('a transposed x with f32 and bf16 packed weights: the same as a contiguous x', async () => {
      for (const [m, n, k] of [[15, 33, 385], [29, 65, 778], [3, 7, 1], [300, 40, 1001]]) {
        const g = randn([k, m]), w = randn([n, k]);
        const xt = g.transpose(), xc = xt.contiguous();
        for (const dtype of ['f32', 'bf16'] as const) {
          const packed = packLinear(w, { dtype });
          const [a, c] = [linear(xt, packed), linear(xc, packed)];
          expect(bitsEqual(await a.data(), await c.data())).toBe(true);
          if (dtype === 'bf16') {
            const xr = await xc.to('bf16').to('f32').data(), wr = await w.to('bf16').to('f32').data();
            expectClose(await a.data(), refGemm(xr, wr, m, n, k), tol);
          }
          for (const t of [packed, a, c]) t.dispose();
        }
        for (const t of [g, w, xt, xc]) t.dispose();
      }
    });

    test('packLinear takes bf16 weights and strided views', async () => {
      const w = randn([40, 50]);
      const x = randn([9, 50]);
      const viaView = packLinear(randn([50, 40]).transpose());
      expect(viaView.shape).toEqual([40, 50]);
      viaView.dispose();
      const wb = w.to('bf16');
      const [y1, y2] = vl.tidy(() => [linear(x, packLinear(wb)), linear(x, wb.to('f32'))]);
      expect(bitsEqual(await y1.data(), await y2.data())).toBe(true);
      for (const t of [w, x, wb, y1, y2]) t.dispose();
    });
  });

  describe('swiglu', () => {
    test('matches the PyTorch fixture: c_proj(silu(c_fc1 x) * c_fc2 x)', async () => {
      const t = await vl.io.loadSafetensors(path.join(repoRoot, 'test/fixtures/ops/swiglu.safetensors'));
      const x = t.get('x')!, out = await t.get('out')!.data();
      const scale = maxAbs(out);
      for (const dtype of ['f32', 'bf16', 'f16'] as const) {
        using packed = packSwiGLU(t.get('c_fc1.weight')!, t.get('c_fc2.weight')!, { dtype });
        expect(packed).toBeInstanceOf(PackedSwiGLU);
        expect(packed.hidden).toBe(256);
        using h = swiglu(x, packed);
        expect(h.shape).toEqual([3, 5, 256]);
        using y = linear(h, t.get('c_proj.weight')!);
        const got = await y.data();
        let worst = 0;
        for (let i = 0; i < got.length; ++i) worst = Math.max(worst, Math.abs(got[i] - out[i]));
        // fp16 keeps 11 bits of mantissa, bf16 8.
        expect(worst).toBeLessThan({ f32: 1e-4, f16: 3e-3, bf16: 2e-2 }[dtype] * scale);
      }
      for (const v of t.values()) v.dispose();
    });

    test.each([[1, 1, 1], [17, 17, 65], [65, 100, 383], [40, 33, 777], [129, 64, 64]])(
      'M=%i hidden=%i K=%i against float64 (residual too)', async (m, hid, k) => {
        const x = randn([m, k]), w1 = randn([hid, k]), w2 = randn([hid, k]), r = randn([m, hid]);
        using packed = packSwiGLU(w1, w2);
        const [xd, d1, d2, rd] = await Promise.all([x.data(), w1.data(), w2.data(), r.data()]);
        const g = refGemm(xd, d1, m, hid, k), u = refGemm(xd, d2, m, hid, k);
        const c = new Float64Array(m * hid), mag = new Float64Array(m * hid);
        for (let i = 0; i < c.length; ++i) {
          c[i] = silu(g.c[i]) * u.c[i];
          // silu' is at most ~1.1, so errors in g and u scale by at most these.
          mag[i] = 1.1 * g.mag[i] * Math.abs(u.c[i]) + Math.abs(silu(g.c[i])) * u.mag[i] + 1e-3 * Math.abs(c[i]);
        }
        expectClose(await swiglu(x, packed).data(), { c, mag }, tol);
        const withRes = new Float64Array(c.length);
        for (let i = 0; i < c.length; ++i) withRes[i] = c[i] + rd[i];
        expectClose(await swiglu(x, packed, { residual: r }).data(), { c: withRes, mag: mag.map((v, i) => v + Math.abs(rd[i])) }, tol);
        for (const t of [x, w1, w2, r]) t.dispose();
      });
  });

  describe('bf16 activations between packed bf16 GEMMs (CPU)', () => {
    test.each([[1, 16, 32], [45, 300, 96], [29, 1000, 64]])(
      'M=%i hidden=%i K=%i: swiglu dtype bf16 is the f32 result rounded, and the down projection gives the same bits',
      async (m, hid, k) => {
        // hidden 1000 > the bf16 K block: the down projection reads its bf16 rows in two K blocks.
        using x = randn([2, m, k]);
        using w1 = randn([hid, k]);
        using w2 = randn([hid, k]);
        using wd = randn([k + 3, hid]);
        using fc = packSwiGLU(w1, w2, { dtype: 'bf16' });
        using down = packLinear(wd, { dtype: 'bf16' });
        using hf = swiglu(x, fc);
        if (backend !== 'cpu') {
          expect(() => swiglu(x, fc, { dtype: 'bf16' })).toThrow(/a bf16 output is a CPU GEMM path/);
          using hb = hf.to('bf16');
          expect(() => linear(hb, down)).toThrow(/a bf16 x is a CPU GEMM path/);
          return;
        }
        using hb = swiglu(x, fc, { dtype: 'bf16' });
        expect(hb.dtype).toBe('bf16');
        expect(hb.shape).toEqual([2, m, hid]);
        using rounded = hf.to('bf16');
        expect(Buffer.from(await hb.bytes()).equals(Buffer.from(await rounded.bytes()))).toBe(true);
        using yf = linear(hf, down);
        using yb = linear(hb, down);
        expect(yb.dtype).toBe('f32');
        expect(bitsEqual(await yb.data(), await yf.data())).toBe(true);
        // Rows of a strided view (every other row) are read in place.
        using every = hb.reshape(2 * m, hid).narrow(0, 0, m);
        using everyF = hf.reshape(2 * m, hid).narrow(0, 0, m);
        expect(bitsEqual(await linear(every, down).data(), await linear(everyF, down).data())).toBe(true);
      });

    test('bf16 activations need bf16 packed weights, no residual, a contiguous last dimension', () => {
      using x = randn([4, 32]);
      using w = randn([16, 32]);
      using fc32 = packSwiGLU(w, w);
      using fc16 = packSwiGLU(w, w, { dtype: 'bf16' });
      using lin32 = packLinear(w);
      using xb = x.to('bf16');
      expect(() => swiglu(x, fc32, { dtype: 'bf16' })).toThrow(/a bf16 output needs bf16 packed weights, got f32 ones/);
      expect(() => swiglu(x, fc16, { dtype: 'f16' as never })).toThrow(vl.DTypeError);
      expect(() => linear(xb, lin32)).toThrow(/a bf16 x needs bf16 packed weights, got f32 ones/);
      expect(() => linear(xb, w)).toThrow(/x must be f32, got bf16/);
      if (backend !== 'cpu') return;
      using r = randn([4, 16]);
      expect(() => swiglu(x, fc16, { dtype: 'bf16', residual: r })).toThrow(/a bf16 output takes no bias or residual/);
      using lin16 = packLinear(w.transpose().contiguous().narrow(0, 0, 16), { dtype: 'bf16' });
      using xt = randn([16, 4]).to('bf16').transpose();
      expect(() => linear(xt, lin16)).toThrow(/a bf16 x needs 16 features in a contiguous last dimension/);
    });
  });

  describe('matmul', () => {
    /** Reference for a [..., M, K] . b [..., K, N] via contiguous copies and broadcast indices. */
    async function refMatmul(a: vl.Tensor, b: vl.Tensor, transposeB: boolean): Promise<{ shape: number[]; c: Float64Array; mag: Float64Array }> {
      const bt = transposeB ? b : b.transpose();
      const av = await view(a), bv = await view(bt);
      const [m, k] = a.shape.slice(-2), n = bt.shape[bt.ndim - 2];
      const ab = a.shape.slice(0, -2), bb = bt.shape.slice(0, -2);
      const nd = Math.max(ab.length, bb.length);
      const batch: number[] = [];
      for (let i = 0; i < nd; ++i) {
        const x = ab[ab.length - nd + i] ?? 1, y = bb[bb.length - nd + i] ?? 1;
        batch.push(Math.max(x, y));
      }
      const count = batch.reduce((p, q) => p * q, 1);
      const c = new Float64Array(count * m * n), mag = new Float64Array(c.length);
      for (let bi = 0; bi < count; ++bi) {
        let rem = bi, oa = 0, ob = 0;
        for (let d = nd - 1; d >= 0; --d) {
          const idx = rem % batch[d];
          rem = Math.floor(rem / batch[d]);
          const da = d - (nd - ab.length), db = d - (nd - bb.length);
          if (da >= 0 && ab[da] !== 1) oa += idx * av.strides[da];
          if (db >= 0 && bb[db] !== 1) ob += idx * bv.strides[db];
        }
        const r = refGemm(av.data.subarray(oa, oa + m * k), bv.data.subarray(ob, ob + n * k), m, n, k);
        c.set(r.c, bi * m * n);
        mag.set(r.mag, bi * m * n);
      }
      bt.dispose();
      return { shape: [...batch, m, n], c, mag };
    }

    test.each([
      ['batched, broadcast batch dims', [2, 3, 17, 65], [3, 65, 33], false],
      ['shared 2-D b', [4, 29, 64], [64, 129], false],
      ['broadcast a', [17, 65], [4, 65, 33], false],
      ['transposeB (attention scores)', [2, 3, 50, 64], [2, 3, 50, 64], true],
      ['plain 2-D', [129, 383], [383, 65], false],
    ] as [string, number[], number[], boolean][])('%s', async (_name, as, bs, transposeB) => {
      const a = randn(as), b = randn(bs);
      const y = matmul(a, b, { transposeB });
      const ref = await refMatmul(a, b, transposeB);
      expect(y.shape).toEqual(ref.shape);
      expectClose(await y.data(), ref, tol);
      for (const t of [a, b, y]) t.dispose();
    });

    test('transposed and permuted views need no copies', async () => {
      const a0 = randn([3, 65, 2, 17]);            // a = a0.permute(2,0,3,1): [2,3,17,65]
      const a = a0.permute(2, 0, 3, 1);
      const b0 = randn([33, 65]);                  // b = b0^T: [65, 33]
      const b = b0.transpose();
      const before = vl.memory()[device].allocations;
      const y = matmul(a, b);
      // CUDA's kernel reads only a contiguous k: it copies such operands on the device first.
      if (backend === 'cpu') expect(vl.memory()[device].allocations - before).toBe(1);  // only the output
      const ref = await refMatmul(a, b, false);
      expectClose(await y.data(), ref, tol);
      for (const t of [a0, a, b0, b, y]) t.dispose();
    });

    // dW = dYᵀ·X: A's rows are adjacent in memory (row stride 1, k stride M),
    // packed from contiguous runs. The packed panels, and so the results, are
    // the same as for a contiguous copy of A.
    test.each([
      [1, 1, 1], [2, 3, 5], [13, 17, 19], [14, 32, 384], [15, 33, 385], [29, 65, 777], [45, 100, 2], [300, 7, 1001],
    ])('transposed A (weight gradient) M=%i N=%i K=%i', async (m, n, k) => {
      const g = randn([k, m]), x = randn([k, n]);
      const at = g.transpose(), ac = at.contiguous();
      const y = matmul(at, x);
      expect(y.shape).toEqual([m, n]);
      const yc = matmul(ac, x);
      const yd = await y.data();
      expect(bitsEqual(yd, await yc.data())).toBe(true);
      const [ad, xt] = [await ac.data(), await x.transpose().contiguous().data()];
      expectClose(yd, refGemm(ad, xt, m, n, k), tol);
      // Batched ([B, K, M] transposed), with a per-batch and a shared B.
      const gb = randn([3, k, m]), xb = randn([3, k, n]);
      const gbt = gb.transpose(1, 2), gbc = gbt.contiguous();
      for (const b of [xb, x]) {
        const [p, q] = [matmul(gbt, b), matmul(gbc, b)];
        expect(bitsEqual(await p.data(), await q.data())).toBe(true);
        for (const t of [p, q]) t.dispose();
      }
      for (const t of [g, x, at, ac, y, yc, gb, xb, gbt, gbc]) t.dispose();
    });
  });

  describe('convPatch', () => {
    async function refConv(x: vl.Tensor, w: vl.Tensor, bias: vl.Tensor | null, p: number): Promise<{ c: Float64Array; mag: Float64Array }> {
      const [B, C, H, W] = x.shape, O = w.shape[0];
      const xd = await x.contiguous().data(), wd = await w.contiguous().data(), bd = bias ? await bias.data() : null;
      const gh = H / p, gw = W / p;
      const c = new Float64Array(B * gh * gw * O), mag = new Float64Array(c.length);
      for (let b = 0; b < B; ++b)
        for (let gy = 0; gy < gh; ++gy)
          for (let gx = 0; gx < gw; ++gx)
            for (let o = 0; o < O; ++o) {
              let s = bd ? bd[o] : 0, g = abs(s);
              for (let ch = 0; ch < C; ++ch)
                for (let ky = 0; ky < p; ++ky)
                  for (let kx = 0; kx < p; ++kx) {
                    const v = xd[((b * C + ch) * H + gy * p + ky) * W + gx * p + kx] * wd[((o * C + ch) * p + ky) * p + kx];
                    s += v;
                    g += abs(v);
                  }
              const i = ((b * gh + gy) * gw + gx) * O + o;
              c[i] = s;
              mag[i] = g;
            }
      return { c, mag };
    }

    test('patch embedding (16x16, bias) against a naive convolution', async () => {
      const x = randn([2, 3, 32, 48]), w = randn([20, 3, 16, 16]), b = randn([20]);
      const y = convPatch(x, w, b, { patch: 16 });
      expect(y.shape).toEqual([2, 6, 20]);
      expectClose(await y.data(), await refConv(x, w, b, 16), tol);
      for (const t of [x, w, b, y]) t.dispose();
    });

    test('GSA reduction (2x2, no bias) on token-major (NHWC) activations, read in place', async () => {
      const tokens = randn([2, 6, 10, 24]);        // [B, H, W, C] storage
      const x = tokens.permute(0, 3, 1, 2);        // viewed as [B, C, H, W]
      const w = randn([24, 24, 2, 2]);
      const y = convPatch(x, w, null, { patch: 2 });
      expect(y.shape).toEqual([2, 15, 24]);
      expectClose(await y.data(), await refConv(x, w, null, 2), tol);
      for (const t of [tokens, x, w, y]) t.dispose();
    });

    test('channels-last views whose patch rows end inside a packing chunk (cropped, f32 and bf16 arithmetic)', async () => {
      // p·C = 60 floats per patch row: the 16- and 32-wide packing chunks
      // straddle rows, so contiguous and gathered chunks alternate.
      const tokens = randn([2, 7, 10, 20]);              // [B, H, W, C] storage
      const x = tokens.permute(0, 3, 1, 2).narrow(2, 0, 6).narrow(3, 0, 9);  // a cropped [B, C, 6, 9] view
      const w = randn([33, 20, 3, 3]), b = randn([33]);
      const ref = await refConv(x, w, b, 3);
      const y = convPatch(x, w, b, { patch: 3 });
      expect(y.shape).toEqual([2, 6, 33]);
      expectClose(await y.data(), ref, tol);
      // bf16 operands: within bf16 rounding (2^-8 relative per factor) of the exact sums.
      const yb = convPatch(x, w, b, { patch: 3, precision: 'bf16' });
      const got = await yb.data();
      expectClose(got, ref, 1e-2);
      let differs = false;
      for (let i = 0; i < got.length && !differs; ++i) differs = Math.abs(got[i] - ref.c[i]) > tol * ref.mag[i];
      expect(differs).toBe(true);  // it did round to bf16
      for (const t of [tokens, x, w, b, y, yb]) t.dispose();
    });

    test('H and W must be multiples of the patch', () => {
      using x = vl.zeros([1, 3, 30, 32]);
      using w = vl.zeros([8, 3, 16, 16]);
      expect(() => convPatch(x, w, null, { patch: 16 })).toThrow(vl.ShapeError);
      expect(() => convPatch(x, w, null, { patch: 16 })).toThrow(/H and W must be multiples of the patch size 16 .*got H = 30, W = 32/);
    });
  });

  describe('packed weights are tensors', () => {
    test('memory, dispose, using and tidy', async () => {
      await settleGc(() => vl.memory()[device].gcReleased);
      const before = vl.memory()[device].tensors;
      using w = vl.randn([64, 96]);
      const p = packLinear(w);
      expect(vl.memory()[device].tensors).toBe(before + 2);
      expect(p.tensor.size).toBeGreaterThanOrEqual(64 * 96 * 4);
      p.dispose();
      expect(p.isDisposed).toBe(true);
      expect(vl.memory()[device].tensors).toBe(before + 1);
      {
        using q = packLinear(w, { dtype: 'bf16' });
        expect(q.tensor.size).toBeGreaterThanOrEqual(64 * 96 * 2);
        expect(q.tensor.size).toBeLessThan(64 * 96 * 4);
      }
      expect(vl.memory()[device].tensors).toBe(before + 1);
      const kept = vl.tidy(() => {
        packLinear(w);                                   // disposed by the scope
        return { layer: packLinear(w) };                 // returned: kept
      });
      expect(kept.layer.isDisposed).toBe(false);
      expect(vl.memory()[device].tensors).toBe(before + 2);
      const viaKeep = vl.tidy(() => vl.keep(packSwiGLU(w, w)));
      expect(viaKeep.isDisposed).toBe(false);
      kept.layer.dispose();
      viaKeep.dispose();
      expect(vl.memory()[device].tensors).toBe(before + 1);
    });
  });

  describe('errors', () => {
    let x: vl.Tensor, w: vl.Tensor;
    beforeAll(() => { x = vl.randn([4, 8]); w = vl.randn([6, 8]); });
    afterAll(() => { x.dispose(); w.dispose(); });

    test('shapes: K mismatch, ranks, bias and residual', () => {
      using w9 = vl.zeros([6, 9]);
      expect(() => linear(x, w9)).toThrow(vl.ShapeError);
      expect(() => linear(x, w9)).toThrow(new RegExp(String.raw`linear: x has 8 features in its last dimension \(f32\[4,8\] on ${device}\) but the weight expects 9`));
      using w3 = vl.zeros([2, 6, 8]);
      expect(() => linear(x, w3)).toThrow(/weight must be 2-D \[out_features, in_features\], got \[2,6,8\]/);
      using b = vl.zeros([5]);
      expect(() => linear(x, w, { bias: b })).toThrow(/bias must have shape \[6\] \(one value per output feature\), got \[5\]/);
      using r = vl.zeros([4, 5]);
      expect(() => linear(x, w, { residual: r })).toThrow(/residual must have the output's shape \[4,6\], got \[4,5\]/);
      using s = vl.zeros([]);
      expect(() => linear(s, w)).toThrow(vl.ShapeError);
      using a3 = vl.zeros([2, 3, 5]);
      using b3 = vl.zeros([3, 4, 7]);
      expect(() => matmul(a3, b3)).toThrow(/matmul: inner dimensions differ: a \[2,3,5\] has K = 5 but b \[3,4,7\] \(\[\.\.\., K, N\]\) has K = 4/);
      using b4 = vl.zeros([4, 5, 7]);
      expect(() => matmul(a3, b4)).toThrow(/cannot be broadcast together/);
      using v8 = vl.zeros([8]);
      expect(() => matmul(x, v8)).toThrow(/at least 2 dimensions/);
      using img = vl.zeros([1, 4, 16, 16]);
      using cw = vl.zeros([8, 3, 16, 16]);
      expect(() => convPatch(img, cw, null, { patch: 16 })).toThrow(/x has 4 channels but the weight expects 3/);
      expect(() => convPatch(img, cw, null, { patch: 8 })).toThrow(/weight must be \[O, C, 8, 8\] for patch 8/);
      expect(() => packSwiGLU(w, w9)).toThrow(/w1 and w2 must both be \[hidden, in_features\] with the same shape/);
    });

    test('dtypes', () => {
      using xi = vl.zeros([4, 8], { dtype: 'i32' });
      expect(() => linear(xi, w)).toThrow(vl.DTypeError);
      expect(() => linear(xi, w)).toThrow(new RegExp(String.raw`linear: x must be f32, got i32\[4,8\] on ${device}`));
      using wb = w.to('bf16');
      expect(() => linear(x, wb)).toThrow(/weight must be f32, got bf16\[6,8\]/);
      expect(() => packLinear(w, { dtype: 'f64' as 'f32' })).toThrow(vl.DTypeError);
      using wi = vl.zeros([6, 8], { dtype: 'i32' });
      expect(() => packLinear(wi)).toThrow(/weight must be f32 or bf16, got i32/);
      expect(() => matmul(x, xi)).toThrow(vl.DTypeError);
    });

    // Needs a second device in this process; on the CPU alone the instruction-set
    // children check cpu against cpu:1.
    const peer = peerDevice(device);
    if (peer) {
      test('tensors on another device are a DeviceError naming both devices, never a silent copy', () => {
        using xp = x.to(peer);
        using wp = w.to(peer);
        using bp = vl.zeros([6], { device: peer });
        using img = vl.zeros([1, 3, 16, 16]);
        using cw = vl.zeros([8, 3, 16, 16], { device: peer });
        expectDeviceError(() => linear(xp, w), peer, device);
        expectDeviceError(() => linear(x, wp), device, peer);
        expectDeviceError(() => linear(x, w, { bias: bp }), device, peer);
        expectDeviceError(() => matmul(x, wp, { transposeB: true }), device, peer);
        expectDeviceError(() => convPatch(img, cw, null, { patch: 16 }), device, peer);
      });
    }

    test('disposed tensors and packed weights', () => {
      const gone = vl.zeros([4, 8]);
      gone.dispose();
      expect(() => linear(gone, w)).toThrow(vl.DisposedError);
      const p = packLinear(w);
      p.dispose();
      expect(() => linear(x, p)).toThrow(vl.DisposedError);
      expect(() => linear(x, p)).toThrow(new RegExp(String.raw`the PackedLinear PackedLinear\(f32\[6,8\] packed for \w+ on ${device}\) was disposed`));
    });

    test('arguments and packed-weight misuse', () => {
      using p = packLinear(w);
      using sw = packSwiGLU(w, w);
      expect(() => linear(x, sw as unknown as PackedLinear)).toThrow(/use swiglu\(x, packed\)/);
      expect(() => swiglu(x, p as unknown as PackedSwiGLU)).toThrow(vl.ArgumentError);
      expect(() => linear(x, [1, 2] as unknown as vl.Tensor)).toThrow(/linear: weight must be a Tensor, got an array/);
      expect(() => linear(x, w, { bias: 3 } as unknown as object)).toThrow(/bias must be a Tensor, got number/);
      expect(() => linear(x, w, { bais: w } as unknown as object)).toThrow(/unknown option 'bais'/);
      expect(() => convPatch(x, w, null, { patch: 0 })).toThrow(vl.ArgumentError);
      expect(() => matmul(x, w, { transposeB: 'yes' as unknown as boolean })).toThrow(/transposeB must be a boolean/);
      // Bytes that do not match the description.
      using short = vl.zeros([100], { dtype: 'u8' });
      const bad = PackedLinear.fromTensor(short, p.info);
      expect(() => linear(x, bad)).toThrow(vl.ShapeError);
      expect(() => linear(x, bad)).toThrow(new RegExp(String.raw`packed f32 weight of \[6,8\] takes \d+ bytes, got u8\[100\] on ${device}`));
      using f = vl.zeros([p.tensor.size]);
      expect(() => linear(x, PackedLinear.fromTensor(f, p.info))).toThrow(/contiguous 1-D u8 tensor of panels/);
      const wrongIsa = PackedLinear.fromTensor(p.tensor, { ...p.info, layout: 'avx2' === p.layout ? 'scalar' : 'avx2' });
      expect(() => linear(x, wrongIsa)).toThrow(backend === 'cpu'
        ? /packed panels are not portable between instruction sets/
        : new RegExp(`packed for the 'avx2' kernels, but its data is on ${device}, whose kernels take '${backend}'`));
      expect(() => PackedLinear.fromTensor(p.tensor, { ...p.info, kBlock: -1 })).toThrow(vl.ArgumentError);
    });
  });
});

// Thread counts and instruction sets exist on the CPU only.
describe('determinism', () => {
  afterAll(() => vl.setNumThreads(2));

  async function workload(): Promise<Float32Array[]> {
    const outs = vl.tidy(() => {
      vl.manualSeed(7);
      const x = vl.randn([301, 517]), w = vl.randn([203, 517]), b = vl.randn([203]);
      const w1 = vl.randn([130, 517]), w2 = vl.randn([130, 517]);
      const img = vl.randn([2, 3, 64, 48]), cw = vl.randn([40, 3, 16, 16]);
      return [
        linear(x, w, { bias: b }), linear(x, packLinear(w, { dtype: 'bf16' })), swiglu(x, packSwiGLU(w1, w2)),
        matmul(vl.randn([6, 70, 64]), vl.randn([6, 90, 64]), { transposeB: true }), convPatch(img, cw, null, { patch: 16 }),
        // Weight gradients: a transposed A, f32 and with bf16 weights.
        matmul(vl.randn([1000, 301]).transpose(), vl.randn([1000, 97])),
        linear(vl.randn([777, 45]).transpose(), packLinear(vl.randn([33, 777]), { dtype: 'bf16' })),
      ];
    });
    const data = await Promise.all(outs.map((t) => t.data()));
    for (const t of outs) t.dispose();
    return data;
  }

  test('1 and 2 threads give bit-identical results', async () => {
    vl.setNumThreads(1);
    const one = await workload();
    vl.setNumThreads(2);
    const two = await workload();
    one.forEach((a, i) => expect(bitsEqual(a, two[i])).toBe(true));
  });
});

describe('instruction sets', () => {
  // Each child computes the same workload and packs a weight; the parent
  // compares the results and tries the child's packed bytes here.
  const script = `${requireLib}
    const L = require(${JSON.stringify(path.join(repoRoot, 'lib', 'ops', 'linalg.ts'))});
    (async () => {
      const x = vl.randn([70, 300], { seed: 1 }), w = vl.randn([90, 300], { seed: 2 }), b = vl.randn([90], { seed: 3 });
      const w1 = vl.randn([50, 300], { seed: 4 }), w2 = vl.randn([50, 300], { seed: 5 });
      const img = vl.randn([1, 3, 32, 32], { seed: 6 }), cw = vl.randn([16, 3, 8, 8], { seed: 7 });
      const packed = L.packLinear(w);
      const at = vl.randn([301, 45], { seed: 10 }).transpose(), ac = at.contiguous();
      const xt = vl.randn([301, 37], { seed: 11 }), pt = L.packLinear(vl.randn([29, 301], { seed: 12 }), { dtype: 'bf16' });
      const out = {
        info: L.gemmInfo(),
        linear: Array.from(await L.linear(x, w, { bias: b }).data()),
        bf16: Array.from(await L.linear(x, L.packLinear(w, { dtype: 'bf16' })).data()),
        swiglu: Array.from(await L.swiglu(x, L.packSwiGLU(w1, w2)).data()),
        swigluBf16: Array.from(await L.swiglu(x, L.packSwiGLU(w1, w2, { dtype: 'bf16' })).data()),
        // bf16 hidden (rounded by this ISA's conversion) into a bf16 down projection.
        bf16Hidden: Array.from(await L.linear(L.swiglu(x, L.packSwiGLU(w1, w2, { dtype: 'bf16' }), { dtype: 'bf16' }),
          L.packLinear(vl.randn([40, 50], { seed: 13 }), { dtype: 'bf16' })).data()),
        matmul: Array.from(await L.matmul(vl.randn([3, 20, 30], { seed: 8 }), vl.randn([30, 25], { seed: 9 })).data()),
        conv: Array.from(await L.convPatch(img, cw, null, { patch: 8 }).data()),
        // A transposed A (packed from its contiguous runs) against a contiguous copy of it.
        transposed: await Promise.all([L.matmul(at, xt), L.matmul(ac, xt), L.linear(at, pt), L.linear(ac, pt)]
          .map(async (t) => Buffer.from(await t.bytes()).toString('base64'))),
        packed: Buffer.from(await packed.tensor.bytes()).toString('base64'),
        packedInfo: packed.info,
      };
      try {
        L.linear(vl.zeros([2, 300], { device: 'cpu:1' }), w);
      } catch (err) {
        out.deviceError = [err.name, err.message];
      }
      console.log(JSON.stringify(out));
    })();`;
  const supported = vl.cpuInfo().supportedIsas;
  const runs = new Map<string, Record<string, unknown>>();
  const envs: [string, Record<string, string>][] = supported.map((isa) => [isa, { VLLAMA_CPU_ISA: isa }]);
  if (vl.cpuInfo().avx512bf16) envs.push(['avx512 without AVX512_BF16', { VLLAMA_CPU_ISA: 'avx512', VLLAMA_DISABLE_AVX512BF16: '1' }]);

  beforeAll(() => {
    for (const [name, env] of envs) {
      const r = runNode(script, { ...env, VLLAMA_CPU_DEVICES: '2' });
      if (r.status !== 0 || r.stderr) throw new Error(`${name} child failed: ${r.stderr}`);
      runs.set(name, JSON.parse(r.stdout));
    }
  });

  test('every ISA (and the bf16 fallback) agrees within tolerance', () => {
    const base = runs.get('scalar')!;
    expect((base.info as { kernels: string }).kernels).toBe('scalar');
    for (const [name, r] of runs) {
      if (name === 'avx512 without AVX512_BF16') expect((r.info as { kernels: string }).kernels).toBe('avx512');
      for (const key of ['linear', 'swiglu', 'matmul', 'conv', 'bf16', 'swigluBf16', 'bf16Hidden']) {
        const a = r[key] as number[], b = base[key] as number[];
        const scale = maxAbs(b);
        let worst = 0;
        for (let i = 0; i < a.length; ++i) worst = Math.max(worst, Math.abs(a[i] - b[i]));
        expect(a.length).toBe(b.length);
        // Same inputs and rounding, different summation order.
        expect(worst).toBeLessThan(1e-5 * scale * 20);
      }
      const [t32, c32, t16, c16] = r.transposed as string[];
      expect(t32).toBe(c32);
      expect(t16).toBe(c16);
    }
  });

  test('tensors on different devices are a DeviceError', () => {
    for (const r of runs.values()) {
      const [name, message] = r.deviceError as [string, string];
      expect(name).toBe('DeviceError');
      expect(message).toMatch(/linear: expected every tensor on cpu:1, got f32\[90,300\] on cpu/);
    }
  });

  test('weights packed under another ISA are rejected, not misread', async () => {
    const here = gemmInfo().layout;
    for (const [name, r] of runs) {
      const info = r.packedInfo as { layout: string; outFeatures: number; inFeatures: number; dtype: 'f32'; kBlock: number };
      const bytes = Buffer.from(r.packed as string, 'base64');
      using x = vl.randn([70, 300], { seed: 1 });
      const packed = PackedLinear.fromTensor(vl.tensor(new Uint8Array(bytes), undefined, { dtype: 'u8' }), info);
      if (info.layout === here) {
        // Same kernels: the bytes are usable and equal this process's packing.
        using w = vl.randn([90, 300], { seed: 2 });
        using mine = packLinear(w);
        expect(Buffer.from(await mine.tensor.bytes()).equals(bytes)).toBe(true);
        expect(maxAbs(await linear(x, packed).data())).toBeGreaterThan(0);
      } else {
        expect(() => linear(x, packed)).toThrow(vl.ArgumentError);
        expect(() => linear(x, packed)).toThrow(new RegExp(`packed for the '${info.layout}' kernels, but this process runs '${here}'`));
      }
      packed.dispose();
      expect(name.length).toBeGreaterThan(0);
    }
  });

  test("weights packed on a CUDA device ('cuda' layout) are rejected on the CPU, naming the device", async () => {
    using w = vl.randn([90, 300], { seed: 2 });
    using mine = packLinear(w);
    using x = vl.randn([70, 300], { seed: 1 });
    using packed = PackedLinear.fromTensor(vl.tensor(new Uint8Array(await mine.tensor.bytes()), undefined, { dtype: 'u8' }), {
      ...mine.info,
      layout: 'cuda',
    });
    expect(() => linear(x, packed)).toThrow(vl.ArgumentError);
    expect(() => linear(x, packed)).toThrow(/packed for the 'cuda' kernels, but its data is on cpu(:0)?, whose kernels take '/);
  });
});

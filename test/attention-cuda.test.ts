// Fused AS2DRoPE attention on CUDA against the CPU kernels, forward and
// backward, on the shapes the models use: class-token grids, LSA window
// batches, GSA keys on the full-resolution width, explicit positions, views
// of packed projections, every gradient layout, a padded head width, and the
// CUDA head-width limit. Skipped without a usable GPU; the kernels themselves
// are checked everywhere through the SIMT runner (simt_attention_test.cc).
import * as vl from '../lib';
import { AttentionOptions, attention, attentionBackward, splitKV, splitQKV } from '../lib/ops/attention';
import { maxAbsDiff } from './helpers';

const device = vl.backendInfo().cuda.available ? 'cuda' : undefined;
const maybe = device ? describe : describe.skip;

let seed = 900;
function randn(shape: number[]): vl.Tensor {
  return vl.randn(shape, { seed: seed++, std: 1.5 });
}

async function values(t: vl.Tensor): Promise<Float32Array> {
  return await t.data() as Float32Array;
}

/** Within `rel` of the CPU values' scale (3×bf16 products against f32). */
async function expectClose(actual: vl.Tensor, expected: vl.Tensor, rel: number): Promise<void> {
  expect(actual.shape).toEqual(expected.shape);
  const a = await values(actual), e = await values(expected);
  let scale = 1e-30;
  for (const x of e) scale = Math.max(scale, Math.abs(x));
  expect(maxAbsDiff(a, e) / scale).toBeLessThan(rel);
}

type Inputs = { q: vl.Tensor; k: vl.Tensor; v: vl.Tensor; owned: vl.Tensor[] };

/** q, k, v on the CPU and the same values on the GPU, as views of packed projections when asked. */
function inputs(B: number, N: number, M: number, H: number, D: number, packing: 'qkv' | 'kv' | 'none', dev: string): Inputs {
  const owned: vl.Tensor[] = [];
  const keep = (t: vl.Tensor) => (owned.push(t), t);
  if (packing === 'qkv') {
    const qkv = keep(randn([B, N, 3 * H * D]));
    const on = dev === 'cpu' ? qkv : keep(qkv.to(dev));
    const { q, k, v } = splitQKV(on, H);
    return { q: keep(q), k: keep(k), v: keep(v), owned };
  }
  const q0 = keep(randn([B, N, H, D]));
  const q = dev === 'cpu' ? q0 : keep(q0.to(dev));
  if (packing === 'kv') {
    const kv = keep(randn([B, M, 2 * H * D]));
    const on = dev === 'cpu' ? kv : keep(kv.to(dev));
    const { k, v } = splitKV(on, H);
    return { q, k: keep(k), v: keep(v), owned };
  }
  const k0 = keep(randn([B, M, H, D])), v0 = keep(randn([B, M, H, D]));
  return { q, k: dev === 'cpu' ? k0 : keep(k0.to(dev)), v: dev === 'cpu' ? v0 : keep(v0.to(dev)), owned };
}

/** Runs forward and backward on the CPU and on `dev` with the same values and compares everything. */
async function compare(B: number, N: number, M: number, H: number, D: number, packing: 'qkv' | 'kv' | 'none',
  opts: AttentionOptions, layout?: 'qkv' | 'kv'): Promise<void> {
  const savedSeed = seed;
  const cpu = inputs(B, N, M, H, D, packing, 'cpu');
  seed = savedSeed;
  const gpu = inputs(B, N, M, H, D, packing, device!);
  const dOut = randn([B, N, H * D]);
  const dOutGpu = dOut.to(device!);
  const owned = [...cpu.owned, ...gpu.owned, dOut, dOutGpu];
  try {
    const c = attention(cpu.q, cpu.k, cpu.v, { ...opts, returnLse: true });
    const g = attention(gpu.q, gpu.k, gpu.v, { ...opts, returnLse: true });
    owned.push(c.out, c.lse, g.out, g.lse);
    expect(g.out.device).toBe(gpu.q.device);
    await expectClose(g.out, c.out, 2e-5);
    await expectClose(g.lse, c.lse, 2e-5);
    const back = { qPos: opts.qPos, kPos: opts.kPos, rope: opts.rope, scale: opts.scale, packed: layout };
    const cg = attentionBackward(dOut, cpu.q, cpu.k, cpu.v, c.out, c.lse, back);
    const gg = attentionBackward(dOutGpu, gpu.q, gpu.k, gpu.v, g.out, g.lse, back);
    owned.push(...[cg.dq, cg.dk, cg.dv, cg.packed, gg.dq, gg.dk, gg.dv, gg.packed].filter((t): t is vl.Tensor => !!t));
    for (const name of ['dq', 'dk', 'dv'] as const) {
      expect(gg[name].strides).toEqual(cg[name].strides);
      await expectClose(gg[name], cg[name], 1e-4);
    }
    if (layout) await expectClose(gg.packed!, cg.packed!, 1e-4);
  } finally {
    for (const t of owned) t.dispose();
  }
}

maybe('attention on CUDA agrees with the CPU kernels', () => {
  test('plain ViT: class token + auto-scaled grid, views of a packed qkv, packed qkv gradients', async () => {
    const gw = 11, N = 1 + 6 * gw;
    await compare(2, N, N, 3, 64, 'qkv', { qPos: { grid: { cols: gw, step: 224 / 96, indexOffset: -1 } } }, 'qkv');
  });

  test('LSA: a batch of 7×7 windows with window-local positions', async () => {
    await compare(8, 49, 49, 2, 32, 'qkv', { qPos: { grid: { cols: 7 } } }, 'qkv');
  });

  test('GSA: sub-sampled keys on the full-resolution width, views of a kv projection, packed kv gradients', async () => {
    const W = 14, sr = 2;
    await compare(1, W * W, (W / sr) ** 2, 2, 72, 'kv',
      { qPos: { grid: { cols: W } }, kPos: { grid: { cols: W, step: sr, bias: 1 - 1 / sr } } }, 'kv');
  });

  test('explicit positions, M ≠ N, D = 128', async () => {
    const N = 33, M = 20;
    const xs = (n: number) => Array.from({ length: n }, (_, i) => (i * 7) % 9 - 2.5);
    await compare(1, N, M, 1, 128, 'none', { qPos: { x: xs(N), y: xs(N).reverse() }, kPos: { x: xs(M), y: xs(M) } });
  });

  test('rope off with a custom scale; one query, one key', async () => {
    await compare(2, 1, 1, 1, 16, 'none', { rope: false, scale: 0.3 });
  });

  test('several query and key tiles per (batch, head)', async () => {
    await compare(1, 300, 300, 1, 64, 'none', { qPos: { grid: { cols: 17, indexOffset: -1 } } });
  });

  test('head widths above 128 are refused on CUDA, naming the limit', () => {
    using q = vl.zeros([1, 4, 1, 132], { device });
    expect(() => attention(q, q, q, { rope: false })).toThrow(/on CUDA the head width D must be a multiple of 4 from 16 to 128/);
  });
});

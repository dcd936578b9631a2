// `npm run bench -- attention [--json]`: the fused AS2DRoPE attention against
// the unfused path (GEMM q·kᵀ, softmax, GEMM p·v) at ViT-S shapes (6 heads of
// 64), in one process, interleaved; the best of repeated timings of each.
// The unfused peer gets no RoPE at all (it starts from already-rotated q, k),
// so the comparison favours it. A second row per shape: the same fused kernel
// at bf16 precision against f32.
'use strict';
require('../test/register-ts.js');
const vl = require('../lib/index.ts');
const { best } = require('./timing.js');
const { attention, splitQKV, matmul, softmax } = vl.ops;

async function attentionBench(args) {
  const json = args.includes('--json');
  const seconds = Number(args[args.indexOf('--seconds') + 1]) || 1;
  const heads = 6, D = 64;
  const cases = [[8, 197], [2, 785], [1, 3137]];
  for (const [B, N] of cases) {
    const grid = Math.round(Math.sqrt(N - 1));
    const qkv = vl.randn([B, N, 3 * heads * D], { seed: N });
    const { q, k, v } = splitQKV(qkv, heads);
    const pos = { grid: { cols: grid, indexOffset: -1 } };
    // Unfused operands, head-major and contiguous, prepared outside the timing.
    const qh = q.permute(0, 2, 1, 3).contiguous(), kh = k.permute(0, 2, 1, 3).contiguous(), vh = v.permute(0, 2, 1, 3).contiguous();
    const fusedAt = (precision) => async () => {
      const o = attention(q, k, v, { qPos: pos, kPos: pos, precision });
      await o.data();
      o.dispose();
    };
    const fused = fusedAt('f32');
    const unfused = async () => {
      const s = matmul(qh, kh, { transposeB: true });
      const sc = s.mul(1 / Math.sqrt(D));
      const p = softmax(sc);
      const o = matmul(p, vh);
      await o.data();
      for (const t of [s, sc, p, o]) t.dispose();
    };
    let ours = Infinity, peer = Infinity, bf16 = Infinity;
    for (let round = 0; round < 3; ++round) {
      ours = Math.min(ours, await best(fused, seconds / 3));
      peer = Math.min(peer, await best(unfused, seconds / 3));
      bf16 = Math.min(bf16, await best(fusedAt('bf16'), seconds / 3));
    }
    const flops = 4 * B * heads * N * N * D;
    const row = {
      bench: 'attention', case: `B=${B} h=${heads} N=${N} D=${D}`, ours_ms: +ours.toFixed(3),
      peer: 'unfused: matmul, softmax, matmul (no RoPE)', peer_ms: +peer.toFixed(3),
      ratio: +(peer / ours).toFixed(3), gflops: +(flops / ours / 1e6).toFixed(1),
    };
    console.log(json ? JSON.stringify(row) : `${row.case.padEnd(26)} fused ${row.ours_ms.toFixed(2).padStart(9)} ms  unfused ${row.peer_ms.toFixed(2).padStart(9)} ms  x${row.ratio}  ${row.gflops} GFLOP/s`);
    // bf16 precision (inference; vdpbf16ps where the CPU has AVX512_BF16) against f32, same kernel family.
    const [o32, o16] = [attention(q, k, v, { qPos: pos, kPos: pos }), attention(q, k, v, { qPos: pos, kPos: pos, precision: 'bf16' })];
    const [a, b] = [await o32.data(), await o16.data()];
    let diff = 0, scale = 0;
    for (let i = 0; i < a.length; ++i) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(a[i])); }
    const rowBf16 = {
      bench: 'attention_bf16', case: row.case, ours_ms: +bf16.toFixed(3), peer: 'fused f32', peer_ms: row.ours_ms,
      ratio: +(ours / bf16).toFixed(3), gflops: +(flops / bf16 / 1e6).toFixed(1), max_rel_diff: +(diff / scale).toExponential(2),
    };
    console.log(json ? JSON.stringify(rowBf16) : `${row.case.padEnd(26)} bf16  ${rowBf16.ours_ms.toFixed(2).padStart(9)} ms  f32 ${row.ours_ms.toFixed(2).padStart(9)} ms  x${rowBf16.ratio}  diff ${rowBf16.max_rel_diff}`);
    for (const t of [qkv, q, k, v, qh, kh, vh, o32, o16]) t.dispose();
  }
}

module.exports = { attentionBench };

// `npm run bench -- cuda [--json] [--seconds S] [--peak-tflops T] [--no-cpu-peer]`:
// the CUDA backend on the first GPU, every row naming the device.
//   attention: fused forward and backward TFLOP/s (f32 inputs through the
//     3-pass path; bf16 inputs too if the op takes them), head width 64 and
//     128, N = 197 .. 16384, as a fraction of the device's dense bf16 peak;
//     peer: the same kernel with `rope: false` (the cost of RoPE). The
//     forward and backward at f32 and bf16 precision (wgmma on compute
//     capability 9.0) against VLLAMA_CUDA_ATTENTION=mma, and the forward at
//     bf16 against `rope: false`.
//   gemm: the model's linear shapes, packed bf16 and f16 weights (1 pass) against f32
//     weights (3 passes), TFLOP/s and fraction of peak; and the packed rows
//     on the default kernel choice (wgmma on compute capability 9.0) against
//     VLLAMA_CUDA_GEMM=mma (mma.sync everywhere), the Hopper path's gain; the
//     same for f32 weights at f32 (3 passes) and bf16 arithmetic (autocast).
//   model / train: plain-B and pyramid-B images/s at 224x224 (inference with
//     f32, packed bf16 and packed f16 weights; training with AdamW), against the CPU at a
//     small batch (--no-cpu-peer leaves the CPU out and the ratio empty).
// Device time: each measurement queues enough launches to take about 20 ms
// and waits for the device (vl.synchronize) before reading the clock.
'use strict';
const os = require('os');
require('../test/register-ts.js');
const vl = require('../lib/index.ts');
const { best } = require('./timing.js');
const { trainStepMs } = require('./train.js');
const { attention, attentionBackward, linear, packLinear, packSwiGLU, swiglu } = vl.ops;

const DEVICE = 'cuda:0';

// Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendor data
// sheets, by device name; the first match wins.
const PEAKS = [
  [/H100.*PCIe/i, 756, 'H100 PCIe'],
  [/H100.*NVL/i, 835, 'H100 NVL'],
  [/H100/i, 989, 'H100 SXM'],
  [/H200.*NVL/i, 835, 'H200 NVL'],
  [/H200/i, 989, 'H200 SXM'],
  [/A100/i, 312, 'A100'],
  [/L40S/i, 362, 'L40S'],
  [/\bL4\b/i, 121, 'L4'],
];

function peakFor(name, override) {
  if (override) return { tflops: override, source: '--peak-tflops' };
  const hit = PEAKS.find(([re]) => re.test(name));
  return hit ? { tflops: hit[1], source: `table: ${hit[2]}` } : { tflops: null, source: 'unknown device: pass --peak-tflops' };
}

/** Runs fn with `device` as the default device (models and labels are created there). */
async function onDevice(device, fn) {
  const before = vl.defaultDevice();
  vl.setDefaultDevice(device);
  try {
    return await fn();
  } finally {
    vl.setDefaultDevice(before);
  }
}

/**
 * Milliseconds per call of `launch` (which queues work and disposes what it
 * made): calls are queued in groups of about 20 ms and the device is waited
 * for after each group; the best group of `seconds` of them.
 */
async function deviceMs(launch, seconds) {
  const group = async (n) => {
    for (let i = 0; i < n; ++i) launch();
    await vl.synchronize(DEVICE);
  };
  await group(1); // warm-up: allocator caches, first-launch costs
  const t0 = performance.now();
  await group(1);
  const n = Math.max(1, Math.min(200, Math.ceil(20 / Math.max(performance.now() - t0, 1e-3))));
  return (await best(() => group(n), seconds, 3)) / n;
}

function dispose(value) {
  for (const t of Array.isArray(value) ? value : Object.values(value)) t?.dispose();
}

const tflops = (flops, ms) => flops / ms / 1e9;
const fraction = (tf, peak) => (peak ? +(tf / peak).toFixed(3) : null);

function acceptsBf16Attention() {
  const t = vl.zeros([1, 4, 1, 16], { device: DEVICE, dtype: 'bf16' });
  try {
    attention(t, t, t, { rope: false }).dispose();
    return true;
  } catch (err) {
    if (err instanceof vl.DTypeError) return false;
    throw err;
  } finally {
    t.dispose();
  }
}

// f() with the environment variable `name` set to `value` (the CUDA ops read
// their kernel switches at each launch).
async function withEnv(name, value, f) {
  process.env[name] = value;
  try {
    return await f();
  } finally {
    delete process.env[name];
  }
}

async function attentionRows(ctx) {
  const dtypes = ['f32'];
  if (acceptsBf16Attention()) dtypes.push('bf16');
  else ctx.note('attention: bf16 inputs are not accepted by the op (f32 only): f32 rows only');
  for (const dtype of dtypes) {
    for (const D of [64, 128]) {
      // ViT-B width: 12 heads of 64 or 6 of 128; the batch fills the GPU with
      // about 2M query rows (B·heads·N) per call.
      const heads = 768 / D;
      for (const N of [197, 1024, 4096, 16384]) {
        const B = Math.max(1, Math.round((1 << 21) / (heads * N)));
        const make = (seed) => {
          const t = vl.randn([B, N, heads, D], { seed, device: DEVICE });
          if (dtype === 'f32') return t;
          const converted = t.to(dtype);
          t.dispose();
          return converted;
        };
        const [q, k, v] = [make(1), make(2), make(3)];
        const dOut = vl.randn([B, N, heads * D], { seed: 4, device: DEVICE });
        const cols = Math.round(Math.sqrt(N));
        const pos = { grid: { cols, indexOffset: N === cols * cols ? 0 : -1 } };
        const withRope = { qPos: pos, kPos: pos };
        const noRope = { rope: false };
        const fwd = (opts) => () => attention(q, k, v, opts).dispose();
        const saved = (opts) => attention(q, k, v, { ...opts, returnLse: true });
        const [sRope, sPlain] = [saved(withRope), saved(noRope)];
        const bwd = (opts, s) => () => dispose(attentionBackward(dOut, q, k, v, s.out, s.lse, opts));
        // QKᵀ and PV: 4·B·h·N²·D; the backward recomputes P and runs 4 more
        // GEMMs: 2.5 times the forward (the usual FlashAttention count).
        const flops = 4 * B * heads * N * N * D;
        for (const [pass, f, ours, peer] of [
          ['fwd', flops, fwd(withRope), fwd(noRope)],
          ['bwd', 2.5 * flops, bwd(withRope, sRope), bwd(noRope, sPlain)],
        ]) {
          const oursMs = await deviceMs(ours, ctx.seconds);
          const peerMs = await deviceMs(peer, ctx.seconds);
          const tf = tflops(f, oursMs);
          ctx.row({
            bench: 'cuda', case: `attention ${pass} ${dtype} D=${D} h=${heads} N=${N} B=${B}`, ours_ms: +oursMs.toFixed(3),
            tflops: +tf.toFixed(1), peak_fraction: fraction(tf, ctx.peak.tflops),
            peer: 'same kernel, rope: false', peer_ms: +peerMs.toFixed(3), ratio: +(peerMs / oursMs).toFixed(3),
          });
        }
        if (dtype === 'f32') {
          // The forward and backward at each precision against
          // VLLAMA_CUDA_ATTENTION=mma (the Hopper kernels' gain), and the
          // forward at bf16 against rope: false as well.
          for (const precision of ['f32', 'bf16']) {
            const at = (opts) => fwd({ ...opts, precision });
            const oursMs = await deviceMs(at(withRope), ctx.seconds);
            const mmaMs = await withEnv('VLLAMA_CUDA_ATTENTION', 'mma', () => deviceMs(at(withRope), ctx.seconds));
            const tf = tflops(flops, oursMs);
            const row = { bench: 'cuda', ours_ms: +oursMs.toFixed(3), tflops: +tf.toFixed(1), peak_fraction: fraction(tf, ctx.peak.tflops) };
            const name = `attention fwd precision=${precision} D=${D} h=${heads} N=${N} B=${B}`;
            if (precision === 'bf16') {
              const plainMs = await deviceMs(at(noRope), ctx.seconds);
              ctx.row({ ...row, case: name, peer: 'same kernel, rope: false', peer_ms: +plainMs.toFixed(3), ratio: +(plainMs / oursMs).toFixed(3) });
            }
            ctx.row({ ...row, case: `${name}: default kernel vs mma.sync`, peer: 'VLLAMA_CUDA_ATTENTION=mma', peer_ms: +mmaMs.toFixed(3), ratio: +(mmaMs / oursMs).toFixed(3) });
            // The backward likewise (the Hopper dq and dk/dv kernels where they exist for D and the precision).
            const back = bwd({ ...withRope, precision }, sRope);
            const bwdMs = await deviceMs(back, ctx.seconds);
            const bwdMmaMs = await withEnv('VLLAMA_CUDA_ATTENTION', 'mma', () => deviceMs(back, ctx.seconds));
            const btf = tflops(2.5 * flops, bwdMs);
            ctx.row({
              bench: 'cuda', case: `attention bwd precision=${precision} D=${D} h=${heads} N=${N} B=${B}: default kernel vs mma.sync`,
              ours_ms: +bwdMs.toFixed(3), tflops: +btf.toFixed(1), peak_fraction: fraction(btf, ctx.peak.tflops),
              peer: 'VLLAMA_CUDA_ATTENTION=mma', peer_ms: +bwdMmaMs.toFixed(3), ratio: +(bwdMmaMs / bwdMs).toFixed(3),
            });
          }
        }
        dispose([q, k, v, dOut, sRope.out, sRope.lse, sPlain.out, sPlain.lse]);
      }
    }
  }
}

// [in, out] of the plain and pyramid models' linears (S, B, and 1024/4096
// widths); 'swiglu' cases are the fused gate GEMM to hidden = roundUp(8C/3, 256).
const GEMMS = [
  [384, 1152], [384, 384], [384, 1024, 'swiglu'], [1024, 384],
  [768, 2304], [768, 768], [768, 2048, 'swiglu'], [2048, 768],
  [1024, 4096], [4096, 1024], [4096, 4096],
];

async function gemmRows(ctx) {
  const M = 64 * 197; // batch 64 of ViT tokens at 224x224
  for (const [K, N, kind] of GEMMS) {
    const x = vl.randn([M, K], { seed: 1, device: DEVICE });
    const w1 = vl.randn([N, K], { seed: 2, device: DEVICE, std: 0.02 });
    const w2 = kind === 'swiglu' ? vl.randn([N, K], { seed: 3, device: DEVICE, std: 0.02 }) : null;
    const pack = (dtype) => (w2 ? packSwiGLU(w1, w2, { dtype }) : packLinear(w1, { dtype }));
    const f32 = w2 ? pack('f32') : w1;
    const run = (w) => () => (kind === 'swiglu' ? swiglu(x, w) : linear(x, w)).dispose();
    const flops = 2 * M * K * N * (kind === 'swiglu' ? 2 : 1);
    const peerMs = await deviceMs(run(f32), ctx.seconds);
    const tfPeer = tflops(flops, peerMs);
    // bf16 and fp16 panels: one tensor-core pass each (the peak is the same for both).
    for (const dtype of ['bf16', 'f16']) {
      const w = pack(dtype);
      const oursMs = await deviceMs(run(w), ctx.seconds);
      const tfOurs = tflops(flops, oursMs);
      ctx.row({
        bench: 'cuda', case: `${kind ?? 'linear'} M=${M} K=${K} N=${N} ${dtype} packed (1 pass)`, ours_ms: +oursMs.toFixed(3),
        tflops: +tfOurs.toFixed(1), peak_fraction: fraction(tfOurs, ctx.peak.tflops),
        peer: `f32 weights (3 passes): ${tfPeer.toFixed(1)} TFLOP/s, ${fraction(tfPeer, ctx.peak.tflops)} of peak`,
        peer_ms: +peerMs.toFixed(3), ratio: +(peerMs / oursMs).toFixed(3),
      });
      // The same on mma.sync.
      const mmaMs = await withEnv('VLLAMA_CUDA_GEMM', 'mma', () => deviceMs(run(w), ctx.seconds));
      ctx.row({
        bench: 'cuda', case: `${kind ?? 'linear'} M=${M} K=${K} N=${N} ${dtype} packed: default kernel vs mma.sync`,
        ours_ms: +oursMs.toFixed(3), tflops: +tfOurs.toFixed(1), peak_fraction: fraction(tfOurs, ctx.peak.tflops),
        peer: 'VLLAMA_CUDA_GEMM=mma', peer_ms: +mmaMs.toFixed(3), ratio: +(mmaMs / oursMs).toFixed(3),
      });
      w.dispose();
    }
    // f32 weights (training, f32 inference) on the default kernel against mma.sync.
    for (const precision of ['f32', 'bf16']) {
      if (kind === 'swiglu' && precision === 'bf16') continue;  // a packed f32 SwiGLU weight is always 3 passes
      const runF32 = () => (kind === 'swiglu' ? swiglu(x, f32) : linear(x, f32, { precision })).dispose();
      const oursMs = precision === 'f32' ? peerMs : await deviceMs(runF32, ctx.seconds);
      const mmaMs = await withEnv('VLLAMA_CUDA_GEMM', 'mma', () => deviceMs(runF32, ctx.seconds));
      const tfOurs = tflops(flops, oursMs);
      ctx.row({
        bench: 'cuda', case: `${kind ?? 'linear'} M=${M} K=${K} N=${N} f32 weights, ${precision} arithmetic: default kernel vs mma.sync`,
        ours_ms: +oursMs.toFixed(3), tflops: +tfOurs.toFixed(1), peak_fraction: fraction(tfOurs, ctx.peak.tflops),
        peer: 'VLLAMA_CUDA_GEMM=mma', peer_ms: +mmaMs.toFixed(3), ratio: +(mmaMs / oursMs).toFixed(3),
      });
    }
    dispose(w2 ? [x, w1, w2, f32] : [x, w1]);
  }
}

/** Milliseconds per forward of `preset` on `device` at batch B (the best of `seconds`). */
async function inferenceMs(device, preset, dtype, B, seconds) {
  return onDevice(device, async () => {
    const model = vl.models.create(preset, { dtype });
    const x = vl.randn([B, 3, 224, 224], { seed: 1 });
    const ms = device === 'cpu'
      ? await best(async () => { const y = model.forward(x); await y.data(); y.dispose(); }, seconds, 2)
      : await deviceMs(() => model.forward(x).dispose(), seconds);
    dispose([x]);
    model.dispose();
    return ms;
  });
}

/** Milliseconds per training step (forward, backward, AdamW) on `device` at batch B. */
async function trainMs(device, preset, B, steps) {
  return onDevice(device, async () => {
    const model = vl.models.create(preset).train();
    const opt = new vl.optim.AdamW(model.namedParameters(), { lr: 1e-4, weightDecay: 0.05 });
    // Each step ends by reading its loss, which waits for the whole step on the device.
    const ms = await trainStepMs(model, opt, B, steps);
    opt.dispose();
    model.dispose();
    return ms;
  });
}

async function modelRows(ctx) {
  const cpuName = `cpu (${os.cpus()[0]?.model ?? 'unknown'}, ${vl.cpuInfo().threads} threads)`;
  const [gpuBatch, cpuBatch, trainBatch, cpuTrainBatch] = [64, 2, 32, 2];
  const peerRow = (peerMs, batch, oursImgS) => {
    if (!ctx.cpuPeer) return { peer: 'cpu left out (--no-cpu-peer)', peer_ms: null, ratio: null };
    const peerImgS = 1000 * batch / peerMs;
    return { peer: `${cpuName}, batch ${batch}`, peer_ms: +peerMs.toFixed(1), peer_img_s: +peerImgS.toFixed(2), ratio: +(oursImgS / peerImgS).toFixed(1) };
  };
  for (const preset of ['plain-b', 'pyramid-b']) {
    for (const dtype of ['f32', 'bf16', 'f16']) {
      const oursMs = await inferenceMs(DEVICE, preset, dtype, gpuBatch, ctx.seconds);
      const imgS = 1000 * gpuBatch / oursMs;
      const peerMs = ctx.cpuPeer ? await inferenceMs('cpu', preset, dtype, cpuBatch, ctx.seconds) : null;
      ctx.row({
        bench: 'cuda', case: `${preset} inference ${dtype} weights batch ${gpuBatch} 224x224`, ours_ms: +oursMs.toFixed(2),
        ours_img_s: +imgS.toFixed(1), ...peerRow(peerMs, cpuBatch, imgS),
      });
    }
    const oursMs = await trainMs(DEVICE, preset, trainBatch, 4);
    const imgS = 1000 * trainBatch / oursMs;
    const peerMs = ctx.cpuPeer ? await trainMs('cpu', preset, cpuTrainBatch, 2) : null;
    ctx.row({
      bench: 'cuda', case: `${preset} training (AdamW) batch ${trainBatch} 224x224`, ours_ms: +oursMs.toFixed(1),
      ours_img_s: +imgS.toFixed(1), ...peerRow(peerMs, cpuTrainBatch, imgS),
    });
  }
}

async function cudaBench(args) {
  const json = args.includes('--json');
  const opt = (name, d) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : d);
  const info = vl.backendInfo().cuda;
  if (!info.available) {
    console.error(`bench cuda: no usable CUDA device: ${info.reason}`);
    process.exit(2);
  }
  const device = info.devices[0];
  const peak = peakFor(device, Number(opt('peak-tflops', 0)) || null);
  const ctx = {
    seconds: Number(opt('seconds', 1)),
    cpuPeer: !args.includes('--no-cpu-peer'),
    peak,
    row: (r) => {
      const row = { ...r, device };
      console.log(json ? JSON.stringify(row) : `${row.case.padEnd(58)} ${row.ours_ms} ms  ${row.tflops !== undefined ? `${row.tflops} TFLOP/s (${row.peak_fraction} of peak)` : `${row.ours_img_s} img/s`}  peer ${row.peer}: ${row.peer_ms} ms  x${row.ratio}`);
    },
    note: (text) => console.error(`bench cuda: ${text}`),
  };
  ctx.note(`device ${DEVICE}: ${device}; dense bf16 peak ${peak.tflops ?? '?'} TFLOP/s (${peak.source})`);
  await gemmRows(ctx);
  // The models need attention too.
  if (!info.kernels.includes('attention') || !info.kernels.includes('attention_backward')) {
    ctx.note('this build has no CUDA attention kernels: the attention, model and training rows are left out');
    return;
  }
  await attentionRows(ctx);
  await modelRows(ctx);
}

module.exports = { cudaBench };

// `npm run bench -- model [--json]`: images/s of plain-S and pyramid-S at
// 224x224, batch 1 and 8: ours (f32 and bf16 weights) against onnxruntime-node
// running the same weights, interleaved in one process.
// Set-up (not CI): Debian python3-torch python3-onnx, and onnxruntime-node
// installed with `npm install --no-save --ignore-scripts onnxruntime-node`.
// The ONNX files and their weights are made by ../shared/tools/export_onnx.py.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
require('../test/register-ts.js');
const vl = require('../lib/index.ts');
const { best } = require('./timing.js');

const root = path.join(__dirname, '..');
const outDir = path.join(root, 'build', 'bench');
const exporter = path.join(root, '..', 'shared', 'tools', 'export_onnx.py');

function prepare(preset) {
  const onnx = path.join(outDir, `${preset}.onnx`);
  const weights = path.join(outDir, `${preset}.weights.safetensors`);
  if (fs.existsSync(onnx) && fs.existsSync(weights)) return { onnx, weights };
  fs.mkdirSync(outDir, { recursive: true });
  if (!fs.existsSync(exporter)) throw new Error(`bench model: ${exporter} is missing; it exports the ONNX peer`);
  const r = spawnSync('/usr/bin/python3', [exporter, '--preset', preset, '--out', onnx], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    throw new Error(`bench model: exporting ${preset} failed (needs apt-get install python3-torch python3-onnx):\n${r.stderr}`);
  }
  // The exporter writes its weights beside the ONNX file (other benches keep other weights here).
  fs.renameSync(path.join(outDir, `${preset}.safetensors`), weights);
  return { onnx, weights };
}

async function modelBench(args) {
  const json = args.includes('--json');
  const seconds = Number(args[args.indexOf('--seconds') + 1]) || 2;
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch {
    console.error('bench model: onnxruntime-node is not installed: npm install --no-save --ignore-scripts onnxruntime-node');
    process.exit(2);
  }
  for (const preset of ['plain-s', 'pyramid-s']) {
    const { onnx, weights } = prepare(preset);
    const state = await vl.io.load(weights);
    const ours = {};
    for (const dtype of ['f32', 'bf16']) {
      ours[dtype] = vl.models.create(preset, { dtype });
      ours[dtype].loadStateDict(state);
    }
    for (const t of state.values()) t.dispose();
    const session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: vl.cpuInfo().threads, interOpNumThreads: 1 });
    for (const B of [1, 8]) {
      const x = vl.randn([B, 3, 224, 224], { seed: B });
      const xv = await x.data();
      const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', xv, [B, 3, 224, 224]) };
      let ref;
      const runOrt = async () => { ref = (await session.run(feeds))[session.outputNames[0]].data; };
      const logits = {};
      const runOurs = (dtype) => async () => {
        const y = ours[dtype].forward(x);
        logits[dtype] = await y.data();
        y.dispose();
      };
      const ms = { ort: Infinity, f32: Infinity, bf16: Infinity };
      for (let round = 0; round < 2; ++round) {
        ms.ort = Math.min(ms.ort, await best(runOrt, seconds / 2, 2));
        ms.f32 = Math.min(ms.f32, await best(runOurs('f32'), seconds / 2, 2));
        ms.bf16 = Math.min(ms.bf16, await best(runOurs('bf16'), seconds / 2, 2));
      }
      let scale = 0, d32 = 0, d16 = 0;
      for (let i = 0; i < ref.length; ++i) {
        scale = Math.max(scale, Math.abs(ref[i]));
        d32 = Math.max(d32, Math.abs(logits.f32[i] - ref[i]));
        d16 = Math.max(d16, Math.abs(logits.bf16[i] - logits.f32[i]));
      }
      for (const dtype of ['f32', 'bf16']) {
        const row = {
          bench: 'model', case: `${preset} ${dtype} batch ${B} 224x224`, ours_ms: +ms[dtype].toFixed(2), peer: `onnxruntime-node ${ort.env.versions?.common ?? ''} f32`.trim(),
          peer_ms: +ms.ort.toFixed(2), ratio: +(ms.ort / ms[dtype]).toFixed(3), gflops: null,
          ours_img_s: +(1000 * B / ms[dtype]).toFixed(1), peer_img_s: +(1000 * B / ms.ort).toFixed(1),
          max_rel_diff: +((dtype === 'f32' ? d32 : d16) / scale).toExponential(2),
          peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
        };
        console.log(json ? JSON.stringify(row) : `${row.case.padEnd(30)} ours ${row.ours_img_s} img/s  onnxruntime ${row.peer_img_s} img/s  x${row.ratio}  diff ${row.max_rel_diff}`);
      }
      x.dispose();
    }
    for (const m of Object.values(ours)) m.dispose();
  }
}

module.exports = { modelBench };
